//! The resource types the simulated API server serves, described the way the
//! real server's discovery documents describe them.
//!
//! One table drives discovery, URL routing, RBAC messages, field selectors and
//! the kubectl table columns, so a kind added here is served everywhere.

/// One served resource (a group/version/resource triple and what it allows).
#[derive(Debug, Clone, Copy)]
pub struct ResourceType {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The plural resource name used in URLs and RBAC.
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Whether the type has a `status` subresource (then the main endpoint
    /// ignores status changes, and `/status` ignores everything else).
    pub has_status: bool,
    /// Where the stored objects live: events.k8s.io/v1 shares core/v1's
    /// storage, as on a real server.
    pub storage: &'static str,
    /// Field selector labels this kind supports beyond metadata.name and
    /// metadata.namespace.
    pub extra_fields: &'static [&'static str],
    /// Whether the real server registers a field label conversion function
    /// for this kind, which changes the wording of the rejection message.
    pub has_field_conversion: bool,
    /// Whether DELETE answers with the deleted object (true) or a Status.
    pub returns_deleted_object: bool,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps` or `pods`: how the real server names a resource in
    /// error messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn verbs(&self) -> &'static [&'static str] {
        // A real server offers no deletecollection for namespaces.
        if self.plural == "namespaces" {
            return &[
                "create", "delete", "get", "list", "patch", "update", "watch",
            ];
        }
        &[
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
    }
}

const WORKLOAD: &[&str] = &["all"];
const NONE: &[&str] = &[];

pub static TYPES: &[ResourceType] = &[
    ResourceType {
        group: "",
        version: "v1",
        kind: "Namespace",
        plural: "namespaces",
        singular: "namespace",
        namespaced: false,
        short_names: &["ns"],
        categories: NONE,
        has_status: true,
        storage: "namespaces",
        extra_fields: &["status.phase", "name"],
        has_field_conversion: true,
        returns_deleted_object: true,
    },
    ResourceType {
        group: "",
        version: "v1",
        kind: "Node",
        plural: "nodes",
        singular: "node",
        namespaced: false,
        short_names: &["no"],
        categories: NONE,
        has_status: true,
        storage: "nodes",
        extra_fields: &["spec.unschedulable"],
        has_field_conversion: true,
        returns_deleted_object: false,
    },
    ResourceType {
        group: "",
        version: "v1",
        kind: "Pod",
        plural: "pods",
        singular: "pod",
        namespaced: true,
        short_names: &["po"],
        categories: WORKLOAD,
        has_status: true,
        storage: "pods",
        extra_fields: &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ],
        has_field_conversion: true,
        returns_deleted_object: true,
    },
    ResourceType {
        group: "",
        version: "v1",
        kind: "Event",
        plural: "events",
        singular: "event",
        namespaced: true,
        short_names: &["ev"],
        categories: NONE,
        has_status: false,
        storage: "events",
        extra_fields: EVENT_FIELDS,
        has_field_conversion: true,
        returns_deleted_object: false,
    },
    ResourceType {
        group: "",
        version: "v1",
        kind: "Secret",
        plural: "secrets",
        singular: "secret",
        namespaced: true,
        short_names: NONE,
        categories: NONE,
        has_status: false,
        storage: "secrets",
        extra_fields: &["type"],
        has_field_conversion: true,
        returns_deleted_object: false,
    },
    ResourceType {
        group: "",
        version: "v1",
        kind: "ServiceAccount",
        plural: "serviceaccounts",
        singular: "serviceaccount",
        namespaced: true,
        short_names: &["sa"],
        categories: NONE,
        has_status: false,
        storage: "serviceaccounts",
        extra_fields: NONE,
        has_field_conversion: false,
        returns_deleted_object: true,
    },
    ResourceType {
        group: "",
        version: "v1",
        kind: "ConfigMap",
        plural: "configmaps",
        singular: "configmap",
        namespaced: true,
        short_names: &["cm"],
        categories: NONE,
        has_status: false,
        storage: "configmaps",
        extra_fields: NONE,
        has_field_conversion: false,
        returns_deleted_object: false,
    },
    ResourceType {
        group: "",
        version: "v1",
        kind: "Service",
        plural: "services",
        singular: "service",
        namespaced: true,
        short_names: &["svc"],
        categories: WORKLOAD,
        has_status: true,
        storage: "services",
        extra_fields: NONE,
        has_field_conversion: false,
        returns_deleted_object: true,
    },
    ResourceType {
        group: "",
        version: "v1",
        kind: "PersistentVolumeClaim",
        plural: "persistentvolumeclaims",
        singular: "persistentvolumeclaim",
        namespaced: true,
        short_names: &["pvc"],
        categories: NONE,
        has_status: true,
        storage: "persistentvolumeclaims",
        extra_fields: NONE,
        has_field_conversion: false,
        returns_deleted_object: true,
    },
    ResourceType {
        group: "",
        version: "v1",
        kind: "PersistentVolume",
        plural: "persistentvolumes",
        singular: "persistentvolume",
        namespaced: false,
        short_names: &["pv"],
        categories: NONE,
        has_status: true,
        storage: "persistentvolumes",
        extra_fields: NONE,
        has_field_conversion: false,
        returns_deleted_object: true,
    },
    ResourceType {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        plural: "deployments",
        singular: "deployment",
        namespaced: true,
        short_names: &["deploy"],
        categories: WORKLOAD,
        has_status: true,
        storage: "deployments.apps",
        extra_fields: NONE,
        has_field_conversion: false,
        returns_deleted_object: false,
    },
    ResourceType {
        group: "apps",
        version: "v1",
        kind: "ReplicaSet",
        plural: "replicasets",
        singular: "replicaset",
        namespaced: true,
        short_names: &["rs"],
        categories: WORKLOAD,
        has_status: true,
        storage: "replicasets.apps",
        extra_fields: &["status.replicas"],
        has_field_conversion: true,
        returns_deleted_object: false,
    },
    ResourceType {
        group: "apps",
        version: "v1",
        kind: "StatefulSet",
        plural: "statefulsets",
        singular: "statefulset",
        namespaced: true,
        short_names: &["sts"],
        categories: WORKLOAD,
        has_status: true,
        storage: "statefulsets.apps",
        extra_fields: NONE,
        has_field_conversion: false,
        returns_deleted_object: false,
    },
    ResourceType {
        group: "networking.k8s.io",
        version: "v1",
        kind: "Ingress",
        plural: "ingresses",
        singular: "ingress",
        namespaced: true,
        short_names: &["ing"],
        categories: NONE,
        has_status: true,
        storage: "ingresses.networking.k8s.io",
        extra_fields: NONE,
        has_field_conversion: false,
        returns_deleted_object: false,
    },
    ResourceType {
        group: "events.k8s.io",
        version: "v1",
        kind: "Event",
        plural: "events",
        singular: "event",
        namespaced: true,
        short_names: &["ev"],
        categories: NONE,
        has_status: false,
        storage: "events",
        extra_fields: EVENT_FIELDS,
        has_field_conversion: true,
        returns_deleted_object: false,
    },
    ResourceType {
        group: "storage.k8s.io",
        version: "v1",
        kind: "VolumeAttachment",
        plural: "volumeattachments",
        singular: "volumeattachment",
        namespaced: false,
        short_names: NONE,
        categories: NONE,
        has_status: true,
        storage: "volumeattachments.storage.k8s.io",
        extra_fields: NONE,
        has_field_conversion: false,
        returns_deleted_object: false,
    },
];

const EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];

/// The resource served at `group`/`version`/`plural`.
pub fn by_resource(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    TYPES
        .iter()
        .find(|t| t.group == group && t.version == version && t.plural == plural)
}

/// The resource for an object's `apiVersion` and `kind`.
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceType> {
    TYPES
        .iter()
        .find(|t| t.api_version() == api_version && t.kind == kind)
}

/// The API groups other than core, in the order discovery lists them.
pub fn groups() -> Vec<&'static str> {
    let mut groups: Vec<&'static str> = Vec::new();
    for t in TYPES {
        if !t.group.is_empty() && !groups.contains(&t.group) {
            groups.push(t.group);
        }
    }
    groups
}

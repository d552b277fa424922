//! Discovery documents: `/version`, `/api`, `/apis`, and the resource lists
//! of each group version, as kubectl and kube's discovery read them.
//!
//! Both forms are served: the legacy one (a document per group version) and
//! the aggregated one (`apidiscovery.k8s.io/v2`, every group in the answer
//! to `/api` or `/apis`), which kubectl and client-go ask for first.

use serde_json::{json, Value};

use super::catalog::{self, ResourceType};

pub const GIT_VERSION: &str = "v1.33.1";

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": GIT_VERSION,
        "gitCommit": "8adc0f041b8e7ad1d30e29cc59c6ae7a15e19828",
        "gitTreeState": "clean",
        "buildDate": "2025-05-15T08:19:08Z",
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]
    })
}

fn group_entry(group: &str) -> Value {
    let versions: Vec<&str> = {
        let mut v: Vec<&str> = catalog::TYPES
            .iter()
            .filter(|t| t.group == group)
            .map(|t| t.version)
            .collect();
        v.dedup();
        v
    };
    json!({
        "name": group,
        "versions": versions.iter().map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v})).collect::<Vec<_>>(),
        "preferredVersion": {"groupVersion": format!("{group}/{}", versions[0]), "version": versions[0]},
    })
}

pub fn api_group_list() -> Value {
    json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": catalog::groups().into_iter().map(group_entry).collect::<Vec<_>>(),
    })
}

pub fn api_group(group: &str) -> Option<Value> {
    if !catalog::groups().contains(&group) {
        return None;
    }
    let mut g = group_entry(group);
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    Some(g)
}

fn resource_entry(t: &ResourceType) -> Value {
    let mut r = json!({
        "name": t.plural,
        "singularName": t.singular,
        "namespaced": t.namespaced,
        "kind": t.kind,
        "verbs": t.verbs(),
        "storageVersionHash": storage_version_hash(t),
    });
    if !t.short_names.is_empty() {
        r["shortNames"] = json!(t.short_names);
    }
    if !t.categories.is_empty() {
        r["categories"] = json!(t.categories);
    }
    r
}

/// A stable per-type hash; clients only compare it for changes.
fn storage_version_hash(t: &ResourceType) -> String {
    use base64::Engine;
    let digest: u64 = t.storage.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    });
    base64::engine::general_purpose::STANDARD.encode(digest.to_be_bytes())[..11].to_string()
}

/// The APIResourceList of one group version, subresources included.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let types: Vec<&ResourceType> = catalog::TYPES
        .iter()
        .filter(|t| t.group == group && t.version == version)
        .collect();
    if types.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for t in types {
        resources.push(resource_entry(t));
        if t.has_status {
            resources.push(json!({
                "name": format!("{}/status", t.plural),
                "singularName": "",
                "namespaced": t.namespaced,
                "kind": t.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        if t.plural == "pods" {
            resources.push(json!({
                "name": "pods/portforward",
                "singularName": "",
                "namespaced": true,
                "kind": "PodPortForwardOptions",
                "verbs": ["create", "get"],
            }));
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

/// The media type of aggregated discovery answers.
pub const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether an Accept header asks for aggregated discovery (v2).
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|t| {
        let params: Vec<&str> = t.split(';').map(str::trim).collect();
        params.contains(&"g=apidiscovery.k8s.io")
            && params.contains(&"v=v2")
            && params.contains(&"as=APIGroupDiscoveryList")
    })
}

fn aggregated_version(group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
    for t in catalog::TYPES
        .iter()
        .filter(|t| t.group == group && t.version == version)
    {
        let kind = json!({"group": group, "version": version, "kind": t.kind});
        let mut subresources = Vec::new();
        if t.has_status {
            subresources.push(json!({"subresource": "status", "responseKind": kind,
                                     "verbs": ["get", "patch", "update"]}));
        }
        if t.plural == "pods" {
            subresources.push(json!({"subresource": "portforward",
                                     "responseKind": {"group": "", "version": "v1", "kind": "PodPortForwardOptions"},
                                     "verbs": ["create", "get"]}));
        }
        let mut r = json!({
            "resource": t.plural,
            "responseKind": kind,
            "scope": if t.namespaced { "Namespaced" } else { "Cluster" },
            "singularResource": t.singular,
            "verbs": t.verbs(),
        });
        if !t.short_names.is_empty() {
            r["shortNames"] = json!(t.short_names);
        }
        if !t.categories.is_empty() {
            r["categories"] = json!(t.categories);
        }
        if !subresources.is_empty() {
            r["subresources"] = Value::Array(subresources);
        }
        resources.push(r);
    }
    json!({"version": version, "resources": resources, "freshness": "Current"})
}

/// The aggregated discovery document of `/api` (core) or `/apis` (groups).
pub fn aggregated(core: bool) -> Value {
    let items: Vec<Value> = if core {
        vec![
            json!({"metadata": {"creationTimestamp": null}, "versions": [aggregated_version("", "v1")]}),
        ]
    } else {
        catalog::groups()
            .into_iter()
            .map(|g| {
                let mut versions: Vec<&str> = catalog::TYPES
                    .iter()
                    .filter(|t| t.group == g)
                    .map(|t| t.version)
                    .collect();
                versions.dedup();
                json!({"metadata": {"name": g, "creationTimestamp": null},
                       "versions": versions.iter().map(|v| aggregated_version(g, v)).collect::<Vec<_>>()})
            })
            .collect()
    };
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2",
           "metadata": {}, "items": items})
}

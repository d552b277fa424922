//! The Kubernetes side of a team: its namespace, its pull and push Secrets
//! and the `default` ServiceAccount. Read in one pass for all teams (each
//! kind listed once, cluster-wide), written one object at a time; a Secret
//! is replaced only as it was read, so a concurrent change fails that team
//! instead of being overwritten.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::ByteString;
use kube::api::ObjectMeta;
use serde_json::json;

use super::model::{RobotKind, DOCKERCONFIG_KEY, DOCKERCONFIG_TYPE};
use crate::clients::kube::Kube;

/// What the cluster holds for all teams.
#[derive(Debug, Default, Clone)]
pub struct ClusterState {
    /// Namespaces named `team-*`.
    pub namespaces: BTreeSet<String>,
    /// (namespace, kind) → Secret.
    pub secrets: BTreeMap<(String, RobotKind), Secret>,
    /// namespace → its `default` ServiceAccount.
    pub service_accounts: BTreeMap<String, ServiceAccount>,
}

impl ClusterState {
    /// The names in a namespace's default ServiceAccount's imagePullSecrets;
    /// None when the ServiceAccount does not exist.
    pub fn pull_secrets_of(&self, namespace: &str) -> Option<Vec<String>> {
        self.service_accounts.get(namespace).map(|sa| {
            sa.image_pull_secrets
                .iter()
                .flatten()
                .map(|r| r.name.clone())
                .collect()
        })
    }
}

/// Reads namespaces, both Secrets and the default ServiceAccounts: four
/// lists, whatever the number of teams.
pub async fn observe(kube: &Kube) -> Result<ClusterState> {
    let namespaces: Vec<Namespace> = kube.list_cluster(None, None).await?;
    let mut state = ClusterState {
        namespaces: namespaces
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .filter(|n| n.starts_with("team-"))
            .collect(),
        ..Default::default()
    };
    for kind in RobotKind::ALL {
        let fields = format!("metadata.name={}", kind.secret_name());
        let secrets: Vec<Secret> = kube.list_cluster(None, Some(&fields)).await?;
        for s in secrets {
            if let Some(ns) = s.metadata.namespace.clone() {
                state.secrets.insert((ns, kind), s);
            }
        }
    }
    let accounts: Vec<ServiceAccount> = kube
        .list_cluster(None, Some("metadata.name=default"))
        .await?;
    for sa in accounts {
        if let Some(ns) = sa.metadata.namespace.clone() {
            state.service_accounts.insert(ns, sa);
        }
    }
    Ok(state)
}

/// The Secret's type and decoded `.dockerconfigjson`.
pub fn docker_data(secret: &Secret) -> (Option<&str>, Option<&[u8]>) {
    (
        secret.type_.as_deref(),
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(DOCKERCONFIG_KEY))
            .map(|b| b.0.as_slice()),
    )
}

fn docker_secret(namespace: &str, kind: RobotKind, config_json: Vec<u8>) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(kind.secret_name().to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_string(),
                "harbor-doctor".to_string(),
            )])),
            ..Default::default()
        },
        type_: Some(DOCKERCONFIG_TYPE.to_string()),
        data: Some(BTreeMap::from([(
            DOCKERCONFIG_KEY.to_string(),
            ByteString(config_json),
        )])),
        ..Default::default()
    }
}

/// A team's pull or push Secret as it is now. Listed by name rather than
/// got, so that provisioning needs no permission beyond the cluster-wide
/// list it observes with.
pub async fn read_secret(kube: &Kube, namespace: &str, kind: RobotKind) -> Result<Option<Secret>> {
    let fields = format!("metadata.name={}", kind.secret_name());
    let found: Vec<Secret> = kube.list_in(namespace, None, Some(&fields)).await?;
    Ok(found.into_iter().next())
}

/// Creates the Secret (a conflict when another writer created it first),
/// or replaces the one that was read (`existing`, with its
/// resourceVersion), a conflict when it changed since: never an overwrite
/// of what another writer stored. Conflicts are the API server's 409
/// (`kube::is_conflict`).
pub async fn write_docker_secret(
    kube: &Kube,
    namespace: &str,
    kind: RobotKind,
    config_json: Vec<u8>,
    existing: Option<&Secret>,
) -> Result<()> {
    let name = kind.secret_name();
    let fresh = docker_secret(namespace, kind, config_json);
    match existing {
        None => {
            kube.create_in(namespace, &fresh).await?;
        }
        Some(old) if old.type_.as_deref() == Some(DOCKERCONFIG_TYPE) => {
            let mut secret = old.clone();
            secret.data = fresh.data;
            secret.string_data = None;
            kube.replace_in(namespace, name, &secret).await?;
        }
        Some(old) => {
            // A Secret's type cannot change in place: delete the one that
            // was read (only that one) and create it anew.
            let uid = old.metadata.uid.clone().unwrap_or_default();
            kube.delete_exact::<Secret>(namespace, name, &uid).await?;
            kube.create_in(namespace, &fresh).await?;
        }
    }
    Ok(())
}

/// Adds `harbor-pullsecret` to the namespace's default ServiceAccount,
/// keeping the pull secrets it lists. A ServiceAccount's imagePullSecrets is
/// an atomic list (unlike a pod's): any patch replaces it whole, so the
/// patch carries the whole list as read, and that read's resourceVersion,
/// so a change made since is a 409 instead of a lost entry.
pub async fn add_pull_secret(kube: &Kube, namespace: &str, read: &ServiceAccount) -> Result<()> {
    let wanted = RobotKind::Pull.secret_name();
    let mut names: Vec<String> = read
        .image_pull_secrets
        .iter()
        .flatten()
        .map(|r| r.name.clone())
        .filter(|n| !n.is_empty())
        .collect();
    if !names.iter().any(|n| n == wanted) {
        names.push(wanted.to_string());
    }
    let list: Vec<_> = names.iter().map(|n| json!({ "name": n })).collect();
    let patch = json!({
        "metadata": {"resourceVersion": read.metadata.resource_version},
        "imagePullSecrets": list,
    });
    kube.patch_strategic::<ServiceAccount>(namespace, "default", &patch)
        .await?;
    Ok(())
}

//! The Kubernetes side of a team: its namespace, its robots' Secrets and
//! the `default` ServiceAccount. Read in one pass for all teams (each
//! kind listed once, cluster-wide), written one object at a time; a Secret
//! is replaced only as it was read, so a concurrent change fails that team
//! instead of being overwritten.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use k8s_openapi::api::core::v1::{LocalObjectReference, Namespace, Secret, ServiceAccount};
use k8s_openapi::ByteString;
use kube::api::ObjectMeta;
use serde_json::json;

use super::model::{secret_type_of, RobotKind};
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

/// Reads namespaces, the three robot Secrets (the builds one too, which is
/// how an installation that uses build robots is recognised) and the
/// default ServiceAccounts: five lists, whatever the number of teams.
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

fn managed_by() -> Option<BTreeMap<String, String>> {
    Some(BTreeMap::from([(
        "app.kubernetes.io/managed-by".to_string(),
        "harbor-doctor".to_string(),
    )]))
}

fn docker_secret(namespace: &str, kind: RobotKind, config_json: Vec<u8>) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(kind.secret_name().to_string()),
            namespace: Some(namespace.to_string()),
            labels: managed_by(),
            ..Default::default()
        },
        type_: Some(kind.secret_type().to_string()),
        data: Some(BTreeMap::from([(
            kind.secret_key().to_string(),
            ByteString(config_json),
        )])),
        ..Default::default()
    }
}

/// A team robot's Secret as it is now. Listed by name rather than
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
        Some(old) if secret_type_of(old) == kind.secret_type() => {
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

/// The namespace's `default` ServiceAccount as it is now (listed by name,
/// like the Secrets, so no permission beyond the observing list is needed).
pub async fn read_default_service_account(
    kube: &Kube,
    namespace: &str,
) -> Result<Option<ServiceAccount>> {
    let found: Vec<ServiceAccount> = kube
        .list_in(namespace, None, Some("metadata.name=default"))
        .await?;
    Ok(found.into_iter().next())
}

/// Creates the namespace's `default` ServiceAccount with the pull secret,
/// which Kubernetes' ServiceAccount controller would have made (without
/// it). When the controller makes it first (409), the one it made gets the
/// pull secret added as any existing one does.
pub async fn create_default_service_account(kube: &Kube, namespace: &str) -> Result<()> {
    let wanted = RobotKind::Pull.secret_name();
    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some("default".to_string()),
            namespace: Some(namespace.to_string()),
            labels: managed_by(),
            ..Default::default()
        },
        image_pull_secrets: Some(vec![LocalObjectReference {
            name: wanted.to_string(),
        }]),
        ..Default::default()
    };
    match kube.create_in(namespace, &account).await {
        Ok(_) => Ok(()),
        Err(e) if crate::clients::kube::is_conflict(&e) => {
            tracing::info!(
                "ServiceAccount {namespace}/default was created meanwhile (by the ServiceAccount \
                 controller, most likely); adding the pull secret to it"
            );
            let read = read_default_service_account(kube, namespace)
                .await?
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "creating ServiceAccount {namespace}/default met one that exists (409), \
                         but it was gone when read again; run the same command again"
                    )
                })?;
            let listed = read
                .image_pull_secrets
                .iter()
                .flatten()
                .any(|r| r.name == wanted);
            if listed {
                return Ok(());
            }
            add_pull_secret(kube, namespace, &read).await
        }
        Err(e) => Err(e),
    }
}

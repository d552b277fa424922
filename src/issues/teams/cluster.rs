//! The Kubernetes side of a team: its namespace, its pull and push Secrets
//! and the `default` ServiceAccount. Read in one pass for all teams (each
//! kind listed once, cluster-wide), written one object at a time with
//! optimistic locking, so a concurrent change fails that team instead of
//! being overwritten.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use k8s_openapi::api::core::v1::{LocalObjectReference, Namespace, Secret, ServiceAccount};
use k8s_openapi::ByteString;
use kube::api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use super::model::{RobotKind, DOCKERCONFIG_KEY, DOCKERCONFIG_TYPE};
use crate::outcome::refused;

/// Page size for cluster-wide lists.
const LIST_LIMIT: u32 = 500;

/// What the cluster holds for all teams.
#[derive(Debug, Default, Clone)]
pub struct ClusterState {
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

fn kube_error(what: &str, e: kube::Error) -> anyhow::Error {
    match e {
        kube::Error::Api(status) => {
            let hint = match status.code {
                401 => " (the cluster rejected the credentials: check --kubeconfig / --context)",
                403 => " (RBAC does not allow it: the doctor needs list on namespaces, secrets and serviceaccounts, and create/update/patch on secrets and serviceaccounts in team namespaces)",
                _ => "",
            };
            anyhow::anyhow!(
                "{what}: the Kubernetes API answered {} {}: {}{hint}",
                status.code,
                status.reason,
                status.message
            )
        }
        other => refused(format!("{what}: the cluster is not reachable ({other})")),
    }
}

/// Lists every object of a kind cluster-wide, page by page.
async fn list_all<K>(api: &Api<K>, fields: Option<&str>, what: &str) -> Result<Vec<K>>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut lp = ListParams::default().limit(LIST_LIMIT);
        if let Some(f) = fields {
            lp = lp.fields(f);
        }
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = api.list(&lp).await.map_err(|e| kube_error(what, e))?;
        out.extend(page.items);
        match page.metadata.continue_ {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => return Ok(out),
        }
    }
}

/// Reads namespaces, both Secrets and the default ServiceAccounts: four
/// cluster-wide lists, whatever the number of teams.
pub async fn observe(client: &Client) -> Result<ClusterState> {
    let namespaces: Vec<Namespace> =
        list_all(&Api::all(client.clone()), None, "listing namespaces").await?;
    let mut state = ClusterState {
        namespaces: namespaces
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .filter(|n| n.starts_with("team-"))
            .collect(),
        ..Default::default()
    };
    for kind in RobotKind::ALL {
        let secrets: Vec<Secret> = list_all(
            &Api::all(client.clone()),
            Some(&format!("metadata.name={}", kind.secret_name())),
            &format!("listing {} Secrets", kind.secret_name()),
        )
        .await?;
        for s in secrets {
            if let Some(ns) = s.metadata.namespace.clone() {
                state.secrets.insert((ns, kind), s);
            }
        }
    }
    let accounts: Vec<ServiceAccount> = list_all(
        &Api::all(client.clone()),
        Some("metadata.name=default"),
        "listing default ServiceAccounts",
    )
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

/// Creates the Secret, or replaces the one that was read (`existing`),
/// failing when it changed since.
pub async fn write_docker_secret(
    client: &Client,
    namespace: &str,
    kind: RobotKind,
    config_json: Vec<u8>,
    existing: Option<&Secret>,
) -> Result<()> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let name = kind.secret_name();
    let what = format!("writing Secret {namespace}/{name}");
    let fresh = docker_secret(namespace, kind, config_json);
    match existing {
        None => {
            api.create(&PostParams::default(), &fresh)
                .await
                .map_err(|e| kube_error(&what, e))?;
        }
        Some(old) if old.type_.as_deref() == Some(DOCKERCONFIG_TYPE) => {
            let mut secret = old.clone();
            secret.data = fresh.data;
            secret.string_data = None;
            api.replace(name, &PostParams::default(), &secret)
                .await
                .map_err(|e| kube_error(&what, e))?;
        }
        Some(old) => {
            // A Secret's type cannot change in place: delete the wrong one,
            // only if it is still the one that was read, and create anew.
            let dp = kube::api::DeleteParams {
                preconditions: Some(kube::api::Preconditions {
                    uid: old.metadata.uid.clone(),
                    resource_version: old.metadata.resource_version.clone(),
                }),
                ..Default::default()
            };
            api.delete(name, &dp)
                .await
                .map_err(|e| kube_error(&what, e))?;
            api.create(&PostParams::default(), &fresh)
                .await
                .map_err(|e| kube_error(&what, e))?;
        }
    }
    Ok(())
}

/// Adds `harbor-pullsecret` to the namespace's default ServiceAccount,
/// keeping the others, as of the version that was read.
pub async fn add_pull_secret(client: &Client, namespace: &str, sa: &ServiceAccount) -> Result<()> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let mut refs: Vec<LocalObjectReference> = sa.image_pull_secrets.clone().unwrap_or_default();
    refs.push(LocalObjectReference {
        name: RobotKind::Pull.secret_name().to_string(),
    });
    let patch = json!({
        "metadata": {"resourceVersion": sa.metadata.resource_version},
        "imagePullSecrets": refs,
    });
    api.patch("default", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| kube_error(&format!("patching ServiceAccount {namespace}/default"), e))?;
    Ok(())
}

//! Finding the registry database through the cluster, so that an on-call
//! engineer with only a kubeconfig never copies a password by hand.
//!
//! Two layouts are known (shared/FACTS.md):
//! - the Harbor chart's internal database: the StatefulSet labelled
//!   `app=harbor,component=database`, its pod `<name>-0`, the password under
//!   `POSTGRES_PASSWORD` in the Secret its pod template reads, user
//!   `postgres`, database `registry`;
//! - a CloudNativePG cluster (newer Otomi: `harbor-otomi-db`): the primary pod
//!   labelled `cnpg.io/instanceRole=primary`, the `<cluster>-rw` Service and
//!   the `<cluster>-app` Secret (username, password, dbname).
//!
//! When both exist, Harbor's own settings decide: the core ConfigMap's
//! `POSTGRESQL_HOST` names the Service Harbor uses. Inside a pod the doctor
//! connects to the Service; outside it opens a port-forward to the pod for
//! each connection.

use std::sync::Arc;

use anyhow::Result;
use futures::FutureExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};

use crate::clients::kube::Kube;
use crate::clients::registry_db::{DbLogin, DbTarget, SslMode};
use crate::clients::stream::{DbStream, StreamOpener};
use crate::clients::NotConfigured;
use crate::outcome::refused;

const CHART_DB_LABELS: &str = "app=harbor,component=database";
const CNPG_PRIMARY_LABELS: &str = "cnpg.io/instanceRole=primary";
const CNPG_PRIMARY_LABELS_OLD: &str = "cnpg.io/cluster,role=primary";
const PORT: u16 = 5432;

/// Which database layout was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// The chart's internal database StatefulSet.
    Chart { statefulset: String },
    /// A CloudNativePG cluster.
    CloudNativePg { cluster: String },
}

/// Where the registry database runs in the cluster and how to log in.
#[derive(Clone)]
pub struct ClusterDatabase {
    pub layout: Layout,
    pub namespace: String,
    pub pod: String,
    pub service: String,
    pub secret: String,
    pub user: String,
    pub dbname: String,
    password: String,
}

impl std::fmt::Debug for ClusterDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterDatabase")
            .field("layout", &self.layout)
            .field("namespace", &self.namespace)
            .field("pod", &self.pod)
            .field("service", &self.service)
            .field("secret", &self.secret)
            .field("user", &self.user)
            .field("dbname", &self.dbname)
            .finish_non_exhaustive()
    }
}

fn secret_value(secret: &Secret, key: &str) -> Option<String> {
    if let Some(v) = secret.data.as_ref().and_then(|d| d.get(key)) {
        return String::from_utf8(v.0.clone()).ok();
    }
    secret
        .string_data
        .as_ref()
        .and_then(|d| d.get(key))
        .cloned()
}

fn name_of<K: kube::Resource>(o: &K) -> String {
    o.meta().name.clone().unwrap_or_default()
}

/// The Secret (and key) the database container reads POSTGRES_PASSWORD from.
fn password_source(sts: &StatefulSet) -> (String, String) {
    let containers = sts
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|s| s.containers.clone())
        .unwrap_or_default();
    for c in &containers {
        for env in c.env.iter().flatten() {
            if env.name == "POSTGRES_PASSWORD" {
                if let Some(r) = env
                    .value_from
                    .as_ref()
                    .and_then(|v| v.secret_key_ref.as_ref())
                {
                    return (r.name.clone(), r.key.clone());
                }
            }
        }
        for from in c.env_from.iter().flatten() {
            if let Some(r) = &from.secret_ref {
                return (r.name.clone(), "POSTGRES_PASSWORD".into());
            }
        }
    }
    (name_of(sts), "POSTGRES_PASSWORD".into())
}

/// The Service name a host setting refers to (`svc`, `svc.ns`, `svc.ns.svc...`).
fn service_of_host(host: &str) -> &str {
    host.split('.').next().unwrap_or(host)
}

async fn running_pod(kube: &Kube, ns: &str, name: &str, what: &str) -> Result<Pod> {
    let pod: Pod = kube.get_in(ns, name).await?.ok_or_else(|| {
        refused(format!(
            "the {what} pod {ns}/{name} does not exist, so the registry database cannot be reached through \
             the cluster; check `kubectl -n {ns} get pods`, or give --db-url"
        ))
    })?;
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    if phase != "Running" {
        return Err(refused(format!(
            "the {what} pod {ns}/{name} is {phase}, not Running, so the registry database cannot be reached; \
             check `kubectl -n {ns} describe pod {name}`, or give --db-url"
        )));
    }
    Ok(pod)
}

async fn read_secret(kube: &Kube, ns: &str, name: &str) -> Result<Secret> {
    kube.get_in(ns, name).await?.ok_or_else(|| {
        refused(format!(
            "the registry database's Secret {ns}/{name} does not exist; give --db-url instead"
        ))
    })
}

/// Finds the registry database in namespace `ns`.
pub async fn discover(kube: &Kube, ns: &str) -> Result<ClusterDatabase> {
    let statefulsets: Vec<StatefulSet> = kube.list_in(ns, Some(CHART_DB_LABELS), None).await?;
    let mut primaries: Vec<Pod> = kube.list_in(ns, Some(CNPG_PRIMARY_LABELS), None).await?;
    if primaries.is_empty() {
        primaries = kube
            .list_in(ns, Some(CNPG_PRIMARY_LABELS_OLD), None)
            .await?;
    }
    let cluster_of = |p: &Pod| {
        p.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("cnpg.io/cluster"))
            .cloned()
            .unwrap_or_default()
    };

    // Harbor's own setting, when readable, says which database it uses.
    let configmaps: Vec<ConfigMap> = kube
        .list_in(ns, Some("app=harbor,component=core"), None)
        .await?;
    let core = configmaps.iter().find_map(|c| {
        c.data
            .as_ref()
            .filter(|d| d.contains_key("POSTGRESQL_HOST"))
    });
    let host = core.and_then(|d| d.get("POSTGRESQL_HOST")).cloned();
    let wanted = host.as_deref().map(service_of_host);

    let chart = statefulsets.iter().find(|s| {
        let service = s
            .spec
            .as_ref()
            .map(|sp| sp.service_name.clone())
            .unwrap_or_default();
        wanted.is_none_or(|w| w == name_of(*s) || Some(w) == service.as_deref())
    });
    let cnpg = primaries
        .iter()
        .find(|p| wanted.is_none_or(|w| w == format!("{}-rw", cluster_of(p))));

    match (chart, cnpg) {
        (Some(sts), None) => chart_database(kube, ns, sts, core).await,
        (None, Some(primary)) => cnpg_database(kube, ns, &cluster_of(primary), primary).await,
        (Some(sts), Some(primary)) => Err(refused(format!(
            "namespace {ns} holds both the chart's database ({}) and a CloudNativePG cluster ({}), and Harbor's \
             core ConfigMap does not say which one it uses; give --db-url",
            name_of(sts),
            cluster_of(primary)
        ))),
        (None, None) => Err(anyhow::Error::new(NotConfigured(format!(
            "no registry database found in namespace {ns}: no StatefulSet labelled {CHART_DB_LABELS}{} and no \
             CloudNativePG primary pod ({CNPG_PRIMARY_LABELS}); give --db-url / HARBOR_DATABASE_URL, or \
             --harbor-namespace if Harbor runs elsewhere",
            match host {
                Some(h) => format!(" (Harbor's core ConfigMap names database host {h})"),
                None => String::new(),
            }
        )))),
    }
}

/// The chart's database. The user and database name are the chart's
/// (postgres, registry) unless Harbor's core ConfigMap says otherwise.
async fn chart_database(
    kube: &Kube,
    ns: &str,
    sts: &StatefulSet,
    core: Option<&std::collections::BTreeMap<String, String>>,
) -> Result<ClusterDatabase> {
    let name = name_of(sts);
    let pod = format!("{name}-0");
    running_pod(kube, ns, &pod, "database").await?;
    let (secret_name, key) = password_source(sts);
    let secret = read_secret(kube, ns, &secret_name).await?;
    let password = secret_value(&secret, &key).ok_or_else(|| {
        refused(format!(
            "the Secret {ns}/{secret_name} has no {key}, so the database password is unknown; give --db-url"
        ))
    })?;
    let setting = |key: &str| {
        core.and_then(|d| d.get(key))
            .filter(|v| !v.is_empty())
            .cloned()
    };
    let service = sts
        .spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| name.clone());
    Ok(ClusterDatabase {
        layout: Layout::Chart { statefulset: name },
        namespace: ns.to_string(),
        pod,
        service,
        secret: secret_name,
        user: setting("POSTGRESQL_USERNAME").unwrap_or_else(|| "postgres".into()),
        dbname: setting("POSTGRESQL_DATABASE").unwrap_or_else(|| "registry".into()),
        password,
    })
}

async fn cnpg_database(
    kube: &Kube,
    ns: &str,
    cluster: &str,
    primary: &Pod,
) -> Result<ClusterDatabase> {
    let pod = name_of(primary);
    running_pod(kube, ns, &pod, "CloudNativePG primary").await?;
    let secret_name = format!("{cluster}-app");
    let secret = read_secret(kube, ns, &secret_name).await?;
    let field = |key: &str| {
        secret_value(&secret, key).ok_or_else(|| {
            refused(format!(
                "the Secret {ns}/{secret_name} has no {key}; give --db-url instead"
            ))
        })
    };
    Ok(ClusterDatabase {
        layout: Layout::CloudNativePg {
            cluster: cluster.to_string(),
        },
        namespace: ns.to_string(),
        pod,
        service: format!("{cluster}-rw"),
        secret: secret_name.clone(),
        user: field("username")?,
        dbname: secret_value(&secret, "dbname").unwrap_or_else(|| "registry".into()),
        password: field("password")?,
    })
}

/// How to connect: to the Service from inside the cluster, else through a
/// port-forward to the pod. TLS is used when the server offers it.
pub fn target(kube: &Kube, db: &ClusterDatabase) -> Result<DbTarget> {
    let what = match &db.layout {
        Layout::Chart { statefulset } => format!("chart database {statefulset}"),
        Layout::CloudNativePg { cluster } => format!("CloudNativePG cluster {cluster}"),
    };
    let login = DbLogin {
        host: format!("{}.{}.svc", db.service, db.namespace),
        port: PORT,
        user: db.user.clone(),
        password: db.password.clone(),
        dbname: db.dbname.clone(),
    };
    if kube.in_cluster() {
        let address = format!("{}:{PORT}", login.host);
        let opener: StreamOpener = Arc::new(move || {
            let address = address.clone();
            async move {
                tokio::net::TcpStream::connect(address)
                    .await
                    .map(|s| Box::new(s) as Box<dyn DbStream>)
            }
            .boxed()
        });
        DbTarget::over_stream(
            &login,
            SslMode::Prefer,
            opener,
            &format!("({what}, Service {})", db.service),
        )
    } else {
        DbTarget::over_stream(
            &login,
            SslMode::Prefer,
            kube.port_forward_opener(&db.namespace, &db.pod, PORT),
            &format!("({what}, port-forward to pod {}/{})", db.namespace, db.pod),
        )
    }
}

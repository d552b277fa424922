//! The run's context: the global options, and the clients built from them
//! on first use. A check asks the context for the client it needs; a system
//! that was not configured yields [`NotConfigured`], which `diagnose` shows
//! as a skipped check and a repair as exit 3.

use std::time::Duration;

use anyhow::Result;
use tokio::sync::OnceCell;

use crate::cli::GlobalOptions;
use crate::clients::harbor::{Harbor, HarborSettings, Secret};
use crate::clients::keycloak::{Keycloak, KeycloakSettings};
use crate::clients::kube::Kube;
use crate::clients::registry_db::{DbTarget, RegistryDb};
use crate::clients::{cluster_db, cluster_harbor};
use crate::clients::{is_not_configured, NotConfigured};
use crate::render::Output;

pub struct Ctx {
    pub opts: GlobalOptions,
    pub out: Output,
    db: OnceCell<RegistryDb>,
    keycloak: OnceCell<Option<Keycloak>>,
    harbor: OnceCell<Harbor>,
    kube: OnceCell<Kube>,
}

impl Ctx {
    pub fn new(opts: GlobalOptions) -> Ctx {
        let out = Output::new(&opts);
        Ctx {
            opts,
            out,
            db: OnceCell::new(),
            keycloak: OnceCell::new(),
            harbor: OnceCell::new(),
            kube: OnceCell::new(),
        }
    }

    /// The per-request and per-check time limit.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.opts.timeout)
    }

    /// How long a repair waits for a row lock before giving up: within
    /// the statement's own bound, so the lock wait is what gives up (with
    /// its clear message) rather than the deadline.
    pub fn lock_wait(&self) -> Duration {
        (self.timeout() * 3 / 4).min(Duration::from_secs(10))
    }

    /// The registry database: `--db-url` when given, else found through
    /// the cluster (the chart's database or a CloudNativePG cluster in
    /// `--harbor-namespace`).
    pub async fn db(&self) -> Result<&RegistryDb> {
        self.db
            .get_or_try_init(|| async {
                let target = match &self.opts.db_url {
                    Some(url) if !url.trim().is_empty() => DbTarget::from_url(url.trim())?,
                    _ => {
                        let kube = self.kube().await.map_err(|e| {
                            if is_not_configured(&e) {
                                anyhow::Error::new(NotConfigured(
                                    "no registry database: give --db-url / HARBOR_DATABASE_URL, or a kubeconfig \
                                     (--kubeconfig, KUBECONFIG) so it can be found in the cluster"
                                        .into(),
                                ))
                            } else {
                                e
                            }
                        })?;
                        let found = cluster_db::discover(kube, &self.opts.harbor_namespace).await?;
                        cluster_db::target(kube, &found)?
                    }
                };
                tracing::info!("connecting to the registry database {}", target.describe());
                RegistryDb::connect(target, self.timeout()).await
            })
            .await
    }

    /// The Kubernetes cluster: `--kubeconfig` / `--context`, KUBECONFIG,
    /// ~/.kube/config, or the pod's service account.
    pub async fn kube(&self) -> Result<&Kube> {
        self.kube
            .get_or_try_init(|| async {
                Kube::connect(
                    self.opts.kubeconfig.as_deref(),
                    self.opts.context.as_deref(),
                    self.timeout(),
                )
                .await
            })
            .await
    }

    /// Keycloak, when `--keycloak-url` and the admin credentials are given.
    pub async fn keycloak(&self) -> Result<Option<&Keycloak>> {
        self.keycloak
            .get_or_try_init(|| async {
                let (Some(url), Some(user), Some(password)) = (
                    self.opts.keycloak_url.as_ref(),
                    self.opts.keycloak_username.as_ref(),
                    self.opts.keycloak_password.as_ref(),
                ) else {
                    return Ok(None);
                };
                let settings = KeycloakSettings {
                    base_url: url.clone(),
                    realm: self.opts.keycloak_realm.clone(),
                    username: user.clone(),
                    password: password.clone(),
                };
                Keycloak::new(settings, self.timeout()).map(Some)
            })
            .await
            .map(Option::as_ref)
    }

    /// Harbor's API: `--harbor-url` and the admin password when given, else
    /// found through the cluster (the chart's core Service inside a pod, its
    /// external URL outside; the password from the core Secret).
    pub async fn harbor(&self) -> Result<&Harbor> {
        self.harbor
            .get_or_try_init(|| async {
                let given_url = self
                    .opts
                    .harbor_url
                    .as_deref()
                    .map(str::trim)
                    .filter(|u| !u.is_empty());
                let given_password = self
                    .opts
                    .harbor_password
                    .as_deref()
                    .filter(|p| !p.is_empty());
                let ns = &self.opts.harbor_namespace;
                let kube = if given_url.is_none() || given_password.is_none() {
                    match self.kube().await {
                        Ok(k) => Some(k),
                        Err(e) if is_not_configured(&e) => None,
                        Err(e) if given_url.is_none() => return Err(e),
                        Err(_) => None,
                    }
                } else {
                    None
                };
                let url = match (given_url, kube) {
                    (Some(u), _) => u.to_string(),
                    (None, Some(k)) => {
                        let found = cluster_harbor::discover_url(k, ns).await?;
                        tracing::info!("Harbor at {} (from {})", found.url, found.source);
                        found.url
                    }
                    (None, None) => {
                        return Err(anyhow::Error::new(NotConfigured(
                            "no Harbor URL: give --harbor-url / HARBOR_URL, or a kubeconfig \
                             (--kubeconfig, KUBECONFIG) so it can be found in the cluster"
                                .into(),
                        )))
                    }
                };
                // The core Secret holds the password of `admin` only.
                let password = match (given_password, kube) {
                    (Some(p), _) => Some(Secret::new(p)),
                    (None, Some(k)) if self.opts.harbor_username == "admin" => {
                        match cluster_harbor::discover_password(k, ns).await {
                            Ok(Some((p, source))) => {
                                tracing::info!("Harbor's admin password from {source}");
                                Some(p)
                            }
                            Ok(None) => None,
                            Err(e) => {
                                self.out.warn(format!(
                                    "could not read Harbor's admin password from the cluster \
                                     ({e:#}); give --harbor-password"
                                ));
                                None
                            }
                        }
                    }
                    (None, _) => None,
                };
                let settings = HarborSettings {
                    url: url.clone(),
                    username: self.opts.harbor_username.clone(),
                    password,
                    ca_cert: self.opts.ca_cert.clone(),
                    timeout: self.timeout(),
                };
                // Logged only once the URL was checked: one with a password
                // in it is refused, never printed.
                let harbor = Harbor::new(settings)?;
                tracing::info!("using Harbor at {}", harbor.base_url());
                Ok(harbor)
            })
            .await
    }
}

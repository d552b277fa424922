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
use crate::clients::{cluster_db, cluster_harbor, cluster_keycloak};
use crate::clients::{is_not_configured, NotConfigured};
use crate::render::Output;

/// How Keycloak was reached, or why it could not be.
pub struct KeycloakAccess {
    pub keycloak: Option<Keycloak>,
    /// How each part was found, for people (never the password).
    pub found: Vec<String>,
    /// Why Keycloak is not used, with what to supply; None when it is.
    pub missing: Option<KeycloakMissing>,
}

/// Why Keycloak could not be used.
#[derive(Debug, Clone)]
pub struct KeycloakMissing {
    /// What happened and what to supply.
    pub why: String,
    /// There was something to find it from (options, the cluster, Harbor's
    /// configuration) and finding it failed: a connectivity problem, not
    /// just an absent input.
    pub failed: bool,
}

impl KeycloakMissing {
    fn not_configured(why: impl Into<String>) -> Self {
        KeycloakMissing {
            why: why.into(),
            failed: false,
        }
    }

    fn failed(why: impl Into<String>) -> Self {
        KeycloakMissing {
            why: why.into(),
            failed: true,
        }
    }
}

pub struct Ctx {
    pub opts: GlobalOptions,
    pub out: Output,
    db: OnceCell<RegistryDb>,
    keycloak: OnceCell<KeycloakAccess>,
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

    /// The report's first line: which installation this is about, from
    /// the clients already set up (no request is made), and the version.
    pub fn header(&self) -> String {
        let mut parts = vec![format!("harbor-doctor {}", env!("CARGO_PKG_VERSION"))];
        if let Some(h) = self.harbor.get() {
            parts.push(format!("Harbor {}", h.base_url().trim_end_matches('/')));
        }
        if let Some(k) = self.kube.get() {
            parts.push(k.short());
        }
        if self.opts.harbor_namespace != crate::cli::DEFAULT_HARBOR_NAMESPACE {
            parts.push(format!("namespace {}", self.opts.harbor_namespace));
        }
        parts.join(" | ")
    }

    /// The clients already built, without building them (for a message
    /// about a system that did not answer while being set up or asked).
    pub fn harbor_if_ready(&self) -> Option<&Harbor> {
        self.harbor.get()
    }

    pub fn db_if_ready(&self) -> Option<&RegistryDb> {
        self.db.get()
    }

    pub fn kube_if_ready(&self) -> Option<&Kube> {
        self.kube.get()
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

    /// Keycloak, when it could be reached: found as [`Ctx::keycloak_access`]
    /// says. None means the checks cannot compare with Keycloak (the
    /// access says why); it is never an error.
    pub async fn keycloak(&self) -> Result<Option<&Keycloak>> {
        Ok(self.keycloak_access().await.keycloak.as_ref())
    }

    /// How Keycloak was found, or why it could not be: each part from its
    /// `--keycloak-*` option when given, else as Otomi lays it out (the URL
    /// and realm from Harbor's oidc_endpoint, or the in-cluster Service
    /// inside a pod; the admin login from Secret keycloak/keycloak-initial-admin).
    pub async fn keycloak_access(&self) -> &KeycloakAccess {
        self.keycloak
            .get_or_init(|| async {
                let mut found = vec![];
                match self.find_keycloak(&mut found).await {
                    Ok(keycloak) => KeycloakAccess {
                        keycloak: Some(keycloak),
                        found,
                        missing: None,
                    },
                    Err(missing) => KeycloakAccess {
                        keycloak: None,
                        found,
                        missing: Some(missing),
                    },
                }
            })
            .await
    }

    async fn find_keycloak(&self, found: &mut Vec<String>) -> Result<Keycloak, KeycloakMissing> {
        let given = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let kube = self.kube().await.ok();
        let realm_in_endpoint = match given(&self.opts.keycloak_url) {
            Some(url) => {
                // Checked before it is shown anywhere: one with a password
                // in it is refused, never echoed.
                crate::clients::http::parse_service_url(&url, "--keycloak-url")
                    .map_err(|e| KeycloakMissing::failed(format!("{e:#}")))?;
                found.push(format!("URL {url} (--keycloak-url)"));
                None
            }
            None => Some(self.keycloak_from_endpoint(kube, found).await?),
        };
        let url = match &realm_in_endpoint {
            None => given(&self.opts.keycloak_url).unwrap_or_default(),
            Some((url, _)) => url.clone(),
        };
        let realm = match (given(&self.opts.keycloak_realm), realm_in_endpoint) {
            (Some(r), _) => {
                found.push(format!("realm {r} (--keycloak-realm)"));
                r
            }
            (None, Some((_, r))) => {
                found.push(format!("realm {r} (from Harbor's oidc_endpoint)"));
                r
            }
            (None, None) => {
                found.push(format!(
                    "realm {} (the default)",
                    cluster_keycloak::DEFAULT_REALM
                ));
                cluster_keycloak::DEFAULT_REALM.to_string()
            }
        };
        let (user, password) = (
            given(&self.opts.keycloak_username),
            given(&self.opts.keycloak_password),
        );
        let (username, password) = match (user, password) {
            (Some(u), Some(p)) => {
                found.push("admin login from --keycloak-username / --keycloak-password".into());
                (u, p)
            }
            (user, password) => {
                let Some(kube) = kube else {
                    return Err(KeycloakMissing::not_configured(
                        "no Keycloak admin login: give --keycloak-username and --keycloak-password, or a \
                         kubeconfig that may read the Secret keycloak/keycloak-initial-admin",
                    ));
                };
                match cluster_keycloak::admin_login(kube).await {
                    Ok(Some(login)) => {
                        found.push(format!("admin login from {}", login.source));
                        (
                            user.unwrap_or(login.username),
                            password.unwrap_or_else(|| login.password.expose().to_string()),
                        )
                    }
                    Ok(None) => {
                        return Err(KeycloakMissing::failed(format!(
                            "no Keycloak admin login: the Secret {}/{} does not exist; give \
                             --keycloak-username and --keycloak-password",
                            cluster_keycloak::NAMESPACE,
                            cluster_keycloak::ADMIN_SECRET
                        )))
                    }
                    Err(e) => return Err(KeycloakMissing::failed(format!("{e:#}"))),
                }
            }
        };
        let settings = KeycloakSettings {
            base_url: url,
            realm,
            username,
            password,
            ca_cert: self.opts.ca_cert.clone(),
        };
        Keycloak::new(settings, self.timeout())
            .map_err(|e| KeycloakMissing::failed(format!("{e:#}")))
    }

    /// Keycloak's base URL and realm from Harbor's oidc_endpoint (read from
    /// the registry database), or the in-cluster Service inside a pod.
    async fn keycloak_from_endpoint(
        &self,
        kube: Option<&Kube>,
        found: &mut Vec<String>,
    ) -> Result<(String, String), KeycloakMissing> {
        let config = match self.db().await {
            Ok(db) => db.stored_config().await,
            Err(e) => Err(e),
        };
        let config = match config {
            Ok(c) => c,
            Err(e) if is_not_configured(&e) => {
                return Err(KeycloakMissing::not_configured(
                    "no Keycloak: give --keycloak-url, or the registry database (through a kubeconfig or \
                     --db-url) so it can be found from Harbor's oidc_endpoint",
                ))
            }
            Err(e) => {
                return Err(KeycloakMissing::failed(format!(
                    "Keycloak could not be found: Harbor's oidc_endpoint could not be read ({e:#}); give \
                     --keycloak-url"
                )))
            }
        };
        let Some(endpoint) = config
            .oidc_endpoint
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty())
        else {
            let why = "Harbor has no oidc_endpoint configured, so Keycloak cannot be found from it; give \
                       --keycloak-url";
            // Without OIDC sign-in there is nothing Keycloak could explain.
            return Err(if config.auth_mode.as_deref() == Some("oidc_auth") {
                KeycloakMissing::failed(why)
            } else {
                KeycloakMissing::not_configured(why)
            });
        };
        let Some(realm_url) = cluster_keycloak::split_realm_url(endpoint) else {
            return Err(KeycloakMissing::failed(format!(
                "Harbor's oidc_endpoint ({}) is not a Keycloak realm URL (<keycloak URL>/realms/<realm>); give \
                 --keycloak-url and --keycloak-realm",
                crate::clients::http::clip(endpoint, 120)
            )));
        };
        if kube.is_some_and(Kube::in_cluster) {
            let url = cluster_keycloak::service_url();
            found.push(format!(
                "URL {url} (the in-cluster Service; Harbor's oidc_endpoint names {})",
                realm_url.base_url
            ));
            return Ok((url, realm_url.realm));
        }
        found.push(format!(
            "URL {} (from Harbor's oidc_endpoint)",
            realm_url.base_url
        ));
        Ok((realm_url.base_url, realm_url.realm))
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

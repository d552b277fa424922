//! One client module per system the doctor talks to. Checks and repairs
//! never build URLs or SQL themselves: they call these.
//!
//! - `registry_db`: Harbor's PostgreSQL database (`registry`).
//! - `keycloak`: Keycloak's admin REST API.
//! - `harbor`: Harbor's REST API and its registry token service.
//! - `http`: what the HTTP clients share (capped bodies, URLs without
//!   credentials).
//! - `docker_config`: the docker CLI's config file and credential helpers.
//! - `files`: every file the doctor opens itself (regular, size-capped).
//! - `kube`: the Kubernetes API; `cluster_db` finds the registry database
//!   through it, `cluster_harbor` Harbor's URL and admin password.
//! - `stream`: the byte streams the database protocol runs over (TCP or a
//!   port-forward).

pub mod cluster_db;
pub mod cluster_harbor;
pub mod docker_config;
pub mod error;
pub mod files;
pub mod harbor;
pub mod http;
pub mod keycloak;
pub mod kube;
pub mod registry_db;
pub mod stream;
pub mod tls;

/// The error for a system that was not configured: no option, no
/// environment variable, and nothing to discover it from. `diagnose` turns
/// it into a skipped check; repairs turn it into exit 3 with its message.
#[derive(Debug)]
pub struct NotConfigured(pub String);

impl std::fmt::Display for NotConfigured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotConfigured {}

/// Whether an error (anywhere in its chain) means "not configured".
pub fn is_not_configured(err: &anyhow::Error) -> bool {
    err.chain()
        .any(|e| e.downcast_ref::<NotConfigured>().is_some())
}

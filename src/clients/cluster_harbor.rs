//! Finding Harbor through the cluster, so that `--harbor-url` and the admin
//! password are only needed when the chart's objects cannot be read.
//!
//! In `--harbor-namespace`, by the chart's labels (`app=harbor`,
//! `component=core`):
//! - inside a pod, the core Service (`http://<name>.<ns>.svc`), which needs
//!   no ingress or DNS outside the cluster;
//! - outside, Harbor's external URL: `EXT_ENDPOINT` in the core ConfigMap
//!   (the chart's `externalURL`), else the host of the chart's Ingress;
//! - the admin password: `HARBOR_ADMIN_PASSWORD` in the core Secret
//!   (named like the core ConfigMap).

use anyhow::Result;
use k8s_openapi::api::core::v1::{ConfigMap, Secret as KubeSecret, Service};
use k8s_openapi::api::networking::v1::Ingress;

use crate::clients::harbor::Secret;
use crate::clients::kube::Kube;
use crate::clients::NotConfigured;

const CORE_LABELS: &str = "app=harbor,component=core";
const PASSWORD_KEY: &str = "HARBOR_ADMIN_PASSWORD";

/// Harbor's URL as found in the cluster, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundUrl {
    pub url: String,
    pub source: String,
}

/// Harbor's API URL from the chart's objects in `ns`.
pub async fn discover_url(kube: &Kube, ns: &str) -> Result<FoundUrl> {
    if kube.in_cluster() {
        let services: Vec<Service> = kube.list_in(ns, Some(CORE_LABELS), None).await?;
        if let Some(svc) = services.first() {
            let name = svc.metadata.name.clone().unwrap_or_default();
            let ports = svc
                .spec
                .as_ref()
                .and_then(|s| s.ports.clone())
                .unwrap_or_default();
            let tls = ports
                .iter()
                .find(|p| p.name.as_deref().is_some_and(|n| n.contains("https")));
            let (scheme, port) = match tls {
                Some(p) => ("https", p.port),
                None => ("http", ports.first().map(|p| p.port).unwrap_or(80)),
            };
            let default_port = if scheme == "https" { 443 } else { 80 };
            let port = if port == default_port {
                String::new()
            } else {
                format!(":{port}")
            };
            return Ok(FoundUrl {
                url: format!("{scheme}://{name}.{ns}.svc{port}"),
                source: format!("the core Service {ns}/{name}"),
            });
        }
    }
    let maps: Vec<ConfigMap> = kube.list_in(ns, Some(CORE_LABELS), None).await?;
    for cm in &maps {
        if let Some(url) = cm
            .data
            .as_ref()
            .and_then(|d| d.get("EXT_ENDPOINT"))
            .filter(|u| !u.trim().is_empty())
        {
            return Ok(FoundUrl {
                url: url.trim().to_string(),
                source: format!(
                    "EXT_ENDPOINT in the core ConfigMap {ns}/{}",
                    cm.metadata.name.clone().unwrap_or_default()
                ),
            });
        }
    }
    let ingresses: Vec<Ingress> = kube.list_in(ns, Some("app=harbor"), None).await?;
    for ing in &ingresses {
        let spec = ing.spec.as_ref();
        let host = spec
            .and_then(|s| s.rules.as_ref())
            .and_then(|r| r.iter().find_map(|rule| rule.host.clone()));
        if let Some(host) = host {
            let tls = spec
                .and_then(|s| s.tls.as_ref())
                .is_some_and(|t| !t.is_empty());
            return Ok(FoundUrl {
                url: format!("{}://{host}", if tls { "https" } else { "http" }),
                source: format!(
                    "the Ingress {ns}/{}",
                    ing.metadata.name.clone().unwrap_or_default()
                ),
            });
        }
    }
    Err(anyhow::Error::new(NotConfigured(format!(
        "no Harbor URL: give --harbor-url / HARBOR_URL (namespace {ns} has no Harbor core ConfigMap \
         with EXT_ENDPOINT and no Harbor Ingress; is Harbor installed there? see --harbor-namespace)"
    ))))
}

/// The admin password from the chart's core Secret, when it is there. The
/// Secret is named like the core ConfigMap (`<fullname>-core`) and read by
/// name, so the doctor needs no right to list Secrets in Harbor's namespace.
pub async fn discover_password(kube: &Kube, ns: &str) -> Result<Option<(Secret, String)>> {
    let maps: Vec<ConfigMap> = kube.list_in(ns, Some(CORE_LABELS), None).await?;
    for name in maps.iter().filter_map(|m| m.metadata.name.clone()) {
        let Some(secret) = kube.get_in::<KubeSecret>(ns, &name).await? else {
            continue;
        };
        let value = secret
            .data
            .as_ref()
            .and_then(|d| d.get(PASSWORD_KEY))
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
            .filter(|p| !p.is_empty());
        if let Some(password) = value {
            return Ok(Some((
                Secret::new(password),
                format!("{PASSWORD_KEY} in the core Secret {ns}/{name}"),
            )));
        }
    }
    Ok(None)
}

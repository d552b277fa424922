//! Finding Keycloak the way an Otomi installation is laid out, so that the
//! `--keycloak-*` options are only needed where that layout does not hold:
//!
//! - the base URL and realm from Harbor's `oidc_endpoint`, which is the
//!   realm's issuer (`<keycloak URL>/realms/<realm>`); inside a pod, the
//!   in-cluster Service instead, which needs no ingress or public DNS;
//! - the admin credentials from Otomi's Secret `keycloak/keycloak-initial-admin`
//!   (keys `username` and `password`), read by name. Reading it is a right
//!   of its own (`deploy/rbac-keycloak.yaml`), granted only by those who want
//!   the doctor to see Keycloak's users.

use anyhow::Result;
use k8s_openapi::api::core::v1::Secret as KubeSecret;

use crate::clients::harbor::Secret;
use crate::clients::http::{clip, parse_service_url};
use crate::clients::kube::{is_denied, Kube};
use crate::outcome::refused;

pub const NAMESPACE: &str = "keycloak";
pub const ADMIN_SECRET: &str = "keycloak-initial-admin";
pub const SERVICE: &str = "keycloak-keycloakx-http";
/// Otomi's realm, when nothing names another.
pub const DEFAULT_REALM: &str = "otomi";
/// The opt-in role that lets the doctor read [`ADMIN_SECRET`].
pub const RBAC_FILE: &str = "deploy/rbac-keycloak.yaml";

/// A Keycloak realm URL taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealmUrl {
    /// Everything before `/realms/`: scheme, host, port and any path prefix
    /// (older Keycloaks serve under `/auth`).
    pub base_url: String,
    pub realm: String,
}

/// Takes `https://kc.example.com[/prefix]/realms/<realm>[/]` apart; None
/// when the URL is not a realm URL (another OIDC provider, or a typo).
pub fn split_realm_url(issuer: &str) -> Option<RealmUrl> {
    let url = parse_service_url(issuer, "Harbor's oidc_endpoint").ok()?;
    if url.query().is_some() || url.fragment().is_some() {
        return None;
    }
    let path = url.path().trim_end_matches('/');
    let (prefix, realm) = path.rsplit_once("/realms/")?;
    if realm.is_empty() || realm.contains('/') {
        return None;
    }
    let realm = percent_decode(realm)?;
    let mut base = url.clone();
    base.set_path(prefix);
    Some(RealmUrl {
        base_url: base.as_str().trim_end_matches('/').to_string(),
        realm,
    })
}

fn percent_decode(s: &str) -> Option<String> {
    url::form_urlencoded::parse(format!("r={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty() && !v.contains('/'))
}

/// The in-cluster Service's URL (plain HTTP on port 80, as Otomi runs it).
pub fn service_url() -> String {
    format!("http://{SERVICE}.{NAMESPACE}.svc")
}

/// Keycloak's admin login as Otomi keeps it.
pub struct AdminLogin {
    pub username: String,
    pub password: Secret,
    /// Where it came from, for people.
    pub source: String,
}

/// Reads the admin login from [`ADMIN_SECRET`]. Ok(None) when the Secret
/// is not there (not Otomi, or another layout).
pub async fn admin_login(kube: &Kube) -> Result<Option<AdminLogin>> {
    let source = format!("Secret {NAMESPACE}/{ADMIN_SECRET}");
    let secret = match kube.get_in::<KubeSecret>(NAMESPACE, ADMIN_SECRET).await {
        Ok(s) => s,
        Err(e) if is_denied(&e) => {
            return Err(refused(format!(
                "{e:#}. Reading Keycloak's admin Secret is opt-in: apply {RBAC_FILE}, or give \
                 --keycloak-username and --keycloak-password"
            )))
        }
        Err(e) => return Err(e),
    };
    let Some(secret) = secret else {
        return Ok(None);
    };
    let key = |k: &str| -> Result<String> {
        let value = secret
            .data
            .as_ref()
            .and_then(|d| d.get(k))
            .map(|b| String::from_utf8(b.0.clone()));
        match value {
            Some(Ok(v)) if !v.is_empty() => Ok(v),
            Some(Ok(_)) | None => Err(refused(format!(
                "{source} has no {k:?} key (or it is empty); give --keycloak-username and \
                 --keycloak-password"
            ))),
            Some(Err(_)) => Err(refused(format!(
                "{source}'s {k:?} is not text; give --keycloak-username and --keycloak-password"
            ))),
        }
    };
    let username = key("username")?;
    if username.chars().count() > 255 || username.chars().any(char::is_control) {
        return Err(refused(format!(
            "{source}'s username ({}) is not a plausible user name",
            clip(&username, 40)
        )));
    }
    Ok(Some(AdminLogin {
        username,
        password: Secret::new(key("password")?),
        source,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realm_urls_are_taken_apart() {
        let r = split_realm_url("https://keycloak.example.com/realms/otomi").unwrap();
        assert_eq!(r.base_url, "https://keycloak.example.com");
        assert_eq!(r.realm, "otomi");
        let r = split_realm_url("http://127.0.0.1:8080/auth/realms/team%20x/").unwrap();
        assert_eq!(r.base_url, "http://127.0.0.1:8080/auth");
        assert_eq!(r.realm, "team x");
    }

    #[test]
    fn other_urls_are_not_realm_urls() {
        for bad in [
            "https://accounts.google.com",
            "https://login.microsoftonline.com/tenant/v2.0",
            "https://kc.example.com/realms/",
            "https://kc.example.com/realms/otomi/protocol/openid-connect",
            "https://kc.example.com/realms/otomi?x=1",
            "https://user:pw@kc.example.com/realms/otomi",
            "not a url",
            "",
        ] {
            assert_eq!(split_realm_url(bad), None, "{bad}");
        }
    }
}

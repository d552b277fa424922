//! Keycloak's admin REST API: who the users are now (their `id` is the
//! `sub` Harbor sees) and the realm's session settings.
//!
//! Authentication is the password grant on the master realm's `admin-cli`
//! client. Users are read in pages, once per run, and kept: a diagnosis of
//! every user costs a handful of requests, never one per user.
//!
//! Keycloak's answers are untrusted: redirects are never followed (the
//! token request carries the admin password, and a 307 would re-post it to
//! wherever the answer points), bodies are capped, and paging stops with an
//! error when a page repeats or the users outnumber what `users/count` said.

use std::time::Duration;

use anyhow::{Context, Result};
use serde::Deserialize;
use tokio::sync::OnceCell;

use crate::clients::http::{clip, read_capped, BODY_CAP};
use crate::outcome::refused;

const PAGE_SIZE: usize = 500;

/// A user as Keycloak knows them now. `id` is the `sub` Harbor sees.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeycloakUser {
    pub id: String,
    pub username: String,
    #[serde(default)]
    pub email: Option<String>,
    /// Whether Keycloak says the user proved they own `email`. Absent means
    /// no: an unproven email is evidence, never identity.
    #[serde(default)]
    pub email_verified: bool,
}

impl KeycloakUser {
    /// For findings and plans: who this is, so a person can check it.
    pub fn describe(&self) -> String {
        format!(
            "Keycloak user {} (id {}, email {}{})",
            self.username,
            self.id,
            self.email.as_deref().unwrap_or("none"),
            match (&self.email, self.email_verified) {
                (None, _) => "",
                (Some(_), true) => ", verified",
                (Some(_), false) => ", NOT verified",
            }
        )
    }
}

/// Settings for reaching Keycloak; built from the global options.
#[derive(Clone)]
pub struct KeycloakSettings {
    pub base_url: String,
    pub realm: String,
    pub username: String,
    pub password: String,
    /// The CA to verify Keycloak's HTTPS certificate with (`--ca-cert`),
    /// instead of the system's roots.
    pub ca_cert: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for KeycloakSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeycloakSettings")
            .field("base_url", &self.base_url)
            .field("realm", &self.realm)
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .field("ca_cert", &self.ca_cert)
            .finish()
    }
}

/// The realm's token and session lifespans, in seconds.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RealmSessions {
    pub access_token_lifespan: Option<i64>,
    pub sso_session_idle_timeout: Option<i64>,
    pub sso_session_max_lifespan: Option<i64>,
    pub offline_session_idle_timeout: Option<i64>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
}

pub struct Keycloak {
    settings: KeycloakSettings,
    http: reqwest::Client,
    token: OnceCell<String>,
    users: OnceCell<Vec<KeycloakUser>>,
}

impl Keycloak {
    pub fn new(settings: KeycloakSettings, timeout: Duration) -> Result<Keycloak> {
        let url = crate::clients::http::parse_service_url(&settings.base_url, "--keycloak-url")?;
        // The same trust as Harbor's: --ca-cert, else the system's roots.
        let tls = crate::clients::tls::https_config(settings.ca_cert.as_deref())
            .map_err(|e| refused(format!("{e:#}")))?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .use_preconfigured_tls(tls)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building the HTTP client for Keycloak")?;
        let mut settings = settings;
        settings.base_url = url.as_str().trim_end_matches('/').to_string();
        Ok(Keycloak {
            settings,
            http,
            token: OnceCell::new(),
            users: OnceCell::new(),
        })
    }

    pub fn realm(&self) -> &str {
        &self.settings.realm
    }

    /// The issuer Keycloak puts in this realm's tokens.
    pub fn realm_issuer(&self) -> String {
        format!("{}/realms/{}", self.settings.base_url, self.settings.realm)
    }

    fn unreachable(&self, e: reqwest::Error) -> anyhow::Error {
        if let Some(problem) = crate::clients::tls::CertificateProblem::find(&e) {
            return refused(format!(
                "Keycloak at {} is not reachable over HTTPS: {problem}",
                self.settings.base_url
            ));
        }
        let kind = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "could not connect"
        } else {
            "request failed"
        };
        // The innermost cause says what happened ("connection refused");
        // the outer ones only that the request failed.
        let mut src = String::new();
        let mut next = std::error::Error::source(&e);
        while let Some(s) = next {
            src = format!(": {s}");
            next = s.source();
        }
        refused(format!(
            "Keycloak at {} is not reachable ({kind}{src})",
            self.settings.base_url
        ))
    }

    /// Reads a body within the cap, as JSON.
    async fn body_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        resp: reqwest::Response,
    ) -> Result<T> {
        let bytes = read_capped(resp, BODY_CAP).await.map_err(|e| {
            refused(format!(
                "Keycloak's answer to {path} could not be read: {e}"
            ))
        })?;
        serde_json::from_slice(&bytes).map_err(|e| {
            refused(format!(
                "Keycloak answered {path} with unexpected JSON: {e}"
            ))
        })
    }

    async fn token(&self) -> Result<&str> {
        self.token
            .get_or_try_init(|| async {
                let path = "/realms/master/protocol/openid-connect/token";
                let url = format!("{}{path}", self.settings.base_url);
                let resp = self
                    .http
                    .post(&url)
                    .form(&[
                        ("grant_type", "password"),
                        ("client_id", "admin-cli"),
                        ("username", self.settings.username.as_str()),
                        ("password", self.settings.password.as_str()),
                    ])
                    .send()
                    .await
                    .map_err(|e| self.unreachable(e))?;
                let status = resp.status();
                if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::BAD_REQUEST {
                    return Err(refused(format!(
                        "Keycloak rejected the admin credentials for user {:?} (HTTP {}); check \
                         --keycloak-username / --keycloak-password (master realm, admin-cli client)",
                        clip(&self.settings.username, 80),
                        status.as_u16()
                    )));
                }
                if status.is_redirection() {
                    return Err(refused(format!(
                        "Keycloak's token endpoint at {} answered with a redirect (HTTP {}); the doctor \
                         does not follow it, because the request carries the admin password. Give the \
                         URL Keycloak really serves with --keycloak-url",
                        self.settings.base_url,
                        status.as_u16()
                    )));
                }
                if !status.is_success() {
                    return Err(refused(format!(
                        "Keycloak's token endpoint answered HTTP {} at {}",
                        status.as_u16(),
                        self.settings.base_url
                    )));
                }
                let body: TokenResponse = self.body_json(path, resp).await.map_err(|_| {
                    refused("Keycloak's token endpoint answered something that is not a token")
                })?;
                Ok(body.access_token)
            })
            .await
            .map(String::as_str)
    }

    /// GET as the admin.
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T> {
        // Without missing_ok a 404 is already an error.
        self.get_json_opt(path, query, false)
            .await?
            .ok_or_else(|| refused(format!("Keycloak has no {path}")))
    }

    /// GET as the admin; `Ok(None)` for a 404 when `missing_ok`.
    async fn get_json_opt<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        missing_ok: bool,
    ) -> Result<Option<T>> {
        let token = self.token().await?;
        let url = format!("{}{path}", self.settings.base_url);
        let resp = self
            .http
            .get(&url)
            .bearer_auth(token)
            .query(query)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = resp.status();
        match status.as_u16() {
            200 => self.body_json(path, resp).await.map(Some),
            404 if missing_ok => Ok(None),
            401 | 403 => Err(refused(format!(
                "Keycloak refused {path} (HTTP {}): the admin user {:?} lacks the realm-management \
                 view-users / view-realm roles for realm {}",
                status.as_u16(),
                clip(&self.settings.username, 80),
                self.settings.realm
            ))),
            404 => Err(refused(format!(
                "Keycloak has no realm {:?} ({path} answered 404); check --keycloak-realm",
                self.settings.realm
            ))),
            code if status.is_redirection() => Err(refused(format!(
                "Keycloak answered {path} with a redirect (HTTP {code}); the doctor does not follow \
                 redirects with the admin token. Give the URL Keycloak really serves with --keycloak-url"
            ))),
            code => Err(refused(format!(
                "Keycloak answered {path} with HTTP {code}"
            ))),
        }
    }

    /// Every user of the realm, read in pages once per run.
    ///
    /// The loop is bounded by what Keycloak itself says: `users/count`
    /// first, then pages until that many arrived. A page that repeats the
    /// previous one (a Keycloak or proxy that ignores `first`) or more users
    /// than counted stops the loop with an error instead of growing forever.
    pub async fn users(&self) -> Result<&[KeycloakUser]> {
        self.users
            .get_or_try_init(|| async {
                let path = format!("/admin/realms/{}/users", self.settings.realm);
                let count: usize = self.get_json(&format!("{path}/count"), &[]).await?;
                let mut all: Vec<KeycloakUser> = Vec::with_capacity(count.min(1 << 20));
                let mut seen = std::collections::HashSet::with_capacity(count.min(1 << 20));
                loop {
                    let page: Vec<KeycloakUser> = self
                        .get_json(
                            &path,
                            &[
                                ("first", all.len().to_string()),
                                ("max", PAGE_SIZE.to_string()),
                                ("briefRepresentation", "true".to_string()),
                            ],
                        )
                        .await?;
                    let n = page.len();
                    for u in page {
                        if !seen.insert(u.id.clone()) {
                            return Err(refused(format!(
                                "Keycloak's user list repeats itself (user id {} came twice while paging \
                                 from {}); it seems to ignore the `first` parameter, so the list cannot be \
                                 read reliably. Check the Keycloak version or the proxy in front of it",
                                clip(&u.id, 64),
                                all.len()
                            )));
                        }
                        all.push(u);
                    }
                    if all.len() > count {
                        return Err(refused(format!(
                            "Keycloak listed more users ({}) than it counted ({count}) for realm {}; the \
                             list cannot be trusted, so it was not used",
                            all.len(),
                            self.settings.realm
                        )));
                    }
                    if n < PAGE_SIZE || all.len() == count {
                        break;
                    }
                }
                Ok(all)
            })
            .await
            .map(Vec::as_slice)
    }

    /// The users that could be `username` / `email` in Harbor: those whose
    /// username or email equals either value. Reads the whole list when it
    /// was already read this run, else asks Keycloak's exact filters.
    pub async fn users_matching(
        &self,
        username: &str,
        email: Option<&str>,
    ) -> Result<Vec<KeycloakUser>> {
        let wanted: Vec<String> = [Some(username), email]
            .into_iter()
            .flatten()
            .map(str::to_lowercase)
            .collect();
        let hit = |u: &KeycloakUser| {
            wanted.contains(&u.username.to_lowercase())
                || u.email
                    .as_deref()
                    .is_some_and(|e| wanted.contains(&e.to_lowercase()))
        };
        if let Some(users) = self.users.get() {
            return Ok(users.iter().filter(|u| hit(u)).cloned().collect());
        }
        let path = format!("/admin/realms/{}/users", self.settings.realm);
        let mut found: Vec<KeycloakUser> = vec![];
        for value in &wanted {
            for field in ["username", "email"] {
                let page: Vec<KeycloakUser> = self
                    .get_json(
                        &path,
                        &[
                            (field, value.clone()),
                            ("exact", "true".to_string()),
                            ("max", PAGE_SIZE.to_string()),
                        ],
                    )
                    .await?;
                for u in page {
                    if hit(&u) && !found.iter().any(|f| f.id == u.id) {
                        found.push(u);
                    }
                }
            }
        }
        Ok(found)
    }

    /// One user by id (the `sub`), or None when Keycloak has no such user.
    pub async fn user_by_id(&self, id: &str) -> Result<Option<KeycloakUser>> {
        if let Some(users) = self.users.get() {
            return Ok(users.iter().find(|u| u.id == id).cloned());
        }
        // An id with a path separator would address another resource.
        if id.is_empty() || id.contains(['/', '?', '#', '%']) {
            return Ok(None);
        }
        self.get_json_opt(
            &format!("/admin/realms/{}/users/{id}", self.settings.realm),
            &[],
            true,
        )
        .await
    }

    /// The realm's token and session lifespans.
    pub async fn realm_sessions(&self) -> Result<RealmSessions> {
        self.get_json(&format!("/admin/realms/{}", self.settings.realm), &[])
            .await
    }
}

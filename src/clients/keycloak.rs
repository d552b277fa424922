//! Keycloak's admin REST API: who the users are now (their `id` is the
//! `sub` Harbor sees) and the realm's session settings.
//!
//! Authentication is the password grant on the master realm's `admin-cli`
//! client. Users are read in pages, once per run, and kept: a diagnosis of
//! every user costs a handful of requests, never one per user.

use std::time::Duration;

use anyhow::{Context, Result};
use serde::Deserialize;
use tokio::sync::OnceCell;

use crate::clients::registry_db::IdpIdentity;
use crate::outcome::refused;

const PAGE_SIZE: usize = 500;

/// Settings for reaching Keycloak; built from the global options.
#[derive(Clone)]
pub struct KeycloakSettings {
    pub base_url: String,
    pub realm: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for KeycloakSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeycloakSettings")
            .field("base_url", &self.base_url)
            .field("realm", &self.realm)
            .field("username", &self.username)
            .field("password", &"<hidden>")
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
struct KcUser {
    id: String,
    username: String,
    email: Option<String>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
}

pub struct Keycloak {
    settings: KeycloakSettings,
    http: reqwest::Client,
    token: OnceCell<String>,
    users: OnceCell<Vec<IdpIdentity>>,
}

impl Keycloak {
    pub fn new(settings: KeycloakSettings, timeout: Duration) -> Result<Keycloak> {
        crate::clients::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .use_rustls_tls()
            .build()
            .context("building the HTTP client for Keycloak")?;
        let mut settings = settings;
        settings.base_url = settings.base_url.trim_end_matches('/').to_string();
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
        let kind = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "could not connect"
        } else {
            "request failed"
        };
        let src = std::error::Error::source(&e)
            .map(|s| format!(": {s}"))
            .unwrap_or_default();
        refused(format!(
            "Keycloak at {} is not reachable ({kind}{src})",
            self.settings.base_url
        ))
    }

    async fn token(&self) -> Result<&str> {
        self.token
            .get_or_try_init(|| async {
                let url = format!("{}/realms/master/protocol/openid-connect/token", self.settings.base_url);
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
                        self.settings.username,
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
                let body: TokenResponse = resp
                    .json()
                    .await
                    .map_err(|_| refused("Keycloak's token endpoint answered something that is not a token"))?;
                Ok(body.access_token)
            })
            .await
            .map(String::as_str)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T> {
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
            200 => resp.json().await.map_err(|e| {
                refused(format!(
                    "Keycloak answered {path} with unexpected JSON: {e}"
                ))
            }),
            401 | 403 => Err(refused(format!(
                "Keycloak refused {path} (HTTP {}): the admin user {:?} lacks the realm-management \
                 view-users / view-realm roles for realm {}",
                status.as_u16(),
                self.settings.username,
                self.settings.realm
            ))),
            404 => Err(refused(format!(
                "Keycloak has no realm {:?} ({path} answered 404); check --keycloak-realm",
                self.settings.realm
            ))),
            code => Err(refused(format!(
                "Keycloak answered {path} with HTTP {code}"
            ))),
        }
    }

    /// Every user of the realm, read in pages once per run.
    pub async fn users(&self) -> Result<&[IdpIdentity]> {
        self.users
            .get_or_try_init(|| async {
                let path = format!("/admin/realms/{}/users", self.settings.realm);
                let mut all = vec![];
                loop {
                    let page: Vec<KcUser> = self
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
                    all.extend(page.into_iter().map(|u| IdpIdentity {
                        id: u.id,
                        username: u.username,
                        email: u.email,
                    }));
                    if n < PAGE_SIZE {
                        break;
                    }
                }
                Ok(all)
            })
            .await
            .map(Vec::as_slice)
    }

    /// One user by exact username, falling back to exact email.
    pub async fn find_user(
        &self,
        username: &str,
        email: Option<&str>,
    ) -> Result<Option<IdpIdentity>> {
        if let Some(users) = self.users.get() {
            let lower = username.to_lowercase();
            if let Some(u) = users.iter().find(|u| u.username.to_lowercase() == lower) {
                return Ok(Some(u.clone()));
            }
            if let Some(email) = email.map(str::to_lowercase) {
                return Ok(users
                    .iter()
                    .find(|u| u.email.as_deref().map(str::to_lowercase) == Some(email.clone()))
                    .cloned());
            }
            return Ok(None);
        }
        let path = format!("/admin/realms/{}/users", self.settings.realm);
        let by_name: Vec<KcUser> = self
            .get_json(
                &path,
                &[
                    ("username", username.to_string()),
                    ("exact", "true".to_string()),
                ],
            )
            .await?;
        if let Some(u) = by_name.into_iter().next() {
            return Ok(Some(IdpIdentity {
                id: u.id,
                username: u.username,
                email: u.email,
            }));
        }
        if let Some(email) = email {
            let by_email: Vec<KcUser> = self
                .get_json(
                    &path,
                    &[("email", email.to_string()), ("exact", "true".to_string())],
                )
                .await?;
            return Ok(by_email.into_iter().next().map(|u| IdpIdentity {
                id: u.id,
                username: u.username,
                email: u.email,
            }));
        }
        Ok(None)
    }

    /// The realm's token and session lifespans.
    pub async fn realm_sessions(&self) -> Result<RealmSessions> {
        self.get_json(&format!("/admin/realms/{}", self.settings.realm), &[])
            .await
    }
}

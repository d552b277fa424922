//! Harbor's REST API (v2.0) and its registry token service: every Harbor URL
//! the doctor uses is built here.
//!
//! - Basic auth as the admin; every request carries an `X-Request-Id`, shown
//!   in errors so they can be matched with Harbor's logs.
//! - Idempotent requests (GET, HEAD, PUT, DELETE) are retried with
//!   exponential backoff and jitter on 429, 502, 503, 504 and on connection
//!   failures; POST and PATCH never are, and neither is a 401: Harbor makes
//!   each rejected login sleep 1.5 s and locks the name meanwhile.
//! - Lists are read whole, 100 to a page, following `X-Total-Count`.
//! - Harbor's `name` filters are fuzzy: lookups compare names exactly.
//! - Errors carry Harbor's own `{"errors":[{code,message}]}` text, or a
//!   short, cleaned excerpt when the answer is not Harbor's (an HTML page
//!   from a proxy). Nothing secret ever goes into a message.
//! - HTTPS is always verified (system roots, or `--ca-cert`); plain HTTP
//!   only when the URL says `http://`.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::OnceCell;

use crate::clients::http::{read_capped, BodyError, BODY_CAP};
use crate::clients::{tls, NotConfigured};
use crate::outcome::{refused, ExitCode, Failure};

/// Harbor's largest page.
pub const PAGE_SIZE: usize = 100;
/// Attempts for an idempotent request, the first included.
const ATTEMPTS: u32 = 4;
/// First backoff; doubled per attempt, with full jitter.
const BACKOFF: Duration = Duration::from_millis(200);
/// A `Retry-After` longer than this is not waited for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);
/// How much of a non-Harbor error body goes into a message.
const EXCERPT: usize = 160;

/// A secret value (robot secret, password) that never prints itself.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<hidden>")
    }
}

/// How to reach Harbor; built from the global options (and, when the
/// cluster is reachable, discovered there).
#[derive(Clone)]
pub struct HarborSettings {
    pub url: String,
    pub username: String,
    /// `None` when neither given nor discoverable: anonymous calls still work.
    pub password: Option<Secret>,
    pub ca_cert: Option<std::path::PathBuf>,
    pub timeout: Duration,
}

impl std::fmt::Debug for HarborSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HarborSettings")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("ca_cert", &self.ca_cert)
            .finish()
    }
}

/// An answer from Harbor that was not what the request wanted.
#[derive(Debug)]
pub struct HarborError {
    pub method: String,
    pub path: String,
    /// None when no HTTP answer came back.
    pub status: Option<u16>,
    /// Harbor's error code (`CONFLICT`, `NOT_FOUND`, ...), when it sent one.
    pub code: Option<String>,
    pub message: String,
    pub request_id: String,
}

impl std::fmt::Display for HarborError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(s) => write!(
                f,
                "Harbor answered {} {} with HTTP {s}: {} (request id {})",
                self.method, self.path, self.message, self.request_id
            ),
            None => write!(
                f,
                "{} {} failed: {} (request id {})",
                self.method, self.path, self.message, self.request_id
            ),
        }
    }
}

impl std::error::Error for HarborError {}

/// The HTTP status of a Harbor error anywhere in `err`'s chain.
pub fn status_of(err: &anyhow::Error) -> Option<u16> {
    err.chain()
        .find_map(|e| e.downcast_ref::<HarborError>())
        .and_then(|h| h.status)
}

/// Whether `err` is Harbor's 409: the thing exists already.
pub fn is_conflict(err: &anyhow::Error) -> bool {
    status_of(err) == Some(409)
}

#[derive(Debug, Clone, Deserialize)]
pub struct HealthComponent {
    pub name: String,
    pub status: String,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Health {
    pub status: String,
    #[serde(default)]
    pub components: Vec<HealthComponent>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct SystemInfo {
    pub auth_mode: Option<String>,
    pub harbor_version: Option<String>,
    pub external_url: Option<String>,
    pub registry_url: Option<String>,
}

impl SystemInfo {
    /// The registry host docker uses (`host[:port]`), from `external_url`.
    pub fn registry_host(&self) -> Option<String> {
        let url = self.external_url.as_deref()?;
        let parsed = url::Url::parse(url).ok()?;
        let host = parsed.host_str()?;
        Some(match parsed.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        })
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ProjectMetadata {
    pub public: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Project {
    pub project_id: i64,
    pub name: String,
    #[serde(default)]
    pub metadata: Option<ProjectMetadata>,
}

impl Project {
    pub fn is_public(&self) -> bool {
        self.metadata
            .as_ref()
            .and_then(|m| m.public.as_deref())
            .is_some_and(|p| p == "true")
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Member {
    pub id: i64,
    pub entity_name: String,
    /// `u` user, `g` group.
    pub entity_type: String,
    pub role_id: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    pub resource: String,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RobotPermission {
    pub kind: String,
    pub namespace: String,
    #[serde(default)]
    pub access: Vec<Access>,
}

/// A robot account as Harbor shows it: `name` carries the prefix.
#[derive(Debug, Clone, Deserialize)]
pub struct Robot {
    pub id: i64,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub level: String,
    #[serde(default)]
    pub duration: Option<i64>,
    #[serde(default)]
    pub disable: bool,
    /// Unix seconds; -1 for never.
    #[serde(default = "never")]
    pub expires_at: i64,
    #[serde(default)]
    pub permissions: Vec<RobotPermission>,
}

fn never() -> i64 {
    -1
}

impl Robot {
    pub fn is_expired(&self, now_unix: i64) -> bool {
        self.expires_at != -1 && self.expires_at <= now_unix
    }
}

/// What `POST /robots` takes.
#[derive(Debug, Clone, Serialize)]
pub struct NewRobot {
    /// Without the prefix.
    pub name: String,
    pub description: String,
    pub level: String,
    /// Days, or -1 for never.
    pub duration: i64,
    pub disable: bool,
    pub permissions: Vec<RobotPermission>,
}

/// What `POST /robots` answers: the only time Harbor shows a secret it made.
#[derive(Debug, Clone, Deserialize)]
pub struct CreatedRobot {
    pub id: i64,
    pub name: String,
    pub secret: Secret,
    #[serde(default = "never")]
    pub expires_at: i64,
}

/// Whether a credential got a registry token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenCheck {
    Accepted,
    Rejected,
}

pub struct Harbor {
    http: reqwest::Client,
    base: String,
    username: String,
    password: Option<Secret>,
    robot_prefix: OnceCell<String>,
}

impl Harbor {
    pub fn new(settings: HarborSettings) -> Result<Harbor> {
        let url = crate::clients::http::parse_service_url(&settings.url, "the Harbor URL")?;
        let mut builder = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .user_agent(concat!("harbor-doctor/", env!("CARGO_PKG_VERSION")))
            // Harbor sends the admin to the UI on some redirects; never follow
            // a redirect with credentials.
            .redirect(reqwest::redirect::Policy::none());
        match url.scheme() {
            "https" => {
                let config = tls::https_config(settings.ca_cert.as_deref())
                    .map_err(|e| refused(format!("{e:#}")))?;
                builder = builder.use_preconfigured_tls(config);
            }
            "http" => {}
            other => {
                return Err(refused(format!(
                    "the Harbor URL must start with https:// (or http:// when Harbor really \
                     serves plain HTTP), not {other}://"
                )))
            }
        }
        let http = builder
            .build()
            .context("building the HTTP client for Harbor")?;
        Ok(Harbor {
            http,
            base: url.as_str().trim_end_matches('/').to_string(),
            username: settings.username,
            password: settings.password,
            robot_prefix: OnceCell::new(),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub fn username(&self) -> &str {
        &self.username
    }

    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    fn credentials(&self) -> Result<(&str, &str)> {
        match &self.password {
            Some(p) => Ok((&self.username, p.expose())),
            None => Err(anyhow::Error::new(NotConfigured(
                "no Harbor admin password: give --harbor-password / HARBOR_PASSWORD (or let the \
                 doctor read the chart's core Secret from the cluster)"
                    .into(),
            ))),
        }
    }

    /// Sends one request, retrying idempotent ones on transient failures,
    /// and returns the answer whatever its status.
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        auth: Auth<'_>,
        extra_headers: &[(&'static str, &'static str)],
    ) -> Result<(reqwest::Response, String)> {
        let request_id = uuid::Uuid::new_v4().to_string();
        let idempotent = matches!(
            method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE
        );
        let url = format!("{}{path}", self.base);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self
                .http
                .request(method.clone(), &url)
                .header("X-Request-Id", &request_id)
                .header(reqwest::header::ACCEPT, "application/json")
                .query(query);
            for (k, v) in extra_headers {
                req = req.header(*k, *v);
            }
            req = match auth {
                Auth::Anonymous => req,
                Auth::Admin => {
                    let (u, p) = self.credentials()?;
                    req.basic_auth(u, Some(p))
                }
                Auth::Basic(u, p) => req.basic_auth(u, Some(p)),
            };
            if let Some(b) = body {
                req = req.json(b);
            }
            tracing::debug!(%method, path, request_id, attempt, "harbor request");
            let retry_after = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let transient = matches!(status.as_u16(), 429 | 502 | 503 | 504);
                    if !(idempotent && transient && attempt < ATTEMPTS) {
                        return Ok((resp, request_id));
                    }
                    tracing::info!(%method, path, request_id, status = status.as_u16(), "retrying");
                    retry_after(resp.headers())
                }
                Err(e) => {
                    let retriable = idempotent && e.is_connect() && attempt < ATTEMPTS;
                    if !retriable {
                        return Err(self.transport_error(&method, path, &request_id, e));
                    }
                    tracing::info!(%method, path, request_id, "connection failed, retrying");
                    None
                }
            };
            tokio::time::sleep(retry_after.unwrap_or_else(|| backoff(attempt))).await;
        }
    }

    fn transport_error(
        &self,
        method: &Method,
        path: &str,
        request_id: &str,
        e: reqwest::Error,
    ) -> anyhow::Error {
        let message = match tls::CertificateProblem::find(&e) {
            // Says what to give instead, which the TLS error alone does not.
            Some(problem) => format!(
                "Harbor at {} is not reachable over HTTPS: {problem}",
                self.base
            ),
            None => {
                let kind = if e.is_timeout() {
                    "timed out (see --timeout)"
                } else if e.is_connect() {
                    "could not connect"
                } else {
                    "the request failed"
                };
                let mut cause = String::new();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    cause = format!(": {s}");
                    src = s.source();
                }
                format!("Harbor at {} is not reachable ({kind}{cause})", self.base)
            }
        };
        refused(
            HarborError {
                method: method.to_string(),
                path: path.to_string(),
                status: None,
                code: None,
                message,
                request_id: request_id.to_string(),
            }
            .to_string(),
        )
    }

    /// Turns a non-success answer into an error with Harbor's own words.
    async fn failure(
        &self,
        method: &Method,
        path: &str,
        request_id: String,
        resp: reqwest::Response,
    ) -> anyhow::Error {
        let status = resp.status();
        // An error body only feeds a message: a small cap is plenty.
        let body = match read_capped(resp, 64 << 10).await {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => e.to_string(),
        };
        let (code, message) = describe_error_body(&body);
        let err = HarborError {
            method: method.to_string(),
            path: path.to_string(),
            status: Some(status.as_u16()),
            code,
            message,
            request_id,
        };
        // Wrong or insufficient credentials: nothing can run (exit 3).
        let lead = match status {
            StatusCode::UNAUTHORIZED => format!(
                "Harbor rejected the credentials of user {:?}; check --harbor-username / \
                 --harbor-password. The doctor does not retry a rejected login: Harbor delays \
                 and briefly locks the name after each one",
                self.username
            ),
            StatusCode::FORBIDDEN => format!(
                "Harbor does not let user {:?} do this; the doctor needs Harbor's admin",
                self.username
            ),
            _ => return anyhow::Error::new(err),
        };
        anyhow::Error::new(err).context(Failure {
            code: ExitCode::CannotRun,
            message: lead,
        })
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: &Method,
        path: &str,
        request_id: String,
        resp: reqwest::Response,
    ) -> Result<T> {
        let status = resp.status();
        let bytes = read_capped(resp, BODY_CAP).await.map_err(|e| match e {
            BodyError::Transport(e) => self.transport_error(method, path, &request_id, e),
            too_large => anyhow::Error::new(HarborError {
                method: method.to_string(),
                path: path.to_string(),
                status: Some(status.as_u16()),
                code: None,
                message: too_large.to_string(),
                request_id: request_id.clone(),
            }),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| {
            anyhow::Error::new(HarborError {
                method: method.to_string(),
                path: path.to_string(),
                status: Some(status.as_u16()),
                code: None,
                message: format!(
                    "the answer is not the JSON Harbor sends ({e}): {}",
                    excerpt(&String::from_utf8_lossy(&bytes))
                ),
                request_id,
            })
        })
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        auth: Auth<'_>,
    ) -> Result<T> {
        let (resp, rid) = self.send(Method::GET, path, query, None, auth, &[]).await?;
        if !resp.status().is_success() {
            return Err(self.failure(&Method::GET, path, rid, resp).await);
        }
        self.json(&Method::GET, path, rid, resp).await
    }

    /// Every item of a list endpoint, 100 to a page.
    async fn list_all<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<T>> {
        let mut all: Vec<T> = Vec::new();
        let mut page = 1usize;
        loop {
            let mut q: Vec<(&str, String)> = query.to_vec();
            q.push(("page", page.to_string()));
            q.push(("page_size", PAGE_SIZE.to_string()));
            let (resp, rid) = self
                .send(Method::GET, path, &q, None, Auth::Admin, &[])
                .await?;
            if !resp.status().is_success() {
                return Err(self.failure(&Method::GET, path, rid, resp).await);
            }
            let total = resp
                .headers()
                .get("x-total-count")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok());
            let items: Vec<T> = self.json(&Method::GET, path, rid, resp).await?;
            let n = items.len();
            all.extend(items);
            let done = match total {
                Some(t) => all.len() >= t || n == 0,
                None => n < PAGE_SIZE,
            };
            if done {
                return Ok(all);
            }
            page += 1;
        }
    }

    /// Sends a write and expects one of `ok` statuses.
    async fn write(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&'static str, &'static str)],
    ) -> Result<(reqwest::Response, String)> {
        let (resp, rid) = self
            .send(method.clone(), path, &[], body, Auth::Admin, headers)
            .await?;
        if resp.status().is_success() {
            Ok((resp, rid))
        } else {
            Err(self.failure(&method, path, rid, resp).await)
        }
    }

    // -- anonymous ----------------------------------------------------------

    /// `GET /ping`: the API process is up.
    pub async fn ping(&self) -> Result<String> {
        let path = "/api/v2.0/ping";
        let (resp, rid) = self
            .send(Method::GET, path, &[], None, Auth::Anonymous, &[])
            .await?;
        if !resp.status().is_success() {
            return Err(self.failure(&Method::GET, path, rid, resp).await);
        }
        // "Pong": anything long is not Harbor.
        let body = read_capped(resp, 4 << 10).await.map_err(|e| {
            anyhow::Error::new(HarborError {
                method: "GET".into(),
                path: path.into(),
                status: Some(200),
                code: None,
                message: e.to_string(),
                request_id: rid.clone(),
            })
        })?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// `GET /health`: every component's status.
    pub async fn health(&self) -> Result<Health> {
        self.get_json("/api/v2.0/health", &[], Auth::Anonymous)
            .await
    }

    /// `GET /systeminfo` as the admin (so it carries version and external URL).
    pub async fn systeminfo(&self) -> Result<SystemInfo> {
        self.get_json("/api/v2.0/systeminfo", &[], Auth::Admin)
            .await
    }

    // -- projects and members -----------------------------------------------

    /// Every project, read in pages once.
    pub async fn projects(&self) -> Result<Vec<Project>> {
        self.list_all("/api/v2.0/projects", &[]).await
    }

    /// One project by exact name.
    pub async fn project(&self, name: &str) -> Result<Option<Project>> {
        let path = format!("/api/v2.0/projects/{}", encode(name));
        let (resp, rid) = self
            .send(
                Method::GET,
                &path,
                &[],
                None,
                Auth::Admin,
                &[("X-Is-Resource-Name", "true")],
            )
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => {
                let p: Project = self.json(&Method::GET, &path, rid, resp).await?;
                Ok((p.name == name).then_some(p))
            }
            _ => Err(self.failure(&Method::GET, &path, rid, resp).await),
        }
    }

    /// Creates a private project. A 409 (it exists) is an error callers can
    /// recognise with [`is_conflict`].
    pub async fn create_project(&self, name: &str) -> Result<()> {
        let body = serde_json::json!({"project_name": name, "metadata": {"public": "false"}});
        self.write(Method::POST, "/api/v2.0/projects", Some(&body), &[])
            .await
            .map(|_| ())
    }

    /// Every member of a project.
    pub async fn members(&self, project: &str) -> Result<Vec<Member>> {
        // The list takes the project by name only when it cannot look like an id.
        let path = format!("/api/v2.0/projects/{}/members", encode(project));
        let mut all: Vec<Member> = Vec::new();
        let mut page = 1usize;
        loop {
            let q = [
                ("page", page.to_string()),
                ("page_size", PAGE_SIZE.to_string()),
            ];
            let (resp, rid) = self
                .send(
                    Method::GET,
                    &path,
                    &q,
                    None,
                    Auth::Admin,
                    &[("X-Is-Resource-Name", "true")],
                )
                .await?;
            if !resp.status().is_success() {
                return Err(self.failure(&Method::GET, &path, rid, resp).await);
            }
            let items: Vec<Member> = self.json(&Method::GET, &path, rid, resp).await?;
            let n = items.len();
            all.extend(items);
            if n < PAGE_SIZE {
                return Ok(all);
            }
            page += 1;
        }
    }

    /// Adds a group (group_type 3 = OIDC) with a role (1 project admin,
    /// 2 developer). 409 when it is a member already.
    pub async fn add_group_member(
        &self,
        project: &str,
        group: &str,
        group_type: i64,
        role_id: i64,
    ) -> Result<()> {
        let path = format!("/api/v2.0/projects/{}/members", encode(project));
        let body = serde_json::json!({
            "role_id": role_id,
            "member_group": {"group_name": group, "group_type": group_type}
        });
        self.write(
            Method::POST,
            &path,
            Some(&body),
            &[("X-Is-Resource-Name", "true")],
        )
        .await
        .map(|_| ())
    }

    // -- robots -------------------------------------------------------------

    /// Harbor's robot name prefix (`robot$` unless configured), read once.
    pub async fn robot_prefix(&self) -> Result<&str> {
        self.robot_prefix
            .get_or_try_init(|| async {
                let config = self.configurations().await?;
                Ok::<_, anyhow::Error>(
                    config
                        .get("robot_name_prefix")
                        .and_then(Value::as_str)
                        .filter(|p| !p.is_empty())
                        .unwrap_or("robot$")
                        .to_string(),
                )
            })
            .await
            .map(String::as_str)
    }

    /// Every system-level robot, read in pages once.
    pub async fn robots(&self) -> Result<Vec<Robot>> {
        self.list_all("/api/v2.0/robots", &[]).await
    }

    /// One system-level robot by its name without the prefix. Harbor's
    /// `q=name=` filter matches the stored name, which has no prefix.
    pub async fn robot(&self, name: &str) -> Result<Option<Robot>> {
        let prefix = self.robot_prefix().await?.to_string();
        let found: Vec<Robot> = self
            .list_all("/api/v2.0/robots", &[("q", format!("name={name}"))])
            .await?;
        let full = format!("{prefix}{name}");
        Ok(found.into_iter().find(|r| r.name == full))
    }

    pub async fn create_robot(&self, robot: &NewRobot) -> Result<CreatedRobot> {
        let path = "/api/v2.0/robots";
        let body = serde_json::to_value(robot)?;
        let (resp, rid) = self.write(Method::POST, path, Some(&body), &[]).await?;
        self.json(&Method::POST, path, rid, resp).await
    }

    /// Creates a robot with a secret chosen by the caller, so that the
    /// Secret written before it already holds the robot's password. Harbors
    /// that ignore a chosen secret answer with one they made: callers
    /// compare and set theirs when they differ.
    pub async fn create_robot_with_secret(
        &self,
        robot: &NewRobot,
        secret: &Secret,
    ) -> Result<CreatedRobot> {
        let path = "/api/v2.0/robots";
        let mut body = serde_json::to_value(robot)?;
        body["secret"] = Value::String(secret.expose().to_string());
        let (resp, rid) = self.write(Method::POST, path, Some(&body), &[]).await?;
        self.json(&Method::POST, path, rid, resp).await
    }

    /// Sets a robot's secret (8–128 characters with an upper-case letter,
    /// a lower-case letter and a digit).
    pub async fn set_robot_secret(&self, id: i64, secret: &Secret) -> Result<()> {
        let body = serde_json::json!({"secret": secret.expose()});
        self.write(
            Method::PATCH,
            &format!("/api/v2.0/robots/{id}"),
            Some(&body),
            &[],
        )
        .await
        .map(|_| ())
    }

    /// Has Harbor generate a new secret for a robot and returns it.
    pub async fn regenerate_robot_secret(&self, id: i64) -> Result<Secret> {
        let path = format!("/api/v2.0/robots/{id}");
        let body = serde_json::json!({"secret": ""});
        let (resp, rid) = self.write(Method::PATCH, &path, Some(&body), &[]).await?;
        #[derive(Deserialize)]
        struct Sec {
            secret: Option<Secret>,
        }
        let sec: Sec = self.json(&Method::PATCH, &path, rid, resp).await?;
        sec.secret.ok_or_else(|| {
            anyhow!("Harbor regenerated the secret of robot {id} but did not return it")
        })
    }

    /// Replaces a robot's description, state, duration and permissions
    /// (its name and level cannot change).
    pub async fn update_robot(&self, robot: &Robot) -> Result<()> {
        let body = serde_json::json!({
            "name": robot.name,
            "description": robot.description,
            "level": robot.level,
            "duration": robot.duration.unwrap_or(-1),
            "disable": robot.disable,
            "permissions": robot.permissions,
        });
        self.write(
            Method::PUT,
            &format!("/api/v2.0/robots/{}", robot.id),
            Some(&body),
            &[],
        )
        .await
        .map(|_| ())
    }

    pub async fn delete_robot(&self, id: i64) -> Result<()> {
        self.write(Method::DELETE, &format!("/api/v2.0/robots/{id}"), None, &[])
            .await
            .map(|_| ())
    }

    // -- configuration --------------------------------------------------------

    /// Harbor's configuration as plain values (`{key: value}`).
    pub async fn configurations(&self) -> Result<Map<String, Value>> {
        let raw: Map<String, Value> = self
            .get_json("/api/v2.0/configurations", &[], Auth::Admin)
            .await?;
        Ok(raw
            .into_iter()
            .map(|(k, v)| match v {
                Value::Object(mut item) => (k, item.remove("value").unwrap_or(Value::Null)),
                other => (k, other),
            })
            .collect())
    }

    pub async fn set_configurations(&self, values: &Map<String, Value>) -> Result<()> {
        self.write(
            Method::PUT,
            "/api/v2.0/configurations",
            Some(&Value::Object(values.clone())),
            &[],
        )
        .await
        .map(|_| ())
    }

    // -- registry -------------------------------------------------------------

    /// Asks the registry's token service for a token with these
    /// credentials: what `docker login` does. Never retried when rejected.
    pub async fn registry_token(
        &self,
        username: &str,
        secret: &Secret,
        scope: Option<&str>,
    ) -> Result<TokenCheck> {
        let path = "/service/token";
        let mut query = vec![("service", "harbor-registry".to_string())];
        if let Some(s) = scope {
            query.push(("scope", s.to_string()));
        }
        let (resp, rid) = self
            .send(
                Method::GET,
                path,
                &query,
                None,
                Auth::Basic(username, secret.expose()),
                &[],
            )
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(TokenCheck::Accepted),
            StatusCode::UNAUTHORIZED => Ok(TokenCheck::Rejected),
            _ => Err(self.failure(&Method::GET, path, rid, resp).await),
        }
    }
}

#[derive(Clone, Copy)]
enum Auth<'a> {
    Anonymous,
    Admin,
    Basic(&'a str, &'a str),
}

/// Backoff before attempt `attempt + 1`: full jitter over an exponential cap.
fn backoff(attempt: u32) -> Duration {
    use rand::Rng;
    let cap = BACKOFF * 2u32.saturating_pow(attempt.saturating_sub(1));
    let ms = rand::rng().random_range(0..=cap.as_millis() as u64);
    Duration::from_millis(ms.max(10))
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .map(|d| d.min(MAX_RETRY_AFTER))
}

/// Harbor's error code and message from its error body, or a cleaned
/// excerpt of whatever else came back.
fn describe_error_body(body: &str) -> (Option<String>, String) {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<ErrorItem>,
    }
    #[derive(Deserialize)]
    struct ErrorItem {
        code: Option<String>,
        message: Option<String>,
    }
    if let Ok(e) = serde_json::from_str::<Errors>(body) {
        if let Some(first) = e.errors.into_iter().next() {
            let message = first.message.unwrap_or_default();
            return (first.code, message);
        }
    }
    if body.trim().is_empty() {
        return (None, "no details in the answer".into());
    }
    (
        None,
        format!("not Harbor's error format: {}", excerpt(body)),
    )
}

/// A short, single-line version of a body for messages: tags dropped,
/// whitespace folded, cut to a readable length.
fn excerpt(body: &str) -> String {
    let mut text = String::with_capacity(body.len().min(1024));
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                text.push(' ');
            }
            _ if in_tag => {}
            c if c.is_control() || c.is_whitespace() => text.push(' '),
            c => text.push(c),
        }
    }
    let folded = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out: String = folded.chars().take(EXCERPT).collect();
    if folded.chars().count() > EXCERPT {
        out.push('…');
    }
    if out.is_empty() {
        "(nothing readable)".into()
    } else {
        format!("{out:?}")
    }
}

/// Percent-encodes a path segment.
fn encode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harbor_error_bodies_are_read_and_others_excerpted() {
        let (code, msg) =
            describe_error_body(r#"{"errors":[{"code":"CONFLICT","message":"exists"}]}"#);
        assert_eq!(code.as_deref(), Some("CONFLICT"));
        assert_eq!(msg, "exists");
        let (code, msg) = describe_error_body(
            "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>",
        );
        assert!(code.is_none());
        assert!(msg.contains("502 Bad Gateway"), "{msg}");
        assert!(!msg.contains('<'), "{msg}");
        let (_, msg) = describe_error_body(&"x".repeat(10_000));
        assert!(msg.len() < 200, "{}", msg.len());
    }

    #[test]
    fn registry_host_comes_from_the_external_url() {
        let info = SystemInfo {
            external_url: Some("https://harbor.example.com".into()),
            ..Default::default()
        };
        assert_eq!(info.registry_host().as_deref(), Some("harbor.example.com"));
        let info = SystemInfo {
            external_url: Some("http://127.0.0.1:8080/".into()),
            ..Default::default()
        };
        assert_eq!(info.registry_host().as_deref(), Some("127.0.0.1:8080"));
    }

    #[test]
    fn backoff_stays_under_its_cap() {
        for attempt in 1..5 {
            let cap = BACKOFF * 2u32.pow(attempt - 1);
            assert!(backoff(attempt) <= cap.max(Duration::from_millis(10)));
        }
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("CanarySecret123");
        assert_eq!(format!("{s:?}"), "<hidden>");
    }
}

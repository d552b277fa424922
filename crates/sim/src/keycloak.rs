//! A simulated Keycloak: the admin REST API and the OpenID discovery document.
//!
//! The doctor asks Keycloak who a user is now (their `id`, which is the `sub`
//! Harbor stores) to tell a stale OIDC link from a healthy one, and reads the
//! realm's token lifespans to explain docker-login failures. This server
//! answers those requests the way Keycloak does: a password-grant admin token
//! from the master realm, bearer-protected `/admin/realms/...` endpoints with
//! Keycloak's paging (`first`, `max` defaulting to 100) and filters, and the
//! same error bodies. `redeploy` reproduces the incident at the heart of the
//! OIDC conflict: every user of a realm gets a new id.
//!
//! Every request is recorded so tests can assert how the doctor reads Keycloak
//! (in pages, once per run).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::tls::{self, ServerHandle, TestPki};

/// Keycloak's default page size for user listings when `max` is not given.
const DEFAULT_MAX_RESULTS: usize = 100;

/// A realm's session and token lifespans, in seconds, as Keycloak's realm
/// representation names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RealmLifespans {
    pub access_token_lifespan: u64,
    pub sso_session_idle_timeout: u64,
    pub sso_session_max_lifespan: u64,
    pub offline_session_idle_timeout: u64,
}

impl RealmLifespans {
    /// What Otomi configures for its `otomi` realm (FACTS.md): 60 s access
    /// tokens, 30 min SSO idle; the rest are Keycloak's defaults.
    pub fn otomi() -> Self {
        Self {
            access_token_lifespan: 60,
            sso_session_idle_timeout: 1800,
            sso_session_max_lifespan: 36000,
            offline_session_idle_timeout: 2_592_000,
        }
    }
}

impl Default for RealmLifespans {
    /// Keycloak's defaults for a new realm.
    fn default() -> Self {
        Self {
            access_token_lifespan: 300,
            sso_session_idle_timeout: 1800,
            sso_session_max_lifespan: 36000,
            offline_session_idle_timeout: 2_592_000,
        }
    }
}

/// One request as the simulator received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeycloakRequest {
    pub method: String,
    pub path: String,
    /// The raw query string, when there was one.
    pub query: Option<String>,
}

#[derive(Debug, Clone)]
struct User {
    id: String,
    username: String,
    email: Option<String>,
    /// Whether the user proved they own `email`: Keycloak's `emailVerified`.
    email_verified: bool,
    created_ms: i64,
}

impl User {
    fn representation(&self) -> Value {
        let mut rep = json!({
            "id": self.id,
            "createdTimestamp": self.created_ms,
            "username": self.username,
            "enabled": true,
            "totp": false,
            "emailVerified": self.email_verified,
            "disableableCredentialTypes": [],
            "requiredActions": [],
            "notBefore": 0,
            "access": {
                "manageGroupMembership": true, "view": true, "mapRoles": true,
                "impersonate": false, "manage": true
            }
        });
        if let Some(email) = &self.email {
            rep["email"] = json!(email);
        }
        rep
    }
}

#[derive(Debug, Clone)]
struct Realm {
    id: String,
    lifespans: RealmLifespans,
    /// Keyed by username: Keycloak keeps usernames unique and lower-case.
    users: BTreeMap<String, User>,
}

impl Realm {
    fn new(lifespans: RealmLifespans) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            lifespans,
            users: BTreeMap::new(),
        }
    }
}

struct SimState {
    /// `http` or `https`, for the issuer URL.
    scheme: &'static str,
    admin_user: String,
    admin_password: String,
    realms: BTreeMap<String, Realm>,
    /// Issued admin access tokens and when each expires.
    tokens: HashMap<String, Instant>,
    requests: Vec<KeycloakRequest>,
    /// A broken Keycloak (or proxy) that always answers the first page.
    ignore_first: bool,
    /// Where the token endpoint redirects to, when set (a hostile or
    /// misconfigured front).
    token_redirect: Option<String>,
}

type Shared = Arc<Mutex<SimState>>;

/// A running simulated Keycloak. Dropping it does not stop the server;
/// `shutdown` does (the process ending does too).
pub struct KeycloakSim {
    state: Shared,
    server: ServerHandle,
    pki: Option<TestPki>,
}

impl KeycloakSim {
    /// Starts Keycloak over plain HTTP with a master realm whose admin is
    /// `admin_user`/`admin_password`.
    pub async fn start(admin_user: &str, admin_password: &str) -> Result<Self> {
        Self::start_with_tls(admin_user, admin_password, None).await
    }

    /// Starts Keycloak over HTTPS with a certificate from `pki` (its CA is
    /// then `ca_pem`), or plain HTTP when `pki` is `None`.
    pub async fn start_with_tls(
        admin_user: &str,
        admin_password: &str,
        pki: Option<TestPki>,
    ) -> Result<Self> {
        let mut master = Realm::new(RealmLifespans {
            // Keycloak's master realm issues one-minute admin tokens.
            access_token_lifespan: 60,
            ..RealmLifespans::default()
        });
        let admin = User {
            id: uuid::Uuid::new_v4().to_string(),
            username: admin_user.to_lowercase(),
            email: None,
            email_verified: false,
            created_ms: chrono::Utc::now().timestamp_millis(),
        };
        master.users.insert(admin.username.clone(), admin);
        let mut realms = BTreeMap::new();
        realms.insert("master".to_string(), master);
        let state = Arc::new(Mutex::new(SimState {
            scheme: if pki.is_some() { "https" } else { "http" },
            admin_user: admin_user.to_string(),
            admin_password: admin_password.to_string(),
            realms,
            tokens: HashMap::new(),
            requests: Vec::new(),
            ignore_first: false,
            token_redirect: None,
        }));
        let server = tls::serve(router(state.clone()), pki.as_ref()).await?;
        Ok(Self { state, server, pki })
    }

    /// The base URL, e.g. `http://127.0.0.1:41234`, without a trailing slash.
    pub fn url(&self) -> String {
        let scheme = if self.pki.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.server.addr)
    }

    /// The issuer Keycloak announces for `realm`, as Harbor stores it in
    /// `oidc_user.subiss` after the sub.
    pub fn issuer(&self, realm: &str) -> String {
        format!("{}/realms/{realm}", self.url())
    }

    /// The CA certificate (PEM) clients must trust, when serving HTTPS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.pki.as_ref().map(|p| p.ca_pem.as_str())
    }

    /// Creates `name` with the given lifespans, or changes the lifespans of
    /// an existing realm (keeping its users).
    pub fn add_realm(&self, name: &str, lifespans: RealmLifespans) {
        let mut st = self.state.lock();
        st.realms
            .entry(name.to_string())
            .and_modify(|r| r.lifespans = lifespans)
            .or_insert_with(|| Realm::new(lifespans));
    }

    /// Adds (or replaces) a user with a known id, the `sub` Harbor will see;
    /// an email given here counts as verified.
    /// Panics when the realm does not exist: that is a mistake in the test.
    pub fn add_user(&self, realm: &str, username: &str, email: Option<&str>, id: &str) {
        self.add_user_verified(realm, username, email, email.is_some(), id)
    }

    /// [`KeycloakSim::add_user`] with `emailVerified` said explicitly: a
    /// user who set an address in the account console has not verified it.
    pub fn add_user_verified(
        &self,
        realm: &str,
        username: &str,
        email: Option<&str>,
        verified: bool,
        id: &str,
    ) {
        let mut st = self.state.lock();
        let realm = st
            .realms
            .get_mut(realm)
            .unwrap_or_else(|| panic!("KeycloakSim::add_user: realm {realm} was never added"));
        let user = User {
            id: id.to_string(),
            username: username.to_lowercase(),
            email: email.map(str::to_lowercase),
            email_verified: verified && email.is_some(),
            created_ms: chrono::Utc::now().timestamp_millis(),
        };
        realm.users.insert(user.username.clone(), user);
    }

    /// Makes the user list ignore `first`: every page is the first one.
    pub fn ignore_paging(&self, on: bool) {
        self.state.lock().ignore_first = on;
    }

    /// Makes the token endpoint answer 307 to `base` (same path), or stop.
    pub fn redirect_token_to(&self, base: Option<String>) {
        self.state.lock().token_redirect = base;
    }

    /// Simulates Keycloak being redeployed without its database: every user
    /// of `realm` is re-created with a new random id, so Harbor's stored
    /// sub+issuer no longer matches.
    pub fn redeploy(&self, realm: &str) {
        let mut st = self.state.lock();
        if let Some(realm) = st.realms.get_mut(realm) {
            for user in realm.users.values_mut() {
                user.id = uuid::Uuid::new_v4().to_string();
            }
        }
    }

    /// The current id (sub) of a user.
    pub fn user_id(&self, realm: &str, username: &str) -> Option<String> {
        let st = self.state.lock();
        st.realms
            .get(realm)?
            .users
            .get(&username.to_lowercase())
            .map(|u| u.id.clone())
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<KeycloakRequest> {
        self.state.lock().requests.clone()
    }

    /// Forgets the recorded requests, e.g. between the set-up and the part of
    /// a test that counts requests.
    pub fn clear_requests(&self) {
        self.state.lock().requests.clear();
    }

    pub fn shutdown(&self) {
        self.server.shutdown();
    }
}

fn router(state: Shared) -> Router {
    Router::new()
        .route("/realms/{realm}/protocol/openid-connect/token", post(token))
        .route(
            "/realms/{realm}/.well-known/openid-configuration",
            get(openid_configuration),
        )
        .route("/admin/realms/{realm}", get(realm_representation))
        .route("/admin/realms/{realm}/users", get(list_users))
        .route("/admin/realms/{realm}/users/count", get(count_users))
        .route("/admin/realms/{realm}/users/{id}", get(get_user))
        .layer(middleware::from_fn_with_state(state.clone(), record))
        .with_state(state)
}

async fn record(State(state): State<Shared>, req: Request, next: Next) -> Response {
    state.lock().requests.push(KeycloakRequest {
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        query: req.uri().query().map(str::to_string),
    });
    next.run(req).await
}

fn error(status: StatusCode, error: &str, description: Option<&str>) -> Response {
    let mut body = json!({ "error": error });
    if let Some(d) = description {
        body["error_description"] = json!(d);
    }
    (status, Json(body)).into_response()
}

fn realm_not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Realm not found.", None)
}

/// Checks the bearer token: Keycloak answers 401 for a missing, unknown or
/// expired token on every admin endpoint.
fn authorized(state: &Shared, headers: &HeaderMap) -> bool {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    let valid = token.is_some_and(|t| {
        let mut st = state.lock();
        match st.tokens.get(t) {
            Some(expires) if *expires > Instant::now() => true,
            Some(_) => {
                st.tokens.remove(t);
                false
            }
            None => false,
        }
    });
    valid
}

fn unauthorized() -> Response {
    error(StatusCode::UNAUTHORIZED, "HTTP 401 Unauthorized", None)
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

async fn token(
    State(state): State<Shared>,
    Path(realm): Path<String>,
    Form(form): Form<TokenForm>,
) -> Response {
    let mut st = state.lock();
    if let Some(base) = &st.token_redirect {
        let location = format!("{base}/realms/{realm}/protocol/openid-connect/token");
        return (
            StatusCode::TEMPORARY_REDIRECT,
            [(axum::http::header::LOCATION, location)],
        )
            .into_response();
    }
    let Some(master) = st.realms.get(&realm) else {
        return error(StatusCode::NOT_FOUND, "Realm does not exist", None);
    };
    if realm != "master" {
        // Only the admin CLI login against master is simulated; a realm's own
        // users log in through Harbor's browser flow, which the doctor never does.
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            Some("Invalid client or Invalid client credentials"),
        );
    }
    if form.grant_type.as_deref() != Some("password") {
        return error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            Some("Unsupported grant_type"),
        );
    }
    if form.client_id.as_deref() != Some("admin-cli") {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            Some("Invalid client or Invalid client credentials"),
        );
    }
    let lifespan = master.lifespans.access_token_lifespan;
    let ok = form
        .username
        .as_deref()
        .is_some_and(|u| u.eq_ignore_ascii_case(&st.admin_user))
        && form.password.as_deref() == Some(st.admin_password.as_str());
    if !ok {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_grant",
            Some("Invalid user credentials"),
        );
    }
    let access_token = random_token();
    st.tokens.insert(
        access_token.clone(),
        Instant::now() + Duration::from_secs(lifespan),
    );
    Json(json!({
        "access_token": access_token,
        "expires_in": lifespan,
        "refresh_expires_in": 1800,
        "refresh_token": random_token(),
        "token_type": "Bearer",
        "not-before-policy": 0,
        "session_state": uuid::Uuid::new_v4().to_string(),
        "scope": "profile email"
    }))
    .into_response()
}

fn random_token() -> String {
    use rand::Rng;
    let bytes: [u8; 32] = rand::rng().random();
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The scheme and authority the client used, so the issuer matches the URL
/// it called (as Keycloak does with its default hostname settings).
fn base_url(headers: &HeaderMap, scheme: &str) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("{scheme}://{host}")
}

async fn openid_configuration(
    State(state): State<Shared>,
    Path(realm): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !state.lock().realms.contains_key(&realm) {
        return error(StatusCode::NOT_FOUND, "Realm does not exist", None);
    }
    let scheme = state.lock().scheme;
    let issuer = format!("{}/realms/{realm}", base_url(&headers, scheme));
    let oidc = format!("{issuer}/protocol/openid-connect");
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{oidc}/auth"),
        "token_endpoint": format!("{oidc}/token"),
        "introspection_endpoint": format!("{oidc}/token/introspect"),
        "userinfo_endpoint": format!("{oidc}/userinfo"),
        "end_session_endpoint": format!("{oidc}/logout"),
        "jwks_uri": format!("{oidc}/certs"),
        "grant_types_supported": ["authorization_code", "implicit", "refresh_token", "password", "client_credentials"],
        "response_types_supported": ["code", "none", "id_token", "token", "id_token token", "code id_token", "code token", "code id_token token"],
        "subject_types_supported": ["public", "pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "offline_access", "profile", "email", "roles", "web-origins"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "name", "preferred_username", "email", "email_verified", "groups"]
    }))
    .into_response()
}

async fn realm_representation(
    State(state): State<Shared>,
    Path(realm): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    let st = state.lock();
    let Some(r) = st.realms.get(&realm) else {
        return realm_not_found();
    };
    Json(json!({
        "id": r.id,
        "realm": realm,
        "enabled": true,
        "accessTokenLifespan": r.lifespans.access_token_lifespan,
        "accessTokenLifespanForImplicitFlow": 900,
        "ssoSessionIdleTimeout": r.lifespans.sso_session_idle_timeout,
        "ssoSessionMaxLifespan": r.lifespans.sso_session_max_lifespan,
        "offlineSessionIdleTimeout": r.lifespans.offline_session_idle_timeout,
        "offlineSessionMaxLifespanEnabled": false,
        "offlineSessionMaxLifespan": 5_184_000,
        "sslRequired": "external",
        "registrationAllowed": false
    }))
    .into_response()
}

#[derive(Deserialize, Default)]
struct UserQuery {
    first: Option<usize>,
    max: Option<usize>,
    username: Option<String>,
    email: Option<String>,
    search: Option<String>,
    exact: Option<bool>,
}

impl UserQuery {
    /// Keycloak's filter semantics: `username`/`email` are case-insensitive
    /// substring matches unless `exact=true`; `search` matches any of
    /// username, email (and names, which this simulator does not keep).
    fn matches(&self, user: &User) -> bool {
        let exact = self.exact.unwrap_or(false);
        let field = |wanted: &Option<String>, value: Option<&str>| match wanted {
            None => true,
            Some(w) => {
                let w = w.to_lowercase();
                match value {
                    None => false,
                    Some(v) if exact => v == w,
                    Some(v) => v.contains(&w),
                }
            }
        };
        let search_ok = match &self.search {
            None => true,
            Some(s) => {
                // `*` is Keycloak's wildcard; a plain term is a substring match.
                let s = s.trim_matches('*').to_lowercase();
                s.is_empty()
                    || user.username.contains(&s)
                    || user.email.as_deref().is_some_and(|e| e.contains(&s))
            }
        };
        field(&self.username, Some(&user.username))
            && field(&self.email, user.email.as_deref())
            && search_ok
    }
}

async fn list_users(
    State(state): State<Shared>,
    Path(realm): Path<String>,
    Query(q): Query<UserQuery>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    let st = state.lock();
    let Some(r) = st.realms.get(&realm) else {
        return realm_not_found();
    };
    let first = if st.ignore_first {
        0
    } else {
        q.first.unwrap_or(0)
    };
    let max = q.max.unwrap_or(DEFAULT_MAX_RESULTS);
    let users: Vec<Value> = r
        .users
        .values()
        .filter(|u| q.matches(u))
        .skip(first)
        .take(max)
        .map(User::representation)
        .collect();
    Json(users).into_response()
}

async fn count_users(
    State(state): State<Shared>,
    Path(realm): Path<String>,
    Query(q): Query<UserQuery>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    let st = state.lock();
    let Some(r) = st.realms.get(&realm) else {
        return realm_not_found();
    };
    Json(r.users.values().filter(|u| q.matches(u)).count()).into_response()
}

async fn get_user(
    State(state): State<Shared>,
    Path((realm, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    let st = state.lock();
    let Some(r) = st.realms.get(&realm) else {
        return realm_not_found();
    };
    match r.users.values().find(|u| u.id == id) {
        Some(u) => Json(u.representation()).into_response(),
        None => error(StatusCode::NOT_FOUND, "User not found", None),
    }
}

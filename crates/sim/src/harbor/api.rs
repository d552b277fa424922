//! Harbor's REST API under `/api/v2.0`, for the endpoints the doctor uses,
//! following Harbor's API description (`swagger.yaml`): status codes,
//! Location headers, empty 201 bodies, `{"errors":[{code,message}]}` bodies,
//! `X-Total-Count` and `Link` on lists, and Harbor's quirks (fuzzy `name`
//! filters, robot names shown with the prefix but filtered without it).

// Helpers return the finished error response as their `Err`, so handlers can
// answer with it directly; its size does not matter on a test server.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::auth::{authenticate, Principal};
use super::model::{
    config_items, generate_secret, is_valid_name, is_valid_robot_secret, ConfigType, Robot,
    RobotPermission,
};
use super::Sim;

pub(super) type AppState = Arc<Sim>;
pub(super) type Params = Query<Vec<(String, String)>>;

/// Harbor's largest page.
const MAX_PAGE_SIZE: i64 = 100;
/// Harbor's page size when none is asked for.
const DEFAULT_PAGE_SIZE: i64 = 10;

pub(crate) fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = json!({"errors": [{"code": code, "message": message.into()}]});
    (status, Json(body)).into_response()
}

pub(super) fn unauthorized() -> Response {
    error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "unauthorized")
}

pub(super) fn forbidden() -> Response {
    error(StatusCode::FORBIDDEN, "FORBIDDEN", "forbidden")
}

pub(super) fn bad_request(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
}

pub(super) fn not_found(message: impl Into<String>) -> Response {
    error(StatusCode::NOT_FOUND, "NOT_FOUND", message)
}

pub(super) fn conflict(message: impl Into<String>) -> Response {
    error(StatusCode::CONFLICT, "CONFLICT", message)
}

/// Harbor's admin-only rule: 401 for callers who are not signed in (or
/// whose credentials were refused), 403 for anyone but the admin. It
/// authenticates, so a handler takes it (or [`AdminBody`]) instead of
/// calling `authenticate`: a second call would count a failed login twice
/// and sleep twice. Place it after `Path`, whose rejection has always come
/// before authentication.
pub(super) struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, sim: &AppState) -> Result<Self, Response> {
        match authenticate(sim, &parts.headers, false).await {
            Principal::Admin => Ok(Admin),
            Principal::Anonymous | Principal::Rejected => Err(unauthorized()),
            _ => Err(forbidden()),
        }
    }
}

/// The body of an admin-only request, with [`Admin`]'s check made after
/// the body is buffered: a body axum refuses (413, too large) has always
/// been answered before authentication, and `Admin` beside a body extractor
/// would authenticate first, since axum runs every parts extractor before
/// the body's.
pub(super) struct AdminBody(pub(super) Bytes);

impl FromRequest<AppState> for AdminBody {
    type Rejection = Response;

    async fn from_request(req: Request, sim: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let buffered = Request::from_parts(parts.clone(), body);
        let bytes = Bytes::from_request(buffered, sim)
            .await
            .map_err(IntoResponse::into_response)?;
        Admin::from_request_parts(&mut parts, sim).await?;
        Ok(Self(bytes))
    }
}

pub(super) fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

pub(super) fn created(location: String) -> Response {
    let mut resp = StatusCode::CREATED.into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

pub(super) fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| bad_request(format!("invalid request body: {e}")))
}

pub(super) fn is_resource_name(headers: &HeaderMap) -> bool {
    headers
        .get("x-is-resource-name")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

pub(super) struct Page {
    pub(super) number: i64,
    pub(super) size: i64,
}

/// The query and its valid `page` and `page_size`, or Harbor's 400 or 422.
/// It answers before the handler does, so place it after any extractor
/// whose answer must come first ([`Admin`]).
pub(super) struct Paged {
    pub(super) params: Vec<(String, String)>,
    pub(super) page: Page,
}

impl FromRequestParts<AppState> for Paged {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, sim: &AppState) -> Result<Self, Response> {
        // A list of pairs takes any query string, so reading it after
        // authentication, not before as `Query` in a handler would, changes
        // no answer.
        let Query(params): Params = Query::from_request_parts(parts, sim)
            .await
            .map_err(IntoResponse::into_response)?;
        let page = page(&params)?;
        Ok(Self { params, page })
    }
}

pub(super) fn page(params: &[(String, String)]) -> Result<Page, Response> {
    let number = match param(params, "page") {
        None => 1,
        Some(p) => p
            .parse::<i64>()
            .map_err(|_| bad_request(format!("page must be an integer, got {p:?}")))?,
    };
    let size = match param(params, "page_size") {
        None => DEFAULT_PAGE_SIZE,
        Some(p) => p
            .parse::<i64>()
            .map_err(|_| bad_request(format!("page_size must be an integer, got {p:?}")))?,
    };
    if size > MAX_PAGE_SIZE {
        return Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "UNPROCESSABLE_ENTITY",
            format!("page_size in query should be less than or equal to {MAX_PAGE_SIZE}"),
        ));
    }
    Ok(Page {
        number: number.max(1),
        size: if size <= 0 { DEFAULT_PAGE_SIZE } else { size },
    })
}

/// One page of `items` with Harbor's `X-Total-Count` and `Link` headers.
pub(super) fn paged(
    uri: &Uri,
    params: &[(String, String)],
    items: Vec<Value>,
    page: Page,
) -> Response {
    let total = items.len() as i64;
    paged_counted(uri, params, items, page, total)
}

/// One page of `items`, with `X-Total-Count` and `Link` computed from
/// `total`: Harbor counts some lists without their filters (members).
pub(super) fn paged_counted(
    uri: &Uri,
    params: &[(String, String)],
    items: Vec<Value>,
    page: Page,
    total: i64,
) -> Response {
    let len = items.len() as i64;
    let start = ((page.number - 1) * page.size).min(len) as usize;
    let end = (page.number * page.size).min(len) as usize;
    let body: Vec<Value> = items[start..end].to_vec();

    let link_to = |n: i64| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        let mut has_page = false;
        for (k, v) in params {
            if k == "page" {
                q.append_pair(k, &n.to_string());
                has_page = true;
            } else {
                q.append_pair(k, v);
            }
        }
        if !has_page {
            q.append_pair("page", &n.to_string());
        }
        format!("<{}?{}>", uri.path(), q.finish())
    };
    let mut links = Vec::new();
    if page.number > 1 && (page.number - 1) * page.size < total {
        links.push(format!("{}; rel=\"prev\"", link_to(page.number - 1)));
    }
    if page.number * page.size < total {
        links.push(format!("{}; rel=\"next\"", link_to(page.number + 1)));
    }

    let mut resp = Json(body).into_response();
    let h = resp.headers_mut();
    h.insert("x-total-count", HeaderValue::from(total));
    if !links.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&links.join(" , ")) {
            h.insert(header::LINK, v);
        }
    }
    resp
}

/// A parsed `q=k=v,k2=~v2` query: exact or fuzzy values per key.
pub(super) struct Filter {
    terms: Vec<(String, String, bool)>,
}

impl Filter {
    pub(super) fn parse(q: Option<&str>, allowed: &[&str]) -> Result<Self, Response> {
        Self::parse_keys(q, Some(allowed))
    }

    /// Like `parse`, but keys this endpoint does not filter on are ignored,
    /// as Harbor's ORM ignores them for projects.
    pub(super) fn parse_lenient(q: Option<&str>) -> Result<Self, Response> {
        Self::parse_keys(q, None)
    }

    fn parse_keys(q: Option<&str>, allowed: Option<&[&str]>) -> Result<Self, Response> {
        let mut terms = Vec::new();
        for part in q.unwrap_or_default().split(',').filter(|p| !p.is_empty()) {
            let Some((k, v)) = part.split_once('=') else {
                return Err(bad_request(format!("invalid query item {part:?}")));
            };
            if let Some(allowed) = allowed.filter(|a| !a.contains(&k)) {
                return Err(bad_request(format!(
                    "unsupported query key {k:?}; this endpoint filters on {allowed:?}"
                )));
            }
            let (v, fuzzy) = match v.strip_prefix('~') {
                Some(rest) => (rest, true),
                None => (v, false),
            };
            let v = v.trim_matches(|c| c == '"' || c == '\'');
            terms.push((k.to_string(), v.to_string(), fuzzy));
        }
        Ok(Self { terms })
    }

    pub(super) fn get(&self, key: &str) -> Option<(&str, bool)> {
        self.terms
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, v, f)| (v.as_str(), *f))
    }

    pub(super) fn matches(&self, key: &str, value: &str) -> bool {
        match self.get(key) {
            None => true,
            Some((wanted, true)) => value.contains(wanted),
            Some((wanted, false)) => value == wanted,
        }
    }
}

// ---------------------------------------------------------------------------
// ping, health, systeminfo

pub async fn ping() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "Pong",
    )
        .into_response()
}

pub async fn health(State(sim): State<AppState>) -> Response {
    let st = sim.state.lock();
    let components: Vec<Value> = st
        .health
        .iter()
        .map(|(name, err)| match err {
            None => json!({"name": name, "status": "healthy"}),
            Some(e) => json!({"name": name, "status": "unhealthy", "error": e}),
        })
        .collect();
    let healthy = st.health.values().all(Option::is_none);
    Json(json!({
        "status": if healthy { "healthy" } else { "unhealthy" },
        "components": components
    }))
    .into_response()
}

pub async fn systeminfo(State(sim): State<AppState>, headers: HeaderMap) -> Response {
    let who = authenticate(&sim, &headers, false).await;
    if who == Principal::Rejected {
        return unauthorized();
    }
    let st = sim.state.lock();
    let mut info = json!({
        "auth_mode": st.config_str("auth_mode"),
        "primary_auth_mode": st.config.get("primary_auth_mode").cloned().unwrap_or(json!(false)),
        "self_registration": st.config.get("self_registration").cloned().unwrap_or(json!(false)),
        "current_time": super::model::api_time(Utc::now()),
    });
    if st.is_oidc() {
        info["oidc_provider_name"] = json!(st.config_str("oidc_name"));
    }
    if who.is_authenticated() {
        let registry_host = st
            .external_url
            .split_once("://")
            .map(|(_, rest)| rest.trim_end_matches('/').to_string())
            .unwrap_or_else(|| st.external_url.clone());
        info["harbor_version"] = json!(st.harbor_version);
        info["external_url"] = json!(st.external_url);
        info["registry_url"] = json!(registry_host);
        info["project_creation_restriction"] = json!(st.config_str("project_creation_restriction"));
        info["has_ca_root"] = json!(false);
        info["read_only"] = st.config.get("read_only").cloned().unwrap_or(json!(false));
        info["notification_enable"] = st
            .config
            .get("notification_enable")
            .cloned()
            .unwrap_or(json!(true));
        info["registry_storage_provider_name"] = json!("filesystem");
    }
    Json(info).into_response()
}

// ---------------------------------------------------------------------------
// robots

pub async fn list_robots(
    State(sim): State<AppState>,
    uri: Uri,
    _: Admin,
    Paged { params, page }: Paged,
) -> Response {
    let filter = match Filter::parse(param(&params, "q"), &["name", "Level", "ProjectID"]) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let level = filter.get("Level").map(|(l, _)| l).unwrap_or("system");
    if level != "system" && level != "project" {
        return bad_request("bad request error level input");
    }
    let project_id = match (level, filter.get("ProjectID")) {
        ("system", _) => 0,
        (_, None) => return bad_request("must with project ID when to query project robots"),
        (_, Some((pid, _))) => match pid.parse::<i64>() {
            Ok(pid) => pid,
            Err(_) => return bad_request("Project ID must be int type."),
        },
    };
    let st = sim.state.lock();
    let prefix = st.robot_prefix();
    // `name` filters the stored name, which has no prefix: asking for
    // `name=robot$x` finds nothing, exactly as in Harbor.
    let items: Vec<Value> = st
        .robots
        .values()
        .filter(|r| r.project_id == project_id)
        .filter(|r| filter.matches("name", &r.name))
        .map(|r| r.to_api(&prefix))
        .collect();
    paged(&uri, &params, items, page)
}

#[derive(Deserialize)]
struct RobotReq {
    name: Option<String>,
    description: Option<String>,
    level: Option<String>,
    duration: Option<i64>,
    disable: Option<bool>,
    permissions: Option<Vec<RobotPermission>>,
    secret: Option<String>,
}

/// Harbor's checks on a robot's duration, level and permissions.
fn validate_robot(
    st: &super::model::HarborState,
    req: &RobotReq,
) -> Result<(String, i64, Vec<RobotPermission>), Response> {
    let duration = req.duration.unwrap_or(0);
    if duration < -1 || duration >= i64::from(i32::MAX) {
        return Err(bad_request(format!(
            "bad request error duration input: {duration}"
        )));
    }
    let level = req.level.clone().unwrap_or_default();
    if level != "system" && level != "project" {
        return Err(bad_request(format!(
            "bad request error level input: {level}"
        )));
    }
    let permissions = req.permissions.clone().unwrap_or_default();
    if permissions.is_empty() {
        return Err(bad_request("bad request empty permission"));
    }
    if permissions.iter().any(|p| p.access.is_empty()) {
        return Err(bad_request("bad request empty access"));
    }
    if level == "project" && permissions.len() > 1 {
        return Err(bad_request("bad request permission"));
    }
    for perm in &permissions {
        match perm.kind.as_str() {
            "project" => {
                if perm.namespace != "*" && st.project_by_name(&perm.namespace).is_none() {
                    return Err(not_found(format!("project {} not found", perm.namespace)));
                }
            }
            "system" if level == "system" => {}
            other => {
                return Err(bad_request(format!(
                    "bad request permission kind {other:?} for a {level}-level robot"
                )))
            }
        }
    }
    Ok((level, duration, permissions))
}

pub async fn create_robot(
    State(sim): State<AppState>,
    uri: Uri,
    AdminBody(body): AdminBody,
) -> Response {
    let req: RobotReq = match parse_body(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let name = req.name.clone().unwrap_or_default();
    if !is_valid_name(&name) {
        return bad_request("robot name is not in lower case or contains illegal characters");
    }
    let mut st = sim.state.lock();
    let (level, duration, permissions) = match validate_robot(&st, &req) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (stored_name, project_id) = if level == "project" {
        let project = &permissions[0].namespace;
        let Some(pid) = st.project_id_by_name(project) else {
            return not_found(format!("project {project} not found"));
        };
        (format!("{project}+{name}"), pid)
    } else {
        (name, 0)
    };
    if st
        .robots
        .values()
        .any(|r| r.name == stored_name && r.project_id == project_id)
    {
        return conflict(format!(
            "robot account {project_id}:{stored_name} already exists"
        ));
    }
    let now = Utc::now();
    let (duration, expires_at) = st.expiry_for(duration, now);
    let id = st.next_id();
    // A secret chosen by the caller is kept (Harbor 2.x checks it with the
    // same rule as PATCH); without one Harbor makes one.
    let secret = match req.secret.as_deref().filter(|s| !s.is_empty()) {
        Some(s) if is_valid_robot_secret(s) => s.to_string(),
        Some(_) => return bad_request(
            "the secret must be 8 to 128 characters long with at least 1 uppercase letter, 1 lowercase letter and 1 number",
        ),
        None => generate_secret(),
    };
    let robot = Robot {
        id,
        name: stored_name,
        description: req.description.clone().unwrap_or_default(),
        level,
        project_id,
        duration,
        disabled: req.disable.unwrap_or(false),
        expires_at,
        permissions,
        secret: secret.clone(),
        creation_time: now,
        update_time: now,
    };
    let body = json!({
        "id": id,
        "name": format!("{}{}", st.robot_prefix(), robot.name),
        "secret": secret,
        "creation_time": super::model::api_time(now),
        "expires_at": expires_at,
    });
    st.robots.insert(id, robot);
    let location = format!("{}/{id}", uri.path().trim_end_matches('/'));
    let mut resp = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

fn robot_id(raw: &str) -> Result<i64, Response> {
    raw.parse::<i64>()
        .map_err(|_| bad_request(format!("robot_id must be an integer, got {raw:?}")))
}

pub async fn get_robot(
    State(sim): State<AppState>,
    Path(raw_id): Path<String>,
    _: Admin,
) -> Response {
    let id = match robot_id(&raw_id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let st = sim.state.lock();
    match st.robots.get(&id) {
        Some(r) => Json(r.to_api(&st.robot_prefix())).into_response(),
        None => not_found(format!("robot {id} not found")),
    }
}

pub async fn update_robot(
    State(sim): State<AppState>,
    Path(raw_id): Path<String>,
    AdminBody(body): AdminBody,
) -> Response {
    let id = match robot_id(&raw_id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let req: RobotReq = match parse_body(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let mut st = sim.state.lock();
    let prefix = st.robot_prefix();
    let Some(current) = st.robots.get(&id).cloned() else {
        return not_found(format!("robot {id} not found"));
    };
    let (level, duration, permissions) = match validate_robot(&st, &req) {
        Ok(v) => v,
        Err(r) => return r,
    };
    // Harbor compares with the name as it shows it, prefix included.
    if level != current.level || req.name.as_deref() != Some(&format!("{prefix}{}", current.name)) {
        return bad_request("cannot update the level or name of robot");
    }
    let (duration, expires_at) = if duration == current.duration {
        (current.duration, current.expires_at)
    } else {
        st.expiry_for(duration, current.creation_time)
    };
    let robot = st.robots.get_mut(&id).expect("looked up above");
    robot.duration = duration;
    robot.expires_at = expires_at;
    robot.description = req.description.clone().unwrap_or_default();
    robot.disabled = req.disable.unwrap_or(false);
    robot.permissions = permissions;
    robot.update_time = Utc::now();
    StatusCode::OK.into_response()
}

#[derive(Deserialize)]
struct RobotSec {
    secret: Option<String>,
}

pub async fn refresh_robot_secret(
    State(sim): State<AppState>,
    Path(raw_id): Path<String>,
    AdminBody(body): AdminBody,
) -> Response {
    let id = match robot_id(&raw_id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let req: RobotSec = match parse_body(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let mut st = sim.state.lock();
    let Some(robot) = st.robots.get_mut(&id) else {
        return not_found(format!("robot {id} not found"));
    };
    let wanted = req.secret.unwrap_or_default();
    let answer = if wanted.is_empty() {
        let generated = generate_secret();
        robot.secret = generated.clone();
        json!({"secret": generated})
    } else {
        if !is_valid_robot_secret(&wanted) {
            return bad_request(
                "the secret must be 8 to 128 characters long with at least 1 uppercase letter, 1 lowercase letter and 1 number",
            );
        }
        robot.secret = wanted;
        // Harbor does not echo a secret the caller chose.
        json!({})
    };
    robot.update_time = Utc::now();
    Json(answer).into_response()
}

pub async fn delete_robot(
    State(sim): State<AppState>,
    Path(raw_id): Path<String>,
    _: Admin,
) -> Response {
    let id = match robot_id(&raw_id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    match sim.state.lock().robots.remove(&id) {
        Some(_) => StatusCode::OK.into_response(),
        None => not_found(format!("robot {id} not found")),
    }
}

// ---------------------------------------------------------------------------
// configurations

pub async fn get_configurations(State(sim): State<AppState>, _: Admin) -> Response {
    let st = sim.state.lock();
    let mut out = Map::new();
    for (key, _, readable, _) in config_items() {
        if !readable {
            continue;
        }
        if let Some(v) = st.config.get(key) {
            out.insert(key.to_string(), json!({"value": v, "editable": true}));
        }
    }
    Json(Value::Object(out)).into_response()
}

pub async fn put_configurations(
    State(sim): State<AppState>,
    AdminBody(body): AdminBody,
) -> Response {
    let values: Map<String, Value> = match parse_body(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let items = config_items();
    for (key, value) in &values {
        let Some((_, ty, _, _)) = items.iter().find(|(k, _, _, _)| k == key) else {
            return bad_request(format!(
                "invalid config, item not defined in metadatalist, {key}"
            ));
        };
        let ok = match ty {
            ConfigType::String => value.is_string(),
            ConfigType::Bool => value.is_boolean(),
            ConfigType::Integer => value.is_i64(),
        };
        if !ok {
            return bad_request(format!("the value of {key} has the wrong type: {value}"));
        }
    }
    if let Some(mode) = values.get("auth_mode").and_then(Value::as_str) {
        if !["db_auth", "ldap_auth", "uaa_auth", "http_auth", "oidc_auth"].contains(&mode) {
            return bad_request(format!("invalid auth_mode {mode:?}"));
        }
    }
    let mut st = sim.state.lock();
    for (key, value) in values {
        st.config.insert(key, value);
    }
    StatusCode::OK.into_response()
}

pub async fn api_not_found() -> Response {
    not_found("the requested API does not exist")
}

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
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::auth::{authenticate, Principal};
use super::model::{
    config_items, generate_secret, is_valid_name, is_valid_robot_secret, role_name, ConfigType,
    Member, Robot, RobotPermission, ADMIN_USER_ID,
};
use super::Sim;

type AppState = Arc<Sim>;
type Params = Query<Vec<(String, String)>>;

/// Harbor's largest page.
const MAX_PAGE_SIZE: i64 = 100;
/// Harbor's page size when none is asked for.
const DEFAULT_PAGE_SIZE: i64 = 10;

pub(crate) fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = json!({"errors": [{"code": code, "message": message.into()}]});
    (status, Json(body)).into_response()
}

fn unauthorized() -> Response {
    error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "unauthorized")
}

fn forbidden() -> Response {
    error(StatusCode::FORBIDDEN, "FORBIDDEN", "forbidden")
}

fn bad_request(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
}

fn not_found(message: impl Into<String>) -> Response {
    error(StatusCode::NOT_FOUND, "NOT_FOUND", message)
}

fn conflict(message: impl Into<String>) -> Response {
    error(StatusCode::CONFLICT, "CONFLICT", message)
}

/// 401 for callers who are not signed in (or whose credentials were
/// refused), 403 for anyone but the admin.
fn deny_unless_admin(who: &Principal) -> Option<Response> {
    match who {
        Principal::Admin => None,
        Principal::Anonymous | Principal::Rejected => Some(unauthorized()),
        _ => Some(forbidden()),
    }
}

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn created(location: String) -> Response {
    let mut resp = StatusCode::CREATED.into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| bad_request(format!("invalid request body: {e}")))
}

fn is_resource_name(headers: &HeaderMap) -> bool {
    headers
        .get("x-is-resource-name")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

struct Page {
    number: i64,
    size: i64,
}

fn page(params: &[(String, String)]) -> Result<Page, Response> {
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
fn paged(uri: &Uri, params: &[(String, String)], items: Vec<Value>, page: Page) -> Response {
    let total = items.len() as i64;
    let start = ((page.number - 1) * page.size).min(total) as usize;
    let end = (page.number * page.size).min(total) as usize;
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
struct Filter {
    terms: Vec<(String, String, bool)>,
}

impl Filter {
    fn parse(q: Option<&str>, allowed: &[&str]) -> Result<Self, Response> {
        let mut terms = Vec::new();
        for part in q.unwrap_or_default().split(',').filter(|p| !p.is_empty()) {
            let Some((k, v)) = part.split_once('=') else {
                return Err(bad_request(format!("invalid query item {part:?}")));
            };
            if !allowed.contains(&k) {
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

    fn get(&self, key: &str) -> Option<(&str, bool)> {
        self.terms
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, v, f)| (v.as_str(), *f))
    }

    fn matches(&self, key: &str, value: &str) -> bool {
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
// projects

/// Whether `who` may see a project at all.
fn can_see_project(st: &super::model::HarborState, who: &Principal, project_id: i64) -> bool {
    let Some(p) = st.projects.get(&project_id) else {
        return false;
    };
    match who {
        Principal::Admin => true,
        Principal::Robot(id) => {
            p.public
                || st.robots.get(id).is_some_and(|r| {
                    r.permissions
                        .iter()
                        .any(|perm| perm.namespace == p.name || perm.namespace == "*")
                })
        }
        _ => p.public,
    }
}

pub async fn list_projects(
    State(sim): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Query(params): Params,
) -> Response {
    let who = authenticate(&sim, &headers, false).await;
    if who == Principal::Rejected {
        return unauthorized();
    }
    let page = match page(&params) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let filter = match Filter::parse(param(&params, "q"), &["name", "public", "project_id"]) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let name = param(&params, "name");
    let public = match param(&params, "public") {
        None => None,
        Some("true" | "1") => Some(true),
        Some("false" | "0") => Some(false),
        Some(other) => return bad_request(format!("public must be a boolean, got {other:?}")),
    };
    let st = sim.state.lock();
    let role = (who == Principal::Admin).then_some(1);
    let items: Vec<Value> = st
        .projects
        .values()
        .filter(|p| can_see_project(&st, &who, p.id))
        // Harbor's `name` parameter is a substring match.
        .filter(|p| name.is_none_or(|n| p.name.contains(n)))
        .filter(|p| filter.matches("name", &p.name))
        .filter(|p| filter.matches("project_id", &p.id.to_string()))
        .filter(|p| filter.matches("public", if p.public { "true" } else { "false" }))
        .filter(|p| public.is_none_or(|want| p.public == want))
        .map(|p| p.to_api(role))
        .collect();
    paged(&uri, &params, items, page)
}

pub async fn head_project(
    State(sim): State<AppState>,
    headers: HeaderMap,
    Query(params): Params,
) -> Response {
    let who = authenticate(&sim, &headers, false).await;
    if who == Principal::Rejected {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Some(name) = param(&params, "project_name") else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    if sim.state.lock().project_by_name(name).is_some() {
        StatusCode::OK.into_response()
    } else {
        // The body goes unsent on HEAD, but the headers say what it is.
        not_found(format!("project {name} not found"))
    }
}

#[derive(Deserialize)]
struct ProjectReq {
    project_name: Option<String>,
    public: Option<bool>,
    metadata: Option<Map<String, Value>>,
}

pub async fn create_project(
    State(sim): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let who = authenticate(&sim, &headers, false).await;
    match who {
        Principal::Admin => {}
        Principal::Anonymous | Principal::Rejected => return unauthorized(),
        _ => return forbidden(),
    }
    let req: ProjectReq = match parse_body(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let Some(name) = req.project_name.filter(|n| !n.is_empty()) else {
        return bad_request("project_name is required");
    };
    if name.len() > 255 || !is_valid_name(&name) {
        return bad_request(format!(
            "project name {name:?} is not in lower case or contains illegal characters"
        ));
    }
    let public = match req.metadata.as_ref().and_then(|m| m.get("public")) {
        None => req.public.unwrap_or(false),
        Some(Value::String(s)) if s == "true" => true,
        Some(Value::String(s)) if s == "false" => false,
        Some(other) => {
            return bad_request(format!(
                "metadata.public must be \"true\" or \"false\", got {other}"
            ))
        }
    };
    let mut st = sim.state.lock();
    if st.project_by_name(&name).is_some() {
        return conflict(format!("The project named {name} already exists"));
    }
    let id = st.create_project(&name, public);
    let name_in_location = headers
        .get("x-resource-name-in-location")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let tail = if name_in_location {
        name
    } else {
        id.to_string()
    };
    created(format!("{}/{tail}", uri.path().trim_end_matches('/')))
}

pub async fn get_project(
    State(sim): State<AppState>,
    headers: HeaderMap,
    Path(name_or_id): Path<String>,
) -> Response {
    let who = authenticate(&sim, &headers, false).await;
    if who == Principal::Rejected {
        return unauthorized();
    }
    let st = sim.state.lock();
    let Some(id) = st.resolve_project(&name_or_id, is_resource_name(&headers)) else {
        return not_found(format!("project {name_or_id} not found"));
    };
    if !can_see_project(&st, &who, id) {
        return if who.is_authenticated() {
            forbidden()
        } else {
            unauthorized()
        };
    }
    let role = (who == Principal::Admin).then_some(1);
    Json(st.projects[&id].to_api(role)).into_response()
}

// ---------------------------------------------------------------------------
// project members

pub async fn list_members(
    State(sim): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(name_or_id): Path<String>,
    Query(params): Params,
) -> Response {
    let who = authenticate(&sim, &headers, false).await;
    if let Some(denied) = deny_unless_admin(&who) {
        return denied;
    }
    let page = match page(&params) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let st = sim.state.lock();
    let Some(id) = st.resolve_project(&name_or_id, is_resource_name(&headers)) else {
        return not_found(format!("project {name_or_id} not found"));
    };
    let project = &st.projects[&id];
    let entityname = param(&params, "entityname");
    let items = project
        .members
        .iter()
        .filter(|m| entityname.is_none_or(|n| m.entity_name.contains(n)))
        .map(|m| project.member_to_api(m))
        .collect();
    paged(&uri, &params, items, page)
}

#[derive(Deserialize)]
struct MemberUser {
    user_id: Option<i64>,
    username: Option<String>,
}

#[derive(Deserialize)]
struct MemberGroup {
    id: Option<i64>,
    group_name: Option<String>,
    group_type: Option<i64>,
    ldap_group_dn: Option<String>,
}

#[derive(Deserialize)]
struct MemberReq {
    role_id: Option<i64>,
    member_user: Option<MemberUser>,
    member_group: Option<MemberGroup>,
}

pub async fn create_member(
    State(sim): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(name_or_id): Path<String>,
    body: Bytes,
) -> Response {
    let who = authenticate(&sim, &headers, false).await;
    if let Some(denied) = deny_unless_admin(&who) {
        return denied;
    }
    let req: MemberReq = match parse_body(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let role_id = req.role_id.unwrap_or(0);
    if role_name(role_id).is_none() {
        return bad_request(format!("role id {role_id} is not valid"));
    }
    let mut st = sim.state.lock();
    let Some(project_id) = st.resolve_project(&name_or_id, is_resource_name(&headers)) else {
        return not_found(format!("project {name_or_id} not found"));
    };
    let (entity_type, entity_id, entity_name) = match (req.member_user, req.member_group) {
        (Some(user), None) => {
            let found = match (user.user_id, user.username.as_deref()) {
                (Some(id), _) if id > 0 => {
                    if id == ADMIN_USER_ID {
                        Some((id, "admin".to_string()))
                    } else {
                        st.oidc_users
                            .values()
                            .find(|u| u.user_id == id)
                            .map(|u| (id, u.username.clone()))
                    }
                }
                (_, Some(name)) => st.user_id(name).map(|id| (id, name.to_string())),
                _ => return bad_request("member_user needs a user_id or a username"),
            };
            let Some((id, name)) = found else {
                return not_found("user not found");
            };
            ("u", id, name)
        }
        (None, Some(group)) => {
            if let Some(id) = group.id.filter(|id| *id > 0) {
                let Some(((name, _), _)) = st.groups.iter().find(|(_, gid)| **gid == id) else {
                    return not_found(format!("user group {id} not found"));
                };
                ("g", id, name.clone())
            } else {
                let group_type = group.group_type.unwrap_or(0);
                if !(1..=3).contains(&group_type) {
                    return bad_request(format!(
                        "group_type {group_type} is not valid: 1 LDAP, 2 HTTP, 3 OIDC"
                    ));
                }
                let name = group
                    .group_name
                    .filter(|n| !n.is_empty())
                    .or(group.ldap_group_dn.filter(|n| !n.is_empty()));
                let Some(name) = name else {
                    return bad_request("member_group needs an id or a group_name");
                };
                let id = st.group_id(&name, group_type);
                ("g", id, name)
            }
        }
        _ => return bad_request("give exactly one of member_user and member_group"),
    };
    let member_id = st.next_id();
    let project = st.projects.get_mut(&project_id).expect("resolved above");
    if project
        .members
        .iter()
        .any(|m| m.entity_type == entity_type && m.entity_id == entity_id)
    {
        return conflict(format!(
            "The project member specified already exist, entity id:{entity_id}, project id:{project_id}"
        ));
    }
    project.members.push(Member {
        id: member_id,
        entity_type: entity_type.into(),
        entity_id,
        entity_name,
        role_id,
    });
    created(format!("{}/{member_id}", uri.path().trim_end_matches('/')))
}

// ---------------------------------------------------------------------------
// robots

pub async fn list_robots(
    State(sim): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Query(params): Params,
) -> Response {
    let who = authenticate(&sim, &headers, false).await;
    if let Some(denied) = deny_unless_admin(&who) {
        return denied;
    }
    let page = match page(&params) {
        Ok(p) => p,
        Err(r) => return r,
    };
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
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let who = authenticate(&sim, &headers, false).await;
    if let Some(denied) = deny_unless_admin(&who) {
        return denied;
    }
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
    headers: HeaderMap,
    Path(raw_id): Path<String>,
) -> Response {
    let who = authenticate(&sim, &headers, false).await;
    if let Some(denied) = deny_unless_admin(&who) {
        return denied;
    }
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
    headers: HeaderMap,
    Path(raw_id): Path<String>,
    body: Bytes,
) -> Response {
    let who = authenticate(&sim, &headers, false).await;
    if let Some(denied) = deny_unless_admin(&who) {
        return denied;
    }
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
    headers: HeaderMap,
    Path(raw_id): Path<String>,
    body: Bytes,
) -> Response {
    let who = authenticate(&sim, &headers, false).await;
    if let Some(denied) = deny_unless_admin(&who) {
        return denied;
    }
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
    headers: HeaderMap,
    Path(raw_id): Path<String>,
) -> Response {
    let who = authenticate(&sim, &headers, false).await;
    if let Some(denied) = deny_unless_admin(&who) {
        return denied;
    }
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

pub async fn get_configurations(State(sim): State<AppState>, headers: HeaderMap) -> Response {
    let who = authenticate(&sim, &headers, false).await;
    if let Some(denied) = deny_unless_admin(&who) {
        return denied;
    }
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
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let who = authenticate(&sim, &headers, false).await;
    if let Some(denied) = deny_unless_admin(&who) {
        return denied;
    }
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

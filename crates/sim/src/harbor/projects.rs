//! Projects, their members and the user groups members name: the `project`,
//! `member` and `usergroup` operations of Harbor's API description, answered
//! the way Harbor 2.11's handlers and controllers answer them (the module
//! doc of `harbor` lists what Harbor does there that its description does
//! not say).

// Helpers return the finished error response as their `Err`, so handlers can
// answer with it directly; its size does not matter on a test server.
#![allow(clippy::result_large_err)]

use std::cmp::Ordering;
use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::{
    bad_request, conflict, created, error, forbidden, is_resource_name, not_found, page, paged,
    paged_counted, param, parse_body, unauthorized, Admin, AdminBody, AppState, Filter, Paged,
    Params,
};
use super::auth::{authenticate, Principal};
use super::model::{
    is_valid_name, role_name, GroupRefusal, HarborState, Member, Project, ADMIN_USER_ID,
};

/// Harbor's limit on a project name's length.
const MAX_PROJECT_NAME: usize = 255;

/// 422, the way Harbor wraps a request that breaks its API description
/// (go-openapi's validation list).
fn invalid(detail: impl std::fmt::Display) -> Response {
    error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "UNPROCESSABLE_ENTITY",
        format!("validation failure list:\n{detail}"),
    )
}

/// 500 with the body Harbor sends for any error it has no status for; it
/// logs the cause and tells the client nothing more.
fn internal() -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "UNKNOWN",
        "internal server error",
    )
}

/// An integer path parameter (`mid`, `group_id`), or the 422 Harbor gives
/// when it is not one.
fn path_int(name: &str, raw: &str) -> Result<i64, Response> {
    raw.parse::<i64>()
        .map_err(|_| invalid(format!("{name} in path must be of type int64: {raw:?}")))
}

/// The `{project_name_or_id}` path parameter as Harbor reads it: an id when
/// it parses as an integer and `X-Is-Resource-Name` is not `true`.
enum ProjectRef<'a> {
    Id(i64),
    Name(&'a str),
}

fn project_ref<'a>(raw: &'a str, headers: &HeaderMap) -> ProjectRef<'a> {
    match raw.parse::<i64>() {
        Ok(id) if !is_resource_name(headers) => ProjectRef::Id(id),
        _ => ProjectRef::Name(raw),
    }
}

/// The project a path names, or Harbor's 404 (400 for a name with a space).
fn resolve(st: &HarborState, raw: &str, headers: &HeaderMap) -> Result<i64, Response> {
    match project_ref(raw, headers) {
        ProjectRef::Id(id) => st
            .projects
            .contains_key(&id)
            .then_some(id)
            .ok_or_else(|| not_found(format!("project {id} not found"))),
        ProjectRef::Name(name) if name.contains(' ') => {
            Err(bad_request(format!("invalid project name: '{name}'")))
        }
        ProjectRef::Name(name) => st
            .project_id_by_name(name)
            .ok_or_else(|| not_found(format!("project {name} not found"))),
    }
}

/// How Harbor names the project in a Location header: as the path gave it,
/// an id printed as a number.
fn project_in_location(raw: &str, headers: &HeaderMap) -> String {
    match project_ref(raw, headers) {
        ProjectRef::Id(id) => id.to_string(),
        ProjectRef::Name(name) => name.to_string(),
    }
}

/// Harbor's `isTrue` for a boolean query value.
fn truthy(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// projects

/// Whether `who` may see a project at all.
fn can_see_project(st: &HarborState, who: &Principal, project_id: i64) -> bool {
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

/// The owner's username; every project the simulator holds is admin's.
fn owner_name(p: &Project) -> &'static str {
    if p.owner_id == ADMIN_USER_ID {
        "admin"
    } else {
        ""
    }
}

/// The `q` terms Harbor's project query understands; it ignores others.
fn q_matches(filter: &Filter, p: &Project) -> bool {
    filter.matches("name", &p.name)
        && filter.matches("project_id", &p.id.to_string())
        && filter.matches("owner_id", &p.owner_id.to_string())
        && filter.matches("owner", owner_name(p))
        && filter.matches("registry_id", "0")
        && filter.matches("deleted", "false")
        && filter
            .get("public")
            .is_none_or(|(v, _)| truthy(v).unwrap_or(false) == p.public)
}

/// Orders projects by Harbor's `sort` parameter (`name,-creation_time`);
/// by name when it gives no field Harbor can sort projects on.
fn sort_projects(projects: &mut [&Project], sort: Option<&str>) {
    let keys: Vec<(&str, bool)> = sort
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| match k.strip_prefix('-') {
            Some(field) => (field, true),
            None => (k, false),
        })
        .filter(|(field, _)| {
            matches!(
                *field,
                "name" | "project_id" | "owner_id" | "creation_time" | "update_time"
            )
        })
        .collect();
    let keys = if keys.is_empty() {
        vec![("name", false)]
    } else {
        keys
    };
    projects.sort_by(|a, b| {
        for (field, descending) in &keys {
            let order = match *field {
                "name" => a.name.cmp(&b.name),
                "project_id" => a.id.cmp(&b.id),
                "owner_id" => a.owner_id.cmp(&b.owner_id),
                "creation_time" => a.creation_time.cmp(&b.creation_time),
                _ => a.update_time.cmp(&b.update_time),
            };
            let order = if *descending { order.reverse() } else { order };
            if order != Ordering::Equal {
                return order;
            }
        }
        Ordering::Equal
    });
}

/// An empty list as Harbor answers it: `X-Total-Count: 0`, no `Link`.
fn empty_list() -> Response {
    let mut resp = Json(Vec::<Value>::new()).into_response();
    resp.headers_mut()
        .insert("x-total-count", HeaderValue::from(0));
    resp
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
    let filter = match Filter::parse_lenient(param(&params, "q")) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let name = param(&params, "name")
        .filter(|n| !n.is_empty())
        .map(str::to_lowercase);
    let owner = param(&params, "owner").filter(|o| !o.is_empty());
    let public = match param(&params, "public") {
        None => None,
        Some(v) => match truthy(v) {
            Some(b) => Some(b),
            None => {
                return invalid(format!("public in query must be of type boolean: {v:?}"));
            }
        },
    };
    if !who.is_authenticated() && public == Some(false) {
        // Anonymous callers asking for private projects get none at once.
        return empty_list();
    }
    let st = sim.state.lock();
    let mut found: Vec<&Project> = st
        .projects
        .values()
        .filter(|p| can_see_project(&st, &who, p.id))
        // Harbor's `name` parameter is a case-insensitive substring match.
        .filter(|p| name.as_ref().is_none_or(|n| p.name.contains(n.as_str())))
        .filter(|p| owner.is_none_or(|o| owner_name(p) == o))
        .filter(|p| public.is_none_or(|want| p.public == want))
        .filter(|p| q_matches(&filter, p))
        .collect();
    if found.is_empty() {
        return empty_list();
    }
    sort_projects(&mut found, param(&params, "sort"));
    let role = (who == Principal::Admin).then_some(1);
    let items = found.iter().map(|p| p.to_api(role)).collect();
    paged(&uri, &params, items, page)
}

pub async fn head_project(
    State(sim): State<AppState>,
    headers: HeaderMap,
    Query(params): Params,
) -> Response {
    let who = authenticate(&sim, &headers, false).await;
    if !who.is_authenticated() {
        // The body goes unsent on HEAD, but the headers say what it is.
        return unauthorized();
    }
    let Some(name) = param(&params, "project_name") else {
        return invalid("project_name in query is required");
    };
    if name.contains(' ') {
        return bad_request(format!("invalid project name: '{name}'"));
    }
    if sim.state.lock().project_by_name(name).is_some() {
        StatusCode::OK.into_response()
    } else {
        not_found(format!("project {name} not found"))
    }
}

/// Metadata values are strings; `null` leaves a value as it is.
type MetadataReq = BTreeMap<String, Option<String>>;

#[derive(Deserialize)]
struct ProjectReq {
    project_name: Option<String>,
    public: Option<bool>,
    metadata: Option<MetadataReq>,
    cve_allowlist: Option<CveAllowlistReq>,
}

#[derive(Deserialize)]
struct CveAllowlistReq {
    project_id: Option<i64>,
}

pub async fn create_project(
    State(sim): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    AdminBody(body): AdminBody,
) -> Response {
    if body.is_empty() {
        return invalid("project in body is required");
    }
    let req: ProjectReq = match parse_body(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let mut metadata = req.metadata.unwrap_or_default();
    // The deprecated `public` is honoured only when metadata says nothing.
    let public = match metadata.remove("public").flatten() {
        None => req.public.unwrap_or(false),
        Some(s) if s == "true" => true,
        Some(s) if s == "false" => false,
        Some(other) => {
            return bad_request(format!(
                "metadata.public should only be 'true' or 'false', but got: '{other}'"
            ))
        }
    };
    if metadata
        .get("retention_id")
        .is_some_and(|r| r.as_deref().is_some_and(|r| !r.is_empty()))
    {
        return bad_request(
            "the retention_id in the request's payload when creating a project should be omitted, alternatively passing an empty string",
        );
    }
    let name = req.project_name.unwrap_or_default();
    if name.is_empty() || name.len() > MAX_PROJECT_NAME {
        return bad_request(format!(
            "Project name {name} is illegal in length. (greater than {MAX_PROJECT_NAME} or less than 1)"
        ));
    }
    if !is_valid_name(&name) {
        return bad_request("project name is not in lower case or contains illegal characters");
    }
    let mut st = sim.state.lock();
    if st.project_by_name(&name).is_some() {
        return conflict(format!("The project named {name} already exists"));
    }
    let id = st.create_project(&name, public);
    let project = st.projects.get_mut(&id).expect("just created");
    for (k, v) in metadata {
        if let (Some(v), false) = (v, k == "retention_id") {
            project.metadata.insert(k, v);
        }
    }
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
    let id = match resolve(&st, &name_or_id, &headers) {
        Ok(id) => id,
        // Harbor checks access first: only the admin learns from a 404.
        Err(r) if who == Principal::Admin || r.status() != StatusCode::NOT_FOUND => return r,
        Err(_) if who.is_authenticated() => return forbidden(),
        Err(_) => return unauthorized(),
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

/// `PUT /projects/{p}`: Harbor keeps the name (a `project_name` in the body
/// is ignored) and merges the metadata and CVE allowlist it is given.
pub async fn update_project(
    State(sim): State<AppState>,
    headers: HeaderMap,
    Path(name_or_id): Path<String>,
    AdminBody(body): AdminBody,
) -> Response {
    if body.is_empty() {
        return invalid("project in body is required");
    }
    let req: ProjectReq = match parse_body(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let mut st = sim.state.lock();
    let id = match resolve(&st, &name_or_id, &headers) {
        Ok(id) => id,
        Err(r) => return r,
    };
    if let Some(given) = req
        .cve_allowlist
        .and_then(|c| c.project_id)
        .filter(|p| *p != 0)
    {
        if given != id {
            return bad_request(format!(
                "project_id in cve_allowlist must be {id} but it's {given}"
            ));
        }
    }
    let metadata = req.metadata.unwrap_or_default();
    if metadata.get("retention_id").is_some_and(Option::is_some) {
        // The simulator keeps no retention policies, so no retention_id is
        // the one the project has.
        return bad_request(
            "the retention_id in the request's payload when updating a project should be omitted, alternatively passing the one that has already been associated to this project",
        );
    }
    let project = st.projects.get_mut(&id).expect("resolved above");
    for (k, v) in metadata {
        let Some(v) = v else { continue };
        if k == "public" {
            // Harbor stores the string; anything but "true" is private.
            project.public = v == "true";
        } else {
            project.metadata.insert(k, v);
        }
    }
    project.update_time = Utc::now();
    StatusCode::OK.into_response()
}

/// Why Harbor refuses to delete a project, if it does.
fn undeletable(p: &Project) -> Option<&'static str> {
    (!p.repositories.is_empty()).then_some("the project contains repositories, can not be deleted")
}

/// `DELETE /projects/{p}`: refused with 412 while the project holds
/// repositories; otherwise its members and project-level robots go with it.
/// System-level robots keep their permissions on it, as in Harbor.
pub async fn delete_project(
    State(sim): State<AppState>,
    headers: HeaderMap,
    Path(name_or_id): Path<String>,
    _: Admin,
) -> Response {
    let mut st = sim.state.lock();
    let id = match resolve(&st, &name_or_id, &headers) {
        Ok(id) => id,
        Err(r) => return r,
    };
    if let Some(why) = undeletable(&st.projects[&id]) {
        return error(StatusCode::PRECONDITION_FAILED, "PRECONDITION", why);
    }
    st.projects.remove(&id);
    st.robots
        .retain(|_, r| !(r.level == "project" && r.project_id == id));
    StatusCode::OK.into_response()
}

pub async fn project_deletable(
    State(sim): State<AppState>,
    headers: HeaderMap,
    Path(name_or_id): Path<String>,
    _: Admin,
) -> Response {
    let st = sim.state.lock();
    let id = match resolve(&st, &name_or_id, &headers) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let body = match undeletable(&st.projects[&id]) {
        None => json!({"deletable": true}),
        Some(why) => json!({"deletable": false, "message": why}),
    };
    Json(body).into_response()
}

// ---------------------------------------------------------------------------
// project members

/// Members as Harbor's member query returns them: it joins the role table,
/// so a member whose role id names no role (a PUT can store one) is left
/// out of lists and lookups, though still counted.
fn visible(m: &Member) -> bool {
    role_name(m.role_id).is_some()
}

pub async fn list_members(
    State(sim): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(name_or_id): Path<String>,
    _: Admin,
    Paged { params, page }: Paged,
) -> Response {
    let st = sim.state.lock();
    let id = match resolve(&st, &name_or_id, &headers) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let project = &st.projects[&id];
    // Harbor counts every member of the project, whatever `entityname`
    // asks for, and pages with that count.
    let total = project.members.len() as i64;
    if total == 0 {
        return empty_list();
    }
    // `entityname` is an exact match here (fuzzy only in Harbor's search).
    let entityname = param(&params, "entityname").filter(|n| !n.is_empty());
    let items = project
        .members
        .iter()
        .filter(|m| visible(m))
        .filter(|m| entityname.is_none_or(|n| m.entity_name == n))
        .map(|m| project.member_to_api(m))
        .collect();
    paged_counted(&uri, &params, items, page, total)
}

pub async fn get_member(
    State(sim): State<AppState>,
    headers: HeaderMap,
    Path((name_or_id, raw_mid)): Path<(String, String)>,
    _: Admin,
) -> Response {
    let mid = match path_int("mid", &raw_mid) {
        Ok(m) => m,
        Err(r) => return r,
    };
    if mid == 0 {
        return bad_request("the member id can not be empty!");
    }
    let st = sim.state.lock();
    let id = match resolve(&st, &name_or_id, &headers) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let project = &st.projects[&id];
    match project.members.iter().find(|m| m.id == mid && visible(m)) {
        Some(m) => Json(project.member_to_api(m)).into_response(),
        None => not_found(format!(
            "the project member is not found, project id {id}, member id {mid}"
        )),
    }
}

#[derive(Deserialize, Default)]
struct MemberUser {
    user_id: Option<i64>,
    username: Option<String>,
}

#[derive(Deserialize, Default)]
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

fn group_refused(refusal: GroupRefusal) -> Response {
    match refusal {
        GroupRefusal::NotFound(message) => not_found(message),
        GroupRefusal::Internal => internal(),
    }
}

/// `POST /projects/{p}/members`, in the order Harbor's member controller
/// works: the member is found (a user by id or name, a group by id, LDAP DN
/// or name and type, onboarding the group when the authenticator can),
/// then a duplicate is refused, and only then is the role checked.
pub async fn create_member(
    State(sim): State<AppState>,
    headers: HeaderMap,
    Path(name_or_id): Path<String>,
    AdminBody(body): AdminBody,
) -> Response {
    if body.is_empty() {
        return bad_request("the project member should provide");
    }
    let req: MemberReq = match parse_body(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let user = req.member_user.unwrap_or_default();
    let group = req.member_group.unwrap_or_default();
    let user_id = user.user_id.unwrap_or(0);
    let group_id = group.id.unwrap_or(0);
    let username = user.username.unwrap_or_default();
    let group_name = group.group_name.unwrap_or_default();
    let ldap_dn = group.ldap_group_dn.unwrap_or_default();
    if user_id <= 0
        && username.is_empty()
        && group_id <= 0
        && group_name.is_empty()
        && ldap_dn.is_empty()
    {
        return bad_request("at least one of member_user or member_group must be provided");
    }
    let mut st = sim.state.lock();
    let project_id = match resolve(&st, &name_or_id, &headers) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let (entity_type, entity_id, entity_name) = if user_id > 0 {
        let Some(name) = st.username(user_id) else {
            return bad_request(format!("User {user_id} not found"));
        };
        ("u", user_id, name)
    } else if group_id > 0 {
        let Some(g) = st.groups.get(&group_id) else {
            return bad_request(format!("Group {group_id} not found"));
        };
        ("g", group_id, g.name.clone())
    } else if !username.is_empty() {
        let Some(id) = st.user_id(&username) else {
            // OIDC cannot search users; the database authenticator finds none.
            return not_found(if st.is_oidc() {
                format!("{username} not found")
            } else {
                format!("user {username} is not found")
            });
        };
        ("u", id, username)
    } else if !ldap_dn.is_empty() {
        match st.member_ldap_group(&ldap_dn) {
            Ok(id) => ("g", id, st.groups[&id].name.clone()),
            Err(refusal) => return group_refused(refusal),
        }
    } else {
        match st.member_group(&group_name, group.group_type.unwrap_or(0)) {
            Ok(id) => ("g", id, st.groups[&id].name.clone()),
            Err(refusal) => return group_refused(refusal),
        }
    };
    let member_id = st.next_id();
    let project = st.projects.get_mut(&project_id).expect("resolved above");
    if project
        .members
        .iter()
        .any(|m| m.entity_type == entity_type && m.entity_id == entity_id)
    {
        return conflict("The project member specified already exist");
    }
    let role_id = req.role_id.unwrap_or(0);
    if role_name(role_id).is_none() {
        return bad_request("Failed to update project member, role is not in 1,2,3");
    }
    project.members.push(Member {
        id: member_id,
        entity_type: entity_type.into(),
        entity_id,
        entity_name,
        role_id,
    });
    created(format!(
        "/api/v2.0/projects/{}/members/{member_id}",
        project_in_location(&name_or_id, &headers)
    ))
}

#[derive(Deserialize)]
struct RoleReq {
    role_id: Option<i64>,
}

/// `PUT /projects/{p}/members/{mid}`: Harbor updates the row with an SQL
/// UPDATE and answers 200 whether or not the member exists, and stores any
/// role id it is given.
pub async fn update_member(
    State(sim): State<AppState>,
    headers: HeaderMap,
    Path((name_or_id, raw_mid)): Path<(String, String)>,
    AdminBody(body): AdminBody,
) -> Response {
    let mid = match path_int("mid", &raw_mid) {
        Ok(m) => m,
        Err(r) => return r,
    };
    if body.is_empty() {
        return bad_request("role can not be empty!");
    }
    let req: RoleReq = match parse_body(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if mid == 0 {
        return bad_request("member id can not be empty!");
    }
    let mut st = sim.state.lock();
    let id = match resolve(&st, &name_or_id, &headers) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let project = st.projects.get_mut(&id).expect("resolved above");
    if let Some(m) = project.members.iter_mut().find(|m| m.id == mid) {
        m.role_id = req.role_id.unwrap_or(0);
    }
    StatusCode::OK.into_response()
}

/// `DELETE /projects/{p}/members/{mid}`: 200 whether or not the member
/// existed, as Harbor's SQL DELETE answers.
pub async fn delete_member(
    State(sim): State<AppState>,
    headers: HeaderMap,
    Path((name_or_id, raw_mid)): Path<(String, String)>,
    _: Admin,
) -> Response {
    let mid = match path_int("mid", &raw_mid) {
        Ok(m) => m,
        Err(r) => return r,
    };
    if mid == 0 {
        return bad_request("the project member id is required.");
    }
    let mut st = sim.state.lock();
    let id = match resolve(&st, &name_or_id, &headers) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let project = st.projects.get_mut(&id).expect("resolved above");
    project.members.retain(|m| m.id != mid);
    StatusCode::OK.into_response()
}

// ---------------------------------------------------------------------------
// user groups

/// `GET /usergroups`: every group in OIDC and database mode, only LDAP or
/// only HTTP groups in those modes; `group_name` is a substring match.
pub async fn list_usergroups(
    State(sim): State<AppState>,
    uri: Uri,
    _: Admin,
    Paged { params, page }: Paged,
) -> Response {
    let st = sim.state.lock();
    let mode = st.config_str("auth_mode");
    let only_type = match mode.as_str() {
        "ldap_auth" => Some(super::model::LDAP_GROUP),
        "http_auth" => Some(super::model::HTTP_GROUP),
        _ => None,
    };
    let name = param(&params, "group_name").filter(|n| !n.is_empty());
    let dn = param(&params, "ldap_group_dn").filter(|d| !d.is_empty() && mode == "ldap_auth");
    let items: Vec<Value> = st
        .groups
        .values()
        .filter(|g| only_type.is_none_or(|t| g.group_type == t))
        .filter(|g| name.is_none_or(|n| g.name.to_lowercase().contains(&n.to_lowercase())))
        .filter(|g| dn.is_none_or(|d| g.ldap_group_dn == d))
        .map(|g| g.to_api())
        .collect();
    if items.is_empty() {
        return empty_list();
    }
    paged(&uri, &params, items, page)
}

/// `GET /usergroups/{id}`: Harbor leaves the id out of this answer.
pub async fn get_usergroup(
    State(sim): State<AppState>,
    Path(raw_id): Path<String>,
    _: Admin,
) -> Response {
    let id = match path_int("group_id", &raw_id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    if id <= 0 {
        return bad_request("the group id should be provided");
    }
    let st = sim.state.lock();
    match st.groups.get(&id) {
        Some(g) => {
            let mut body = g.to_api();
            if let Some(o) = body.as_object_mut() {
                o.remove("id");
            }
            Json(body).into_response()
        }
        None => not_found(format!("the user group with id {id} is not found")),
    }
}

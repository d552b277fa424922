//! The HTTP front of the simulated API server: URL routing the way the real
//! server's RequestInfo resolver reads paths, authentication, authorization,
//! injected faults, request recording, content negotiation (JSON or Table)
//! and the watch stream.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::SinkExt;
use serde_json::{json, Value};

use super::catalog::{self, ResourceType};
use super::errors::ApiError;
use super::rbac::AccessRequest;
use super::selector::{FieldSelector, LabelSelector};
use super::store::{self, DeleteOptions, ListOptions, PatchKind};
use super::{discovery, managed, openapi, portforward, protobuf, table, Inner, RecordedRequest};

pub(crate) fn router(inner: Arc<Inner>) -> Router {
    Router::new().fallback(handle).with_state(inner)
}

/// A request for a resource, resolved from its path.
#[derive(Debug, Clone)]
struct Target {
    rt: &'static ResourceType,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

enum Route {
    Version,
    Health,
    CoreVersions,
    GroupList,
    Group(String),
    GroupVersion(String, String),
    /// `kubectl auth can-i`: a SelfSubjectAccessReview, answered from the
    /// caller's rules.
    AccessReview,
    OpenApiV2,
    OpenApiV3Index,
    /// `api/v1` or `apis/<group>/<version>`.
    OpenApiV3(String),
    Resource(Target),
    NotFound,
}

fn resolve(path: &str) -> Route {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["version"] => Route::Version,
        ["healthz"] | ["livez"] | ["readyz"] => Route::Health,
        ["api"] => Route::CoreVersions,
        ["apis"] => Route::GroupList,
        ["openapi", "v2"] => Route::OpenApiV2,
        ["openapi", "v3"] => Route::OpenApiV3Index,
        ["openapi", "v3", rest @ ..] => Route::OpenApiV3(rest.join("/")),
        ["api", version, rest @ ..] => resolve_in("", version, rest),
        ["apis", "authorization.k8s.io", "v1", "selfsubjectaccessreviews"] => Route::AccessReview,
        ["apis", group] => Route::Group(group.to_string()),
        ["apis", group, version, rest @ ..] => resolve_in(group, version, rest),
        _ => Route::NotFound,
    }
}

fn resolve_in(group: &str, version: &str, rest: &[&str]) -> Route {
    let target = |rt, namespace: Option<&str>, name: Option<&&str>, sub: Option<&&str>| {
        Route::Resource(Target {
            rt,
            namespace: namespace.map(str::to_string),
            name: name.map(|s| s.to_string()),
            subresource: sub.map(|s| s.to_string()),
        })
    };
    if rest.is_empty() {
        return if discovery::resource_list(group, version).is_some() {
            Route::GroupVersion(group.to_string(), version.to_string())
        } else {
            Route::NotFound
        };
    }
    if rest[0] == "namespaces" && rest.len() >= 3 && rest.len() <= 5 {
        if let Some(rt) = catalog::by_resource(group, version, rest[2]) {
            if rt.namespaced {
                return target(rt, Some(rest[1]), rest.get(3), rest.get(4));
            }
            return Route::NotFound;
        }
    }
    match catalog::by_resource(group, version, rest[0]) {
        Some(rt) if rest.len() <= 3 => {
            // A namespace's own subresources (/namespaces/x/status) and
            // all-namespace lists (/pods) name no namespace.
            if rt.namespaced && rest.len() > 1 {
                return Route::NotFound;
            }
            target(rt, None, rest.get(1), rest.get(2))
        }
        _ => Route::NotFound,
    }
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn query_params(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn is_true(v: Option<&str>) -> bool {
    matches!(v, Some("true") | Some("1"))
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

fn verb_for(method: &Method, target: &Target, params: &[(String, String)]) -> Option<&'static str> {
    let named = target.name.is_some();
    Some(match (method.as_str(), named) {
        ("GET", false) if is_true(param(params, "watch")) => "watch",
        ("GET", false) => "list",
        ("GET", true) if is_true(param(params, "watch")) => "watch",
        ("GET", true) => "get",
        ("POST", false) => "create",
        ("POST", true) if target.subresource.as_deref() == Some("portforward") => "create",
        ("PUT", true) => "update",
        ("PATCH", true) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => return None,
    })
}

async fn handle(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let method = parts.method.clone();
    let path = parts.uri.path().to_string();
    let params = query_params(parts.uri.query());
    let route = resolve(&path);
    let mut record = RecordedRequest {
        verb: String::new(),
        also_requires: Vec::new(),
        group: String::new(),
        version: String::new(),
        resource: String::new(),
        subresource: None,
        namespace: None,
        name: None,
        method: method.to_string(),
        path: path.clone(),
        user: None,
        status: 0,
        content_type: parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    };
    if let Route::Resource(t) = &route {
        record.group = t.rt.group.to_string();
        record.version = t.rt.version.to_string();
        record.resource = t.rt.plural.to_string();
        record.subresource = t.subresource.clone();
        record.namespace = t.namespace.clone();
        record.name = t.name.clone();
        if let Some(v) = verb_for(&method, t, &params) {
            record.verb = v.to_string();
        }
    }

    let response = dispatch(&inner, route, &mut record, parts, body, &params).await;
    record.status = response.status().as_u16();
    inner.requests.lock().push(record);
    response
}

async fn dispatch(
    inner: &Arc<Inner>,
    route: Route,
    record: &mut RecordedRequest,
    mut parts: axum::http::request::Parts,
    body: Body,
    params: &[(String, String)],
) -> Response {
    let principal = match authenticate(inner, &parts.headers) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    record.user = Some(principal.user.clone());
    let target = match route {
        Route::Resource(target) => target,
        Route::AccessReview => {
            record.verb = "create".into();
            record.group = "authorization.k8s.io".into();
            record.version = "v1".into();
            record.resource = "selfsubjectaccessreviews".into();
            if parts.method != Method::POST {
                return ApiError::method_not_allowed().into_response();
            }
            return match axum::body::to_bytes(body, 1024 * 1024).await {
                Ok(body) => access_review(&principal, &parts.headers, &body),
                Err(e) => {
                    ApiError::bad_request(format!("reading the request body: {e}")).into_response()
                }
            };
        }
        other => return serve_discovery(other, &parts.headers, params),
    };
    if record.verb.is_empty() {
        return ApiError::method_not_allowed().into_response();
    }
    let verb = record.verb.clone();
    let is_portforward = target.subresource.as_deref() == Some("portforward");
    if is_portforward && verb == "get" {
        record.also_requires.push("create".into());
    }
    if let Err(e) = authorize(&principal, &target, &verb, &record.also_requires) {
        return e.into_response();
    }
    let pause = {
        let mut pauses = inner.pauses.lock();
        pauses.retain(|p| p.gate.is_catching());
        pauses
            .iter()
            .find(|p| {
                p.verb == verb
                    && p.resource == target.rt.plural
                    && p.namespace
                        .as_deref()
                        .is_none_or(|n| Some(n) == target.namespace.as_deref())
            })
            .map(|p| p.gate.clone())
    };
    if let Some(gate) = pause {
        gate.pass().await;
    }
    if let Some(e) = take_fault(inner, &target, &verb) {
        return e.into_response();
    }
    if is_portforward {
        return match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(ws) => portforward::handle(
                inner.clone(),
                ws,
                &target_ns(&target),
                target.name.as_deref().unwrap_or(""),
                params,
            ),
            Err(_) => ApiError::bad_request(
                "Upgrade request required: port forwarding needs a WebSocket (v4.channel.k8s.io) connection",
            )
            .into_response(),
        };
    }
    match axum::body::to_bytes(body, 64 * 1024 * 1024).await {
        Ok(body) => serve_resource(inner, &target, &verb, &parts.headers, params, body).await,
        Err(e) => ApiError::bad_request(format!("reading the request body: {e}")).into_response(),
    }
}

fn serve_discovery(route: Route, headers: &HeaderMap, params: &[(String, String)]) -> Response {
    match route {
        Route::OpenApiV2 => {
            if !accepts_json(headers) {
                return ApiError::not_acceptable(&["application/json"]).into_response();
            }
            let doc = openapi::v2();
            openapi_response(&doc.body, &doc.hash, None)
        }
        Route::OpenApiV3Index => json_response(StatusCode::OK, &openapi::v3_index()),
        Route::OpenApiV3(path) => match openapi::v3(&path) {
            Some(doc) => openapi_response(&doc.body, &doc.hash, param(params, "hash")),
            None => ApiError::path_not_found().into_response(),
        },
        Route::Version => json_response(StatusCode::OK, &discovery::version()),
        Route::Health => (StatusCode::OK, "ok").into_response(),
        Route::CoreVersions | Route::GroupList
            if headers
                .get_all(header::ACCEPT)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(discovery::wants_aggregated) =>
        {
            let core = matches!(route, Route::CoreVersions);
            (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, discovery::AGGREGATED),
                    (header::VARY, "Accept"),
                ],
                discovery::aggregated(core).to_string(),
            )
                .into_response()
        }
        Route::CoreVersions => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("127.0.0.1");
            json_response(StatusCode::OK, &discovery::api_versions(host))
        }
        Route::GroupList => json_response(StatusCode::OK, &discovery::api_group_list()),
        Route::Group(g) => match discovery::api_group(&g) {
            Some(v) => json_response(StatusCode::OK, &v),
            None => ApiError::path_not_found().into_response(),
        },
        Route::GroupVersion(g, v) => match discovery::resource_list(&g, &v) {
            Some(list) => json_response(StatusCode::OK, &list),
            None => ApiError::path_not_found().into_response(),
        },
        Route::NotFound | Route::Resource(_) | Route::AccessReview => {
            ApiError::path_not_found().into_response()
        }
    }
}

/// An OpenAPI document; one fetched by its current hash may be cached for
/// good, as the real server tells clients.
fn openapi_response(body: &str, hash: &str, asked_hash: Option<&str>) -> Response {
    let cache = if asked_hash == Some(hash) {
        "public, immutable"
    } else {
        "no-cache, private"
    };
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (header::CACHE_CONTROL, cache.to_string()),
            (header::ETAG, format!("\"{hash}\"")),
        ],
        body.to_string(),
    )
        .into_response()
}

fn target_ns(t: &Target) -> String {
    t.namespace.clone().unwrap_or_default()
}

fn authenticate(inner: &Inner, headers: &HeaderMap) -> Result<super::rbac::Principal, ApiError> {
    let token = bearer(headers).ok_or_else(ApiError::unauthorized)?;
    inner
        .principals
        .lock()
        .get(&token)
        .cloned()
        .ok_or_else(ApiError::unauthorized)
}

fn authorize(
    principal: &super::rbac::Principal,
    t: &Target,
    verb: &str,
    also: &[String],
) -> Result<(), ApiError> {
    // For a namespace object, RBAC's namespace is the namespace itself.
    let namespace = if t.rt.plural == "namespaces" {
        t.name.as_deref()
    } else {
        t.namespace.as_deref()
    };
    let name = if verb == "create" && t.subresource.is_none() {
        None
    } else {
        t.name.as_deref()
    };
    for v in std::iter::once(verb).chain(also.iter().map(String::as_str)) {
        let req = AccessRequest {
            verb: v,
            group: t.rt.group,
            resource: t.rt.plural,
            subresource: t.subresource.as_deref(),
            name,
            namespace,
        };
        if !principal.can(&req) {
            return Err(ApiError::forbidden(
                t.rt,
                t.subresource.as_deref(),
                name,
                &principal.user,
                v,
                namespace,
            ));
        }
    }
    Ok(())
}

/// Answers a SelfSubjectAccessReview with what the caller's rules allow.
fn access_review(
    principal: &super::rbac::Principal,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let review = match parse_body(
        body,
        headers,
        "authorization.k8s.io/v1",
        "SelfSubjectAccessReview",
    ) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let attrs = &review["spec"]["resourceAttributes"];
    let text = |k: &str| attrs[k].as_str().filter(|s| !s.is_empty());
    let allowed = if attrs.is_object() {
        principal.can(&AccessRequest {
            verb: text("verb").unwrap_or(""),
            group: text("group").unwrap_or(""),
            resource: text("resource").unwrap_or(""),
            subresource: text("subresource"),
            name: text("name"),
            namespace: text("namespace"),
        })
    } else {
        // Non-resource URLs (`can-i get /healthz`): discovery and health
        // are open to every authenticated user, as system:discovery grants.
        let path = review["spec"]["nonResourceAttributes"]["path"]
            .as_str()
            .unwrap_or("");
        [
            "/healthz", "/livez", "/readyz", "/version", "/api", "/apis", "/openapi",
        ]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")))
    };
    let mut status = json!({"allowed": allowed});
    if allowed {
        status["reason"] = json!(format!("RBAC: allowed for user {:?}", principal.user));
    }
    json_response(
        StatusCode::CREATED,
        &json!({
            "kind": "SelfSubjectAccessReview",
            "apiVersion": "authorization.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "spec": review["spec"],
            "status": status,
        }),
    )
}

fn take_fault(inner: &Inner, t: &Target, verb: &str) -> Option<ApiError> {
    let mut faults = inner.faults.lock();
    let pos = faults.iter().position(|f| {
        f.verb.as_deref().is_none_or(|v| v == verb)
            && f.resource.as_deref().is_none_or(|r| r == t.rt.plural)
            && f.name
                .as_deref()
                .is_none_or(|n| Some(n) == t.name.as_deref())
            && f.namespace
                .as_deref()
                .is_none_or(|n| Some(n) == t.namespace.as_deref())
    })?;
    let fault = &mut faults[pos];
    if fault.skip > 0 {
        fault.skip -= 1;
        return None;
    }
    let code = fault.code;
    let name = t.name.clone().unwrap_or_default();
    let mut error = match code {
        409 => ApiError::conflict(t.rt, &name),
        404 => ApiError::not_found(t.rt, &name),
        403 => ApiError::forbidden(t.rt, t.subresource.as_deref(), t.name.as_deref(), "injected", verb, t.namespace.as_deref()),
        429 => ApiError::new(429, "TooManyRequests", "the server has received too many requests and has asked us to try again later"),
        503 => ApiError::new(503, "ServiceUnavailable", "the server is currently unable to handle the request"),
        504 => ApiError::new(504, "Timeout", "the server was unable to return a response in the time allotted, but may still be processing the request"),
        _ => ApiError::new(code, "InternalError", "Internal error occurred: injected fault"),
    };
    if let Some(m) = &fault.message {
        error.message = m.clone();
    }
    fault.times = fault.times.saturating_sub(1);
    if fault.times == 0 {
        faults.remove(pos);
    }
    Some(error)
}

fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("as=Table"))
}

fn list_options(params: &[(String, String)]) -> Result<ListOptions, ApiError> {
    let limit = match param(params, "limit") {
        Some(l) => Some(
            l.parse::<usize>()
                .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
        ),
        None => None,
    };
    Ok(ListOptions {
        label_selector: param(params, "labelSelector").map(str::to_string),
        field_selector: param(params, "fieldSelector").map(str::to_string),
        limit,
        continue_token: param(params, "continue")
            .filter(|c| !c.is_empty())
            .map(str::to_string),
    })
}

/// The media types a create or update body may come in.
const BODY_TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    protobuf::CONTENT_TYPE,
];

/// The media types a PATCH body may come in.
const PATCH_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
    "application/strategic-merge-patch+json",
];

fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
}

/// Reads a create, update or DeleteOptions body in JSON, YAML or
/// Kubernetes protobuf (`api_version` and `kind` name the type a protobuf
/// envelope without a TypeMeta holds).
fn parse_body(
    body: &Bytes,
    headers: &HeaderMap,
    api_version: &str,
    kind: &str,
) -> Result<Value, ApiError> {
    let ct = content_type(headers);
    let media = ct.split(';').next().unwrap_or("").trim();
    if protobuf::is_protobuf(ct) {
        return protobuf::decode_object(body, api_version, kind).map_err(|e| {
            ApiError::bad_request(format!("the body of the request could not be decoded: {e}"))
        });
    }
    match media {
        "application/yaml" => {
            serde_yaml::from_slice(body).map_err(|e| ApiError::bad_request(e.to_string()))
        }
        "application/json" | "" => serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!(
                "the body of the request was in an unknown format: {e}"
            ))
        }),
        _ => Err(ApiError::unsupported_media_type(BODY_TYPES)),
    }
}

/// Whether the client accepts an answer in JSON, which is all this server
/// writes: real clients list JSON beside protobuf, or */*.
fn accepts_json(headers: &HeaderMap) -> bool {
    let accept: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.split(';').next().unwrap_or("").trim())
        .collect();
    accept.is_empty()
        || accept.iter().any(|t| {
            matches!(
                *t,
                "application/json" | "application/*" | "*/*" | "application/yaml" | ""
            )
        })
}

async fn serve_resource(
    inner: &Arc<Inner>,
    t: &Target,
    verb: &str,
    headers: &HeaderMap,
    params: &[(String, String)],
    body: Bytes,
) -> Response {
    if let Some(sub) = t.subresource.as_deref() {
        if sub != "status" || !t.rt.has_status {
            return ApiError::path_not_found().into_response();
        }
    }
    if !accepts_json(headers) {
        return ApiError::not_acceptable(&["application/json", "application/yaml"]).into_response();
    }
    let ns = if t.rt.plural == "namespaces" {
        String::new()
    } else {
        target_ns(t)
    };
    let name = t.name.clone().unwrap_or_default();
    let dry_run = param(params, "dryRun") == Some("All");
    let include = param(params, "includeObject")
        .unwrap_or("Metadata")
        .to_string();
    let render = |code: StatusCode, v: Value| {
        if wants_table(headers) && matches!(verb, "get" | "list") {
            json_response(code, &table::to_table(t.rt, &v, &include))
        } else {
            json_response(code, &v)
        }
    };
    let mut warnings: Vec<String> = Vec::new();
    let manager = managed::manager_of(
        param(params, "fieldManager"),
        headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
    );
    let result: Result<(StatusCode, Value), ApiError> = match verb {
        "get" => inner
            .store
            .lock()
            .get(t.rt, &ns, &name)
            .map(|v| (StatusCode::OK, v)),
        "list" => list_options(params).and_then(|opts| {
            let ns = t.namespace.as_deref();
            inner
                .store
                .lock()
                .list(t.rt, ns, &opts)
                .map(|v| (StatusCode::OK, v))
        }),
        "watch" => return watch(inner, t, params).await,
        "create" => {
            parse_body(&body, headers, &t.rt.api_version(), t.rt.kind).and_then(|mut obj| {
                warnings = check_fields(t.rt, params, &obj, false)?;
                // As the real strategies' PrepareForCreate: a client cannot set
                // the status of a kind with a status subresource.
                if t.rt.has_status && t.rt.plural != "namespaces" {
                    if let Some(o) = obj.as_object_mut() {
                        o.remove("status");
                    }
                }
                inner
                    .write(|s| s.create(t.rt, &ns, obj, dry_run, Some(&manager)))
                    .map(|v| (StatusCode::CREATED, v))
            })
        }
        "update" => parse_body(&body, headers, &t.rt.api_version(), t.rt.kind).and_then(|obj| {
            warnings = check_fields(t.rt, params, &obj, false)?;
            inner
                .write(|s| {
                    s.update(
                        t.rt,
                        &ns,
                        &name,
                        obj,
                        t.subresource.as_deref(),
                        dry_run,
                        Some(&manager),
                    )
                })
                .map(|v| (StatusCode::OK, v))
        }),
        "patch" => {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            match PatchKind::from_content_type(ct) {
                None => Err(ApiError::unsupported_media_type(PATCH_TYPES)),
                Some(kind) => (|| {
                    let patch_body: Option<Value> = match kind {
                        PatchKind::Merge | PatchKind::Strategic => {
                            serde_json::from_slice(&body).ok()
                        }
                        PatchKind::Apply => serde_yaml::from_slice(&body).ok(),
                        PatchKind::Json => None,
                    };
                    if let Some(p) = &patch_body {
                        warnings = check_fields(t.rt, params, p, true)?;
                    }
                    let field_manager = param(params, "fieldManager");
                    let force = is_true(param(params, "force"));
                    let existed = inner.store.lock().get(t.rt, &ns, &name).is_ok();
                    inner
                        .write(|s| {
                            s.patch(
                                t.rt,
                                &ns,
                                &name,
                                kind,
                                &body,
                                field_manager,
                                &manager,
                                force,
                                t.subresource.as_deref(),
                                dry_run,
                            )
                        })
                        .map(|v| {
                            let code = if existed {
                                StatusCode::OK
                            } else {
                                StatusCode::CREATED
                            };
                            (code, v)
                        })
                })(),
            }
        }
        "delete" => delete_options(params, &body, headers).and_then(|opts| {
            inner
                .write(|s| s.delete(t.rt, &ns, &name, &opts))
                .map(|v| (StatusCode::OK, v))
        }),
        "deletecollection" => delete_collection(inner, t, params, &body, headers),
        _ => Err(ApiError::method_not_allowed()),
    };
    let mut response = match result {
        Ok((code, v)) => render(code, v),
        Err(e) => e.into_response(),
    };
    for w in warnings {
        // The form of RFC 7234 warnings the real server sends (code 299).
        let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = header::HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            response.headers_mut().append(header::WARNING, v);
        }
    }
    response
}

/// Server-side field validation (`fieldValidation`): unknown fields refuse
/// the request under Strict (what kubectl sends), are warned about under
/// Warn (the default) and pass under Ignore. `patch` skips the directives
/// of a strategic merge patch.
fn check_fields(
    rt: &ResourceType,
    params: &[(String, String)],
    obj: &Value,
    patch: bool,
) -> Result<Vec<String>, ApiError> {
    let directive = param(params, "fieldValidation").unwrap_or("Warn");
    if !matches!(directive, "Strict" | "Warn" | "Ignore") {
        return Err(ApiError::bad_request(format!(
            "fieldValidation must be one of \"Ignore\", \"Warn\", or \"Strict\", got {directive:?}"
        )));
    }
    if directive == "Ignore" {
        return Ok(Vec::new());
    }
    let unknown: Vec<String> = openapi::unknown_fields(rt, obj, patch)
        .into_iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    if directive == "Strict" && !unknown.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
            unknown.join(", "),
            kind = rt.kind,
            version = rt.version
        )));
    }
    Ok(unknown)
}

fn delete_options(
    params: &[(String, String)],
    body: &Bytes,
    headers: &HeaderMap,
) -> Result<DeleteOptions, ApiError> {
    let mut opts = DeleteOptions {
        propagation: param(params, "propagationPolicy").map(str::to_string),
        grace_period_seconds: param(params, "gracePeriodSeconds").and_then(|g| g.parse().ok()),
        dry_run: param(params, "dryRun") == Some("All"),
        ..DeleteOptions::default()
    };
    if !body.is_empty() {
        let v = parse_body(body, headers, "meta.k8s.io/v1", "DeleteOptions")?;
        if let Some(p) = v["propagationPolicy"].as_str() {
            opts.propagation = Some(p.to_string());
        }
        if let Some(orphan) = v["orphanDependents"].as_bool() {
            opts.propagation = Some(if orphan { "Orphan" } else { "Background" }.to_string());
        }
        if let Some(g) = v["gracePeriodSeconds"].as_i64() {
            opts.grace_period_seconds = Some(g);
        }
        if let Some(uid) = v["preconditions"]["uid"].as_str() {
            opts.precondition_uid = Some(uid.to_string());
        }
        if let Some(rv) = v["preconditions"]["resourceVersion"].as_str() {
            opts.precondition_rv = Some(rv.to_string());
        }
        if v["dryRun"]
            .as_array()
            .is_some_and(|d| d.iter().any(|x| x == "All"))
        {
            opts.dry_run = true;
        }
    }
    Ok(opts)
}

fn delete_collection(
    inner: &Arc<Inner>,
    t: &Target,
    params: &[(String, String)],
    body: &Bytes,
    headers: &HeaderMap,
) -> Result<(StatusCode, Value), ApiError> {
    let opts = delete_options(params, body, headers)?;
    let list_opts = list_options(params)?;
    inner.write(|s| {
        let list = s.list(t.rt, t.namespace.as_deref(), &list_opts)?;
        let mut deleted = Vec::new();
        for item in list["items"].as_array().cloned().unwrap_or_default() {
            let ns = item["metadata"]["namespace"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let name = item["metadata"]["name"].as_str().unwrap_or("").to_string();
            if let Ok(v) = s.delete(t.rt, &ns, &name, &opts) {
                if v["kind"] != "Status" {
                    deleted.push(v);
                } else {
                    deleted.push(item);
                }
            }
        }
        Ok((
            StatusCode::OK,
            json!({
                "kind": format!("{}List", t.rt.kind),
                "apiVersion": t.rt.api_version(),
                "metadata": {"resourceVersion": s.resource_version().to_string()},
                "items": deleted,
            }),
        ))
    })
}

/// A watch: a chunked stream of `{"type","object"}` lines, starting with
/// the current objects (or the changes since `resourceVersion`), ending at
/// `timeoutSeconds` or when the server stops.
async fn watch(inner: &Arc<Inner>, t: &Target, params: &[(String, String)]) -> Response {
    let labels = match LabelSelector::parse(param(params, "labelSelector").unwrap_or("")) {
        Ok(l) => l,
        Err(e) => return e.into_response(),
    };
    let fields = match FieldSelector::parse(param(params, "fieldSelector").unwrap_or(""), t.rt) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let rt = t.rt;
    let ns = t.namespace.clone();
    let name = t.name.clone();
    let matches = move |storage: &str, obj: &Value| {
        storage == rt.storage
            && ns
                .as_deref()
                .is_none_or(|ns| obj["metadata"]["namespace"].as_str() == Some(ns))
            && name
                .as_deref()
                .is_none_or(|n| obj["metadata"]["name"].as_str() == Some(n))
            && labels.matches_object(obj)
            && fields.matches(obj)
    };
    let timeout = param(params, "timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(1800);
    let send_initial = is_true(param(params, "sendInitialEvents"));
    let bookmarks = is_true(param(params, "allowWatchBookmarks"));
    let rv_param = param(params, "resourceVersion").unwrap_or("").to_string();

    let (initial, mut changes, start_rv) = {
        let store = inner.store.lock();
        let changes = store.changes.subscribe();
        let current = store.resource_version();
        let mut initial: Vec<Value> = Vec::new();
        if send_initial || rv_param.is_empty() || rv_param == "0" {
            for obj in store.raw_list(rt.storage, t.namespace.as_deref()) {
                if matches(rt.storage, obj) {
                    initial.push(json!({"type": "ADDED", "object": store::to_api(rt, obj)}));
                }
            }
            if send_initial && bookmarks {
                initial.push(json!({"type": "BOOKMARK", "object": {
                    "kind": rt.kind, "apiVersion": rt.api_version(),
                    "metadata": {"resourceVersion": current.to_string(),
                                 "annotations": {"k8s.io/initial-events-end": "true"}}}}));
            }
        } else {
            let since: u64 = rv_param.parse().unwrap_or(0);
            match store.changes_since(since) {
                Some(past) => {
                    for c in past {
                        if matches(c.storage, &c.object) {
                            initial.push(
                                json!({"type": c.kind, "object": store::to_api(rt, &c.object)}),
                            );
                        }
                    }
                }
                None => {
                    let e =
                        ApiError::gone(format!("too old resource version: {since} ({current})"));
                    initial.push(json!({"type": "ERROR", "object": e.status_body()}));
                }
            }
        }
        (initial, changes, current)
    };

    let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(256);
    let mut stopped = inner.stopped.subscribe();
    tokio::spawn(async move {
        let line = |v: &Value| Ok(Bytes::from(format!("{v}\n")));
        let ends_with_error = initial.last().is_some_and(|e| e["type"] == "ERROR");
        for event in &initial {
            if tx.send(line(event)).await.is_err() {
                return;
            }
        }
        if ends_with_error {
            return;
        }
        let deadline = tokio::time::sleep(Duration::from_secs(timeout));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = stopped.changed() => return,
                change = changes.recv() => match change {
                    Ok(c) => {
                        if c.rv <= start_rv || !matches(c.storage, &c.object) {
                            continue;
                        }
                        let event = json!({"type": c.kind, "object": store::to_api(rt, &c.object)});
                        if tx.send(line(&event)).await.is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                },
            }
        }
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(rx),
    )
        .into_response()
}

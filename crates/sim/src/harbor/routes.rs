//! Which of Harbor's API operations the simulator serves, and what it
//! answers for the rest the way Harbor's router (go-openapi) does: a path
//! it has no operation for gets 404 `path <path> was not found`; a method
//! the path has no operation for gets 405 `method X is not allowed, but
//! [A,B] are`, both in Harbor's `{"errors":[{code,message}]}` body and
//! never with an empty one. An operation Harbor has but the simulator does
//! not serve gets the 404, saying so.

use axum::http::{Method, StatusCode};
use axum::response::Response;

use super::api::error;

/// Harbor's API base path.
pub const BASE: &str = "/api/v2.0";

/// One path of Harbor's API description: the methods it describes there
/// and those the simulator serves.
pub struct ApiPath {
    /// The path template under [`BASE`], as the description spells it.
    pub template: &'static str,
    /// The methods Harbor's description has for it, in upper case.
    pub described: &'static [&'static str],
    /// The methods the simulator serves (a subset of `described`).
    pub served: &'static [&'static str],
}

const fn path(
    template: &'static str,
    described: &'static [&'static str],
    served: &'static [&'static str],
) -> ApiPath {
    ApiPath {
        template,
        described,
        served,
    }
}

/// Every path the simulator serves something on, and the literal siblings
/// that a template would otherwise swallow (`/usergroups/search`). A test
/// checks `described` against `swagger.yaml`.
pub const API_PATHS: &[ApiPath] = &[
    path("/ping", &["GET"], &["GET"]),
    path("/health", &["GET"], &["GET"]),
    path("/systeminfo", &["GET"], &["GET"]),
    path(
        "/projects",
        &["GET", "HEAD", "POST"],
        &["GET", "HEAD", "POST"],
    ),
    path(
        "/projects/{project_name_or_id}",
        &["DELETE", "GET", "PUT"],
        &["DELETE", "GET", "PUT"],
    ),
    path(
        "/projects/{project_name_or_id}/_deletable",
        &["GET"],
        &["GET"],
    ),
    path(
        "/projects/{project_name_or_id}/members",
        &["GET", "POST"],
        &["GET", "POST"],
    ),
    path(
        "/projects/{project_name_or_id}/members/{mid}",
        &["DELETE", "GET", "PUT"],
        &["DELETE", "GET", "PUT"],
    ),
    path("/usergroups", &["GET", "POST"], &["GET"]),
    path("/usergroups/search", &["GET"], &[]),
    path(
        "/usergroups/{group_id}",
        &["DELETE", "GET", "PUT"],
        &["GET"],
    ),
    path("/robots", &["GET", "POST"], &["GET", "POST"]),
    path(
        "/robots/{robot_id}",
        &["DELETE", "GET", "PATCH", "PUT"],
        &["DELETE", "GET", "PATCH", "PUT"],
    ),
    path("/configurations", &["GET", "PUT"], &["GET", "PUT"]),
];

/// Whether a request path (under [`BASE`]) fits a template: the same
/// number of segments, literals equal, `{param}` any non-empty segment.
fn fits(template: &str, path: &str) -> bool {
    let mut t = template.split('/');
    let mut p = path.split('/');
    loop {
        match (t.next(), p.next()) {
            (None, None) => return true,
            (Some(ts), Some(ps)) => {
                let is_param = ts.starts_with('{') && ts.ends_with('}');
                if (is_param && ps.is_empty()) || (!is_param && ts != ps) {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

/// The entry a request path falls under; literal paths win over templates.
pub fn lookup(api_path: &str) -> Option<&'static ApiPath> {
    API_PATHS
        .iter()
        .find(|p| !p.template.contains('{') && p.template == api_path)
        .or_else(|| API_PATHS.iter().find(|p| fits(p.template, api_path)))
}

/// Harbor's answer when the request names no operation the simulator
/// serves; `None` lets the router serve it. Paths outside [`BASE`] are the
/// router's business (the registry's `/v2/` and `/service/token`).
pub fn refuse(method: &Method, path: &str) -> Option<Response> {
    let api_path = path.strip_prefix(BASE)?;
    if !api_path.starts_with('/') {
        return None;
    }
    let Some(entry) = lookup(api_path) else {
        return Some(error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("path {path} was not found"),
        ));
    };
    let m = method.as_str();
    if entry.served.contains(&m) {
        return None;
    }
    if entry.described.contains(&m) {
        return Some(error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!(
                "path {path} was not found (Harbor serves {m} here; the simulated Harbor does not)"
            ),
        ));
    }
    Some(error(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        format!(
            "method {m} is not allowed, but [{}] are",
            entry.described.join(",")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(method: &str, path: &str) -> Option<u16> {
        refuse(&Method::from_bytes(method.as_bytes()).unwrap(), path).map(|r| r.status().as_u16())
    }

    #[test]
    fn served_operations_pass_through() {
        assert_eq!(status("PUT", "/api/v2.0/projects/team-a"), None);
        assert_eq!(status("PUT", "/api/v2.0/projects/28/members/35"), None);
        assert_eq!(status("HEAD", "/api/v2.0/projects"), None);
        assert_eq!(status("PATCH", "/api/v2.0/robots/7"), None);
        assert_eq!(status("GET", "/v2/"), None);
        assert_eq!(status("GET", "/service/token"), None);
    }

    #[test]
    fn unknown_paths_and_methods_answer_as_harbors_router() {
        assert_eq!(status("GET", "/api/v2.0/nope"), Some(404));
        assert_eq!(status("GET", "/api/v2.0/projects/a/b/c/d"), Some(404));
        assert_eq!(status("GET", "/api/v2.0/projects//members"), Some(404));
        // Harbor has no PATCH or HEAD on a project.
        assert_eq!(status("PATCH", "/api/v2.0/projects/team-a"), Some(405));
        assert_eq!(status("HEAD", "/api/v2.0/projects/team-a"), Some(405));
        // Harbor serves these; the simulator does not.
        assert_eq!(status("POST", "/api/v2.0/usergroups"), Some(404));
        assert_eq!(status("GET", "/api/v2.0/usergroups/search"), Some(404));
        assert_eq!(status("GET", "/api/v2.0/usergroups/12"), None);
    }

    #[test]
    fn served_methods_are_described_ones() {
        for p in API_PATHS {
            for m in p.served {
                assert!(p.described.contains(m), "{} {m}", p.template);
            }
        }
    }
}

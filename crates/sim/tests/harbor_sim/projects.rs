//! Projects, members and user groups as Harbor 2.11 answers them where its
//! API description leaves the answer open: group types per auth mode,
//! filters, counts, and the writes Harbor accepts without checking.

use base64::Engine;
use harbor_doctor_sim::harbor::{prism, routes, HarborOptions, HarborSim, HTTP_GROUP, OIDC_GROUP};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::{error_code, fast, otomi, Api};

fn add_group(api: &Api, project: &str, group: &str, group_type: i64) -> reqwest::RequestBuilder {
    api.admin(
        Method::POST,
        &format!("/api/v2.0/projects/{project}/members"),
    )
    .json(&json!({"role_id": 2, "member_group": {"group_name": group, "group_type": group_type}}))
}

/// In OIDC mode a member added by group name becomes the OIDC group of that
/// name whatever group_type was asked for, unless a group with exactly that
/// name and type already exists: then the member names that group, which
/// OIDC logins never put anyone in.
#[tokio::test]
async fn oidc_mode_binds_members_to_oidc_groups_unless_one_of_the_asked_type_exists() {
    let h = HarborSim::start_for_test(otomi()).await.unwrap();
    let api = Api::new(h.url());
    h.add_project("team-a", false);
    h.add_project("team-b", false);

    // Otomi's operator asks for HTTP (2), the doctor for OIDC (3): one group.
    let resp = add_group(&api, "team-a", "team-a", HTTP_GROUP)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let again = add_group(&api, "team-a", "team-a", OIDC_GROUP)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT, "the same group");
    assert_eq!(
        h.member_group("team-a", "team-a").unwrap().group_type,
        OIDC_GROUP
    );
    let groups = api
        .admin_json("/api/v2.0/usergroups?group_name=team-a")
        .await;
    assert_eq!(groups.as_array().unwrap().len(), 1, "{groups}");
    assert_eq!(groups[0]["group_type"], OIDC_GROUP);

    // An HTTP group of the name exists (made by hand, or by an earlier auth
    // mode): a type-2 request binds to it.
    let http = h.add_user_group("team-b", HTTP_GROUP);
    let resp = add_group(&api, "team-b", "team-b", HTTP_GROUP)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let member = h.member_group("team-b", "team-b").unwrap();
    assert_eq!((member.id, member.group_type), (http, HTTP_GROUP));
    let one: Value = api
        .admin_json(&format!("/api/v2.0/usergroups/{http}"))
        .await;
    assert_eq!(
        one,
        json!({"group_name": "team-b", "group_type": 2, "ldap_group_dn": ""})
    );

    // Which is why it grants OIDC users nothing, while the OIDC one does.
    h.add_oidc_user("dev@example.com", "Cli5ecret", &["team-a", "team-b"]);
    for (project, granted) in [("team-a", json!(["push"])), ("team-b", json!([]))] {
        let resp = api
            .req(
                Method::GET,
                &format!(
                    "/service/token?service=harbor-registry&scope=repository%3A{project}%2Fapp%3Apush"
                ),
            )
            .basic_auth("dev@example.com", Some("Cli5ecret"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let token: Value = resp.json().await.unwrap();
        let claims = token["token"].as_str().unwrap().split('.').nth(1).unwrap();
        let claims: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(claims)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(claims["access"][0]["actions"], granted, "{project}");
    }
    h.finish().await.unwrap();
}

#[tokio::test]
async fn members_are_listed_by_exact_name_and_counted_unfiltered() {
    let h = HarborSim::start_for_test(otomi()).await.unwrap();
    let api = Api::new(h.url());
    h.add_project("team-a", false);
    h.add_group_member("team-a", "team-a", OIDC_GROUP, 2);
    h.add_group_member("team-a", "team-ab", OIDC_GROUP, 2);

    let resp = api
        .admin(
            Method::GET,
            "/api/v2.0/projects/team-a/members?entityname=team-a",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["x-total-count"],
        "3",
        "admin and both groups"
    );
    let found: Value = resp.json().await.unwrap();
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found[0]["entity_name"], "team-a");

    // A PUT stores any role, and one that names no role hides the member.
    let mid = found[0]["id"].as_i64().unwrap();
    let put = api
        .admin(
            Method::PUT,
            &format!("/api/v2.0/projects/team-a/members/{mid}"),
        )
        .json(&json!({"role_id": 9}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    let resp = api
        .admin(Method::GET, "/api/v2.0/projects/team-a/members")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-total-count"], "3");
    let all: Value = resp.json().await.unwrap();
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");
    let get = api
        .admin(
            Method::GET,
            &format!("/api/v2.0/projects/team-a/members/{mid}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), StatusCode::NOT_FOUND);

    // A PUT to a member that does not exist answers 200 and changes nothing.
    let put = api
        .admin(Method::PUT, "/api/v2.0/projects/team-a/members/999999")
        .json(&json!({"role_id": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    assert_eq!(h.project("team-a").unwrap().members.len(), 3);
    h.finish().await.unwrap();
}

#[tokio::test]
async fn project_updates_merge_metadata_and_keep_the_name() {
    let h = HarborSim::start_for_test(fast()).await.unwrap();
    let api = Api::new(h.url());
    let id = h.add_project("team-a", false);
    let put = api
        .admin(Method::PUT, &format!("/api/v2.0/projects/{id}"))
        .json(&json!({"project_name": "renamed", "metadata": {"public": "true", "auto_scan": "true"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    let p = api.admin_json("/api/v2.0/projects/team-a").await;
    assert_eq!(p["name"], "team-a");
    assert_eq!(p["metadata"]["public"], "true");
    assert_eq!(p["metadata"]["auto_scan"], "true");
    let mismatch = api
        .admin(Method::PUT, "/api/v2.0/projects/team-a")
        .json(&json!({"cve_allowlist": {"project_id": id + 1000}}))
        .send()
        .await
        .unwrap();
    assert_eq!(mismatch.status(), StatusCode::BAD_REQUEST);
    let missing = api
        .admin(Method::PUT, "/api/v2.0/projects/team-zz")
        .json(&json!({"project_name": "team-zz"}))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(missing).await, "NOT_FOUND");
    h.finish().await.unwrap();
}

#[tokio::test]
async fn project_lists_filter_on_owner_public_and_q_and_sort_by_name() {
    let h = HarborSim::start_for_test(fast()).await.unwrap();
    let api = Api::new(h.url());
    h.add_project("team-b", true);
    h.add_project("team-a", false);
    let names = |v: Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    let all = api.admin_json("/api/v2.0/projects").await;
    assert_eq!(names(all), ["library", "team-a", "team-b"], "by name");
    let desc = api.admin_json("/api/v2.0/projects?sort=-name").await;
    assert_eq!(names(desc), ["team-b", "team-a", "library"]);
    let private = api.admin_json("/api/v2.0/projects?public=false").await;
    assert_eq!(names(private), ["team-a"]);
    let mine = api
        .admin_json("/api/v2.0/projects?owner=admin&name=TEAM")
        .await;
    assert_eq!(names(mine), ["team-a", "team-b"]);
    let nobody = api
        .admin(Method::GET, "/api/v2.0/projects?owner=alice")
        .send()
        .await
        .unwrap();
    assert_eq!(nobody.headers()["x-total-count"], "0");
    assert_eq!(nobody.json::<Value>().await.unwrap(), json!([]));
    // Keys Harbor's project query does not know are ignored, not refused.
    let q = api
        .admin_json("/api/v2.0/projects?q=name%3D~team,color%3Dblue")
        .await;
    assert_eq!(names(q), ["team-a", "team-b"]);
    h.finish().await.unwrap();
}

/// Answers Harbor gives that its API description does not list: straight
/// to the simulator.
#[tokio::test]
async fn member_and_project_answers_outside_the_api_description() {
    let h = HarborSim::start(HarborOptions {
        login_penalty: std::time::Duration::ZERO,
        ..HarborOptions::default()
    })
    .await
    .unwrap();
    let api = Api::new(h.url());
    h.add_project("team-a", false);

    // Database authentication cannot search groups: 404.
    let resp = add_group(&api, "team-a", "team-a", OIDC_GROUP)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(h.user_groups().is_empty());
    // HTTP auth without skip-search fails the search: Harbor's bare 500.
    h.set_config("auth_mode", json!("http_auth"));
    let resp = add_group(&api, "team-a", "team-a", HTTP_GROUP)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(error_code(resp).await, "UNKNOWN");

    // HEAD /projects wants a signed-in caller.
    let anonymous = api
        .req(Method::HEAD, "/api/v2.0/projects?project_name=team-a")
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    // A member id that is not an integer breaks the description: 422.
    let bad = api
        .admin(Method::GET, "/api/v2.0/projects/team-a/members/abc")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Deleting a project takes the admin.
    let anonymous = api
        .req(Method::DELETE, "/api/v2.0/projects/team-a")
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(h.project("team-a").is_some());
}

/// The simulator's table of served paths names, for each, exactly the
/// methods Harbor's description has there, so its 405s list what Harbor's do.
#[test]
fn the_route_table_matches_harbors_api_description() {
    let text = std::fs::read_to_string(prism::spec_path()).unwrap_or_else(|e| {
        panic!(
            "reading Harbor's API description {}: {e} (set {} to its path)",
            prism::spec_path().display(),
            prism::SPEC_ENV
        )
    });
    let spec: Value = serde_yaml::from_str(&text).unwrap();
    for entry in routes::API_PATHS {
        let item = spec["paths"]
            .get(entry.template)
            .unwrap_or_else(|| panic!("{} is not in the description", entry.template));
        let mut described: Vec<String> = item
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| *k != "parameters")
            .map(|k| k.to_uppercase())
            .collect();
        described.sort();
        assert_eq!(described, entry.described, "{}", entry.template);
    }
}

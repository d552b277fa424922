//! The simulated Harbor behaves as Harbor's API description and FACTS.md say,
//! so that the doctor's client can be tested against it with real HTTP.
//!
//! Tests that exercise documented behaviour start the simulator with
//! `start_for_test`, so the contract stage (HARBOR_DOCTOR_PRISM set) also
//! checks them against swagger.yaml through Prism. Tests that provoke
//! deliberately undocumented answers (faults, HTML, oversize pages) talk to
//! the simulator directly.

use std::time::{Duration, Instant};

use harbor_doctor_sim::harbor::{Fault, HarborOptions, HarborSim, RobotPermission, RobotSeed};
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

// The Otomi operator's request sequences, over HTTP/1.1 and HTTP/2.
#[path = "harbor_sim/operator.rs"]
mod operator;
// Projects, members and groups where the API description leaves it open.
#[path = "harbor_sim/projects.rs"]
mod projects;

const PW: &str = "Harbor12345";

fn fast() -> HarborOptions {
    HarborOptions {
        login_penalty: Duration::from_millis(50),
        ..HarborOptions::default()
    }
}

fn otomi() -> HarborOptions {
    HarborOptions {
        login_penalty: Duration::from_millis(50),
        ..HarborOptions::otomi("https://keycloak.example.com/realms/otomi")
    }
}

struct Api {
    client: Client,
    base: String,
}

impl Api {
    fn new(base: String) -> Self {
        Self {
            client: Client::new(),
            base,
        }
    }

    fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base))
    }

    fn admin(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.req(method, path).basic_auth("admin", Some(PW))
    }

    async fn admin_json(&self, path: &str) -> Value {
        let resp = self.admin(Method::GET, path).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
        resp.json().await.unwrap()
    }
}

async fn error_code(resp: reqwest::Response) -> String {
    let body: Value = resp.json().await.unwrap();
    body["errors"][0]["code"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn ping_health_and_systeminfo() {
    let h = HarborSim::start_for_test(fast()).await.unwrap();
    let api = Api::new(h.url());

    let ping = api.req(Method::GET, "/api/v2.0/ping").send().await.unwrap();
    assert_eq!(ping.status(), StatusCode::OK);
    assert_eq!(ping.text().await.unwrap(), "Pong");

    let health: Value = api
        .req(Method::GET, "/api/v2.0/health")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "healthy");
    assert!(health["components"].as_array().unwrap().len() >= 6);
    h.set_component_health("redis", Some("dial tcp 10.0.0.5:6379: connection refused"));
    let health: Value = api
        .req(Method::GET, "/api/v2.0/health")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "unhealthy");
    let redis = health["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "redis")
        .unwrap();
    assert_eq!(redis["status"], "unhealthy");
    assert!(redis["error"]
        .as_str()
        .unwrap()
        .contains("connection refused"));

    let anonymous: Value = api
        .req(Method::GET, "/api/v2.0/systeminfo")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(anonymous["auth_mode"], "db_auth");
    assert!(anonymous.get("harbor_version").is_none());
    assert!(anonymous.get("external_url").is_none());
    let full = api.admin_json("/api/v2.0/systeminfo").await;
    assert!(full["harbor_version"].as_str().unwrap().starts_with("v2."));
    assert_eq!(full["external_url"], h.sim().url());
    h.finish().await.unwrap();
}

#[tokio::test]
async fn request_id_is_echoed_or_made_up() {
    let h = HarborSim::start_for_test(fast()).await.unwrap();
    let api = Api::new(h.url());
    let resp = api
        .req(Method::GET, "/api/v2.0/ping")
        .header("X-Request-Id", "doctor-1234")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "doctor-1234");
    let resp = api.req(Method::GET, "/api/v2.0/ping").send().await.unwrap();
    assert!(!resp.headers()["x-request-id"].is_empty());
    assert_eq!(h.requests()[0].request_id, "doctor-1234");
    h.finish().await.unwrap();
}

#[tokio::test]
async fn projects_are_created_once_and_found_by_exact_name() {
    let h = HarborSim::start_for_test(fast()).await.unwrap();
    let api = Api::new(h.url());

    let create = api
        .admin(Method::POST, "/api/v2.0/projects")
        .json(&json!({"project_name": "team-a", "metadata": {"public": "false"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(create.status(), StatusCode::CREATED);
    let id = h.project("team-a").unwrap().id;
    assert_eq!(
        create.headers()["location"],
        format!("/api/v2.0/projects/{id}").as_str()
    );
    assert!(create.bytes().await.unwrap().is_empty(), "201 has no body");

    let again = api
        .admin(Method::POST, "/api/v2.0/projects")
        .json(&json!({"project_name": "team-a", "metadata": {"public": "false"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(again).await, "CONFLICT");

    let project = api.admin_json("/api/v2.0/projects/team-a").await;
    assert_eq!(project["name"], "team-a");
    assert_eq!(project["metadata"]["public"], "false");

    // A project whose name looks like an id needs X-Is-Resource-Name.
    h.add_project("42", false);
    let by_name = api
        .admin(Method::GET, "/api/v2.0/projects/42")
        .header("X-Is-Resource-Name", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(by_name.status(), StatusCode::OK);
    assert_eq!(by_name.json::<Value>().await.unwrap()["name"], "42");

    let missing = api
        .admin(Method::GET, "/api/v2.0/projects/team-zzz")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(missing).await, "NOT_FOUND");

    for bad in ["Team-A", "team--a", "team a"] {
        let resp = api
            .admin(Method::POST, "/api/v2.0/projects")
            .json(&json!({"project_name": bad}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    h.finish().await.unwrap();
}

#[tokio::test]
async fn project_name_filter_is_fuzzy_and_q_is_exact() {
    let h = HarborSim::start_for_test(fast()).await.unwrap();
    let api = Api::new(h.url());
    h.add_project("team-a", false);
    h.add_project("team-ab", false);
    h.add_project("team-b", true);

    let names = |v: Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    let fuzzy = api.admin_json("/api/v2.0/projects?name=team-a").await;
    assert_eq!(names(fuzzy), ["team-a", "team-ab"]);
    let exact = api.admin_json("/api/v2.0/projects?q=name%3Dteam-a").await;
    assert_eq!(names(exact), ["team-a"]);

    let anonymous: Value = api
        .req(Method::GET, "/api/v2.0/projects")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        names(anonymous),
        ["library", "team-b"],
        "anonymous sees public projects only"
    );
    h.finish().await.unwrap();
}

#[tokio::test]
async fn lists_page_with_total_count_and_links() {
    let h = HarborSim::start_for_test(fast()).await.unwrap();
    let api = Api::new(h.url());
    for i in 0..24 {
        h.add_project(&format!("team-{i:02}"), false);
    }
    // 25 with library.
    let first = api
        .admin(Method::GET, "/api/v2.0/projects?page=1&page_size=10")
        .send()
        .await
        .unwrap();
    assert_eq!(first.headers()["x-total-count"], "25");
    let link = first.headers()["link"].to_str().unwrap().to_string();
    assert!(link.contains("rel=\"next\""), "{link}");
    assert!(!link.contains("rel=\"prev\""), "{link}");
    assert!(link.contains("page=2"), "{link}");
    assert_eq!(first.json::<Vec<Value>>().await.unwrap().len(), 10);

    let last = api
        .admin(Method::GET, "/api/v2.0/projects?page=3&page_size=10")
        .send()
        .await
        .unwrap();
    let link = last.headers()["link"].to_str().unwrap().to_string();
    assert!(
        link.contains("rel=\"prev\"") && !link.contains("rel=\"next\""),
        "{link}"
    );
    assert_eq!(last.json::<Vec<Value>>().await.unwrap().len(), 5);

    let default_size = api.admin_json("/api/v2.0/projects").await;
    assert_eq!(
        default_size.as_array().unwrap().len(),
        10,
        "Harbor's default page size"
    );
    h.finish().await.unwrap();
}

#[tokio::test]
async fn members_are_added_once() {
    let h = HarborSim::start_for_test(otomi()).await.unwrap();
    let api = Api::new(h.url());
    h.add_project("team-a", false);

    let members = api.admin_json("/api/v2.0/projects/team-a/members").await;
    assert_eq!(
        members[0]["entity_name"], "admin",
        "the creator is a member"
    );

    let add = |group: &'static str, role: i64| {
        api.admin(Method::POST, "/api/v2.0/projects/team-a/members")
            .json(&json!({"role_id": role, "member_group": {"group_name": group, "group_type": 3}}))
            .send()
    };
    let resp = add("team-a", 2).await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with("/api/v2.0/projects/team-a/members/"),
        "{location}"
    );
    assert_eq!(
        add("all-teams-admin", 1).await.unwrap().status(),
        StatusCode::CREATED
    );
    let again = add("team-a", 2).await.unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT);

    let members = api.admin_json("/api/v2.0/projects/team-a/members").await;
    let team = members
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["entity_name"] == "team-a")
        .unwrap();
    assert_eq!(team["entity_type"], "g");
    assert_eq!(team["role_id"], 2);
    assert_eq!(team["role_name"], "developer");

    let bad_role = api
        .admin(Method::POST, "/api/v2.0/projects/team-a/members")
        .json(&json!({"role_id": 9, "member_group": {"group_name": "x", "group_type": 3}}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_role.status(), StatusCode::BAD_REQUEST);
    h.finish().await.unwrap();
}

fn robot_body(name: &str, project: &str, actions: &[&str]) -> Value {
    json!({
        "name": name,
        "description": "pull secret for the team",
        "level": "system",
        "duration": -1,
        "permissions": [{
            "kind": "project",
            "namespace": project,
            "access": actions.iter().map(|a| json!({"resource": "repository", "action": a})).collect::<Vec<_>>()
        }]
    })
}

#[tokio::test]
async fn robots_get_the_prefix_and_are_filtered_without_it() {
    let h = HarborSim::start_for_test(otomi()).await.unwrap();
    let api = Api::new(h.url());
    h.add_project("team-a", false);

    let resp = api
        .admin(Method::POST, "/api/v2.0/robots")
        .json(&robot_body("team-a-pull", "team-a", &["pull"]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let created: Value = resp.json().await.unwrap();
    assert_eq!(created["name"], "otomi-team-a-pull");
    assert_eq!(created["expires_at"], -1);
    assert_eq!(location, format!("/api/v2.0/robots/{}", created["id"]));
    let secret = created["secret"].as_str().unwrap();
    assert_eq!(h.robot("team-a-pull").unwrap().secret, secret);

    let found = api
        .admin_json("/api/v2.0/robots?q=name%3Dteam-a-pull")
        .await;
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert_eq!(found[0]["name"], "otomi-team-a-pull");
    assert!(found[0].get("secret").is_none(), "lists never show secrets");
    assert_eq!(found[0]["permissions"][0]["namespace"], "team-a");
    assert_eq!(found[0]["disable"], false);
    let with_prefix = api
        .admin_json("/api/v2.0/robots?q=name%3Dotomi-team-a-pull")
        .await;
    assert!(
        with_prefix.as_array().unwrap().is_empty(),
        "the stored name has no prefix"
    );
    let fuzzy = api.admin_json("/api/v2.0/robots?q=name%3D~team-a").await;
    assert_eq!(fuzzy.as_array().unwrap().len(), 1);

    let id = created["id"].as_i64().unwrap();
    let one = api.admin_json(&format!("/api/v2.0/robots/{id}")).await;
    assert_eq!(one["name"], "otomi-team-a-pull");
    h.finish().await.unwrap();
}

#[tokio::test]
async fn robot_creation_validates_name_and_permissions() {
    let h = HarborSim::start_for_test(otomi()).await.unwrap();
    let api = Api::new(h.url());
    h.add_project("team-a", false);
    let post = |body: Value| {
        api.admin(Method::POST, "/api/v2.0/robots")
            .json(&body)
            .send()
    };
    for bad in ["Team-A-pull", "team-a+pull", "otomi$x", ""] {
        let resp = post(robot_body(bad, "team-a", &["pull"])).await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad:?}");
    }
    let mut no_access = robot_body("x", "team-a", &[]);
    no_access["permissions"][0]["access"] = json!([]);
    assert_eq!(
        post(no_access).await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    let mut bad_duration = robot_body("x", "team-a", &["pull"]);
    bad_duration["duration"] = json!(-5);
    assert_eq!(
        post(bad_duration).await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    let missing_project = post(robot_body("x", "team-nope", &["pull"])).await.unwrap();
    assert_eq!(missing_project.status(), StatusCode::NOT_FOUND);

    let mut days = robot_body("short", "team-a", &["pull"]);
    days["duration"] = json!(30);
    let created: Value = post(days).await.unwrap().json().await.unwrap();
    let expires = created["expires_at"].as_i64().unwrap();
    let in_30_days = chrono::Utc::now().timestamp() + 30 * 86400;
    assert!((expires - in_30_days).abs() < 60, "{expires}");
    h.finish().await.unwrap();
}

/// Answers real Harbor gives that its API description does not list (or
/// that only invalid requests get): tested directly, not through Prism.
#[tokio::test]
async fn answers_outside_the_api_description() {
    let h = HarborSim::start(otomi()).await.unwrap();
    let api = Api::new(h.url());
    h.add_project("team-a", false);

    // A second robot with the same name: 409.
    for expected in [StatusCode::CREATED, StatusCode::CONFLICT] {
        let resp = api
            .admin(Method::POST, "/api/v2.0/robots")
            .json(&robot_body("team-a-push", "team-a", &["pull", "push"]))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), expected);
    }
    assert_eq!(h.robots().len(), 1);

    // Members of a project that does not exist: 404.
    let no_project = api
        .admin(Method::POST, "/api/v2.0/projects/team-zz/members")
        .json(&json!({"role_id": 2, "member_group": {"group_name": "x", "group_type": 3}}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_project.status(), StatusCode::NOT_FOUND);

    // Rejected credentials get 401 even where anonymous callers are welcome.
    h.set_login_penalty(Duration::ZERO);
    let bad = api
        .req(Method::GET, "/api/v2.0/systeminfo")
        .basic_auth("admin", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);

    // HEAD /projects answers 200 or 404; Prism cannot check a HEAD answer
    // whose description has a body, so this one stays outside it too.
    for (name, expected) in [
        ("team-a", StatusCode::OK),
        ("team-b", StatusCode::NOT_FOUND),
    ] {
        let head = api
            .admin(
                Method::HEAD,
                &format!("/api/v2.0/projects?project_name={name}"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(head.status(), expected, "{name}");
    }

    // A page over 100 and a configuration value of the wrong type.
    let big_page = api
        .admin(Method::GET, "/api/v2.0/projects?page_size=101")
        .send()
        .await
        .unwrap();
    assert_eq!(big_page.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let wrong_type = api
        .admin(Method::PUT, "/api/v2.0/configurations")
        .json(&json!({"oidc_verify_cert": "yes"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_type.status(), StatusCode::BAD_REQUEST);
    assert_eq!(h.config_value("oidc_verify_cert").unwrap(), true);
}

#[tokio::test]
async fn robot_list_pages_through_many_robots() {
    let h = HarborSim::start_for_test(otomi()).await.unwrap();
    let api = Api::new(h.url());
    for i in 0..130 {
        let team = format!("team-{i}");
        h.add_project(&team, false);
        h.add_robot(RobotSeed::system(&format!("{team}-pull"), &team, &["pull"]));
    }
    let mut seen = 0;
    for page in 1..=2 {
        let resp = api
            .admin(
                Method::GET,
                &format!("/api/v2.0/robots?page={page}&page_size=100"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["x-total-count"], "130");
        seen += resp.json::<Vec<Value>>().await.unwrap().len();
    }
    assert_eq!(seen, 130);
    h.finish().await.unwrap();
}

async fn token_status(api: &Api, user: &str, password: &str) -> StatusCode {
    api.req(
        Method::GET,
        "/service/token?service=harbor-registry&scope=repository%3Ateam-a%2Fapp%3Apull%2Cpush",
    )
    .basic_auth(user, Some(password))
    .send()
    .await
    .unwrap()
    .status()
}

#[tokio::test]
async fn robot_secret_can_be_set_or_regenerated() {
    let h = HarborSim::start_for_test(otomi()).await.unwrap();
    let api = Api::new(h.url());
    h.add_project("team-a", false);
    let robot = h.add_robot(RobotSeed::system(
        "team-a-push",
        "team-a",
        &["pull", "push"],
    ));
    let path = format!("/api/v2.0/robots/{}", robot.id);

    for weak in ["short1A", "alllowercase1", "ALLUPPERCASE1", "NoDigitsHere"] {
        let resp = api
            .admin(Method::PATCH, &path)
            .json(&json!({"secret": weak}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{weak}");
    }
    let chosen = "FromTheSecret1234";
    let resp = api
        .admin(Method::PATCH, &path)
        .json(&json!({"secret": chosen}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body.get("secret").is_none(),
        "a chosen secret is not echoed: {body}"
    );
    assert_eq!(
        token_status(&api, "otomi-team-a-push", chosen).await,
        StatusCode::OK
    );

    let generated: Value = api
        .admin(Method::PATCH, &path)
        .json(&json!({"secret": ""}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let generated = generated["secret"].as_str().unwrap().to_string();
    assert_ne!(generated, chosen);
    assert_eq!(
        token_status(&api, "otomi-team-a-push", &generated).await,
        StatusCode::OK
    );

    let deleted = api.admin(Method::DELETE, &path).send().await.unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    let gone = api.admin(Method::GET, &path).send().await.unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    h.finish().await.unwrap();
}

#[tokio::test]
async fn robot_update_keeps_name_and_level() {
    let h = HarborSim::start_for_test(otomi()).await.unwrap();
    let api = Api::new(h.url());
    h.add_project("team-a", false);
    let robot = h.add_robot(RobotSeed {
        disabled: true,
        ..RobotSeed::system("team-a-pull", "team-a", &["pull"])
    });
    let path = format!("/api/v2.0/robots/{}", robot.id);
    let mut body = robot_body("otomi-team-a-pull", "team-a", &["pull"]);
    body["disable"] = json!(false);
    let resp = api
        .admin(Method::PUT, &path)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(!h.robot("team-a-pull").unwrap().disabled);

    body["name"] = json!("team-a-pull");
    let renamed = api
        .admin(Method::PUT, &path)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        renamed.status(),
        StatusCode::BAD_REQUEST,
        "the name must carry the prefix"
    );
    h.finish().await.unwrap();
}

#[tokio::test]
async fn token_service_checks_robot_credentials() {
    let h = HarborSim::start_for_test(otomi()).await.unwrap();
    let api = Api::new(h.url());
    h.add_project("team-a", false);
    h.add_project("team-b", false);
    let robot = h.add_robot(RobotSeed::system("team-a-pull", "team-a", &["pull"]));
    let login = h.robot_login_name(&robot);
    assert_eq!(login, "otomi-team-a-pull");

    let resp = api
        .req(
            Method::GET,
            "/service/token?service=harbor-registry&scope=repository%3Ateam-a%2Fapp%3Apull%2Cpush&scope=repository%3Ateam-b%2Fapp%3Apull",
        )
        .basic_auth(&login, Some(&robot.secret))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert!(body["expires_in"].as_i64().unwrap() > 0);
    assert!(body["issued_at"].is_string());
    let token = body["token"].as_str().unwrap();
    assert_eq!(body["access_token"], token);
    let claims = token.split('.').nth(1).unwrap();
    use base64::Engine;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        claims["access"][0]["actions"],
        json!(["pull"]),
        "pull only: no push permission"
    );
    assert_eq!(
        claims["access"][1]["actions"],
        json!([]),
        "nothing on another team's project"
    );

    assert_eq!(
        token_status(&api, &login, "wrong").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(h.failed_logins(&login), 1);

    h.set_robot_disabled(robot.id, true);
    // The lock from the failure above lasts one penalty; wait it out.
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(
        token_status(&api, &login, &robot.secret).await,
        StatusCode::UNAUTHORIZED
    );
    h.set_robot_disabled(robot.id, false);
    h.set_robot_expires_at(robot.id, chrono::Utc::now().timestamp() - 10);
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(
        token_status(&api, &login, &robot.secret).await,
        StatusCode::UNAUTHORIZED
    );
    h.set_robot_expires_at(robot.id, -1);
    assert_eq!(
        token_status(&api, &login, &robot.secret).await,
        StatusCode::OK
    );
    assert_eq!(token_status(&api, "admin", PW).await, StatusCode::OK);
    h.finish().await.unwrap();
}

#[tokio::test]
async fn cli_secret_works_only_while_harbor_can_refresh_the_token() {
    let h = HarborSim::start_for_test(otomi()).await.unwrap();
    let api = Api::new(h.url());
    h.add_project("team-a", false);
    h.add_group_member("team-a", "team-a", 3, 2);
    h.add_oidc_user("alice", "CliSecretOfAlice1", &["team-a"]);
    assert_eq!(
        token_status(&api, "alice", "CliSecretOfAlice1").await,
        StatusCode::OK
    );

    // Scope "openid" only: once the Keycloak session ends, docker login fails.
    h.end_idp_session("alice");
    assert_eq!(
        token_status(&api, "alice", "CliSecretOfAlice1").await,
        StatusCode::UNAUTHORIZED
    );

    // With offline_access and a fresh web login, it survives the session.
    h.set_config("oidc_scope", json!("openid,offline_access"));
    h.oidc_web_login("alice");
    h.end_idp_session("alice");
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(
        token_status(&api, "alice", "CliSecretOfAlice1").await,
        StatusCode::OK
    );

    // A CLI secret is no password for the API.
    let api_call = api
        .req(Method::GET, "/api/v2.0/projects/team-a")
        .basic_auth("alice", Some("CliSecretOfAlice1"))
        .send()
        .await
        .unwrap();
    assert_eq!(api_call.status(), StatusCode::UNAUTHORIZED);
    h.finish().await.unwrap();
}

#[tokio::test]
async fn registry_base_challenges_without_a_token() {
    let h = HarborSim::start_for_test(HarborOptions {
        external_url: Some("https://harbor.example.com".into()),
        ..otomi()
    })
    .await
    .unwrap();
    let api = Api::new(h.url());
    let resp = api.req(Method::GET, "/v2/").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Bearer realm=\"https://harbor.example.com/service/token\",service=\"harbor-registry\""
    );
    let token: Value = api
        .req(Method::GET, "/service/token?service=harbor-registry")
        .basic_auth("admin", Some(PW))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ok = api
        .req(Method::GET, "/v2/")
        .bearer_auth(token["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);

    let info = api.admin_json("/api/v2.0/systeminfo").await;
    assert_eq!(info["external_url"], "https://harbor.example.com");
    assert_eq!(info["registry_url"], "harbor.example.com");
    h.finish().await.unwrap();
}

#[tokio::test]
async fn a_rejected_login_costs_the_penalty_and_locks_the_name() {
    // A long penalty, so that "at once" can be said by order, not by a
    // clock: the contract stage runs this through Prism on a loaded machine.
    let penalty = Duration::from_secs(2);
    let h = HarborSim::start_for_test(HarborOptions {
        login_penalty: penalty,
        ..HarborOptions::default()
    })
    .await
    .unwrap();
    let api = Api::new(h.url());
    let started = Instant::now();
    let wrong = async {
        let resp = api
            .req(Method::GET, "/api/v2.0/projects")
            .basic_auth("admin", Some("wrong"))
            .send()
            .await;
        (resp, Instant::now())
    };
    // While the failed login sleeps, the name is locked: even the right
    // password is refused, before the failed login has its answer.
    let locked = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let resp = api
            .admin(Method::GET, "/api/v2.0/projects")
            .send()
            .await
            .unwrap();
        (resp.status(), Instant::now())
    };
    let ((resp, wrong_done), (locked_status, locked_done)) = tokio::join!(wrong, locked);
    let resp = resp.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(started.elapsed() >= penalty);
    assert_eq!(error_code(resp).await, "UNAUTHORIZED");
    assert_eq!(locked_status, StatusCode::UNAUTHORIZED);
    assert!(
        locked_done < wrong_done,
        "the locked name is refused without the penalty"
    );
    assert_eq!(h.failed_logins("admin"), 2);

    tokio::time::sleep(penalty + Duration::from_millis(20)).await;
    let ok = api
        .admin(Method::GET, "/api/v2.0/projects")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    h.finish().await.unwrap();
}

#[tokio::test]
async fn configurations_are_admin_only_and_hide_the_client_secret() {
    let h = HarborSim::start_for_test(otomi()).await.unwrap();
    let api = Api::new(h.url());
    let anonymous = api
        .req(Method::GET, "/api/v2.0/configurations")
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    h.add_project("team-a", false);
    let robot = h.add_robot(RobotSeed::system("team-a-pull", "team-a", &["pull"]));
    let as_robot = api
        .req(Method::GET, "/api/v2.0/configurations")
        .basic_auth(h.robot_login_name(&robot), Some(&robot.secret))
        .send()
        .await
        .unwrap();
    assert_eq!(as_robot.status(), StatusCode::FORBIDDEN);

    let config = api.admin_json("/api/v2.0/configurations").await;
    assert_eq!(config["auth_mode"]["value"], "oidc_auth");
    assert_eq!(config["oidc_scope"]["value"], "openid");
    assert_eq!(config["robot_name_prefix"]["value"], "otomi-");
    assert_eq!(config["oidc_scope"]["editable"], true);
    assert!(config.get("oidc_client_secret").is_none());

    let put = api
        .admin(Method::PUT, "/api/v2.0/configurations")
        .json(&json!({"oidc_scope": "openid,offline_access", "oidc_client_secret": "new-secret"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    assert_eq!(
        h.config_value("oidc_scope").unwrap(),
        "openid,offline_access"
    );
    assert_eq!(h.config_value("oidc_client_secret").unwrap(), "new-secret");

    let unknown = api
        .admin(Method::PUT, "/api/v2.0/configurations")
        .json(&json!({"oidc_scop": "openid"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    h.finish().await.unwrap();
}

#[tokio::test]
async fn requests_are_logged_with_writes_and_usernames_but_no_secrets() {
    let h = HarborSim::start_for_test(fast()).await.unwrap();
    let api = Api::new(h.url());
    api.admin(Method::GET, "/api/v2.0/projects")
        .send()
        .await
        .unwrap();
    api.admin(Method::POST, "/api/v2.0/projects")
        .json(&json!({"project_name": "team-a"}))
        .send()
        .await
        .unwrap();
    let log = h.requests();
    assert_eq!(log.len(), 2);
    assert!(!log[0].write);
    assert_eq!(log[0].status, 200);
    assert!(log[1].write);
    assert_eq!(log[1].status, 201);
    assert_eq!(log[1].username.as_deref(), Some("admin"));
    assert!(!format!("{log:?}").contains(PW));
    assert_eq!(h.write_count(), 1);
    h.clear_requests();
    assert!(h.requests().is_empty());
    h.finish().await.unwrap();
}

#[tokio::test]
async fn faults_answer_500_html_or_garbage_for_the_next_matching_requests() {
    let h = HarborSim::start(fast()).await.unwrap();
    let api = Api::new(h.url());
    h.inject_fault(Fault::on("POST", "/api/v2.0/projects").times(2));
    h.inject_fault(
        Fault::on("GET", "/api/v2.0/systeminfo")
            .status(502)
            .html("<html><body><h1>502 Bad Gateway</h1></body></html>"),
    );
    h.inject_fault(
        Fault::on("*", "/api/v2.0/robots")
            .status(200)
            .raw(Some("application/json"), b"{\"id\": 1, \"na"),
    );

    let create = || {
        api.admin(Method::POST, "/api/v2.0/projects")
            .json(&json!({"project_name": "team-a"}))
            .send()
    };
    let first = create().await.unwrap();
    assert_eq!(first.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(error_code(first).await, "UNKNOWN");
    assert_eq!(
        create().await.unwrap().status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert!(
        h.project("team-a").is_none(),
        "a fault before the handler changes nothing"
    );
    assert_eq!(create().await.unwrap().status(), StatusCode::CREATED);

    let html = api
        .admin(Method::GET, "/api/v2.0/systeminfo")
        .send()
        .await
        .unwrap();
    assert_eq!(html.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(html.headers()["content-type"], "text/html");
    let garbage = api
        .admin(Method::GET, "/api/v2.0/robots")
        .send()
        .await
        .unwrap();
    assert!(garbage.json::<Value>().await.is_err());

    let statuses: Vec<u16> = h.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 500, 201, 502, 200]);
}

#[tokio::test]
async fn a_fault_after_apply_hides_a_write_that_happened() {
    let h = HarborSim::start(otomi()).await.unwrap();
    let api = Api::new(h.url());
    h.add_project("team-a", false);
    h.inject_fault(Fault::on("POST", "/api/v2.0/robots").after_apply());
    let resp = api
        .admin(Method::POST, "/api/v2.0/robots")
        .json(&robot_body("team-a-pull", "team-a", &["pull"]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        h.robot("team-a-pull").is_some(),
        "the robot was created anyway"
    );
}

#[tokio::test]
async fn latency_is_added_to_every_request() {
    let h = HarborSim::start(HarborOptions {
        latency: Duration::from_millis(40),
        ..fast()
    })
    .await
    .unwrap();
    let api = Api::new(h.url());
    let started = Instant::now();
    api.req(Method::GET, "/api/v2.0/ping").send().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(40));
}

#[tokio::test]
async fn serves_https_with_its_own_ca() {
    let h = HarborSim::start(HarborOptions {
        tls: true,
        ..fast()
    })
    .await
    .unwrap();
    assert!(h.url().starts_with("https://"));
    let ca = reqwest::Certificate::from_pem(h.ca_pem().unwrap().as_bytes()).unwrap();
    let client = Client::builder().add_root_certificate(ca).build().unwrap();
    let resp = client
        .get(format!("{}/api/v2.0/ping", h.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "Pong");
    let untrusted = Client::new()
        .get(format!("{}/api/v2.0/ping", h.url()))
        .send()
        .await;
    assert!(
        untrusted.is_err(),
        "the private CA is not in the system roots"
    );
}

#[tokio::test]
async fn seeded_state_reads_back() {
    let h = HarborSim::start(otomi()).await.unwrap();
    h.add_project("team-a", false);
    h.add_group_member("team-a", "team-a", 3, 2);
    let robot = h.add_robot(RobotSeed {
        secret: Some("KnownSecret123".into()),
        ..RobotSeed::system("team-a-push", "team-a", &["pull", "push"])
    });
    assert_eq!(robot.secret, "KnownSecret123");
    h.set_robot_secret(robot.id, "DriftedSecret456");
    assert_eq!(h.robot("team-a-push").unwrap().secret, "DriftedSecret456");
    h.set_robot_permissions(
        robot.id,
        vec![RobotPermission::repository("team-b", &["pull"])],
    );
    assert_eq!(
        h.robot("team-a-push").unwrap().permissions[0].namespace,
        "team-b"
    );
    let project = h.project("team-a").unwrap();
    assert!(project
        .members
        .iter()
        .any(|m| m.entity_name == "team-a" && m.role_id == 2));
    assert!(h.remove_member("team-a", "team-a"));
    assert!(h.remove_robot(robot.id));
    assert!(h.remove_project("team-a"));
    assert!(h.project("team-a").is_none());
}

/// The contract stage is only worth something if Prism really catches a
/// simulator answer that breaks Harbor's API description.
#[tokio::test]
async fn the_contract_check_catches_an_answer_outside_the_description() {
    let h = HarborSim::start_for_test(fast()).await.unwrap();
    let api = Api::new(h.url());
    h.add_project("team-a", false);
    h.inject_fault(
        Fault::on("GET", "/api/v2.0/projects/team-a")
            .status(200)
            .json(json!({"project_id": "not-a-number", "name": 7})),
    );
    let resp = api
        .admin(Method::GET, "/api/v2.0/projects/team-a")
        .send()
        .await
        .unwrap();
    if h.through_prism() {
        // --errors: Prism answers in place of the broken response, with details.
        let problem: Value = resp.json().await.unwrap();
        assert!(
            problem["validation"].to_string().contains("project_id"),
            "{problem}"
        );
    }
    let through_prism = h.through_prism();
    let outcome = h.finish().await;
    if through_prism {
        let err = outcome.expect_err("Prism must report the wrongly typed project");
        assert!(
            format!("{err:#}").contains("/api/v2.0/projects/team-a"),
            "{err:#}"
        );
    } else {
        outcome.expect("without Prism there is nothing to check");
    }
}

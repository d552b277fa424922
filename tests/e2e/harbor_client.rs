//! The Harbor API client against the simulated Harbor: paging, exact names,
//! retries only where they are safe, Harbor's errors in messages, TLS.
//! Happy paths run through `start_for_test`, so the contract stage checks
//! the client's requests against Harbor's API description as well.

use std::time::Duration;

use harbor_doctor::clients::harbor::{
    is_conflict, status_of, Access, Harbor, HarborSettings, NewRobot, RobotPermission, Secret,
    TokenCheck,
};
use harbor_doctor::outcome::{exit_code_of, ExitCode};
use harbor_doctor_sim::harbor::{Fault, HarborOptions, HarborSim, RobotSeed};

const PW: &str = "Harbor12345";

fn opts() -> HarborOptions {
    HarborOptions {
        login_penalty: Duration::from_millis(20),
        ..HarborOptions::otomi("https://keycloak.example.com/realms/otomi")
    }
}

fn client(url: &str, password: &str) -> Harbor {
    Harbor::new(HarborSettings {
        url: url.to_string(),
        username: "admin".into(),
        password: Some(Secret::new(password)),
        ca_cert: None,
        timeout: Duration::from_secs(10),
    })
    .unwrap()
}

fn pull_robot(team: &str) -> NewRobot {
    NewRobot {
        name: format!("{team}-pull"),
        description: String::new(),
        level: "system".into(),
        duration: -1,
        disable: false,
        permissions: vec![RobotPermission {
            kind: "project".into(),
            namespace: team.into(),
            access: vec![Access {
                resource: "repository".into(),
                action: "pull".into(),
                effect: None,
            }],
        }],
    }
}

#[tokio::test]
async fn lists_are_read_whole_in_pages_of_100() {
    let h = HarborSim::start_for_test(opts()).await.unwrap();
    for i in 0..249 {
        h.add_project(&format!("team-{i}"), false);
    }
    let harbor = client(&h.url(), PW);
    let projects = harbor.projects().await.unwrap();
    assert_eq!(projects.len(), 250, "249 and library");
    let pages: Vec<_> = h
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/v2.0/projects")
        .collect();
    assert_eq!(pages.len(), 3);
    assert!(pages
        .iter()
        .all(|r| r.query.as_deref().unwrap().contains("page_size=100")));
    h.finish().await.unwrap();
}

#[tokio::test]
async fn lookups_match_names_exactly() {
    let h = HarborSim::start_for_test(opts()).await.unwrap();
    h.add_project("team-ab", false);
    h.add_project("42", false);
    let harbor = client(&h.url(), PW);
    assert!(harbor.project("team-a").await.unwrap().is_none());
    assert_eq!(
        harbor.project("team-ab").await.unwrap().unwrap().name,
        "team-ab"
    );
    assert_eq!(harbor.project("42").await.unwrap().unwrap().name, "42");

    h.add_robot(RobotSeed::system("team-ab-pull", "team-ab", &["pull"]));
    assert!(harbor.robot("team-a-pull").await.unwrap().is_none());
    let robot = harbor.robot("team-ab-pull").await.unwrap().unwrap();
    assert_eq!(
        robot.name, "otomi-team-ab-pull",
        "shown with the configured prefix"
    );
    assert_eq!(harbor.robot_prefix().await.unwrap(), "otomi-");
    h.finish().await.unwrap();
}

#[tokio::test]
async fn a_second_create_is_a_recognisable_conflict() {
    let h = HarborSim::start(opts()).await.unwrap();
    let harbor = client(&h.url(), PW);
    harbor.create_project("team-a").await.unwrap();
    let err = harbor.create_project("team-a").await.unwrap_err();
    assert!(is_conflict(&err), "{err:#}");
    assert!(format!("{err:#}").contains("already exists"), "{err:#}");
    assert!(format!("{err:#}").contains("request id"), "{err:#}");
}

#[tokio::test]
async fn robots_are_created_their_secret_set_and_tested_once() {
    let h = HarborSim::start_for_test(opts()).await.unwrap();
    h.add_project("team-a", false);
    let harbor = client(&h.url(), PW);
    let created = harbor.create_robot(&pull_robot("team-a")).await.unwrap();
    assert_eq!(created.name, "otomi-team-a-pull");
    let chosen = Secret::new("FromTheSecret123");
    harbor.set_robot_secret(created.id, &chosen).await.unwrap();
    assert_eq!(
        harbor
            .registry_token(&created.name, &chosen, Some("repository:team-a/app:pull"))
            .await
            .unwrap(),
        TokenCheck::Accepted
    );
    let wrong = Secret::new("NotTheSecret123");
    assert_eq!(
        harbor
            .registry_token(&created.name, &wrong, None)
            .await
            .unwrap(),
        TokenCheck::Rejected
    );
    let token_requests = h
        .requests()
        .into_iter()
        .filter(|r| r.path == "/service/token")
        .count();
    assert_eq!(token_requests, 2, "a rejected credential is never retried");
    assert_eq!(h.failed_logins(&created.name), 1);

    let regenerated = harbor.regenerate_robot_secret(created.id).await.unwrap();
    assert_eq!(h.robot("team-a-pull").unwrap().secret, regenerated.expose());
    let mut robot = harbor.robot("team-a-pull").await.unwrap().unwrap();
    robot.disable = true;
    harbor.update_robot(&robot).await.unwrap();
    assert!(h.robot("team-a-pull").unwrap().disabled);
    harbor.delete_robot(created.id).await.unwrap();
    assert!(harbor.robot("team-a-pull").await.unwrap().is_none());
    h.finish().await.unwrap();
}

#[tokio::test]
async fn members_and_configuration() {
    let h = HarborSim::start_for_test(opts()).await.unwrap();
    h.add_project("team-a", false);
    let harbor = client(&h.url(), PW);
    harbor
        .add_group_member("team-a", "team-a", 3, 2)
        .await
        .unwrap();
    let members = harbor.members("team-a").await.unwrap();
    assert!(members
        .iter()
        .any(|m| m.entity_name == "team-a" && m.entity_type == "g" && m.role_id == 2));
    let config = harbor.configurations().await.unwrap();
    assert_eq!(config["oidc_scope"], "openid");
    let mut change = serde_json::Map::new();
    change.insert("oidc_scope".into(), "openid,offline_access".into());
    harbor.set_configurations(&change).await.unwrap();
    assert_eq!(
        h.config_value("oidc_scope").unwrap(),
        "openid,offline_access"
    );
    let info = harbor.systeminfo().await.unwrap();
    assert_eq!(info.auth_mode.as_deref(), Some("oidc_auth"));
    assert!(info.harbor_version.is_some());
    assert!(harbor.health().await.unwrap().status == "healthy");
    assert_eq!(harbor.ping().await.unwrap(), "Pong");
    h.finish().await.unwrap();
}

#[tokio::test]
async fn idempotent_requests_are_retried_on_transient_answers() {
    let h = HarborSim::start(opts()).await.unwrap();
    h.inject_fault(Fault::on("GET", "/api/v2.0/projects").status(503).times(2));
    let harbor = client(&h.url(), PW);
    assert_eq!(harbor.projects().await.unwrap().len(), 1);
    let gets: Vec<_> = h
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/v2.0/projects")
        .collect();
    assert_eq!(gets.len(), 3);
    assert!(
        gets.iter().all(|r| r.request_id == gets[0].request_id),
        "retries keep the request id"
    );

    h.clear_requests();
    h.inject_fault(Fault::on("POST", "/api/v2.0/projects").status(503));
    let err = harbor.create_project("team-a").await.unwrap_err();
    assert_eq!(status_of(&err), Some(503));
    assert_eq!(h.requests().len(), 1, "a POST is never retried");
}

#[tokio::test]
async fn a_500_is_not_retried_and_html_is_excerpted() {
    let h = HarborSim::start(opts()).await.unwrap();
    h.inject_fault(
        Fault::on("GET", "/api/v2.0/systeminfo")
            .status(500)
            .html("<html><body><h1>500 Internal Server Error</h1><p>nginx</p></body></html>"),
    );
    let harbor = client(&h.url(), PW);
    let err = harbor.systeminfo().await.unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("HTTP 500"), "{msg}");
    assert!(msg.contains("500 Internal Server Error"), "{msg}");
    assert!(!msg.contains("<h1>"), "{msg}");
    assert_eq!(h.requests().len(), 1);

    h.inject_fault(
        Fault::on("GET", "/api/v2.0/projects")
            .status(200)
            .raw(Some("application/json"), b"{\"project_id\": 1, \"na"),
    );
    let err = harbor.projects().await.unwrap_err();
    assert!(
        format!("{err:#}").contains("not the JSON Harbor sends"),
        "{err:#}"
    );
}

#[tokio::test]
async fn a_wrong_admin_password_is_exit_3_after_one_request() {
    let h = HarborSim::start(opts()).await.unwrap();
    let harbor = client(&h.url(), "wrong-password");
    let err = harbor.projects().await.unwrap_err();
    assert_eq!(exit_code_of(&err), ExitCode::CannotRun);
    let msg = format!("{err:#}");
    assert!(msg.contains("rejected the credentials"), "{msg}");
    assert!(!msg.contains("wrong-password"), "{msg}");
    assert_eq!(h.requests().len(), 1);
    assert_eq!(h.failed_logins("admin"), 1);
}

#[tokio::test]
async fn https_is_verified_against_the_given_ca() {
    let h = HarborSim::start(HarborOptions {
        tls: true,
        ..opts()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, h.ca_pem().unwrap()).unwrap();
    let trusting = Harbor::new(HarborSettings {
        url: h.url(),
        username: "admin".into(),
        password: Some(Secret::new(PW)),
        ca_cert: Some(ca),
        timeout: Duration::from_secs(10),
    })
    .unwrap();
    assert_eq!(trusting.ping().await.unwrap(), "Pong");

    let untrusting = client(&h.url(), PW);
    let err = untrusting.ping().await.unwrap_err();
    assert!(format!("{err:#}").contains("not reachable"), "{err:#}");

    let ftp = Harbor::new(HarborSettings {
        url: "ftp://harbor.example.com".into(),
        username: "admin".into(),
        password: None,
        ca_cert: None,
        timeout: Duration::from_secs(1),
    });
    assert!(ftp.is_err());
}

#[tokio::test]
async fn an_unreachable_harbor_is_retried_then_reported() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let harbor = client(&url, PW);
    let err = harbor.ping().await.unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("not reachable") && msg.contains("could not connect"),
        "{msg}"
    );
    assert_eq!(exit_code_of(&err), ExitCode::CannotRun);
}

#[tokio::test]
async fn no_password_means_not_configured_for_admin_calls() {
    let h = HarborSim::start(opts()).await.unwrap();
    let harbor = Harbor::new(HarborSettings {
        url: h.url(),
        username: "admin".into(),
        password: None,
        ca_cert: None,
        timeout: Duration::from_secs(5),
    })
    .unwrap();
    assert_eq!(harbor.ping().await.unwrap(), "Pong");
    let err = harbor.projects().await.unwrap_err();
    assert!(harbor_doctor::clients::is_not_configured(&err), "{err:#}");
}

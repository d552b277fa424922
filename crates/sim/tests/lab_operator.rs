//! The lab's cluster holds what Otomi's Harbor operator reads (apl-tasks,
//! `src/operators/harbor`): its ConfigMap and Secret, consistent with the
//! lab's Harbor, so the real operator can be pointed at the lab.

use base64::Engine;
use harbor_doctor_sim::lab::{
    Lab, Postgres, OPERATOR_CONFIGMAP, OPERATOR_NAMESPACE, OPERATOR_SECRET,
};
use serde_json::Value;

#[tokio::test]
async fn the_operators_settings_match_the_labs_harbor() {
    let lab = Lab::start(Postgres::Shared, |_| {}).await.unwrap();
    let harbor = lab.harbor();

    let cm = lab
        .kube()
        .get(
            "v1",
            "ConfigMap",
            Some(OPERATOR_NAMESPACE),
            OPERATOR_CONFIGMAP,
        )
        .expect("the operator's ConfigMap");
    let data = &cm["data"];
    let external = url::Url::parse(&harbor.external_url()).unwrap();
    assert_eq!(
        data["harborBaseRepoUrl"],
        format!(
            "{}:{}",
            external.host_str().unwrap(),
            external.port().unwrap()
        ),
        "the registry host the team Secrets name"
    );
    for (key, config) in [
        ("oidcUserClaim", "oidc_user_claim"),
        ("oidcGroupsClaim", "oidc_groups_claim"),
        ("oidcName", "oidc_name"),
        ("oidcScope", "oidc_scope"),
    ] {
        assert_eq!(data[key], harbor.config_value(config).unwrap(), "{key}");
    }
    for (key, config) in [
        ("oidcAutoOnboard", "oidc_auto_onboard"),
        ("oidcVerifyCert", "oidc_verify_cert"),
    ] {
        let flag = harbor.config_value(config).unwrap().as_bool().unwrap();
        assert_eq!(data[key], flag.to_string(), "{key}");
    }
    // The operator reads the team ids as a JSON list and works on
    // `team-<id>`: each is a namespace of the lab with a Harbor project.
    let teams: Vec<String> =
        serde_json::from_str(data["teamNamespaces"].as_str().unwrap()).unwrap();
    assert_eq!(teams, harbor_doctor_sim::lab::TEAMS);
    for id in &teams {
        let ns = format!("team-{id}");
        assert!(
            lab.kube().get("v1", "Namespace", None, &ns).is_some(),
            "{ns}"
        );
        assert!(harbor.project(&ns).is_some(), "{ns}");
    }

    let secret = lab
        .kube()
        .get("v1", "Secret", Some(OPERATOR_NAMESPACE), OPERATOR_SECRET)
        .expect("the operator's Secret");
    let field = |key: &str| -> String {
        let raw = secret["data"][key]
            .as_str()
            .unwrap_or_else(|| panic!("no {key}"));
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(raw)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(
        field("oidcEndpoint"),
        harbor.config_value("oidc_endpoint").unwrap()
    );
    assert_eq!(
        field("oidcClientId"),
        harbor.config_value("oidc_client_id").unwrap()
    );
    assert_eq!(
        field("oidcClientSecret"),
        harbor.config_value("oidc_client_secret").unwrap()
    );
    // Its credentials sign in to the lab's Harbor as the admin.
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(harbor.ca_pem().unwrap().as_bytes()).unwrap(),
        )
        .build()
        .unwrap();
    let resp = client
        .get(format!("{}/api/v2.0/configurations", harbor.url()))
        .basic_auth(field("harborUser"), Some(field("harborPassword")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        reqwest::StatusCode::OK,
        "admin-only endpoint"
    );
    let config: Value = resp.json().await.unwrap();
    assert_eq!(config["auth_mode"]["value"], "oidc_auth");
    lab.shutdown().unwrap();
}

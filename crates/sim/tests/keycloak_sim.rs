//! The simulated Keycloak answers the admin API the way Keycloak does, so the
//! doctor's Keycloak client can be tested against it with real HTTP.

use harbor_doctor_sim::keycloak::{KeycloakSim, RealmLifespans};
use reqwest::StatusCode;
use serde_json::Value;

async fn admin_token(
    client: &reqwest::Client,
    kc: &KeycloakSim,
    password: &str,
) -> reqwest::Response {
    client
        .post(format!(
            "{}/realms/master/protocol/openid-connect/token",
            kc.url()
        ))
        .form(&[
            ("grant_type", "password"),
            ("client_id", "admin-cli"),
            ("username", "admin"),
            ("password", password),
        ])
        .send()
        .await
        .unwrap()
}

async fn logged_in() -> (KeycloakSim, reqwest::Client, String) {
    let kc = KeycloakSim::start("admin", "kc-secret").await.unwrap();
    let client = reqwest::Client::new();
    let resp = admin_token(&client, &kc, "kc-secret").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_u64().unwrap() > 0);
    let token = body["access_token"].as_str().unwrap().to_string();
    (kc, client, token)
}

#[tokio::test]
async fn wrong_admin_password_is_invalid_grant() {
    let kc = KeycloakSim::start("admin", "kc-secret").await.unwrap();
    let resp = admin_token(&reqwest::Client::new(), &kc, "nope").await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(body["error_description"], "Invalid user credentials");
}

#[tokio::test]
async fn admin_endpoints_need_a_valid_bearer_token() {
    let (kc, client, _token) = logged_in().await;
    kc.add_realm("otomi", RealmLifespans::otomi());
    let url = format!("{}/admin/realms/otomi/users", kc.url());
    let missing = client.get(&url).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    let bogus = client
        .get(&url)
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(bogus.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn unknown_realm_is_404_realm_not_found() {
    let (kc, client, token) = logged_in().await;
    for path in [
        "/admin/realms/nope",
        "/admin/realms/nope/users",
        "/admin/realms/nope/users/count",
    ] {
        let resp = client
            .get(format!("{}{path}", kc.url()))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "Realm not found.", "{path}");
    }
    let wk = client
        .get(format!(
            "{}/realms/nope/.well-known/openid-configuration",
            kc.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(wk.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn realm_representation_carries_the_lifespans() {
    let (kc, client, token) = logged_in().await;
    kc.add_realm("otomi", RealmLifespans::otomi());
    let body: Value = client
        .get(format!("{}/admin/realms/otomi", kc.url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["realm"], "otomi");
    assert_eq!(body["accessTokenLifespan"], 60);
    assert_eq!(body["ssoSessionIdleTimeout"], 1800);
    assert_eq!(body["ssoSessionMaxLifespan"], 36000);
    assert_eq!(body["offlineSessionIdleTimeout"], 2_592_000);
}

#[tokio::test]
async fn issuer_is_the_realm_url() {
    let kc = KeycloakSim::start("admin", "kc-secret").await.unwrap();
    kc.add_realm("otomi", RealmLifespans::otomi());
    let body: Value = reqwest::get(format!(
        "{}/realms/otomi/.well-known/openid-configuration",
        kc.url()
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(body["issuer"], format!("{}/realms/otomi", kc.url()));
    assert_eq!(body["issuer"], kc.issuer("otomi"));
}

#[tokio::test]
async fn users_page_with_first_and_max_defaulting_to_100() {
    let (kc, client, token) = logged_in().await;
    kc.add_realm("otomi", RealmLifespans::otomi());
    for i in 0..250 {
        kc.add_user(
            "otomi",
            &format!("user{i:03}"),
            Some(&format!("user{i:03}@example.com")),
            &format!("id-{i}"),
        );
    }
    let users = format!("{}/admin/realms/otomi/users", kc.url());
    let default_page: Vec<Value> = client
        .get(&users)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(default_page.len(), 100);

    let mut seen = Vec::new();
    let mut first = 0;
    loop {
        let page: Vec<Value> = client
            .get(&users)
            .query(&[("first", first.to_string()), ("max", "100".to_string())])
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        first += page.len();
        seen.extend(
            page.into_iter()
                .map(|u| u["username"].as_str().unwrap().to_string()),
        );
    }
    assert_eq!(seen.len(), 250);
    seen.dedup();
    assert_eq!(seen.len(), 250, "pages must not overlap");

    let count: Value = client
        .get(format!("{users}/count"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(count, 250);

    let listed: Vec<_> = kc
        .requests()
        .into_iter()
        .filter(|r| r.path == "/admin/realms/otomi/users")
        .collect();
    assert_eq!(
        listed.len(),
        1 + 4,
        "one default page, then three pages and the empty one"
    );
    assert_eq!(listed[1].query.as_deref(), Some("first=0&max=100"));
}

#[tokio::test]
async fn username_and_email_filters_are_fuzzy_unless_exact() {
    let (kc, client, token) = logged_in().await;
    kc.add_realm("otomi", RealmLifespans::otomi());
    kc.add_user("otomi", "alice", Some("alice@example.com"), "id-alice");
    kc.add_user("otomi", "alice2", Some("alice2@example.com"), "id-alice2");
    kc.add_user("otomi", "bob", None, "id-bob");
    let users = format!("{}/admin/realms/otomi/users", kc.url());
    let get = |q: Vec<(&'static str, &'static str)>| {
        let client = client.clone();
        let users = users.clone();
        let token = token.clone();
        async move {
            let v: Vec<Value> = client
                .get(&users)
                .query(&q)
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v.into_iter()
                .map(|u| u["username"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(get(vec![("username", "alice")]).await, ["alice", "alice2"]);
    assert_eq!(
        get(vec![("username", "alice"), ("exact", "true")]).await,
        ["alice"]
    );
    assert_eq!(
        get(vec![("username", "ALICE"), ("exact", "true")]).await,
        ["alice"]
    );
    assert_eq!(
        get(vec![("email", "alice@example.com"), ("exact", "true")]).await,
        ["alice"]
    );
    assert_eq!(get(vec![("search", "bo")]).await, ["bob"]);
    assert_eq!(
        get(vec![("search", "example.com")]).await,
        ["alice", "alice2"]
    );

    let alice: Vec<Value> = client
        .get(&users)
        .query(&[("username", "alice"), ("exact", "true")])
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(alice[0]["id"], "id-alice");
    assert_eq!(alice[0]["email"], "alice@example.com");
    let bob = &get(vec![("username", "bob")]).await;
    assert_eq!(bob, &["bob"]);
}

#[tokio::test]
async fn redeploy_gives_every_user_a_new_id() {
    let (kc, client, token) = logged_in().await;
    kc.add_realm("otomi", RealmLifespans::otomi());
    kc.add_user("otomi", "alice", Some("alice@example.com"), "id-alice");
    kc.add_user("otomi", "bob", None, "id-bob");
    kc.redeploy("otomi");
    let alice = kc.user_id("otomi", "alice").unwrap();
    let bob = kc.user_id("otomi", "bob").unwrap();
    assert_ne!(alice, "id-alice");
    assert_ne!(bob, "id-bob");
    assert_ne!(alice, bob);
    let listed: Vec<Value> = client
        .get(format!(
            "{}/admin/realms/otomi/users?username=alice&exact=true",
            kc.url()
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["id"], alice.as_str());
    assert_eq!(kc.user_id("otomi", "nobody"), None);
}

#[tokio::test]
async fn serves_https_with_its_own_ca() {
    let pki = harbor_doctor_sim::tls::TestPki::generate().unwrap();
    let kc = KeycloakSim::start_with_tls("admin", "kc-secret", Some(pki))
        .await
        .unwrap();
    assert!(kc.url().starts_with("https://"));
    let ca = reqwest::Certificate::from_pem(kc.ca_pem().unwrap().as_bytes()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let resp = admin_token(&client, &kc, "kc-secret").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let wk: Value = client
        .get(format!(
            "{}/realms/master/.well-known/openid-configuration",
            kc.url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(wk["issuer"], kc.issuer("master"));
}

//! Otomi's Harbor operator (APL's apl-tasks, `src/operators/harbor`) against
//! the simulator: the requests it sends, in its order, with the answers
//! Harbor 2.11 gives. Each sequence runs over HTTP/1.1 (through Prism in the
//! contract stage) and over HTTP/2, both with prior knowledge on plain TCP
//! and negotiated by ALPN over TLS. HTTP/2 goes straight to the simulator:
//! Prism listens on HTTP/1.1 only, and an HTTP/2 client pointed at it gets
//! no HTTP answer at all.

use std::sync::Arc;

use base64::Engine;
use harbor_doctor_sim::harbor::{HarborOptions, HarborSim, HTTP_GROUP, OIDC_GROUP};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};

use super::{otomi, PW};

/// One answer, whichever protocol carried it.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "a {} answer whose body is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Harbor's `{"errors":[{code, message}]}`, as (code, message).
    fn error(&self) -> (String, String) {
        let body = self.json();
        let e = &body["errors"][0];
        (
            e["code"].as_str().unwrap_or_default().to_string(),
            e["message"].as_str().unwrap_or_default().to_string(),
        )
    }
}

enum Transport {
    Http1 {
        client: reqwest::Client,
        base: String,
    },
    Http2 {
        send: SendRequest<Full<Bytes>>,
        base: String,
    },
}

impl Transport {
    fn http1(base: String) -> Self {
        Transport::Http1 {
            client: reqwest::Client::new(),
            base,
        }
    }

    /// HTTP/2 to `base`: with prior knowledge on plain HTTP, and with h2
    /// negotiated by ALPN (which the test insists on) over HTTPS.
    async fn http2(base: String, ca_pem: Option<&str>) -> Self {
        let url = url::Url::parse(&base).unwrap();
        let host = url.host_str().unwrap().to_string();
        let tcp = tokio::net::TcpStream::connect((host.as_str(), url.port().unwrap()))
            .await
            .unwrap();
        let send = match ca_pem {
            None => {
                let (send, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                        .await
                        .unwrap();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                send
            }
            Some(ca) => {
                harbor_doctor_sim::tls::install_crypto_provider();
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                    roots.add(cert.unwrap()).unwrap();
                }
                let mut config = rustls::ClientConfig::builder()
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                config.alpn_protocols = vec![b"h2".to_vec()];
                let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                    .connect(ServerName::try_from(host).unwrap(), tcp)
                    .await
                    .unwrap();
                assert_eq!(
                    tls.get_ref().1.alpn_protocol(),
                    Some(&b"h2"[..]),
                    "the simulator offers h2 by ALPN"
                );
                let (send, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                        .await
                        .unwrap();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                send
            }
        };
        Transport::Http2 { send, base }
    }

    /// A request as the admin, the operator's credentials.
    async fn call(&mut self, method: Method, path: &str, body: Option<&Value>) -> Answer {
        self.call_as(("admin", PW), method, path, body).await
    }

    async fn call_as(
        &mut self,
        (user, password): (&str, &str),
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Answer {
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let answer = match self {
            Transport::Http1 { client, base } => {
                let mut req = client
                    .request(method.clone(), format!("{base}{path}"))
                    .header("authorization", auth)
                    .header("accept", "application/json");
                if let Some(b) = body {
                    req = req.json(b);
                }
                let resp = req.send().await.unwrap();
                assert_eq!(resp.version(), reqwest::Version::HTTP_11);
                Answer {
                    status: resp.status(),
                    headers: resp.headers().clone(),
                    body: resp.bytes().await.unwrap(),
                }
            }
            Transport::Http2 { send, base } => {
                send.ready().await.unwrap();
                let mut req = hyper::Request::builder()
                    .method(method.clone())
                    .uri(format!("{base}{path}"))
                    .header("authorization", auth)
                    .header("accept", "application/json");
                let payload = match body {
                    Some(b) => {
                        req = req.header("content-type", "application/json");
                        Bytes::from(b.to_string())
                    }
                    None => Bytes::new(),
                };
                let resp = tokio::time::timeout(
                    std::time::Duration::from_secs(10),
                    send.send_request(req.body(Full::new(payload)).unwrap()),
                )
                .await
                .unwrap_or_else(|_| panic!("no HTTP/2 answer to {method} {path} within 10 s"))
                .unwrap_or_else(|e| panic!("no HTTP/2 answer to {method} {path}: {e}"));
                assert_eq!(resp.version(), hyper::Version::HTTP_2);
                let (parts, body) = resp.into_parts();
                Answer {
                    status: parts.status,
                    headers: parts.headers,
                    body: body.collect().await.unwrap().to_bytes(),
                }
            }
        };
        // Every answer Harbor gives carries a request id.
        assert!(
            answer.header("x-request-id").is_some_and(|v| !v.is_empty()),
            "{method} {path}: no X-Request-Id"
        );
        answer
    }
}

/// The id at the end of a Location header that must start with `prefix`.
fn id_in_location(a: &Answer, prefix: &str) -> i64 {
    let location = a.header("location").expect("a Location header");
    let tail = location
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("Location {location} does not start with {prefix}"));
    tail.parse().unwrap()
}

/// The robot body harbor-robots.ts builds for a pull robot.
fn pull_robot(name: &str, project: &str, secret: &str) -> Value {
    json!({
        "name": name,
        "duration": -1,
        "description": "Allow to pull from project container registry",
        "disable": false,
        "level": "system",
        "secret": secret,
        "permissions": [{
            "kind": "project",
            "namespace": project,
            "access": [{"resource": "repository", "action": "pull"}]
        }]
    })
}

/// Two cycles of the operator for one team: the first finds nothing and
/// creates it all, the second finds it all and updates it in place.
async fn operator_cycles(t: &mut Transport, h: &HarborSim) {
    let team = "team-delta";

    // ensureProject, first cycle: GET answers 404 "... not found", which the
    // operator reads as "create it".
    let missing = t
        .call(Method::GET, &format!("/api/v2.0/projects/{team}"), None)
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let (code, message) = missing.error();
    assert_eq!(code, "NOT_FOUND");
    assert!(message.contains("not found"), "{message}");
    let create = t
        .call(
            Method::POST,
            "/api/v2.0/projects",
            Some(&json!({"project_name": team})),
        )
        .await;
    assert_eq!(create.status, StatusCode::CREATED);
    assert!(create.body.is_empty(), "201 has no body");
    let project_id = id_in_location(&create, "/api/v2.0/projects/");

    // Second cycle: GET, then PUT with the same request body.
    let project = t
        .call(Method::GET, &format!("/api/v2.0/projects/{team}"), None)
        .await;
    assert_eq!(project.status, StatusCode::OK);
    assert_eq!(project.json()["project_id"], project_id);
    assert_eq!(project.json()["metadata"]["public"], "false");
    let update = t
        .call(
            Method::PUT,
            &format!("/api/v2.0/projects/{team}"),
            Some(&json!({"project_name": team})),
        )
        .await;
    assert_eq!(update.status, StatusCode::OK, "updateProject");
    assert!(update.body.is_empty());
    assert_eq!(h.project(team).unwrap().id, project_id, "the name stays");

    // ensureProjectMember for the team's group and all-teams-admin: listed
    // by exact entity name under the numeric id, added with group_type 2.
    let members = format!("/api/v2.0/projects/{project_id}/members");
    for (count, (group, role)) in [(team, 2), ("all-teams-admin", 1)].into_iter().enumerate() {
        let list = t
            .call(Method::GET, &format!("{members}?entityname={group}"), None)
            .await;
        assert_eq!(list.status, StatusCode::OK);
        assert_eq!(list.json(), json!([]));
        // Harbor counts all members (admin and those added so far).
        assert_eq!(
            list.header("x-total-count"),
            Some((count + 1).to_string().as_str())
        );
        let add = t
            .call(
                Method::POST,
                &members,
                Some(&json!({"role_id": role,
                             "member_group": {"group_name": group, "group_type": HTTP_GROUP}})),
            )
            .await;
        assert_eq!(
            add.status,
            StatusCode::CREATED,
            "createProjectMember {group}"
        );
        assert!(add.body.is_empty());
        id_in_location(&add, &format!("{members}/"));
    }

    // Next cycle: each member is found by its exact name and its role PUT.
    let mut member_ids = Vec::new();
    for (group, role) in [(team, 2), ("all-teams-admin", 1)] {
        let list = t
            .call(Method::GET, &format!("{members}?entityname={group}"), None)
            .await;
        let found = list.json();
        assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
        assert_eq!(found[0]["entity_name"], group);
        assert_eq!(found[0]["entity_type"], "g");
        assert_eq!(found[0]["role_id"], role);
        let mid = found[0]["id"].as_i64().unwrap();
        let put = t
            .call(
                Method::PUT,
                &format!("{members}/{mid}"),
                Some(&json!({"role_id": role})),
            )
            .await;
        assert_eq!(put.status, StatusCode::OK, "updateProjectMember {group}");
        assert!(put.body.is_empty());
        // The operator asked for HTTP groups; in OIDC mode Harbor onboarded
        // OIDC groups, the ones its users' logins put them in.
        let gid = found[0]["entity_id"].as_i64().unwrap();
        let g = t
            .call(Method::GET, &format!("/api/v2.0/usergroups/{gid}"), None)
            .await;
        assert_eq!(g.status, StatusCode::OK);
        assert_eq!(g.json()["group_name"], group);
        assert_eq!(g.json()["group_type"], OIDC_GROUP);
        member_ids.push(mid);
    }
    // A role change takes.
    let put = t
        .call(
            Method::PUT,
            &format!("{members}/{}", member_ids[0]),
            Some(&json!({"role_id": 3})),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK);
    let one = t
        .call(Method::GET, &format!("{members}/{}", member_ids[0]), None)
        .await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.json()["role_id"], 3);
    assert_eq!(one.json()["role_name"], "guest");
    assert_eq!(one.json()["project_id"], project_id);

    // ensureRobotAccount: found by exact stored name, created with the
    // Secret's password as its secret, then PATCHed with it again.
    let robot_name = format!("{team}-pull");
    let lookup = format!("/api/v2.0/robots?q=name%3D{robot_name}");
    let none = t.call(Method::GET, &lookup, None).await;
    assert_eq!(none.status, StatusCode::OK);
    assert_eq!(none.json(), json!([]));
    let token = "Pull9secretFromTheK8sSecret0aaaaa";
    let created = t
        .call(
            Method::POST,
            "/api/v2.0/robots",
            Some(&pull_robot(&robot_name, team, token)),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let body = created.json();
    assert_eq!(body["name"], format!("otomi-{robot_name}"));
    assert_eq!(body["secret"], token, "the chosen secret is kept");
    let robot_id = body["id"].as_i64().unwrap();
    let patch = t
        .call(
            Method::PATCH,
            &format!("/api/v2.0/robots/{robot_id}"),
            Some(&json!({"secret": token})),
        )
        .await;
    assert_eq!(patch.status, StatusCode::OK);
    assert_eq!(patch.json(), json!({}), "a chosen secret is not echoed");
    // Next cycle: the list finds it, PUT sends it back as listed (plus the
    // secret), and the PATCH sets the Secret's password once more.
    let found = t.call(Method::GET, &lookup, None).await.json();
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert_eq!(found[0]["name"], format!("otomi-{robot_name}"));
    let mut robot = found[0].clone();
    robot["secret"] = json!(token);
    let put = t
        .call(
            Method::PUT,
            &format!("/api/v2.0/robots/{robot_id}"),
            Some(&robot),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "updateRobot");
    let patch = t
        .call(
            Method::PATCH,
            &format!("/api/v2.0/robots/{robot_id}"),
            Some(&json!({"secret": token})),
        )
        .await;
    assert_eq!(patch.status, StatusCode::OK);
    let login = t
        .call_as(
            (&format!("otomi-{robot_name}"), token),
            Method::GET,
            &format!("/service/token?service=harbor-registry&scope=repository:{team}/app:pull"),
            None,
        )
        .await;
    assert_eq!(login.status, StatusCode::OK, "the robot logs in with it");

    // A member read and removed; Harbor's DELETE answers 200 again for a
    // member that is gone.
    let mid = member_ids[1];
    let del = t
        .call(Method::DELETE, &format!("{members}/{mid}"), None)
        .await;
    assert_eq!(del.status, StatusCode::OK);
    let gone = t.call(Method::GET, &format!("{members}/{mid}"), None).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.error().0, "NOT_FOUND");
    let again = t
        .call(Method::DELETE, &format!("{members}/{mid}"), None)
        .await;
    assert_eq!(again.status, StatusCode::OK);

    // A project with a repository is not deleted.
    h.add_repository(team, "app");
    let refused = t
        .call(Method::DELETE, &format!("/api/v2.0/projects/{team}"), None)
        .await;
    assert_eq!(refused.status, StatusCode::PRECONDITION_FAILED);
    let (code, message) = refused.error();
    assert_eq!(code, "PRECONDITION");
    assert!(message.contains("repositories"), "{message}");
    let deletable = t
        .call(
            Method::GET,
            &format!("/api/v2.0/projects/{team}/_deletable"),
            None,
        )
        .await;
    assert_eq!(deletable.json()["deletable"], false);
    assert!(h.project(team).is_some());

    // An empty one is, with its project-level robots; system robots stay.
    let create = t
        .call(
            Method::POST,
            "/api/v2.0/projects",
            Some(&json!({"project_name": "team-echo"})),
        )
        .await;
    assert_eq!(create.status, StatusCode::CREATED);
    let mut project_robot = pull_robot("ci", "team-echo", token);
    project_robot["level"] = json!("project");
    let made = t
        .call(Method::POST, "/api/v2.0/robots", Some(&project_robot))
        .await;
    assert_eq!(made.status, StatusCode::CREATED);
    assert_eq!(made.json()["name"], "otomi-team-echo+ci");
    let project_robot_id = made.json()["id"].as_i64().unwrap();
    let system_robot = t
        .call(
            Method::POST,
            "/api/v2.0/robots",
            Some(&pull_robot("team-echo-pull", "team-echo", token)),
        )
        .await;
    assert_eq!(system_robot.status, StatusCode::CREATED);
    let del = t
        .call(Method::DELETE, "/api/v2.0/projects/team-echo", None)
        .await;
    assert_eq!(del.status, StatusCode::OK, "deleteProject");
    assert!(del.body.is_empty());
    let gone = t
        .call(Method::GET, "/api/v2.0/projects/team-echo", None)
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    let robot_gone = t
        .call(
            Method::GET,
            &format!("/api/v2.0/robots/{project_robot_id}"),
            None,
        )
        .await;
    assert_eq!(robot_gone.status, StatusCode::NOT_FOUND);
    assert!(h.robot("team-echo-pull").is_some());
}

#[tokio::test]
async fn operator_cycles_over_http1() {
    let h = HarborSim::start_for_test(otomi()).await.unwrap();
    let mut t = Transport::http1(h.url());
    operator_cycles(&mut t, &h).await;
    h.finish().await.unwrap();
}

#[tokio::test]
async fn operator_cycles_over_http2_with_prior_knowledge() {
    let h = HarborSim::start(otomi()).await.unwrap();
    let mut t = Transport::http2(h.url(), None).await;
    operator_cycles(&mut t, &h).await;
}

#[tokio::test]
async fn operator_cycles_over_http2_negotiated_over_tls() {
    let h = HarborSim::start(HarborOptions {
        tls: true,
        ..otomi()
    })
    .await
    .unwrap();
    let mut t = Transport::http2(h.url(), h.ca_pem()).await;
    operator_cycles(&mut t, &h).await;
}

/// What Harbor's router answers for what it has no operation for; straight
/// to the simulator (Prism answers these itself).
async fn unknown_routes(t: &mut Transport) {
    let nope = t.call(Method::GET, "/api/v2.0/nope", None).await;
    assert_eq!(nope.status, StatusCode::NOT_FOUND);
    assert_eq!(
        nope.error(),
        (
            "NOT_FOUND".into(),
            "path /api/v2.0/nope was not found".into()
        )
    );
    let patch = t
        .call(
            Method::PATCH,
            "/api/v2.0/projects/library",
            Some(&json!({"project_name": "library"})),
        )
        .await;
    assert_eq!(patch.status, StatusCode::METHOD_NOT_ALLOWED);
    let (code, message) = patch.error();
    assert_eq!(code, "METHOD_NOT_ALLOWED");
    assert_eq!(
        message,
        "method PATCH is not allowed, but [DELETE,GET,PUT] are"
    );
    // An operation Harbor has and the simulator does not serve: a 404 that
    // says so, never an empty answer.
    let summary = t
        .call(Method::POST, "/api/v2.0/usergroups", Some(&json!({})))
        .await;
    assert_eq!(summary.status, StatusCode::NOT_FOUND);
    assert!(summary.error().1.contains("simulated Harbor"));
    // And a request with a body to a path that is not there.
    let put = t
        .call(
            Method::PUT,
            "/api/v2.0/projects/28/members/35/extra",
            Some(&json!({"role_id": 2})),
        )
        .await;
    assert_eq!(put.status, StatusCode::NOT_FOUND);
    assert_eq!(put.error().0, "NOT_FOUND");
}

#[tokio::test]
async fn unknown_routes_get_harbors_error_bodies_over_http1_and_http2() {
    let h = HarborSim::start(otomi()).await.unwrap();
    unknown_routes(&mut Transport::http1(h.url())).await;
    unknown_routes(&mut Transport::http2(h.url(), None).await).await;
    let tls = HarborSim::start(HarborOptions {
        tls: true,
        ..otomi()
    })
    .await
    .unwrap();
    unknown_routes(&mut Transport::http2(tls.url(), tls.ca_pem()).await).await;
}

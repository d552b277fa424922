//! Benchmark: teams at scale against the simulators, with 5 ms added to
//! every Harbor and Kubernetes request.
//!
//! 1. `provision --all` for 500 new teams;
//! 2. the rerun with nothing to do (it must write nothing);
//! 3. `diagnose teams` (requests and wall time);
//! 4. the baseline, measured in the same run: what Otomi's Harbor operator
//!    does for every team in each cycle (apl-tasks `processNamespace`: create
//!    the project and both memberships blindly, read the project, and for
//!    each robot list robots, delete and re-create it; plus the systeminfo
//!    wait and the token check: 15 Harbor requests, 9 of them writes, and 3
//!    Kubernetes reads of the team's Secrets).
//!
//! Run: `cargo bench --bench teams` (TEAMS=N to change the team count).
//! Prints a table and writes target/bench-teams.json.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use harbor_doctor_sim::harbor::{HarborOptions, HarborSim};
use harbor_doctor_sim::k8s::KubeSim;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LATENCY: Duration = Duration::from_millis(5);
const HOST: &str = "harbor.example.com";
const ADMIN_PW: &str = "Harbor12345";
const CONCURRENCY: usize = 8;

/// A TCP relay that holds every chunk the client sends for `delay`: each
/// request to the API server arrives `delay` late, as over a real network.
async fn delaying_proxy(upstream: SocketAddr, delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                tokio::time::sleep(delay).await;
                                if sw.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = sw.shutdown().await;
                });
                let _ = tokio::io::copy(&mut sr, &mut cw).await;
                let _ = cw.shutdown().await;
                let _ = up.await;
            });
        }
    });
    addr
}

struct Measured {
    name: String,
    wall: Duration,
    harbor_requests: usize,
    harbor_writes: usize,
    kube_requests: usize,
    kube_writes: usize,
}

fn counts(harbor: &HarborSim, kube: &KubeSim) -> (usize, usize, usize, usize) {
    let h = harbor.requests();
    let k = kube.requests();
    (
        h.len(),
        h.iter().filter(|r| r.write).count(),
        k.len(),
        k.iter()
            .filter(|r| !matches!(r.verb.as_str(), "get" | "list" | "watch" | ""))
            .count(),
    )
}

async fn measure_doctor(
    name: &str,
    args: &[&str],
    env: &[(&str, String)],
    harbor: &HarborSim,
    kube: &KubeSim,
) -> Measured {
    harbor.clear_requests();
    kube.clear_requests();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_harbor-doctor"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let wall = started.elapsed();
    assert!(
        out.status.code().is_some_and(|c| c == 0 || c == 1),
        "{name} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let (hr, hw, kr, kw) = counts(harbor, kube);
    Measured {
        name: name.into(),
        wall,
        harbor_requests: hr,
        harbor_writes: hw,
        kube_requests: kr,
        kube_writes: kw,
    }
}

/// One Otomi operator cycle for one team, request for request (with its
/// robot lookup by exact name rather than the first 100 of the list, so
/// that it works with hundreds of teams).
async fn otomi_cycle(http: &reqwest::Client, base: &str, secrets: &kube::Client, team: &str) {
    let admin = |rb: reqwest::RequestBuilder| rb.basic_auth("admin", Some(ADMIN_PW));
    let api = format!("{base}/api/v2.0");
    // waitTillAvailable on systeminfo, then the bearer-token check.
    admin(http.get(format!("{api}/systeminfo")))
        .send()
        .await
        .unwrap();
    admin(http.get(format!("{api}/robots")))
        .send()
        .await
        .unwrap();
    // createProject (409 once it exists) and getProject.
    admin(http.post(format!("{api}/projects")))
        .json(&json!({"project_name": team}))
        .send()
        .await
        .unwrap();
    admin(http.get(format!("{api}/projects/{team}")))
        .send()
        .await
        .unwrap();
    for (group, role) in [(team, 2), ("all-teams-admin", 1)] {
        admin(http.post(format!("{api}/projects/{team}/members")))
            .json(&json!({"role_id": role, "member_group": {"group_name": group, "group_type": 3}}))
            .send()
            .await
            .unwrap();
    }
    let secret_api: Api<Secret> = Api::namespaced(secrets.clone(), team);
    for kind in ["pull", "push", "build"] {
        let _ = secret_api.get_opt(&format!("harbor-{kind}secret")).await;
        let name = format!("{team}-{kind}");
        let found: Value = admin(
            http.get(format!("{api}/robots"))
                .query(&[("q", format!("name={name}"))]),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap_or(Value::Null);
        if let Some(id) = found[0]["id"].as_i64() {
            admin(http.delete(format!("{api}/robots/{id}")))
                .send()
                .await
                .unwrap();
        }
        admin(http.post(format!("{api}/robots")))
            .json(&json!({
                "name": name, "level": "system", "duration": -1, "disable": false,
                "permissions": [{"kind": "project", "namespace": team,
                                 "access": [{"resource": "repository", "action": "pull"}]}]
            }))
            .send()
            .await
            .unwrap();
    }
}

fn print(results: &[Measured], teams: usize) {
    println!(
        "\n{teams} teams, {} ms added to every request\n",
        LATENCY.as_millis()
    );
    println!(
        "{:<44} {:>9} {:>9} {:>8} {:>9} {:>8}",
        "run", "wall (s)", "harbor", "writes", "k8s", "writes"
    );
    for m in results {
        println!(
            "{:<44} {:>9.2} {:>9} {:>8} {:>9} {:>8}",
            m.name,
            m.wall.as_secs_f64(),
            m.harbor_requests,
            m.harbor_writes,
            m.kube_requests,
            m.kube_writes
        );
    }
}

fn main() {
    let teams: usize = std::env::var("TEAMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let harbor = HarborSim::start(HarborOptions {
            latency: LATENCY,
            external_url: Some(format!("https://{HOST}")),
            admin_password: ADMIN_PW.into(),
            ..HarborOptions::otomi("https://keycloak.example.com/realms/otomi")
        })
        .await
        .unwrap();
        let kube = KubeSim::start().await.unwrap();
        let upstream: SocketAddr = kube
            .https_url()
            .trim_start_matches("https://")
            .parse()
            .unwrap();
        let proxy = delaying_proxy(upstream, LATENCY).await;
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            kube.kubeconfig_yaml(kube.admin_token())
                .replace(&kube.https_url(), &format!("https://{proxy}")),
        )
        .unwrap();
        for i in 0..teams {
            let ns = format!("team-t{i}");
            kube.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
                .unwrap();
            kube.put(json!({"apiVersion": "v1", "kind": "ServiceAccount",
                            "metadata": {"name": "default", "namespace": ns}}))
                .unwrap();
        }
        let env = vec![
            ("HARBOR_URL", harbor.url()),
            ("HARBOR_PASSWORD", ADMIN_PW.to_string()),
            ("KUBECONFIG", kubeconfig.display().to_string()),
            ("HOME", dir.path().display().to_string()),
            (
                "HARBOR_DOCTOR_BACKUP_DIR",
                dir.path().join("backups").display().to_string(),
            ),
            ("HARBOR_DOCTOR_TIMEOUT", "600".to_string()),
        ];
        let mut results = Vec::new();
        results.push(
            measure_doctor(
                &format!("provision --all ({teams} new teams)"),
                &["provision", "--all", "--yes", "-q", "-o", "json"],
                &env,
                &harbor,
                &kube,
            )
            .await,
        );
        results.push(
            measure_doctor(
                "provision --all (rerun, nothing to do)",
                &["provision", "--all", "--yes", "-q", "-o", "json"],
                &env,
                &harbor,
                &kube,
            )
            .await,
        );
        assert_eq!(
            results[1].harbor_writes + results[1].kube_writes,
            0,
            "the rerun wrote"
        );
        results.push(
            measure_doctor(
                "diagnose teams",
                &["diagnose", "teams", "-q", "-o", "json"],
                &env,
                &harbor,
                &kube,
            )
            .await,
        );

        // The baseline, against the same (now provisioned) installation.
        let config = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap();
        let kclient = kube::Client::try_from(
            kube::Config::from_custom_kubeconfig(config, &Default::default())
                .await
                .unwrap(),
        )
        .unwrap();
        let http = reqwest::Client::new();
        let base = harbor.url();
        let cycle = || {
            stream::iter(0..teams).for_each_concurrent(CONCURRENCY, |i| {
                let (http, base, kclient) = (&http, &base, &kclient);
                async move { otomi_cycle(http, base, kclient, &format!("team-t{i}")).await }
            })
        };
        // A first cycle makes the third robot Otomi keeps (builds); the
        // measured one is an idle cycle, where everything exists.
        cycle().await;
        harbor.clear_requests();
        kube.clear_requests();
        let started = Instant::now();
        cycle().await;
        let wall = started.elapsed();
        let (hr, hw, kr, kw) = counts(&harbor, &kube);
        results.push(Measured {
            name: format!("baseline: Otomi operator cycle ({CONCURRENCY} at once)"),
            wall,
            harbor_requests: hr,
            harbor_writes: hw,
            kube_requests: kr,
            kube_writes: kw,
        });
        print(&results, teams);
        let doc: Vec<Value> = results
            .iter()
            .map(|m| {
                json!({"run": m.name, "wall_s": m.wall.as_secs_f64(),
                       "harbor_requests": m.harbor_requests, "harbor_writes": m.harbor_writes,
                       "kube_requests": m.kube_requests, "kube_writes": m.kube_writes})
            })
            .collect();
        let target =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-teams.json");
        let _ = std::fs::write(
            &target,
            serde_json::to_vec_pretty(
                &json!({"teams": teams, "latency_ms": LATENCY.as_millis() as u64, "runs": doc}),
            )
            .unwrap(),
        );
    });
}

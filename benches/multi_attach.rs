//! Benchmark: `diagnose multi-attach registry-strategy` against a simulated
//! cluster with 200 namespaces, 5,000 pods and 20,000 events besides the
//! Harbor release (stuck in the Multi-Attach state), through the real kube
//! client.
//!
//! Reports the number of API requests and the wall time, against a baseline
//! measured in the same run that fetches per pod (list every pod, then ask
//! for each pod's events and claims), the way a first attempt would. The
//! doctor's request count must not grow with the pods and events outside the
//! Harbor namespace: it is measured on a cluster a tenth the size too, and
//! the run fails if the counts differ.
//!
//! Run: `cargo bench --bench multi_attach` (NAMESPACES, PODS, EVENTS change
//! the size).

use std::time::{Duration, Instant};

use clap::Parser;
use harbor_doctor::cli::Cli;
use harbor_doctor::context::Ctx;
use harbor_doctor::issues::{multi_attach, registry_strategy};
use harbor_doctor_sim::k8s::{KubeSim, MultiAttachOptions};
use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams};
use serde_json::{json, Value};

const RUNS: usize = 5;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A cluster with the stuck Harbor release and `pods` pods and `events`
/// events spread over `namespaces` other namespaces.
async fn cluster(namespaces: usize, pods: usize, events: usize) -> KubeSim {
    let sim = KubeSim::start().await.expect("simulator");
    sim.seed_harbor_release("harbor", "harbor").unwrap();
    sim.roll_deployment_into_multi_attach(
        "harbor",
        "harbor-registry",
        MultiAttachOptions::default(),
    )
    .unwrap();
    let mut objs: Vec<Value> = (0..namespaces)
        .map(|n| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": format!("team-{n:03}")}}))
        .collect();
    let nodes = ["node-a", "node-b", "node-c"];
    for p in 0..pods {
        let ns = format!("team-{:03}", p % namespaces);
        objs.push(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("app-{p}"), "namespace": ns, "labels": {"app": "team-app"}},
            "spec": {"nodeName": nodes[p % 3], "containers": [{"name": "app", "image": "nginx"}],
                     "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": format!("data-{p}")}}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
        }));
    }
    for e in 0..events {
        let p = e % pods.max(1);
        let ns = format!("team-{:03}", p % namespaces);
        objs.push(json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": format!("app-{p}.{e:016x}"), "namespace": ns},
            "involvedObject": {"kind": "Pod", "name": format!("app-{p}"), "namespace": ns, "apiVersion": "v1"},
            "reason": if e % 10 == 0 { "FailedAttachVolume" } else { "Pulled" },
            "message": if e % 10 == 0 {
                format!("Multi-Attach error for volume \"pvc-{p}\" Volume is already exclusively attached to one node and can't be attached to another")
            } else {
                "Container image \"nginx\" already present on machine".to_string()
            },
            "type": if e % 10 == 0 { "Warning" } else { "Normal" },
            "source": {"component": "kubelet"}, "count": 1,
        }));
    }
    sim.put_many(objs).expect("seeding");
    sim
}

/// The doctor's two checks, in process, as `diagnose` runs them.
async fn doctor(ctx: &Ctx) -> usize {
    let ma = multi_attach::diagnose(ctx).await.expect("multi-attach");
    let rs = registry_strategy::diagnose(ctx)
        .await
        .expect("registry-strategy");
    assert_eq!(ma.findings.len(), 1, "the stuck registry pod is found");
    assert_eq!(
        rs.findings.len(),
        2,
        "registry and jobservice roll with RollingUpdate"
    );
    ma.findings.len() + rs.findings.len()
}

/// The per-pod approach: every pod in the cluster, then its events and its
/// claims one request at a time.
async fn baseline(client: &kube::Client) -> usize {
    let all: Api<Pod> = Api::all(client.clone());
    let mut pods = vec![];
    let mut lp = ListParams::default().limit(500);
    loop {
        let page = all.list(&lp).await.expect("pods");
        pods.extend(page.items);
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
    }
    let mut stuck = 0;
    for pod in &pods {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let events: Api<Event> = Api::namespaced(client.clone(), &ns);
        let evs = events
            .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
            .await
            .expect("events");
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
        for v in pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.clone())
            .unwrap_or_default()
        {
            if let Some(c) = v.persistent_volume_claim {
                let _ = claims.get_opt(&c.claim_name).await.expect("claim");
            }
        }
        if evs
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("FailedAttachVolume"))
            && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending")
        {
            stuck += 1;
        }
    }
    assert!(stuck >= 1, "the baseline finds the stuck pod too");
    stuck
}

struct Measured {
    requests: usize,
    time: Duration,
}

async fn measure(sim: &KubeSim, dir: &std::path::Path) -> (Measured, Measured) {
    let kubeconfig = dir.join("config");
    sim.write_kubeconfig(&kubeconfig, sim.admin_token())
        .unwrap();
    let cli = Cli::try_parse_from([
        "harbor-doctor",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "diagnose",
        "multi-attach",
        "registry-strategy",
    ])
    .unwrap();
    let ctx = Ctx::new(cli.global);
    ctx.kube().await.unwrap();
    doctor(&ctx).await; // warm-up
    let mut times = vec![];
    let mut requests = 0;
    for _ in 0..RUNS {
        sim.clear_requests();
        let started = Instant::now();
        doctor(&ctx).await;
        times.push(started.elapsed());
        requests = sim.requests().len();
    }
    let doctor = Measured {
        requests,
        time: median(times),
    };

    let kc = kube::config::Kubeconfig::from_yaml(&sim.kubeconfig_yaml(sim.admin_token())).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let mut times = vec![];
    for _ in 0..3 {
        sim.clear_requests();
        let started = Instant::now();
        baseline(&client).await;
        times.push(started.elapsed());
        requests = sim.requests().len();
    }
    let base = Measured {
        requests,
        time: median(times),
    };
    (doctor, base)
}

#[tokio::main]
async fn main() {
    let namespaces = env_or("NAMESPACES", 200);
    let pods = env_or("PODS", 5000);
    let events = env_or("EVENTS", 20_000);
    let dir = tempfile::tempdir().unwrap();
    println!(
        "diagnose multi-attach registry-strategy: API requests and wall time (median of {RUNS})"
    );
    println!(
        "{:<34} {:>9} {:>11} {:>18} {:>15}",
        "cluster (outside Harbor)", "requests", "time", "baseline requests", "baseline time"
    );
    let mut counts = vec![];
    for (ns, p, e) in [
        (namespaces / 10, pods / 10, events / 10),
        (namespaces, pods, events),
    ] {
        let seeding = Instant::now();
        let sim = cluster(ns.max(1), p.max(1), e).await;
        eprintln!(
            "seeded {ns} namespaces, {p} pods, {e} events in {:?}",
            seeding.elapsed()
        );
        let (d, b) = measure(&sim, dir.path()).await;
        println!(
            "{:<34} {:>9} {:>9.1}ms {:>18} {:>13.1}ms",
            format!("{ns} ns, {p} pods, {e} events"),
            d.requests,
            d.time.as_secs_f64() * 1000.0,
            b.requests,
            b.time.as_secs_f64() * 1000.0
        );
        counts.push(d.requests);
        sim.shutdown();
    }
    assert_eq!(
        counts[0], counts[1],
        "the doctor's request count grew with the cluster outside the Harbor namespace"
    );
}

//! The Kubernetes known issues end to end: the doctor binary, through the
//! real kube client, against the simulated API server playing the
//! Multi-Attach story (every event form, a stale ReplicaSet, a holder on a
//! NotReady node), the registry strategy, faults, and the ways a cluster
//! refuses (unreachable, expired token, forbidden).

use crate::support::k8s;

use std::time::Duration;

use crate::support::{assert_exit, run, stderr, stdout};
use harbor_doctor_sim::k8s::{
    Fault, HarborSeed, MultiAttachMessage, MultiAttachOptions, MultiAttachScene, PolicyRule,
};
use k8s::{json, Cluster};
use serde_json::Value;

fn roll(c: &Cluster, deployment: &str, opts: MultiAttachOptions) -> MultiAttachScene {
    c.sim
        .roll_deployment_into_multi_attach("harbor", deployment, opts)
        .expect("rolling into Multi-Attach")
}

async fn diagnose(c: &Cluster, checks: &[&str]) -> std::process::Output {
    let mut cmd = c.doctor();
    cmd.arg("diagnose").args(checks).args(["-o", "json"]);
    run(cmd).await
}

fn only_check<'a>(doc: &'a Value, id: &str) -> &'a Value {
    doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {doc:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_form_is_recognised_old_and_aggregated_ones_too() {
    let forms = [
        (
            MultiAttachMessage::ExclusivelyAttached,
            "exclusively-attached",
        ),
        (MultiAttachMessage::UsedByPods, "used-by-pods"),
        (
            MultiAttachMessage::UsedByPodsAndOtherNamespaces(2),
            "used-by-pods-and-other-namespaces",
        ),
        (
            MultiAttachMessage::UsedInOtherNamespaces(1),
            "used-in-other-namespaces",
        ),
    ];
    for (i, (form, name)) in forms.into_iter().enumerate() {
        let c = Cluster::start().await;
        let scene = roll(
            &c,
            "harbor-registry",
            MultiAttachOptions {
                message: form,
                // Every other case: an event from two hours ago, seen five times.
                event_age: Duration::from_secs(if i % 2 == 1 { 7200 } else { 0 }),
                event_count: if i % 2 == 1 { 5 } else { 1 },
                ..MultiAttachOptions::default()
            },
        );
        let o = diagnose(&c, &["multi-attach"]).await;
        assert_exit(&o, 1);
        let doc = json(&o);
        let check = only_check(&doc, "multi-attach");
        assert_eq!(check["status"], "problem");
        let findings = check["findings"].as_array().unwrap();
        assert_eq!(findings.len(), 1, "{doc:#}");
        let f = &findings[0];
        assert_eq!(f["subject"], "deployment harbor/harbor-registry");
        assert_eq!(f["runbook"], "multi-attach");
        assert_eq!(f["repair"], "harbor-doctor fix multi-attach", "{f:#}");
        let ev = &f["evidence"];
        assert_eq!(ev["event"]["form"], name);
        assert_eq!(ev["event"]["message"], scene.event_message.as_str());
        assert_eq!(ev["event"]["count"], if i % 2 == 1 { 5 } else { 1 });
        assert_eq!(ev["stuck_pod"], scene.stuck_pod.as_str());
        assert_eq!(ev["stuck_node"], scene.target_node.as_str());
        assert_eq!(ev["persistent_volume"], scene.persistent_volume.as_str());
        assert_eq!(ev["claim"], "harbor-registry");
        assert_eq!(ev["holders"][0]["pod"], scene.holder_pods[0].as_str());
        assert_eq!(
            ev["holders"][0]["replicaset"],
            scene.old_replicaset.as_str()
        );
        assert_eq!(ev["holders"][0]["stale"], true);
        assert_eq!(ev["holder_nodes"][0]["node"], scene.holder_node.as_str());
        assert_eq!(ev["holder_nodes"][0]["ready"], true);
        assert_eq!(ev["current_replicaset"], scene.new_replicaset.as_str());
        assert!(f["summary"]
            .as_str()
            .unwrap()
            .contains(&scene.old_replicaset));
        c.sim.shutdown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fix_deletes_only_the_stale_replicaset_and_waits_for_the_new_pod() {
    let c = Cluster::start().await;
    let scene = roll(&c, "harbor-registry", MultiAttachOptions::default());
    c.sim.clear_requests();
    let mut cmd = c.doctor();
    cmd.args(["fix", "multi-attach", "--yes", "-o", "json"]);
    let o = run(cmd).await;
    assert_exit(&o, 0);
    let report = json(&o);
    assert_eq!(report["repair"], "multi-attach");
    assert_eq!(report["applied"], true);
    assert_eq!(report["verified"], true);
    assert_eq!(report["plan"][0]["action"], "delete");
    assert_eq!(
        report["plan"][0]["target"],
        format!("replicaset harbor/{}", scene.old_replicaset)
    );

    let writes = c.writes();
    assert_eq!(writes.len(), 1, "{writes:#?}");
    assert_eq!(
        (
            writes[0].verb.as_str(),
            writes[0].resource.as_str(),
            writes[0].name.as_deref()
        ),
        ("delete", "replicasets", Some(scene.old_replicaset.as_str()))
    );
    let stuck = c
        .sim
        .get("v1", "Pod", Some("harbor"), &scene.stuck_pod)
        .unwrap();
    assert_eq!(stuck["status"]["phase"], "Running");
    assert!(c
        .sim
        .get(
            "apps/v1",
            "ReplicaSet",
            Some("harbor"),
            &scene.new_replicaset
        )
        .is_some());

    // The backup holds the ReplicaSet as it was, and restore explains
    // instead of recreating it.
    let backup = report["backup"].as_str().unwrap().to_string();
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&backup).unwrap()).unwrap();
    assert_eq!(saved["items"][0]["kind"], "ReplicaSet");
    assert_eq!(
        saved["items"][0]["object"]["metadata"]["name"],
        scene.old_replicaset.as_str()
    );
    let mut cmd = c.doctor();
    cmd.args(["restore", &backup, "--yes"]);
    let o = run(cmd).await;
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("rollout undo"), "{}", stderr(&o));

    // Healthy now.
    let o = diagnose(&c, &["multi-attach"]).await;
    assert_exit(&o, 0);
    let o = {
        let mut cmd = c.doctor();
        cmd.args(["fix", "multi-attach", "--yes"]);
        run(cmd).await
    };
    assert_exit(&o, 0);
    assert!(stderr(&o).contains("nothing to do"), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_on_a_notready_node_gets_no_deletion() {
    let c = Cluster::start().await;
    let scene = roll(
        &c,
        "harbor-registry",
        MultiAttachOptions {
            holder_node_ready: false,
            ..MultiAttachOptions::default()
        },
    );
    let o = diagnose(&c, &["multi-attach"]).await;
    assert_exit(&o, 1);
    let doc = json(&o);
    let f = &only_check(&doc, "multi-attach")["findings"][0];
    assert!(f["repair"].is_null(), "{f:#}");
    let summary = f["summary"].as_str().unwrap();
    assert!(
        summary.contains(&format!("{} is NotReady", scene.holder_node)),
        "{summary}"
    );
    assert!(summary.contains("kubectl delete node"), "{summary}");
    assert_eq!(f["evidence"]["holder_nodes"][0]["ready"], false);

    c.sim.clear_requests();
    let mut cmd = c.doctor();
    cmd.args(["fix", "multi-attach", "--yes"]);
    let o = run(cmd).await;
    assert_exit(&o, 3);
    assert!(
        stderr(&o).contains("no ReplicaSet can safely be deleted"),
        "{}",
        stderr(&o)
    );
    assert!(c.writes().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_and_a_missing_terminal_change_nothing() {
    let c = Cluster::start().await;
    let scene = roll(&c, "harbor-registry", MultiAttachOptions::default());
    c.sim.clear_requests();
    let mut cmd = c.doctor();
    cmd.args(["fix", "multi-attach", "--dry-run"]);
    let o = run(cmd).await;
    assert_exit(&o, 0);
    assert!(stdout(&o).contains(&scene.old_replicaset), "{}", stdout(&o));
    let mut cmd = c.doctor();
    cmd.args(["fix", "multi-attach"]);
    let o = run(cmd).await;
    assert_exit(&o, 4);
    assert!(c.writes().is_empty());
    assert!(c
        .sim
        .get(
            "apps/v1",
            "ReplicaSet",
            Some("harbor"),
            &scene.old_replicaset
        )
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_delete_is_reported_with_exit_5() {
    let c = Cluster::start().await;
    let scene = roll(&c, "harbor-registry", MultiAttachOptions::default());
    c.sim.inject_fault(Fault::new("delete", "replicasets", 500));
    let mut cmd = c.doctor();
    cmd.args(["fix", "multi-attach", "--yes"]);
    let o = run(cmd).await;
    assert_exit(&o, 5);
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "deleting ReplicaSet harbor/{} failed",
            scene.old_replicaset
        )),
        "{err}"
    );
    assert!(err.contains("Backup:"), "{err}");
    assert!(c
        .sim
        .get(
            "apps/v1",
            "ReplicaSet",
            Some("harbor"),
            &scene.old_replicaset
        )
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_in_the_middle_stops_the_repair() {
    let c = Cluster::start().await;
    let registry = roll(&c, "harbor-registry", MultiAttachOptions::default());
    let jobservice = roll(&c, "harbor-jobservice", MultiAttachOptions::default());
    c.sim
        .inject_fault(Fault::new("delete", "replicasets", 409).skip(1));
    c.sim.clear_requests();
    let mut cmd = c.doctor();
    cmd.args(["fix", "multi-attach", "--yes", "-o", "json"]);
    let o = run(cmd).await;
    assert_exit(&o, 5);
    let report = json(&o);
    assert_eq!(report["plan"].as_array().unwrap().len(), 2);
    assert_eq!(report["applied"], false);
    let err = stderr(&o);
    assert!(err.contains("Deleted before it"), "{err}");
    let deletes: Vec<_> = c
        .writes()
        .into_iter()
        .map(|r| (r.name.unwrap_or_default(), r.status))
        .collect();
    assert_eq!(deletes.len(), 2, "{deletes:?}");
    assert_eq!(deletes[1].1, 409);
    let gone = |rs: &str| {
        c.sim
            .get("apps/v1", "ReplicaSet", Some("harbor"), rs)
            .is_none()
    };
    assert!(gone(&deletes[0].0));
    assert!(!gone(&deletes[1].0));
    assert!([&registry.old_replicaset, &jobservice.old_replicaset].contains(&&deletes[0].0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_pod_that_never_starts_fails_verification() {
    let c = Cluster::start().await;
    let scene = roll(&c, "harbor-registry", MultiAttachOptions::default());
    // The new pod's own node stops reporting: it can never start there.
    c.sim.set_node_ready(&scene.target_node, false).unwrap();
    let mut cmd = c.doctor();
    cmd.args(["fix", "multi-attach", "--yes"])
        .env("HARBOR_DOCTOR_TIMEOUT", "1");
    let o = run(cmd).await;
    assert_exit(&o, 5);
    let err = stderr(&o);
    assert!(err.contains("verification failed"), "{err}");
    assert!(err.contains(&scene.stuck_pod), "{err}");
    assert!(err.contains("ContainerCreating"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strategy_is_switched_to_recreate_and_restored() {
    let c = Cluster::start().await;
    let o = diagnose(&c, &["registry-strategy"]).await;
    assert_exit(&o, 1);
    let doc = json(&o);
    let check = only_check(&doc, "registry-strategy");
    assert_eq!(check["status"], "warning");
    let findings = check["findings"].as_array().unwrap();
    let mut subjects: Vec<&str> = findings
        .iter()
        .map(|f| f["subject"].as_str().unwrap())
        .collect();
    subjects.sort();
    assert_eq!(
        subjects,
        [
            "deployment harbor/harbor-jobservice",
            "deployment harbor/harbor-registry"
        ]
    );
    for f in findings {
        assert_eq!(f["severity"], "warning");
        assert_eq!(f["repair"], "harbor-doctor fix registry-strategy");
        assert_eq!(f["evidence"]["helm_value"]["name"], "updateStrategy.type");
        assert!(f["summary"].as_str().unwrap().contains("Helm upgrade"));
    }

    let before = c.strategy("harbor-registry");
    c.sim.clear_requests();
    let mut cmd = c.doctor();
    cmd.args(["fix", "registry-strategy", "--yes", "-o", "json"]);
    let o = run(cmd).await;
    assert_exit(&o, 0);
    let report = json(&o);
    assert_eq!(report["verified"], true);
    assert!(
        stderr(&o).contains("updateStrategy.type=Recreate"),
        "{}",
        stderr(&o)
    );
    for d in ["harbor-registry", "harbor-jobservice"] {
        assert_eq!(c.strategy(d), serde_json::json!({"type": "Recreate"}));
    }
    assert!(c
        .writes()
        .iter()
        .all(|w| w.verb == "patch" && w.resource == "deployments"));
    let backup = report["backup"].as_str().unwrap().to_string();
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&backup).unwrap()).unwrap();
    assert_eq!(saved["items"][0]["object"]["spec"]["strategy"], before);

    let o = diagnose(&c, &["registry-strategy", "multi-attach"]).await;
    assert_exit(&o, 0);

    // The same backup is refused in another cluster, even one with the
    // same Deployments (told apart by the kube-system namespace's UID).
    let other = Cluster::start().await;
    let other_before = other.strategy("harbor-registry");
    let mut cmd = other.doctor();
    cmd.env(
        "HARBOR_DOCTOR_BACKUP_DIR",
        std::path::Path::new(&backup).parent().unwrap(),
    )
    .args(["restore", &backup, "--yes"]);
    let o = run(cmd).await;
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("another cluster"), "{}", stderr(&o));
    assert_eq!(other.strategy("harbor-registry"), other_before);

    let mut cmd = c.doctor();
    cmd.args(["restore", &backup, "--yes"]);
    let o = run(cmd).await;
    assert_exit(&o, 0);
    assert_eq!(c.strategy("harbor-registry"), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_already_means_nothing_to_do() {
    let mut seed = HarborSeed::new("harbor", "harbor");
    seed.registry_strategy = "Recreate".into();
    seed.jobservice_strategy = "Recreate".into();
    let c = Cluster::with(seed).await;
    let o = diagnose(&c, &["registry-strategy"]).await;
    assert_exit(&o, 0);
    assert_eq!(only_check(&json(&o), "registry-strategy")["status"], "ok");
    c.sim.clear_requests();
    let mut cmd = c.doctor();
    cmd.args(["fix", "registry-strategy"]);
    let o = run(cmd).await;
    assert_exit(&o, 0);
    assert!(stderr(&o).contains("nothing to do"), "{}", stderr(&o));
    assert!(c.writes().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strategy_conflict_in_the_middle_is_exit_5() {
    let c = Cluster::start().await;
    c.sim
        .inject_fault(Fault::new("patch", "deployments", 409).skip(1));
    let mut cmd = c.doctor();
    cmd.args(["fix", "registry-strategy", "--yes"]);
    let o = run(cmd).await;
    assert_exit(&o, 5);
    // Deployments are listed, and patched, in name order.
    assert!(
        stderr(&o).contains("Already switched: harbor-jobservice"),
        "{}",
        stderr(&o)
    );
    assert_eq!(c.strategy("harbor-jobservice")["type"], "Recreate");
    assert_eq!(c.strategy("harbor-registry")["type"], "RollingUpdate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_that_refuse_say_what_to_do() {
    let c = Cluster::start().await;
    // Forbidden: the message names the verb, resource and namespace.
    let mut cmd = c.doctor_as(
        "deployments-only",
        vec![PolicyRule::new(&["list"], &["apps"], &["deployments"]).in_namespaces(&["harbor"])],
    );
    cmd.args(["diagnose", "registry-strategy", "-o", "json"]);
    let o = run(cmd).await;
    assert_exit(&o, 3);
    let reason = only_check(&json(&o), "registry-strategy")["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        reason.contains("verb \"list\" on resource \"persistentvolumeclaims\" in API group \"\" in namespace \"harbor\""),
        "{reason}"
    );
    assert!(reason.contains("deploy/rbac.yaml"), "{reason}");
    let mut cmd = c.doctor_as(
        "read-only",
        vec![PolicyRule::new(&["get", "list"], &["*"], &["*"])],
    );
    let _ = roll(&c, "harbor-registry", MultiAttachOptions::default());
    cmd.args(["fix", "multi-attach", "--yes"]);
    let o = run(cmd).await;
    // Refused at the first write: nothing changed, so it could not run (3).
    assert_exit(&o, 3);
    assert!(
        stderr(&o).contains("verb \"delete\" on resource \"replicasets\""),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("Nothing was changed"), "{}", stderr(&o));

    // An expired (revoked) token.
    let mut cmd = c.doctor_as("short-lived", vec![PolicyRule::admin()]);
    c.sim.revoke_token("short-lived");
    cmd.args(["fix", "registry-strategy", "--yes"]);
    let o = run(cmd).await;
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("401 Unauthorized"), "{}", stderr(&o));
    assert!(stderr(&o).contains("Log in again"), "{}", stderr(&o));

    // Unreachable: the server is gone.
    c.sim.shutdown();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut cmd = c.doctor();
    cmd.args(["diagnose", "multi-attach"]);
    let o = run(cmd).await;
    assert_exit(&o, 3);
    assert!(
        stdout(&o).contains("cannot reach the Kubernetes API server"),
        "{}",
        stdout(&o)
    );

    // No cluster configured at all: the checks are skipped.
    let mut cmd = crate::support::bare_doctor();
    cmd.args([
        "diagnose",
        "multi-attach",
        "registry-strategy",
        "-o",
        "json",
    ]);
    let o = run(cmd).await;
    assert_exit(&o, 3); // a check named, or every check, skipped: nothing answered
    assert_eq!(json(&o)["summary"]["skipped"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wait_shows_progress_on_a_terminal() {
    let c = Cluster::start().await;
    // Slow enough that the wait is seen.
    c.sim.set_timing(harbor_doctor_sim::k8s::Timing {
        pod_termination: Duration::from_millis(2500),
        volume_attach: Duration::from_millis(500),
    });
    let scene = roll(&c, "harbor-registry", MultiAttachOptions::default());
    let kubeconfig = c.dir.path().join("admin.yaml");
    let backups = c.backups.clone();
    let (code, shown) = tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_harbor-doctor"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", std::env::temp_dir())
            .env("KUBECONFIG", kubeconfig)
            .env("HARBOR_DOCTOR_BACKUP_DIR", backups)
            .env("HARBOR_DOCTOR_TIMEOUT", "5")
            .env("NO_COLOR", "1")
            .env("TERM", "xterm")
            .args(["fix", "multi-attach"]);
        let mut s = expectrl::Session::spawn(cmd).expect("a pseudo-terminal");
        s.set_expect_timeout(Some(Duration::from_secs(60)));
        let asked = s.expect("Apply these 1 change(s)?").expect("the question");
        let mut shown = String::from_utf8_lossy(asked.before()).into_owned();
        s.send_line("y").unwrap();
        let rest = s.expect(expectrl::Eof).unwrap();
        shown.push_str(&String::from_utf8_lossy(rest.before()));
        for m in rest.matches() {
            shown.push_str(&String::from_utf8_lossy(m));
        }
        let code = match s.get_process_mut().wait().unwrap() {
            expectrl::WaitStatus::Exited(_, code) => code,
            other => panic!("the doctor did not exit normally: {other:?}"),
        };
        (code, shown)
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains("waiting ("), "no progress shown:\n{shown}");
    assert!(
        shown.contains("Terminating"),
        "the old pod's end is shown:\n{shown}"
    );
    assert!(shown.contains(&scene.stuck_pod), "{shown}");
    assert!(shown.contains("Applied and verified"), "{shown}");
}

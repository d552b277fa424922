//! `provision` and `diagnose teams` end to end: the doctor binary against
//! the simulated Harbor and Kubernetes. The contract stage runs the
//! `contract_` tests once more through Prism (HARBOR_DOCTOR_PRISM), so every
//! request the doctor makes there is checked against Harbor's API
//! description; the fault tests break that description on purpose and
//! never go through Prism.

use crate::support::teams as install;

use crate::support::*;
use harbor_doctor_sim::harbor::Fault;
use install::*;
use serde_json::{json, Value};

async fn provision(install: &Install, args: &[&str]) -> std::process::Output {
    let mut c = install.doctor();
    c.arg("provision").args(args);
    run(c).await
}

async fn diagnose_teams(install: &Install) -> std::process::Output {
    let mut c = install.doctor();
    c.args(["diagnose", "teams", "-o", "json"]);
    run(c).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_new_teams_are_provisioned_and_a_rerun_writes_nothing() {
    let i = Install::new().await;
    for ns in ["team-a", "team-b", "team-admin", "kube-system"] {
        i.namespace(ns);
    }
    let o = provision(&i, &["--all", "--yes", "-o", "json"]).await;
    assert_exit(&o, 0);
    let doc = json(&o);
    assert_eq!(doc["repair"], "provision");
    assert_eq!(doc["applied"], true);
    assert_eq!(doc["verified"], true);
    // Only the ServiceAccounts existed before: they are what the backup holds.
    let backup: Value =
        serde_json::from_slice(&std::fs::read(doc["backup"].as_str().unwrap()).unwrap()).unwrap();
    let kinds: Vec<&str> = backup["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["ServiceAccount", "ServiceAccount"]);

    for team in ["team-a", "team-b"] {
        let project = i.harbor.project(team).expect("project created");
        assert!(!project.public);
        for (group, role) in [(team, 2), ("all-teams-admin", 1)] {
            assert!(
                project
                    .members
                    .iter()
                    .any(|m| m.entity_name == group && m.entity_type == "g" && m.role_id == role),
                "{group} in {team}"
            );
        }
        for kind in ["pull", "push"] {
            let robot = i.harbor.robot(&format!("{team}-{kind}")).expect("robot");
            assert_eq!(robot.level, "system");
            assert_eq!(robot.expires_at, -1);
            assert_eq!(robot.permissions.len(), 1);
            assert_eq!(robot.permissions[0].namespace, team);
            let (host, user, password) = i
                .docker_secret(team, &format!("harbor-{kind}secret"))
                .expect("Secret");
            assert_eq!(host, HOST);
            assert_eq!(user, format!("otomi-{team}-{kind}"));
            assert_eq!(
                password, robot.secret,
                "the Secret holds the robot's secret"
            );
        }
        assert_eq!(i.pull_secrets_on_default_sa(team), ["harbor-pullsecret"]);
    }
    assert!(
        i.harbor.project("team-admin").is_none(),
        "team-admin is not provisioned"
    );
    assert!(i.harbor.project("kube-system").is_none());
    assert_eq!(i.harbor.robots().len(), 4);

    i.clear_requests();
    let o = provision(&i, &["--all", "--yes", "-o", "json"]).await;
    assert_exit(&o, 0);
    let doc = json(&o);
    assert_eq!(doc["plan"], json!([]));
    assert_eq!(
        i.harbor.write_count(),
        0,
        "a rerun with nothing to do writes nothing to Harbor"
    );
    assert_eq!(i.kube_writes(), 0, "nor to Kubernetes");
    let tokens = i
        .harbor
        .requests()
        .iter()
        .filter(|r| r.path == "/service/token")
        .count();
    assert_eq!(tokens, 4, "one token request per robot");

    let o = diagnose_teams(&i).await;
    assert_exit(&o, 0);
    assert_eq!(json(&o)["checks"][0]["status"], "ok");
    i.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_an_otomi_installation_is_adopted_not_duplicated() {
    let i = Install::new().await;
    i.otomi_team("a");
    i.otomi_team("b");
    let robots_before: Vec<i64> = i.harbor.robots().iter().map(|r| r.id).collect();
    i.clear_requests();
    let o = provision(&i, &["--team", "a", "--team", "b", "--yes"]).await;
    assert_exit(&o, 0);
    assert!(stderr(&o).contains("nothing to do"), "{}", stderr(&o));
    assert_eq!(i.harbor.write_count(), 0);
    assert_eq!(i.kube_writes(), 0);
    let robots_after: Vec<i64> = i.harbor.robots().iter().map(|r| r.id).collect();
    assert_eq!(robots_before, robots_after);
    i.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_every_kind_of_drift_is_found_then_repaired() {
    let i = Install::new().await;
    for t in ["a", "b", "c", "d"] {
        i.otomi_team(t);
    }
    // a: the push robot's secret rotated in Harbor but not in the cluster.
    let push_a = i.harbor.robot("team-a-push").unwrap();
    i.harbor.set_robot_secret(push_a.id, "RotatedInHarbor123");
    // a: the pull robot deleted.
    let pull_a = i.harbor.robot("team-a-pull").unwrap();
    i.harbor.remove_robot(pull_a.id);
    // b: pull Secret for the wrong registry host; push Secret malformed.
    let pull_b = i.harbor.robot("team-b-pull").unwrap();
    i.put_docker_secret(
        "team-b",
        "harbor-pullsecret",
        "old-registry.example.com",
        "otomi-team-b-pull",
        &pull_b.secret,
    );
    i.kube
        .put(
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                    "metadata": {"name": "harbor-pushsecret", "namespace": "team-b"},
                    "data": {"password": "bm90aGluZw=="}}),
        )
        .unwrap();
    // c: ServiceAccount without the pull secret; a member missing; robot disabled.
    i.kube
        .put(json!({"apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": "default", "namespace": "team-c"},
                    "imagePullSecrets": [{"name": "other-registry"}]}))
        .unwrap();
    i.harbor.remove_member("team-c", "team-c");
    let pull_c = i.harbor.robot("team-c-pull").unwrap();
    i.harbor.set_robot_disabled(pull_c.id, true);
    // d: project missing altogether, pull robot too widely scoped.
    let pull_d = i.harbor.robot("team-d-pull").unwrap();
    i.harbor.set_robot_permissions(
        pull_d.id,
        vec![harbor_doctor_sim::harbor::RobotPermission::repository(
            "team-d",
            &["pull", "push"],
        )],
    );

    i.clear_requests();
    let o = diagnose_teams(&i).await;
    assert_exit(&o, 1);
    let doc = json(&o);
    let findings = doc["checks"][0]["findings"].as_array().unwrap().clone();
    let of = |team: &str| -> Vec<String> {
        findings
            .iter()
            .filter(|f| f["subject"] == format!("team {team}"))
            .map(|f| f["summary"].as_str().unwrap().to_string())
            .collect()
    };
    let a = of("a");
    assert!(
        a.iter().any(|s| s.contains("otomi-team-a-pull is missing")),
        "{a:#?}"
    );
    assert!(
        a.iter()
            .any(|s| s.contains("refuses the credentials in team-a/harbor-pushsecret")),
        "{a:#?}"
    );
    let b = of("b");
    assert!(
        b.iter().any(|s| s.contains("old-registry.example.com")),
        "{b:#?}"
    );
    assert!(
        b.iter()
            .any(|s| s.contains("harbor-pushsecret is unusable")),
        "{b:#?}"
    );
    let c = of("c");
    assert!(
        c.iter()
            .any(|s| s.contains("does not list harbor-pullsecret")),
        "{c:#?}"
    );
    assert!(
        c.iter().any(|s| s.contains("group team-c is not a member")),
        "{c:#?}"
    );
    assert!(
        c.iter()
            .any(|s| s.contains("otomi-team-c-pull is disabled")),
        "{c:#?}"
    );
    let d = of("d");
    assert!(d.iter().any(|s| s.contains("other permissions")), "{d:#?}");
    for f in &findings {
        assert_eq!(f["runbook"], "provisioning");
    }
    assert_eq!(i.harbor.write_count(), 0);
    // One token request per robot that could work: a-push, b-pull, c-push, d-pull, d-push.
    let tokens: Vec<_> = i
        .harbor
        .requests()
        .into_iter()
        .filter(|r| r.path == "/service/token")
        .collect();
    assert_eq!(tokens.len(), 5, "{tokens:#?}");
    assert_eq!(i.harbor.failed_logins("otomi-team-a-push"), 1);
    let listings = i
        .harbor
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/v2.0/robots" || r.path == "/api/v2.0/projects")
        .count();
    assert_eq!(listings, 2, "projects and robots are listed once");

    let o = provision(&i, &["--all", "--yes", "-o", "json"]).await;
    assert_exit(&o, 0);
    let doc = json(&o);
    assert_eq!(doc["verified"], true);
    assert!(
        doc["backup"].is_string(),
        "replaced Secrets and the patched ServiceAccount are backed up"
    );

    // The Secret is the source of truth: a-push's password is the Secret's again.
    let (_, _, pw) = i.docker_secret("team-a", "harbor-pushsecret").unwrap();
    assert_eq!(i.harbor.robot("team-a-push").unwrap().secret, pw);
    assert_ne!(pw, "RotatedInHarbor123");
    let (_, _, pw) = i.docker_secret("team-a", "harbor-pullsecret").unwrap();
    assert_eq!(
        i.harbor.robot("team-a-pull").unwrap().secret,
        pw,
        "recreated with the Secret's password"
    );
    assert_eq!(
        i.docker_secret("team-b", "harbor-pullsecret").unwrap().0,
        HOST
    );
    assert!(i.docker_secret("team-b", "harbor-pushsecret").is_some());
    assert_eq!(
        i.pull_secrets_on_default_sa("team-c"),
        ["other-registry", "harbor-pullsecret"]
    );
    assert!(!i.harbor.robot("team-c-pull").unwrap().disabled);
    assert_eq!(
        i.harbor.robot("team-d-pull").unwrap().permissions[0]
            .access
            .len(),
        1
    );

    let o = diagnose_teams(&i).await;
    assert_exit(&o, 0);
    i.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_in_the_middle_fails_that_team_and_a_rerun_converges() {
    let i = Install::faulty(|_| {}).await;
    for ns in ["team-a", "team-b", "team-c"] {
        i.namespace(ns);
    }
    i.harbor
        .inject_fault(Fault::on("POST", "/api/v2.0/robots").after_apply());
    let o = provision(&i, &["--all", "--yes", "--concurrency", "1"]).await;
    assert_exit(&o, 5);
    let err = stderr(&o);
    assert!(err.contains("failed for 1 of 3 team(s)"), "{err}");
    assert!(err.contains("HTTP 500"), "{err}");

    let o = provision(&i, &["--all", "--yes"]).await;
    assert_exit(&o, 0);
    assert_eq!(i.harbor.robots().len(), 6, "nothing duplicated");
    let o = diagnose_teams(&i).await;
    assert_exit(&o, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_robot_whose_secret_patch_fails_is_repaired_by_the_rerun() {
    let i = Install::faulty(|_| {}).await;
    i.otomi_team("a");
    // Rotated in Harbor: the Secret's password has to be set on the robot.
    let pull = i.harbor.robot("team-a-pull").unwrap();
    i.harbor.set_robot_secret(pull.id, "RotatedInHarbor123");
    i.harbor
        .inject_fault(Fault::on("PATCH", "/api/v2.0/robots/"));
    let o = provision(&i, &["--team", "a", "--yes"]).await;
    assert_exit(&o, 5);
    assert!(
        stderr(&o).contains("setting the secret of robot team-a-pull"),
        "{}",
        stderr(&o)
    );

    let o = provision(&i, &["--team", "a", "--yes"]).await;
    assert_exit(&o, 0);
    let (_, _, pw) = i.docker_secret("team-a", "harbor-pullsecret").unwrap();
    assert_eq!(i.harbor.robot("team-a-pull").unwrap().secret, pw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_409_race_with_another_provisioner_is_adopted() {
    let i = Install::faulty(|_| {}).await;
    i.namespace("team-a");
    // Another provisioner creates the project and the pull robot just
    // before the doctor does.
    let conflict = json!({"errors": [{"code": "CONFLICT", "message": "already exists"}]});
    i.harbor.inject_fault(
        Fault::on("POST", "/api/v2.0/projects")
            .after_apply()
            .status(409)
            .json(conflict.clone()),
    );
    i.harbor.inject_fault(
        Fault::on("POST", "/api/v2.0/robots")
            .after_apply()
            .status(409)
            .json(conflict),
    );
    let o = provision(&i, &["--team", "a", "--yes"]).await;
    assert_exit(&o, 0);
    assert_eq!(i.harbor.robots().len(), 2);
    for kind in ["pull", "push"] {
        let (_, _, pw) = i
            .docker_secret("team-a", &format!("harbor-{kind}secret"))
            .unwrap();
        assert_eq!(
            i.harbor.robot(&format!("team-a-{kind}")).unwrap().secret,
            pw
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_admin_password_is_exit_3_without_a_retry_storm() {
    let i = Install::faulty(|_| {}).await;
    i.namespace("team-a");
    let o = run({
        let mut c = i.doctor();
        c.env("HARBOR_PASSWORD", "wrong")
            .args(["provision", "--all", "--yes"]);
        c
    })
    .await;
    assert_exit(&o, 3);
    assert!(
        stderr(&o).contains("rejected the credentials"),
        "{}",
        stderr(&o)
    );
    assert_eq!(i.harbor.failed_logins("admin"), 1);
    assert_eq!(i.harbor.write_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_harbor_answering_html_or_garbage_stops_before_any_change() {
    let i = Install::faulty(|_| {}).await;
    i.namespace("team-a");
    i.harbor.inject_fault(
        Fault::on("GET", "/api/v2.0/projects")
            .status(200)
            .html("<html><body>Welcome to nginx!</body></html>"),
    );
    let o = provision(&i, &["--all", "--yes"]).await;
    assert_exit(&o, 3);
    assert!(
        stderr(&o).contains("not the JSON Harbor sends"),
        "{}",
        stderr(&o)
    );
    i.harbor.inject_fault(
        Fault::on("GET", "/api/v2.0/robots")
            .status(502)
            .times(4)
            .raw(None, b"\x00\xffgarbage"),
    );
    let o = provision(&i, &["--all", "--yes"]).await;
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("HTTP 502"), "{}", stderr(&o));
    assert_eq!(i.harbor.write_count(), 0);
    assert_eq!(i.kube_writes(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_and_no_terminal_change_nothing() {
    let i = Install::new().await;
    i.namespace("team-a");
    let o = provision(&i, &["--team", "a", "--dry-run"]).await;
    assert_exit(&o, 0);
    let out = stdout(&o);
    assert!(
        out.contains("team-a") && out.contains("create project team-a"),
        "{out}"
    );
    let o = provision(&i, &["--team", "a"]).await;
    assert_exit(&o, 4);
    assert_eq!(i.harbor.write_count(), 0);
    assert_eq!(i.kube_writes(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_without_its_namespace_is_refused() {
    let i = Install::new().await;
    let o = provision(&i, &["--team", "ghost", "--yes"]).await;
    assert_exit(&o, 3);
    assert!(
        stderr(&o).contains("team-ghost do not exist"),
        "{}",
        stderr(&o)
    );
    assert_eq!(i.harbor.write_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_secret_never_shows_at_any_verbosity() {
    const CANARY: &str = "Canary7Secret9Xyz";
    let i = Install::faulty(|o| o.admin_password = CANARY.into()).await;
    i.otomi_team("a");
    // The canary is the password in a's pull Secret, and the robot's secret
    // drifted, so provisioning sets the robot's secret from it.
    i.put_docker_secret(
        "team-a",
        "harbor-pullsecret",
        HOST,
        "otomi-team-a-pull",
        CANARY,
    );
    i.namespace("team-b");
    for args in [
        vec!["-vvv", "diagnose", "teams"],
        vec!["-vvv", "provision", "--all", "--yes"],
        vec!["-vvv", "provision", "--all", "--yes", "-o", "json"],
        vec!["-vvv", "diagnose", "-o", "json"],
    ] {
        let o = run({
            let mut c = i.doctor();
            c.env("HARBOR_PASSWORD", CANARY)
                .env("KEYCLOAK_URL", "http://127.0.0.1:9")
                .env("KEYCLOAK_USERNAME", "admin")
                .env("KEYCLOAK_PASSWORD", CANARY)
                .env("HARBOR_CLI_SECRET", CANARY)
                .env(
                    "HARBOR_DATABASE_URL",
                    format!("postgres://postgres:{CANARY}@127.0.0.1:9/registry?sslmode=disable"),
                )
                .args(&args);
            c
        })
        .await;
        assert_no_secret(&o, &[CANARY]);
    }
    assert_eq!(i.harbor.robot("team-a-pull").unwrap().secret, CANARY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_a_provision_backup_and_says_what_to_do() {
    let i = Install::new().await;
    i.namespace("team-a");
    let o = provision(&i, &["--team", "a", "--yes", "-o", "json"]).await;
    assert_exit(&o, 0);
    let backup = json(&o)["backup"].as_str().unwrap().to_string();
    let mut c = i.doctor();
    c.args(["restore", &backup, "--yes"]);
    let o = run(c).await;
    assert_exit(&o, 3);
    assert!(
        stderr(&o).contains("provision --team"),
        "the refusal says how to repair a team instead:\n{}",
        stderr(&o)
    );
}

// -- beside another writer ---------------------------------------------------
//
// Two provisions at once, or one beside Otomi's operator, after the push
// robot and its Secret were removed. The simulators hold chosen requests at
// gates, so each interleaving is the same on every run.

const PUSH_LOGIN: &str = "otomi-team-beta-push";

/// Team beta as Otomi made it, then its push robot and harbor-pushsecret
/// removed.
async fn beta_without_push() -> Install {
    let i = Install::faulty(|_| {}).await;
    i.otomi_team("beta");
    let push = i.harbor.robot("team-beta-push").unwrap();
    i.harbor.remove_robot(push.id);
    i.kube
        .delete("v1", "Secret", Some("team-beta"), "harbor-pushsecret")
        .unwrap();
    i
}

fn provision_cmd(i: &Install) -> assert_cmd::Command {
    let mut c = i.doctor();
    c.args(["provision", "--team", "beta", "--yes", "-o", "json"]);
    c
}

/// Every Secret of beta holds the credentials its robot has now, and the
/// doctor's own check agrees through the token service.
async fn beta_credentials_work(i: &Install) {
    for kind in ["pull", "push"] {
        let (host, user, pw) = i
            .docker_secret("team-beta", &format!("harbor-{kind}secret"))
            .expect("the Secret exists");
        assert_eq!(
            (host.as_str(), user.as_str()),
            (HOST, &*format!("otomi-team-beta-{kind}"))
        );
        assert_eq!(
            i.harbor.robot(&format!("team-beta-{kind}")).unwrap().secret,
            pw,
            "{kind}: the robot has the Secret's password"
        );
    }
    let o = diagnose_teams(i).await;
    assert_exit(&o, 0);
}

/// A rerun has nothing to do and writes nothing.
async fn rerun_writes_nothing(i: &Install) {
    i.clear_requests();
    let o = provision(i, &["--team", "beta", "--yes", "-o", "json"]).await;
    assert_exit(&o, 0);
    assert_eq!(json(&o)["plan"], json!([]));
    assert_eq!(i.harbor.write_count(), 0, "{:#?}", i.harbor.requests());
    assert_eq!(i.kube_writes(), 0);
}

fn statuses(i: &Install, method: &str, path: &str) -> Vec<u16> {
    let mut s: Vec<u16> = i
        .harbor
        .requests()
        .iter()
        .filter(|r| r.method == method && r.path.starts_with(path))
        .map(|r| r.status)
        .collect();
    s.sort();
    s
}

fn secret_creates(i: &Install) -> Vec<u16> {
    let mut s: Vec<u16> = i
        .kube
        .requests()
        .iter()
        .filter(|r| r.verb == "create" && r.resource == "secrets")
        .map(|r| r.status)
        .collect();
    s.sort();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_provisions_at_once_agree_on_one_password() {
    let i = beta_without_push().await;
    i.clear_requests();
    // Each run tests the pull robot's credentials once after reading
    // everything: holding both requests makes both plan from the same
    // state (push robot and Secret missing) before either writes.
    let looked = i.harbor.pause("GET", "/service/token", 2);
    let secret_create = i.kube.pause("create", "secrets", Some("team-beta"), 2);
    let robot_create = i.harbor.pause("POST", "/api/v2.0/robots", 2);
    // Caught once `looked` is used up: each run's verification.
    let verified = i.harbor.pause("GET", "/service/token", 2);
    let runs = [
        tokio::spawn(run(provision_cmd(&i))),
        tokio::spawn(run(provision_cmd(&i))),
    ];
    step("both runs observed", looked.arrived(2)).await;
    looked.open();
    step("both runs create the Secret", secret_create.arrived(2)).await;
    // Run X (ticket 0) stores its Secret and goes on to create the robot.
    secret_create.release(0);
    step("X creates the robot", robot_create.arrived(1)).await;
    // Run Y's create meets X's Secret (409): it must take X's password...
    secret_create.release(1);
    step("Y creates the robot", robot_create.arrived(2)).await;
    // ...and Y wins the robot, creating it with that password.
    robot_create.release(1);
    step("Y verifies", verified.arrived(1)).await;
    // X's create meets Y's robot (409): X sets it from the Secret.
    robot_create.release(0);
    step("X verifies", verified.arrived(2)).await;
    verified.open();
    for r in runs {
        let o = r.await.unwrap();
        assert_exit(&o, 0);
        assert_eq!(json(&o)["verified"], true);
    }
    assert_eq!(secret_creates(&i), [201, 409], "one Secret, written once");
    assert_eq!(statuses(&i, "POST", "/api/v2.0/robots"), [201, 409]);
    assert_eq!(
        statuses(&i, "PATCH", "/api/v2.0/robots/"),
        [200],
        "only the run that lost the robot sets its secret"
    );
    assert_eq!(i.harbor.robots().len(), 2, "nothing duplicated");
    assert_eq!(
        i.harbor.failed_logins(PUSH_LOGIN),
        0,
        "no run ever held a password Harbor refused"
    );
    beta_credentials_work(&i).await;
    rerun_writes_nothing(&i).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_between_the_doctors_look_and_its_writes_wins() {
    let i = beta_without_push().await;
    let op = Operator::new(&i, "beta", "push");
    let looked = i.harbor.pause("GET", "/service/token", 1);
    let doctor = tokio::spawn(run(provision_cmd(&i)));
    step("the doctor observed", looked.arrived(1)).await;
    // The doctor planned a new robot and Secret; the operator makes both first.
    op.cycle().await;
    looked.open();
    let o = doctor.await.unwrap();
    assert_exit(&o, 0);
    assert_eq!(json(&o)["verified"], true);
    let (_, _, pw) = i.docker_secret("team-beta", "harbor-pushsecret").unwrap();
    assert_eq!(
        pw, op.fresh_password,
        "the operator's Secret was kept, not overwritten"
    );
    assert_eq!(i.harbor.failed_logins(PUSH_LOGIN), 0);
    beta_credentials_work(&i).await;
    rerun_writes_nothing(&i).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_cycle_around_the_doctors_run_ends_with_the_doctors_secret() {
    let i = beta_without_push().await;
    let op = Operator::new(&i, "beta", "push");
    // The operator finds neither and creates the robot with its password...
    let look = op.look().await;
    assert!(look.robot_id.is_none() && look.secret_password.is_none());
    op.ensure_robot(&look).await;
    // ...then the doctor runs: the robot exists, the Secret does not.
    let verified = i.harbor.pause("GET", "/service/token", 2);
    let doctor = tokio::spawn(run(provision_cmd(&i)));
    step("the doctor observed", verified.arrived(1)).await;
    verified.release(0);
    step("the doctor applied and verifies", verified.arrived(2)).await;
    // The operator's Secret create meets the doctor's: it sets the robot from it.
    op.ensure_secret(&look).await;
    verified.open();
    let o = doctor.await.unwrap();
    assert_exit(&o, 0);
    let (_, _, pw) = i.docker_secret("team-beta", "harbor-pushsecret").unwrap();
    assert_ne!(
        pw, op.fresh_password,
        "the doctor's Secret came first and stayed"
    );
    beta_credentials_work(&i).await;
    rerun_writes_nothing(&i).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_changed_before_verification_is_exit_5_and_the_operator_converges() {
    let i = Install::faulty(|_| {}).await;
    i.otomi_team("beta");
    // Only the Secret is gone: the operator will give the robot a password
    // of its own, then find the doctor's Secret and set the robot from it.
    i.kube
        .delete("v1", "Secret", Some("team-beta"), "harbor-pushsecret")
        .unwrap();
    let op = Operator::new(&i, "beta", "push");
    let look = op.look().await;
    let verified = i.harbor.pause("GET", "/service/token", 2);
    let doctor = tokio::spawn(run(provision_cmd(&i)));
    step("the doctor observed", verified.arrived(1)).await;
    verified.release(0);
    step("the doctor applied and verifies", verified.arrived(2)).await;
    op.ensure_robot(&look).await;
    verified.open();
    let o = doctor.await.unwrap();
    assert_exit(&o, 5);
    let err = stderr(&o);
    assert!(
        err.contains("verification failed")
            && err.contains("refuses the credentials now in team-beta/harbor-pushsecret"),
        "{err}"
    );
    assert_eq!(json(&o)["verified"], false);
    assert_eq!(
        i.harbor.failed_logins(PUSH_LOGIN),
        1,
        "the Secret's credentials were tried once, not retried"
    );
    op.ensure_secret(&look).await;
    beta_credentials_work(&i).await;
    rerun_writes_nothing(&i).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_changed_since_it_was_read_is_read_again_not_overwritten() {
    let i = Install::faulty(|_| {}).await;
    i.otomi_team("beta");
    // The pull Secret names an old registry host: provisioning replaces it
    // as it was read (its resourceVersion).
    let pull = i.harbor.robot("team-beta-pull").unwrap();
    i.put_docker_secret(
        "team-beta",
        "harbor-pullsecret",
        "old-registry.example.com",
        "otomi-team-beta-pull",
        &pull.secret,
    );
    let replace = i.kube.pause("update", "secrets", Some("team-beta"), 1);
    let doctor = tokio::spawn(run(provision_cmd(&i)));
    step("the doctor replaces the Secret", replace.arrived(1)).await;
    // Another writer fixes the Secret first, with a password of its own.
    i.put_docker_secret(
        "team-beta",
        "harbor-pullsecret",
        HOST,
        "otomi-team-beta-pull",
        "Another1Writer",
    );
    replace.open();
    let o = doctor.await.unwrap();
    assert_exit(&o, 0);
    let updates: Vec<u16> = i
        .kube
        .requests()
        .iter()
        .filter(|r| r.verb == "update" && r.resource == "secrets")
        .map(|r| r.status)
        .collect();
    assert_eq!(updates, [409], "refused as changed, then not written again");
    let (_, _, pw) = i.docker_secret("team-beta", "harbor-pullsecret").unwrap();
    assert_eq!(pw, "Another1Writer", "the other writer's Secret was kept");
    beta_credentials_work(&i).await;
    rerun_writes_nothing(&i).await;
}

// -- build robots ------------------------------------------------------------
//
// Current Otomi gives every team a third robot, team-<id>-builds, with an
// Opaque Secret harbor-pushsecret-builds (key config.json); installations
// from before it have none, and are left without unless `--builds` asks.

fn kube_verbs(i: &Install, verb: &str, resource: &str) -> Vec<u16> {
    let mut s: Vec<u16> = i
        .kube
        .requests()
        .iter()
        .filter(|r| r.verb == verb && r.resource == resource)
        .map(|r| r.status)
        .collect();
    s.sort();
    s
}

fn summaries_of(doc: &Value, team: &str) -> Vec<String> {
    doc["checks"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["subject"] == format!("team {team}"))
        .map(|f| f["summary"].as_str().unwrap().to_string())
        .collect()
}

/// The team's builds Secret has Otomi's shape and holds the builds robot's
/// current secret.
fn builds_robot_works(i: &Install, team: &str) -> String {
    let (host, user, password) = i
        .builds_secret(&format!("team-{team}"))
        .expect("an Opaque harbor-pushsecret-builds with config.json");
    assert_eq!(host, HOST);
    assert_eq!(user, format!("otomi-team-{team}-builds"));
    let robot = i
        .harbor
        .robot(&format!("team-{team}-builds"))
        .expect("robot");
    assert_eq!(
        robot.secret, password,
        "the Secret holds the robot's secret"
    );
    assert_eq!(robot.level, "system");
    assert_eq!(robot.permissions.len(), 1);
    let mut actions: Vec<&str> = robot.permissions[0]
        .access
        .iter()
        .map(|a| a.action.as_str())
        .collect();
    actions.sort();
    assert_eq!(actions, ["pull", "push"]);
    password
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_a_team_without_its_builds_robot_gets_one_where_others_have_theirs() {
    let i = Install::new().await;
    i.otomi_team("a");
    i.otomi_builds("a");
    // b was provisioned before Otomi had build robots.
    i.otomi_team("b");

    i.clear_requests();
    let o = diagnose_teams(&i).await;
    assert_exit(&o, 1);
    let doc = json(&o);
    assert_eq!(summaries_of(&doc, "a"), Vec::<String>::new());
    let b = summaries_of(&doc, "b");
    assert!(
        b.iter()
            .any(|s| s.contains("otomi-team-b-builds is missing")),
        "{b:#?}"
    );
    assert!(
        b.iter()
            .any(|s| s.contains("team-b/harbor-pushsecret-builds is missing")),
        "{b:#?}"
    );
    assert_eq!(b.len(), 2, "{b:#?}");

    let o = provision(&i, &["--all", "--yes", "-o", "json"]).await;
    assert_exit(&o, 0);
    assert_eq!(json(&o)["verified"], true);
    assert!(
        stderr(&o).contains("uses them (robot team-a-builds exists)"),
        "{}",
        stderr(&o)
    );
    builds_robot_works(&i, "b");
    assert_eq!(i.harbor.robots().len(), 6, "nothing duplicated");

    i.clear_requests();
    let o = provision(&i, &["--all", "--yes", "-o", "json"]).await;
    assert_exit(&o, 0);
    assert_eq!(json(&o)["plan"], json!([]));
    assert_eq!(i.harbor.write_count(), 0, "{:#?}", i.harbor.requests());
    assert_eq!(i.kube_writes(), 0);
    let tokens = i
        .harbor
        .requests()
        .iter()
        .filter(|r| r.path == "/service/token")
        .count();
    assert_eq!(
        tokens, 6,
        "one token request per robot, the builds robots too"
    );
    let o = diagnose_teams(&i).await;
    assert_exit(&o, 0);
    i.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_a_builds_secret_of_the_wrong_type_or_key_is_rewritten_keeping_its_password() {
    let i = Install::new().await;
    for t in ["a", "b"] {
        i.otomi_team(t);
        i.otomi_builds(t);
    }
    // a: written like the pull Secret (kubernetes.io/dockerconfigjson).
    let builds_a = i.harbor.robot("team-a-builds").unwrap();
    i.put_docker_secret(
        "team-a",
        "harbor-pushsecret-builds",
        HOST,
        "otomi-team-a-builds",
        &builds_a.secret,
    );
    // b: Opaque, but under .dockerconfigjson.
    let builds_b = i.harbor.robot("team-b-builds").unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let config = json!({"auths": {HOST: {
        "username": "otomi-team-b-builds", "password": builds_b.secret,
        "auth": base64::Engine::encode(&b64, format!("otomi-team-b-builds:{}", builds_b.secret))}}});
    i.kube
        .put(json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                    "metadata": {"name": "harbor-pushsecret-builds", "namespace": "team-b"},
                    "data": {".dockerconfigjson": base64::Engine::encode(&b64, config.to_string())}}))
        .unwrap();

    let o = diagnose_teams(&i).await;
    assert_exit(&o, 1);
    let doc = json(&o);
    let a = summaries_of(&doc, "a");
    assert!(
        a.iter()
            .any(|s| s.contains("harbor-pushsecret-builds is unusable")
                && s.contains("its type is kubernetes.io/dockerconfigjson, not Opaque")),
        "{a:#?}"
    );
    let b = summaries_of(&doc, "b");
    assert!(
        b.iter()
            .any(|s| s.contains("harbor-pushsecret-builds is unusable")
                && s.contains("under .dockerconfigjson, not config.json")),
        "{b:#?}"
    );

    i.clear_requests();
    let o = provision(&i, &["--all", "--yes", "-o", "json"]).await;
    assert_exit(&o, 0);
    let doc = json(&o);
    assert_eq!(doc["verified"], true);
    assert!(
        doc["backup"].is_string(),
        "the replaced Secrets are backed up"
    );
    // The credentials in them worked, so the robots keep their secrets.
    assert_eq!(builds_robot_works(&i, "a"), builds_a.secret);
    assert_eq!(builds_robot_works(&i, "b"), builds_b.secret);
    assert_eq!(
        statuses(&i, "PATCH", "/api/v2.0/robots/"),
        Vec::<u16>::new()
    );
    // A type cannot change in place: a's was deleted and made again, b's
    // replaced.
    assert_eq!(kube_verbs(&i, "delete", "secrets"), [200]);
    assert_eq!(kube_verbs(&i, "create", "secrets"), [201]);
    assert_eq!(kube_verbs(&i, "update", "secrets"), [200]);

    rerun_all_writes_nothing(&i).await;
    i.finish().await;
}

async fn rerun_all_writes_nothing(i: &Install) {
    i.clear_requests();
    let o = provision(i, &["--all", "--yes", "-o", "json"]).await;
    assert_exit(&o, 0);
    assert_eq!(json(&o)["plan"], json!([]));
    assert_eq!(i.harbor.write_count(), 0, "{:#?}", i.harbor.requests());
    assert_eq!(i.kube_writes(), 0, "{:#?}", i.kube.requests());
    let o = diagnose_teams(i).await;
    assert_exit(&o, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_builds_turns_build_robots_on_for_an_installation_without_them() {
    let i = Install::new().await;
    for t in ["a", "b", "c"] {
        i.otomi_team(t);
    }
    // Without --builds, an installation that has none is left so.
    i.clear_requests();
    let o = provision(&i, &["--all", "--yes", "-o", "json"]).await;
    assert_exit(&o, 0);
    assert_eq!(json(&o)["plan"], json!([]));
    assert_eq!(i.harbor.write_count() + i.kube_writes(), 0);

    let o = provision(&i, &["--all", "--builds", "--dry-run", "-o", "json"]).await;
    assert_exit(&o, 0);
    let err = stderr(&o);
    assert!(
        err.contains("has none yet; --builds turns them on for all 3 team(s)"),
        "{err}"
    );
    let plan = json(&o)["plan"].as_array().unwrap().clone();
    let targets: Vec<&str> = plan.iter().map(|s| s["target"].as_str().unwrap()).collect();
    for t in ["a", "b", "c"] {
        assert!(
            targets.contains(&&*format!("team {t}: robot otomi-team-{t}-builds")),
            "{targets:#?}"
        );
        assert!(
            targets.contains(&&*format!(
                "team {t}: secret team-{t}/harbor-pushsecret-builds"
            )),
            "{targets:#?}"
        );
    }
    assert_eq!(plan.len(), 6, "{plan:#?}");
    assert_eq!(i.harbor.write_count() + i.kube_writes(), 0, "a dry run");

    // One team first: the others are now told to lack theirs.
    let o = provision(&i, &["--team", "a", "--builds", "--yes"]).await;
    assert_exit(&o, 0);
    assert!(stderr(&o).contains("2 other team(s)"), "{}", stderr(&o));
    builds_robot_works(&i, "a");
    let o = diagnose_teams(&i).await;
    assert_exit(&o, 1);
    let doc = json(&o);
    for t in ["b", "c"] {
        let s = summaries_of(&doc, t);
        assert!(
            s.iter()
                .any(|s| s.contains(&format!("otomi-team-{t}-builds is missing"))),
            "{s:#?}"
        );
    }
    // From now on no --builds is needed.
    let o = provision(&i, &["--all", "--yes"]).await;
    assert_exit(&o, 0);
    for t in ["b", "c"] {
        builds_robot_works(&i, t);
    }
    rerun_all_writes_nothing(&i).await;
    i.finish().await;
}

// -- the default ServiceAccount ---------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_a_namespace_without_its_default_service_account_gets_one() {
    let i = Install::new().await;
    i.otomi_team("a");
    namespace_without_default_service_account(&i.kube, "team-a");

    let o = diagnose_teams(&i).await;
    assert_exit(&o, 1);
    let doc = json(&o);
    let findings = doc["checks"][0]["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let f = &findings[0];
    let summary = f["summary"].as_str().unwrap();
    assert!(
        summary.contains("no default ServiceAccount")
            && summary.contains("ServiceAccount controller")
            && summary.contains("deleted"),
        "{summary}"
    );
    assert_eq!(f["repair"], "harbor-doctor provision --team a");

    i.clear_requests();
    let o = provision(&i, &["--team", "a", "--yes", "-o", "json"]).await;
    assert_exit(&o, 0);
    let doc = json(&o);
    assert_eq!(
        doc["plan"][0]["target"],
        "team a: serviceaccount team-a/default"
    );
    assert_eq!(doc["plan"].as_array().unwrap().len(), 1);
    assert_eq!(kube_verbs(&i, "create", "serviceaccounts"), [201]);
    assert_eq!(
        i.pull_secrets_on_default_sa("team-a"),
        ["harbor-pullsecret"]
    );
    rerun_all_writes_nothing(&i).await;
    i.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_service_account_made_meanwhile_is_kept_and_given_the_pull_secret() {
    let i = Install::new().await;
    i.otomi_team("a");
    namespace_without_default_service_account(&i.kube, "team-a");
    let create = i.kube.pause("create", "serviceaccounts", Some("team-a"), 1);
    let doctor = tokio::spawn(run({
        let mut c = i.doctor();
        c.args(["provision", "--team", "a", "--yes", "-o", "json"]);
        c
    }));
    step("the doctor creates the ServiceAccount", create.arrived(1)).await;
    // The ServiceAccount controller makes it first, as it does: without
    // pull secrets.
    i.kube
        .put(json!({"apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": "default", "namespace": "team-a"}}))
        .unwrap();
    create.open();
    let o = doctor.await.unwrap();
    assert_exit(&o, 0);
    assert_eq!(json(&o)["verified"], true);
    assert_eq!(kube_verbs(&i, "create", "serviceaccounts"), [409]);
    assert_eq!(kube_verbs(&i, "patch", "serviceaccounts"), [200]);
    assert_eq!(
        i.pull_secrets_on_default_sa("team-a"),
        ["harbor-pullsecret"]
    );
    rerun_all_writes_nothing(&i).await;
    i.finish().await;
}

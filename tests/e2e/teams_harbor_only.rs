//! The teams check and provision where no cluster is configured: the check
//! judges what Harbor holds for the team-* projects; provisioning refuses,
//! because the Secrets are the point; bad team ids are refused first.

use std::time::Duration;

use crate::support::*;
use harbor_doctor_sim::harbor::{HarborOptions, HarborSim, RobotSeed};
use serde_json::Value;

const PW: &str = "Harbor12345";

fn doctor_for(h: &HarborSim) -> assert_cmd::Command {
    let mut c = bare_doctor();
    c.env("HARBOR_URL", h.url())
        .env("HARBOR_PASSWORD", PW)
        .env("HARBOR_DOCTOR_TIMEOUT", "20");
    c
}

async fn otomi_harbor() -> HarborSim {
    HarborSim::start(HarborOptions {
        login_penalty: Duration::from_millis(20),
        external_url: Some("https://harbor.example.com".into()),
        ..HarborOptions::otomi("https://keycloak.example.com/realms/otomi")
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harbor_drift_is_found_per_team_without_a_cluster() {
    let h = otomi_harbor().await;
    for team in ["team-a", "team-b"] {
        h.add_project(team, false);
        h.add_group_member(team, team, 3, 2);
        h.add_group_member(team, "all-teams-admin", 3, 1);
        h.add_robot(RobotSeed::system(&format!("{team}-pull"), team, &["pull"]));
        h.add_robot(RobotSeed::system(
            &format!("{team}-push"),
            team,
            &["pull", "push"],
        ));
    }
    h.add_project("team-admin", false);
    let push_b = h.robot("team-b-push").unwrap();
    assert!(h.remove_robot(push_b.id));
    assert!(h.remove_member("team-b", "all-teams-admin"));
    let pull_a = h.robot("team-a-pull").unwrap();
    h.set_robot_disabled(pull_a.id, true);

    let o = run({
        let mut c = doctor_for(&h);
        c.args(["diagnose", "teams", "-o", "json"]);
        c
    })
    .await;
    assert_exit(&o, 1);
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    let check = &doc["checks"][0];
    assert_eq!(check["status"], "problem");
    let findings = check["findings"].as_array().unwrap();
    let about = |team: &str| -> Vec<String> {
        findings
            .iter()
            .filter(|f| f["subject"] == format!("team {team}"))
            .map(|f| f["summary"].as_str().unwrap().to_string())
            .collect()
    };
    let a = about("a");
    assert_eq!(a.len(), 1, "{a:#?}");
    assert!(a[0].contains("otomi-team-a-pull is disabled"), "{a:#?}");
    let b = about("b");
    assert_eq!(b.len(), 2, "{b:#?}");
    assert!(b.iter().any(|s| s.contains("otomi-team-b-push is missing")));
    assert!(b
        .iter()
        .any(|s| s.contains("all-teams-admin is not a member")));
    assert!(about("admin").is_empty(), "team-admin is not a team");
    // Without the cluster the check says, last, that it did not look at
    // the Secrets and ServiceAccounts (DESIGN.md: honest coverage).
    let (coverage, findings) = findings.split_last().unwrap();
    assert_eq!(coverage["subject"], "coverage: cluster", "{doc:#}");
    assert_eq!(coverage["severity"], "warning");
    assert_eq!(coverage["repair"], Value::Null);
    assert!(coverage["summary"].as_str().unwrap().contains("kubeconfig"));
    for f in findings {
        assert_eq!(f["runbook"], "provisioning");
        assert!(f["repair"]
            .as_str()
            .unwrap()
            .starts_with("harbor-doctor provision --team "));
    }
    let member = findings
        .iter()
        .find(|f| f["summary"].as_str().unwrap().contains("not a member"))
        .unwrap();
    assert_eq!(member["severity"], "warning");
    assert_eq!(h.write_count(), 0, "a diagnosis writes nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provision_needs_the_cluster() {
    let h = otomi_harbor().await;
    let o = run({
        let mut c = doctor_for(&h);
        c.args(["provision", "--team", "a", "--yes"]);
        c
    })
    .await;
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("needs the cluster"), "{}", stderr(&o));
    assert_eq!(h.write_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_team_ids_are_refused_before_anything_is_read() {
    let h = otomi_harbor().await;
    for bad in ["Team_A", "a--b", "-a", &"x".repeat(60)] {
        let o = run({
            let mut c = doctor_for(&h);
            c.args([
                "provision",
                "--team",
                "ok",
                &format!("--team={bad}"),
                "--yes",
            ]);
            c
        })
        .await;
        assert_exit(&o, 3);
        assert!(stderr(&o).contains("is not valid"), "{}", stderr(&o));
    }
    assert!(h.requests().is_empty());
}

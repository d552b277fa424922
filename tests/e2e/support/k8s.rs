//! Equipment for the doctor's Kubernetes tests: a simulated cluster with a
//! Harbor release, a kubeconfig for it, and the doctor binary pointed at it
//! (and at nothing else). The release's external URL leads to a simulated
//! Harbor, so that the doctor finds Harbor through the cluster as it does
//! in a real installation.

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use harbor_doctor_sim::harbor::{HarborOptions, HarborSim};
use harbor_doctor_sim::k8s::{HarborSeed, KubeSim, PolicyRule, RecordedRequest, Timing};

use crate::support::bare_doctor;

pub struct Cluster {
    pub sim: KubeSim,
    /// The release's Harbor (HTTPS; its CA is given as HARBOR_CA_CERT),
    /// serving for as long as the cluster lives.
    _harbor: HarborSim,
    pub dir: tempfile::TempDir,
    pub backups: PathBuf,
}

impl Cluster {
    /// A cluster with fast controllers and the Harbor release `harbor` in
    /// namespace `harbor`, seeded as `seed` says.
    pub async fn with(mut seed: HarborSeed) -> Cluster {
        let sim = KubeSim::start()
            .await
            .expect("starting the simulated cluster");
        let harbor = HarborSim::start(HarborOptions {
            tls: true,
            login_penalty: Duration::from_millis(50),
            ..HarborOptions::otomi("https://keycloak.example.com/realms/otomi")
        })
        .await
        .expect("starting the simulated Harbor");
        seed.external_host = harbor.url().trim_start_matches("https://").to_string();
        sim.set_timing(Timing {
            pod_termination: Duration::from_millis(200),
            volume_attach: Duration::from_millis(100),
        });
        sim.seed_harbor(&seed).expect("seeding Harbor");
        let dir = tempfile::tempdir().unwrap();
        let backups = dir.path().join("backups");
        sim.write_kubeconfig(&dir.path().join("admin.yaml"), sim.admin_token())
            .unwrap();
        std::fs::write(
            dir.path().join("harbor-ca.pem"),
            harbor.ca_pem().expect("served over HTTPS"),
        )
        .unwrap();
        Cluster {
            sim,
            _harbor: harbor,
            dir,
            backups,
        }
    }

    pub async fn start() -> Cluster {
        Cluster::with(HarborSeed::new("harbor", "harbor")).await
    }

    /// The doctor as cluster-admin, through KUBECONFIG.
    pub fn doctor(&self) -> assert_cmd::Command {
        self.doctor_with(self.dir.path().join("admin.yaml"))
    }

    /// The doctor with a token that has only `rules`.
    pub fn doctor_as(&self, token: &str, rules: Vec<PolicyRule>) -> assert_cmd::Command {
        self.sim
            .add_user(token, "system:serviceaccount:harbor:harbor-doctor", rules);
        let path = self.dir.path().join(format!("{token}.yaml"));
        self.sim.write_kubeconfig(&path, token).unwrap();
        self.doctor_with(path)
    }

    pub fn doctor_with(&self, kubeconfig: PathBuf) -> assert_cmd::Command {
        let mut cmd = bare_doctor();
        cmd.env("KUBECONFIG", kubeconfig)
            .env("HARBOR_CA_CERT", self.dir.path().join("harbor-ca.pem"))
            .env("HARBOR_DOCTOR_BACKUP_DIR", &self.backups)
            .env("HARBOR_DOCTOR_TIMEOUT", "3");
        cmd
    }

    /// The write requests (anything but get/list/watch) the doctor made.
    pub fn writes(&self) -> Vec<RecordedRequest> {
        self.sim
            .requests()
            .into_iter()
            .filter(|r| !matches!(r.verb.as_str(), "get" | "list" | "watch" | ""))
            .collect()
    }

    pub fn strategy(&self, deployment: &str) -> serde_json::Value {
        self.sim
            .get("apps/v1", "Deployment", Some("harbor"), deployment)
            .expect("the Deployment exists")["spec"]["strategy"]
            .clone()
    }
}

/// The one JSON document a command printed.
pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}):\n{}\n--- stderr\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

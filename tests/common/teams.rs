//! A simulated Otomi-style installation for the provisioning tests: the
//! simulated Harbor (behind Prism in the contract stage) and Kubernetes,
//! team namespaces, and helpers to plant what Otomi would have made.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use harbor_doctor_sim::harbor::{HarborEndpoint, HarborOptions, HarborSim, RobotSeed};
use harbor_doctor_sim::k8s::KubeSim;
use serde_json::{json, Value};

pub const HARBOR_PW: &str = "Harbor12345";
pub const HOST: &str = "harbor.example.com";

pub struct Install {
    pub harbor: HarborEndpoint,
    pub kube: KubeSim,
    pub kubeconfig: PathBuf,
    pub backups: tempfile::TempDir,
    _dir: tempfile::TempDir,
}

impl Install {
    /// An Otomi Harbor (OIDC, prefix `otomi-`, external URL
    /// `https://harbor.example.com`) behind Prism when the contract stage
    /// asks for it, and an empty cluster.
    pub async fn new() -> Install {
        Self::build(|_| {}, true).await
    }

    /// Never behind Prism: for tests whose faults break Harbor's API
    /// description on purpose.
    pub async fn faulty(adjust: impl FnOnce(&mut HarborOptions)) -> Install {
        Self::build(adjust, false).await
    }

    async fn build(adjust: impl FnOnce(&mut HarborOptions), contract: bool) -> Install {
        let mut opts = HarborOptions {
            external_url: Some(format!("https://{HOST}")),
            login_penalty: Duration::from_millis(50),
            ..HarborOptions::otomi("https://keycloak.example.com/realms/otomi")
        };
        adjust(&mut opts);
        let harbor = if contract {
            HarborSim::start_for_test(opts).await.unwrap()
        } else {
            HarborEndpoint::from(HarborSim::start(opts).await.unwrap())
        };
        let kube = KubeSim::start().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        kube.write_kubeconfig(&kubeconfig, kube.admin_token())
            .unwrap();
        Install {
            harbor,
            kube,
            kubeconfig,
            backups: tempfile::tempdir().unwrap(),
            _dir: dir,
        }
    }

    /// A team namespace with its default ServiceAccount, as Kubernetes
    /// makes them.
    pub fn namespace(&self, name: &str) {
        self.kube
            .put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
            .unwrap();
        self.kube
            .put(json!({"apiVersion": "v1", "kind": "ServiceAccount",
                        "metadata": {"name": "default", "namespace": name}}))
            .unwrap();
    }

    /// What Otomi makes for a team: project, members, robots and Secrets,
    /// the pull secret on the default ServiceAccount.
    pub fn otomi_team(&self, id: &str) {
        let name = format!("team-{id}");
        self.namespace(&name);
        self.harbor.add_project(&name, false);
        self.harbor.add_group_member(&name, &name, 3, 2);
        self.harbor.add_group_member(&name, "all-teams-admin", 3, 1);
        for (kind, actions) in [("pull", &["pull"][..]), ("push", &["pull", "push"][..])] {
            let robot =
                self.harbor
                    .add_robot(RobotSeed::system(&format!("{name}-{kind}"), &name, actions));
            self.put_docker_secret(
                &name,
                &format!("harbor-{kind}secret"),
                HOST,
                &format!("otomi-{name}-{kind}"),
                &robot.secret,
            );
        }
        self.kube
            .put(json!({"apiVersion": "v1", "kind": "ServiceAccount",
                        "metadata": {"name": "default", "namespace": name},
                        "imagePullSecrets": [{"name": "harbor-pullsecret"}, {"name": "harbor-pushsecret"}]}))
            .unwrap();
    }

    pub fn put_docker_secret(&self, ns: &str, name: &str, host: &str, user: &str, password: &str) {
        let b64 = base64::engine::general_purpose::STANDARD;
        let config = json!({"auths": {host: {
            "username": user, "password": password,
            "auth": b64.encode(format!("{user}:{password}"))}}});
        self.kube
            .put(json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
                        "metadata": {"name": name, "namespace": ns},
                        "data": {".dockerconfigjson": b64.encode(config.to_string())}}))
            .unwrap();
    }

    /// The (host, username, password) a docker Secret holds.
    pub fn docker_secret(&self, ns: &str, name: &str) -> Option<(String, String, String)> {
        let s = self.kube.get("v1", "Secret", Some(ns), name)?;
        let raw = s["data"][".dockerconfigjson"].as_str()?;
        let doc: Value =
            serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(raw).ok()?)
                .ok()?;
        let (host, entry) = doc["auths"].as_object()?.iter().next()?;
        Some((
            host.clone(),
            entry["username"].as_str()?.to_string(),
            entry["password"].as_str()?.to_string(),
        ))
    }

    pub fn pull_secrets_on_default_sa(&self, ns: &str) -> Vec<String> {
        self.kube
            .get("v1", "ServiceAccount", Some(ns), "default")
            .and_then(|sa| sa["imagePullSecrets"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|r| r["name"].as_str().map(str::to_string))
            .collect()
    }

    /// The doctor pointed at this installation.
    pub fn doctor(&self) -> assert_cmd::Command {
        let mut c = crate::common::bare_doctor();
        c.env("HARBOR_URL", self.harbor.url())
            .env("HARBOR_PASSWORD", HARBOR_PW)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HARBOR_DOCTOR_BACKUP_DIR", self.backups.path())
            .env("HARBOR_DOCTOR_TIMEOUT", "30");
        c
    }

    /// Writes the doctor made to Kubernetes.
    pub fn kube_writes(&self) -> usize {
        self.kube
            .requests()
            .iter()
            .filter(|r| !matches!(r.verb.as_str(), "get" | "list" | "watch" | ""))
            .count()
    }

    /// Ends the test: fails when Prism saw a violation.
    pub async fn finish(self) {
        self.harbor.finish().await.unwrap();
    }

    pub fn clear_requests(&self) {
        self.harbor.clear_requests();
        self.kube.clear_requests();
    }
}

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

    /// What current Otomi adds to a team: the builds robot and its Opaque
    /// Secret with `config.json`.
    pub fn otomi_builds(&self, id: &str) {
        let name = format!("team-{id}");
        let robot = self.harbor.add_robot(RobotSeed::system(
            &format!("{name}-builds"),
            &name,
            &["pull", "push"],
        ));
        self.put_builds_secret(&name, &format!("otomi-{name}-builds"), &robot.secret);
    }

    /// `harbor-pushsecret-builds` as Otomi writes it.
    pub fn put_builds_secret(&self, ns: &str, user: &str, password: &str) {
        let b64 = base64::engine::general_purpose::STANDARD;
        let config = json!({"auths": {HOST: {
            "username": user, "password": password, "email": "not@val.id",
            "auth": b64.encode(format!("{user}:{password}"))}}});
        self.kube
            .put(
                json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                        "metadata": {"name": "harbor-pushsecret-builds", "namespace": ns},
                        "data": {"config.json": b64.encode(config.to_string())}}),
            )
            .unwrap();
    }

    /// The (host, username, password) in the builds Secret, read only
    /// when it has Otomi's shape (Opaque, the document under `config.json`
    /// alone, with Otomi's email).
    pub fn builds_secret(&self, ns: &str) -> Option<(String, String, String)> {
        let s = self
            .kube
            .get("v1", "Secret", Some(ns), "harbor-pushsecret-builds")?;
        let keys: Vec<&String> = s["data"].as_object()?.keys().collect();
        if s["type"] != "Opaque" || keys != ["config.json"] {
            return None;
        }
        let raw = s["data"]["config.json"].as_str()?;
        let doc: Value =
            serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(raw).ok()?)
                .ok()?;
        let (host, entry) = doc["auths"].as_object()?.iter().next()?;
        if entry["email"] != "not@val.id" {
            return None;
        }
        Some((
            host.clone(),
            entry["username"].as_str()?.to_string(),
            entry["password"].as_str()?.to_string(),
        ))
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
        let mut c = crate::support::bare_doctor();
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

/// Leaves namespace `ns` (created when missing) without its `default`
/// ServiceAccount, as when the cluster's ServiceAccount controller is not
/// running or someone deleted the account. Every test that needs that
/// situation plants it here, so that it is made in one place whatever the
/// simulated cluster's controllers do.
pub fn namespace_without_default_service_account(kube: &KubeSim, ns: &str) {
    kube.break_serviceaccount_controller(ns);
    kube.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
        .unwrap();
    if kube
        .get("v1", "ServiceAccount", Some(ns), "default")
        .is_some()
    {
        kube.delete("v1", "ServiceAccount", Some(ns), "default")
            .unwrap();
    }
    assert!(
        kube.get("v1", "ServiceAccount", Some(ns), "default")
            .is_none(),
        "the simulated cluster made ServiceAccount {ns}/default again: stop its ServiceAccount \
         controller for {ns} here first"
    );
}

/// One cycle of Otomi's Harbor operator for one robot of a team, in its
/// own requests and split into its steps so that a test can put the
/// doctor's between them. The operator treats the Secret as the source of
/// truth: it finds the robot by exact name (`GET /robots?q=name=`), takes
/// the password from the Secret (or makes one when the Secret is missing),
/// creates the robot with it (`POST /robots` with `secret`) or sets it on
/// the robot (`PATCH /robots/{id}`), and creates the Secret when missing;
/// when that create meets a Secret stored meanwhile, it sets the robot
/// from that one.
pub struct Operator {
    http: reqwest::Client,
    harbor: String,
    kube: String,
    token: String,
    prefix: String,
    team: String,
    kind: &'static str,
    /// The password the operator makes when the Secret is missing.
    pub fresh_password: String,
}

/// What the operator read at the start of its cycle.
#[derive(Debug, Clone)]
pub struct OperatorLook {
    pub robot_id: Option<i64>,
    /// The Secret's password; None when the Secret is missing.
    pub secret_password: Option<String>,
}

impl OperatorLook {
    /// The password this cycle gives the robot.
    pub fn password(&self, op: &Operator) -> String {
        self.secret_password
            .clone()
            .unwrap_or_else(|| op.fresh_password.clone())
    }
}

impl Operator {
    pub fn new(install: &Install, team: &str, kind: &'static str) -> Operator {
        Operator {
            http: reqwest::Client::new(),
            harbor: install.harbor.url(),
            kube: install.kube.http_url(),
            token: install.kube.admin_token().to_string(),
            prefix: install.harbor.robot_prefix(),
            team: team.to_string(),
            kind,
            fresh_password: "Operator7Made9Pw".into(),
        }
    }

    fn robot_name(&self) -> String {
        format!("team-{}-{}", self.team, self.kind)
    }

    fn secret_url(&self, name: Option<&str>) -> String {
        let base = format!("{}/api/v1/namespaces/team-{}/secrets", self.kube, self.team);
        match name {
            Some(n) => format!("{base}/{n}"),
            None => base,
        }
    }

    fn secret_name(&self) -> String {
        format!("harbor-{}secret", self.kind)
    }

    async fn find_robot(&self) -> Option<i64> {
        let list: Vec<Value> = self
            .http
            .get(format!("{}/api/v2.0/robots", self.harbor))
            .query(&[("q", format!("name={}", self.robot_name()))])
            .basic_auth("admin", Some(HARBOR_PW))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        let full = format!("{}{}", self.prefix, self.robot_name());
        list.iter()
            .find(|r| r["name"] == full.as_str())
            .and_then(|r| r["id"].as_i64())
    }

    async fn read_secret_password(&self) -> Option<String> {
        let resp = self
            .http
            .get(self.secret_url(Some(&self.secret_name())))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return None;
        }
        let s: Value = resp.error_for_status().unwrap().json().await.unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(s["data"][".dockerconfigjson"].as_str()?)
            .ok()?;
        let doc: Value = serde_json::from_slice(&raw).ok()?;
        doc["auths"][HOST]["password"].as_str().map(str::to_string)
    }

    async fn patch_robot(&self, id: i64, password: &str) {
        self.http
            .patch(format!("{}/api/v2.0/robots/{id}", self.harbor))
            .basic_auth("admin", Some(HARBOR_PW))
            .json(&json!({"secret": password}))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
    }

    /// Step 1: the robot by exact name, and the Secret.
    pub async fn look(&self) -> OperatorLook {
        OperatorLook {
            robot_id: self.find_robot().await,
            secret_password: self.read_secret_password().await,
        }
    }

    /// Step 2: the robot with the cycle's password, created or set.
    pub async fn ensure_robot(&self, look: &OperatorLook) {
        let password = look.password(self);
        let id = match look.robot_id {
            Some(id) => id,
            None => {
                let actions: &[&str] = if self.kind == "pull" {
                    &["pull"]
                } else {
                    &["pull", "push"]
                };
                let access: Vec<Value> = actions
                    .iter()
                    .map(|a| json!({"resource": "repository", "action": a}))
                    .collect();
                let resp = self
                    .http
                    .post(format!("{}/api/v2.0/robots", self.harbor))
                    .basic_auth("admin", Some(HARBOR_PW))
                    .json(&json!({
                        "name": self.robot_name(), "description": "otomi", "level": "system",
                        "duration": -1, "secret": password,
                        "permissions": [{"kind": "project", "namespace": format!("team-{}", self.team),
                                         "access": access}]}))
                    .send()
                    .await
                    .unwrap();
                if resp.status() != reqwest::StatusCode::CONFLICT {
                    resp.error_for_status().unwrap();
                    return;
                }
                self.find_robot()
                    .await
                    .expect("the robot Harbor says exists")
            }
        };
        self.patch_robot(id, &password).await;
    }

    /// Step 3: the Secret, when it was missing; a Secret stored meanwhile
    /// wins, and the robot is set from it.
    pub async fn ensure_secret(&self, look: &OperatorLook) {
        if look.secret_password.is_some() {
            return;
        }
        let password = look.password(self);
        let user = format!("{}{}", self.prefix, self.robot_name());
        let b64 = base64::engine::general_purpose::STANDARD;
        let config = json!({"auths": {HOST: {
            "username": user, "password": password, "email": "not@val.id",
            "auth": b64.encode(format!("{user}:{password}"))}}});
        let resp = self
            .http
            .post(self.secret_url(None))
            .bearer_auth(&self.token)
            .json(&json!({"apiVersion": "v1", "kind": "Secret",
                          "type": "kubernetes.io/dockerconfigjson",
                          "metadata": {"name": self.secret_name()},
                          "data": {".dockerconfigjson": b64.encode(config.to_string())}}))
            .send()
            .await
            .unwrap();
        if resp.status() != reqwest::StatusCode::CONFLICT {
            resp.error_for_status().unwrap();
            return;
        }
        let stored = self
            .read_secret_password()
            .await
            .expect("the Secret the API server says exists");
        let id = self.find_robot().await.expect("the robot this cycle made");
        self.patch_robot(id, &stored).await;
    }

    /// A whole cycle.
    pub async fn cycle(&self) {
        let look = self.look().await;
        self.ensure_robot(&look).await;
        self.ensure_secret(&look).await;
    }
}

/// Waits for a step of a race the test orchestrates (a request arriving
/// at a gate); a minute means the doctor took another path, which fails
/// the test with `what` instead of hanging it.
pub async fn step(what: &str, fut: impl std::future::Future<Output = ()>) {
    if tokio::time::timeout(Duration::from_secs(60), fut)
        .await
        .is_err()
    {
        panic!("the race did not reach its next step: {what}");
    }
}

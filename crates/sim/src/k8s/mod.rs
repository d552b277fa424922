//! A simulated Kubernetes API server.
//!
//! It speaks the real REST protocol on 127.0.0.1, over HTTPS with its own CA
//! (as a cluster's kubeconfig describes it: `certificate-authority-data` and
//! a bearer token) and over plain HTTP, both on the same state, so that the
//! real `kube` client and the real `kubectl` binary run against it unchanged.
//!
//! What it models, and what not:
//! - the resources harbor-doctor reads and repairs (see `catalog`), with
//!   discovery, label and field selectors, pagination, create/get/update/
//!   patch/delete, resourceVersion conflicts, the real Status error bodies,
//!   token authentication and RBAC-like rules, watch, and `pods/portforward`
//!   over WebSocket bridged to real TCP addresses;
//! - a few controllers, reduced to what the doctor's stories need: the
//!   garbage collector, graceful pod termination, a ReplicaSet controller, a
//!   Deployment status model, an attach/detach + kubelet model for
//!   ReadWriteOnce volumes and the ServiceAccount controller's `default`
//!   account per namespace, which a test can break per namespace
//!   (`controller`); and seeds for a Harbor release and a CloudNativePG
//!   database (`harbor`);
//! - request bodies in JSON, YAML or Kubernetes protobuf (`protobuf`);
//!   answers are always JSON;
//! - the OpenAPI v3 and v2 documents of the stored kinds (`openapi`);
//! - managed fields and server-side apply with conflicts (`managed`);
//! - not: admission, schemas beyond the validations listed in `store`,
//!   exec/attach/logs.
//!
//! Tests seed and inspect the state directly (`put`, `get`, `list`) and can
//! check which calls a client made (`requests`) or make calls fail
//! (`inject_fault`).

mod catalog;
mod controller;
mod discovery;
mod errors;
mod harbor;
mod managed;
mod openapi;
mod patch;
mod portforward;
mod protobuf;
mod rbac;
mod selector;
mod server;
mod store;
mod table;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use base64::Engine;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::Notify;

pub use errors::ApiError;
pub use harbor::{
    CnpgCluster, CnpgSeed, HarborRelease, HarborSeed, MultiAttachMessage, MultiAttachOptions,
    MultiAttachScene,
};
pub use rbac::{AccessRequest, PolicyRule};

pub use crate::gate::Gate;

use crate::tls::{ServerHandle, TestPki};
use rbac::Principal;
use store::Store;

/// One API call as the server saw it, for tests that check what a client
/// did (and for deriving the RBAC rules a command needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// get, list, watch, create, update, patch, delete, deletecollection;
    /// empty for discovery and other non-resource paths.
    pub verb: String,
    /// Further verbs the authorizer also required (`create` for a
    /// WebSocket port-forward, as Kubernetes 1.35 checks).
    pub also_requires: Vec<String>,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub method: String,
    pub path: String,
    pub user: Option<String>,
    pub status: u16,
    /// The request body's Content-Type, when it had one.
    pub content_type: Option<String>,
}

/// A failure the server answers instead of handling a request.
#[derive(Debug, Clone)]
pub struct Fault {
    /// Verb to match (get, list, patch, delete, ...); None matches any.
    pub verb: Option<String>,
    /// Plural resource to match (`replicasets`); None matches any.
    pub resource: Option<String>,
    pub name: Option<String>,
    pub namespace: Option<String>,
    /// Matching requests to let through before failing.
    pub skip: usize,
    /// How many matching requests fail.
    pub times: usize,
    pub code: u16,
    /// Status message; a default for the code when None.
    pub message: Option<String>,
}

impl Fault {
    /// The next request with `verb` on `resource` answers `code`.
    pub fn new(verb: &str, resource: &str, code: u16) -> Self {
        Self {
            verb: Some(verb.to_string()),
            resource: Some(resource.to_string()),
            name: None,
            namespace: None,
            skip: 0,
            times: 1,
            code,
            message: None,
        }
    }

    pub fn times(mut self, n: usize) -> Self {
        self.times = n;
        self
    }

    pub fn skip(mut self, n: usize) -> Self {
        self.skip = n;
        self
    }

    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }

    pub fn in_namespace(mut self, ns: &str) -> Self {
        self.namespace = Some(ns.to_string());
        self
    }

    pub fn message(mut self, message: &str) -> Self {
        self.message = Some(message.to_string());
        self
    }
}

/// How fast the simulated controllers react.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// From a graceful pod deletion until the kubelet has stopped the pod
    /// (on a Ready node; on a NotReady one it never happens).
    pub pod_termination: Duration,
    /// From the volume being free until the waiting pod runs.
    pub volume_attach: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            pod_termination: Duration::from_millis(300),
            volume_attach: Duration::from_millis(200),
        }
    }
}

/// Requests held at a gate until the test releases them (see
/// [`KubeSim::pause`]).
#[derive(Debug, Clone)]
pub(crate) struct Pause {
    pub(crate) verb: String,
    pub(crate) resource: String,
    pub(crate) namespace: Option<String>,
    pub(crate) gate: Gate,
}

pub(crate) struct Inner {
    pub(crate) store: Mutex<Store>,
    pub(crate) pauses: Mutex<Vec<Pause>>,
    pub(crate) principals: Mutex<HashMap<String, Principal>>,
    pub(crate) requests: Mutex<Vec<RecordedRequest>>,
    pub(crate) faults: Mutex<Vec<Fault>>,
    pub(crate) port_forwards: Mutex<HashMap<(String, String, u16), SocketAddr>>,
    pub(crate) timing: Mutex<Timing>,
    pub(crate) controller: Mutex<controller::ControllerState>,
    /// Wakes the controller loop after a write.
    pub(crate) wake: Notify,
    pub(crate) stopped: tokio::sync::watch::Sender<bool>,
}

impl Inner {
    /// Runs `f` on the store, then lets the controllers react.
    ///
    /// The ServiceAccount controller acts before the lock is released: on a
    /// real cluster it makes `default` within milliseconds, and a test that
    /// creates a namespace and at once reads its account must not race it.
    pub(crate) fn write<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        let out = {
            let mut store = self.store.lock();
            let out = f(&mut store);
            controller::ensure_default_service_accounts(&mut store);
            out
        };
        self.wake.notify_one();
        out
    }
}

/// A running simulated API server. Cheap to clone; all clones share it.
#[derive(Clone)]
pub struct KubeSim {
    inner: Arc<Inner>,
    pki: Arc<TestPki>,
    https: Arc<ServerHandle>,
    http: Arc<ServerHandle>,
    admin_token: Arc<str>,
}

impl KubeSim {
    /// Starts the server on two ephemeral ports (HTTPS and HTTP) with an
    /// admin token, an empty cluster but for the `default` namespace.
    pub async fn start() -> Result<KubeSim> {
        let pki = TestPki::generate().context("making the simulator's CA")?;
        let (stopped, _) = tokio::sync::watch::channel(false);
        let inner = Arc::new(Inner {
            store: Mutex::new(Store::new()),
            pauses: Mutex::new(Vec::new()),
            principals: Mutex::new(HashMap::new()),
            requests: Mutex::new(Vec::new()),
            faults: Mutex::new(Vec::new()),
            port_forwards: Mutex::new(HashMap::new()),
            timing: Mutex::new(Timing::default()),
            controller: Mutex::new(controller::ControllerState::default()),
            wake: Notify::new(),
            stopped,
        });
        let admin_token: Arc<str> = format!("sim-admin-{}", store::random_suffix(24)).into();
        inner.principals.lock().insert(
            admin_token.to_string(),
            Principal {
                user: "kubernetes-admin".into(),
                rules: vec![PolicyRule::admin()],
            },
        );
        let router = server::router(inner.clone());
        let https = crate::tls::serve(router.clone(), Some(&pki)).await?;
        let http = crate::tls::serve(router, None).await?;
        {
            let mut store = inner.store.lock();
            // A real cluster always has these two.
            for ns in ["default", "kube-system"] {
                store
                    .put(serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
                    .map_err(|e| anyhow!("seeding the {ns} namespace: {e}"))?;
            }
            controller::ensure_default_service_accounts(&mut store);
        }
        tokio::spawn(controller::run(inner.clone()));
        Ok(KubeSim {
            inner,
            pki: Arc::new(pki),
            https: Arc::new(https),
            http: Arc::new(http),
            admin_token,
        })
    }

    pub fn https_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.https.addr.port())
    }

    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http.addr.port())
    }

    /// The CA certificate (PEM) that signed the HTTPS server's certificate.
    pub fn ca_pem(&self) -> &str {
        &self.pki.ca_pem
    }

    /// A bearer token with every right (user `kubernetes-admin`).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// Registers a token whose user may do what `rules` allow. The user name
    /// is `system:serviceaccount:harbor-doctor:<n>`-like and stable per
    /// token; use `add_user` to choose it.
    pub fn add_token(&self, token: &str, rules: Vec<PolicyRule>) {
        let n = self.inner.principals.lock().len();
        self.add_user(
            token,
            &format!("system:serviceaccount:default:sim-user-{n}"),
            rules,
        );
    }

    /// Registers a token for the named user.
    pub fn add_user(&self, token: &str, user: &str, rules: Vec<PolicyRule>) {
        self.inner.principals.lock().insert(
            token.to_string(),
            Principal {
                user: user.to_string(),
                rules,
            },
        );
    }

    /// Makes a token unknown: requests with it now get 401, as with an
    /// expired token.
    pub fn revoke_token(&self, token: &str) {
        self.inner.principals.lock().remove(token);
    }

    /// A kubeconfig for the HTTPS endpoint: cluster, user and context `sim`.
    pub fn kubeconfig_yaml(&self, token: &str) -> String {
        let ca = base64::engine::general_purpose::STANDARD.encode(self.ca_pem());
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster:\n    server: {}\n    certificate-authority-data: {ca}\nusers:\n- name: sim\n  user:\n    token: {token}\ncontexts:\n- name: sim\n  context:\n    cluster: sim\n    user: sim\n    namespace: default\ncurrent-context: sim\npreferences: {{}}\n",
            self.https_url()
        )
    }

    /// Writes `kubeconfig_yaml` to `path` with mode 0600.
    pub fn write_kubeconfig(&self, path: &Path, token: &str) -> Result<()> {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options
            .open(path)
            .with_context(|| format!("writing a kubeconfig to {}", path.display()))?;
        f.write_all(self.kubeconfig_yaml(token).as_bytes())?;
        Ok(())
    }

    /// Creates or replaces an object of any served kind (by its apiVersion
    /// and kind). Status, timestamps and labels are stored as given; the
    /// namespace is created when missing.
    pub fn put(&self, obj: Value) -> Result<Value> {
        self.inner
            .write(|s| s.put(obj))
            .map_err(|e| anyhow!("storing an object in the simulator: {e}"))
    }

    /// Stores many objects under one lock, waking the controllers once: for
    /// seeding large clusters (benchmarks).
    pub fn put_many(&self, objs: impl IntoIterator<Item = Value>) -> Result<()> {
        self.inner.write(|s| {
            for obj in objs {
                s.put(obj)
                    .map_err(|e| anyhow!("storing an object in the simulator: {e}"))?;
            }
            Ok(())
        })
    }

    pub fn get(
        &self,
        api_version: &str,
        kind: &str,
        ns: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let rt = catalog::by_kind(api_version, kind)?;
        let ns = if rt.namespaced {
            ns.unwrap_or("default")
        } else {
            ""
        };
        self.inner.store.lock().get(rt, ns, name).ok()
    }

    /// Objects of a kind, in one namespace or all (ns None).
    pub fn list(&self, api_version: &str, kind: &str, ns: Option<&str>) -> Vec<Value> {
        let Some(rt) = catalog::by_kind(api_version, kind) else {
            return Vec::new();
        };
        let ns = if rt.namespaced { ns } else { None };
        self.inner
            .store
            .lock()
            .list(rt, ns, &store::ListOptions::default())
            .ok()
            .and_then(|l| l["items"].as_array().cloned())
            .unwrap_or_default()
    }

    /// Deletes an object as the API would (graceful for pods, garbage
    /// collection of dependents in the background).
    pub fn delete(
        &self,
        api_version: &str,
        kind: &str,
        ns: Option<&str>,
        name: &str,
    ) -> Result<()> {
        let rt = catalog::by_kind(api_version, kind)
            .ok_or_else(|| anyhow!("the simulator does not serve {api_version} {kind}"))?;
        let ns = if rt.namespaced {
            ns.unwrap_or("default")
        } else {
            ""
        };
        self.inner
            .write(|s| s.delete(rt, ns, name, &store::DeleteOptions::default()))
            .map(|_| ())
            .map_err(|e| anyhow!("deleting {kind} {name}: {e}"))
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.inner.requests.lock().clone()
    }

    pub fn clear_requests(&self) {
        self.inner.requests.lock().clear();
    }

    pub fn inject_fault(&self, fault: Fault) {
        self.inner.faults.lock().push(fault);
    }

    /// Holds the next `times` requests with `verb` on `resource` (plural;
    /// in `namespace` when given) until the test releases them through the
    /// gate returned; they are then served as usual.
    pub fn pause(&self, verb: &str, resource: &str, namespace: Option<&str>, times: usize) -> Gate {
        let gate = Gate::new(times);
        self.inner.pauses.lock().push(Pause {
            verb: verb.to_string(),
            resource: resource.to_string(),
            namespace: namespace.map(str::to_string),
            gate: gate.clone(),
        });
        gate
    }

    pub fn clear_faults(&self) {
        self.inner.faults.lock().clear();
    }

    /// Where a port-forward to `pod`:`port` in `ns` connects.
    pub fn set_port_forward_target(&self, ns: &str, pod: &str, port: u16, target: SocketAddr) {
        self.inner
            .port_forwards
            .lock()
            .insert((ns.to_string(), pod.to_string(), port), target);
    }

    pub fn set_timing(&self, timing: Timing) {
        *self.inner.timing.lock() = timing;
        self.inner.wake.notify_one();
    }

    /// Stops the ServiceAccount controller in namespace `ns` (which need not
    /// exist yet): a `default` ServiceAccount deleted there stays deleted,
    /// and a namespace created with that name gets none, as on a cluster
    /// whose controller-manager fails for it. The account already there is
    /// left alone; delete it to plant a namespace without one.
    pub fn break_serviceaccount_controller(&self, ns: &str) {
        self.inner
            .store
            .lock()
            .service_account_controller_broken
            .insert(ns.to_string());
    }

    /// Undoes [`KubeSim::break_serviceaccount_controller`]: the controller
    /// makes the missing `default` ServiceAccount at once.
    pub fn repair_serviceaccount_controller(&self, ns: &str) {
        self.inner
            .write(|s| s.service_account_controller_broken.remove(ns));
    }

    /// Marks a node Ready or NotReady (kubelet stopped posting status).
    pub fn set_node_ready(&self, node: &str, ready: bool) -> Result<()> {
        let rt = catalog::by_kind("v1", "Node").expect("nodes are served");
        let mut obj = self
            .inner
            .store
            .lock()
            .get(rt, "", node)
            .map_err(|e| anyhow!("{e}"))?;
        harbor::set_ready_condition(&mut obj, ready);
        self.put(obj)?;
        Ok(())
    }

    /// Waits until `check` holds for the cluster state, or fails after
    /// `timeout`: for tests that wait for the controllers.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&KubeSim) -> bool,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if check(self) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(anyhow!(
                    "the simulated cluster did not reach the expected state within {timeout:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops both listeners and the controllers.
    pub fn shutdown(&self) {
        let _ = self.inner.stopped.send(true);
        self.inner.wake.notify_one();
        self.https.shutdown();
        self.http.shutdown();
    }
}

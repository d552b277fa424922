//! The Kubernetes API: every call the doctor makes to a cluster lives here.
//!
//! Settings come from `--kubeconfig` / `--context`, else `KUBECONFIG` (which
//! may list several files) or `~/.kube/config`, else the pod's service
//! account (in-cluster). Each call is named the way RBAC names it (verb,
//! API group, resource, namespace), so that a refusal says exactly which
//! permission is missing, and the three ways a cluster says no (unreachable,
//! credentials rejected, forbidden) each become an exit-3 message that says
//! what to do.
//!
//! Reads are per namespace and server-side filtered (label and field
//! selectors), so their cost does not grow with the rest of the cluster.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::Result;
use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, Resource};
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

use crate::clients::files;
use crate::clients::kube_objects::selector_query;
use crate::clients::stream::{DbStream, StreamOpener};
use crate::clients::NotConfigured;
use crate::outcome::refused;

/// Page size for lists: big enough that a Harbor namespace is one page,
/// small enough that a huge namespace does not arrive in one response.
const PAGE: u32 = 500;

/// How the doctor reached the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A kubeconfig context: which one, from where.
    Kubeconfig { context: String, file: String },
    /// The service account of the pod the doctor runs in.
    InCluster,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Kubeconfig { context, file } => {
                write!(f, "kubeconfig context {context:?} ({file})")
            }
            Origin::InCluster => f.write_str("the pod's service account (in-cluster)"),
        }
    }
}

/// The cluster refused the caller (401 or 403): nothing was done, and the
/// message says which credentials or permission are missing. Could not run:
/// exit 3, also when a repair meets it before its first change.
#[derive(Debug)]
pub struct Denied(pub String);

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Denied {}

fn denied(message: String) -> anyhow::Error {
    anyhow::Error::new(Denied(message))
}

/// Whether an error (anywhere in its chain) is the cluster refusing the caller.
pub fn is_denied(err: &anyhow::Error) -> bool {
    err.chain().any(|e| e.downcast_ref::<Denied>().is_some())
}

/// The API server answered 409: the object exists already (create) or
/// changed since it was read (update with its resourceVersion). Callers
/// that race other writers re-read and decide again.
#[derive(Debug)]
pub struct Conflict(pub String);

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Conflict {}

/// Whether an error (anywhere in its chain) is the API server's 409.
pub fn is_conflict(err: &anyhow::Error) -> bool {
    err.chain().any(|e| e.downcast_ref::<Conflict>().is_some())
}

/// One API call in RBAC's terms, for error messages.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
}

impl Call<'_> {
    fn describe(&self) -> String {
        let resource = if self.group.is_empty() {
            self.resource.to_string()
        } else {
            format!("{}.{}", self.resource, self.group)
        };
        let what = match self.name {
            Some(n) => format!("{resource} {n}"),
            None => resource,
        };
        match self.namespace {
            Some(ns) => format!("{} {what} in namespace {ns}", self.verb),
            None => format!("{} {what} (cluster-wide)", self.verb),
        }
    }

    /// The RBAC rule that would allow this call, as a role author writes it.
    fn rule(&self) -> String {
        format!(
            "verb {:?} on resource {:?} in API group {:?}{}",
            self.verb,
            self.resource,
            self.group,
            match self.namespace {
                Some(ns) => format!(" in namespace {ns:?}"),
                None => " cluster-wide".into(),
            }
        )
    }
}

/// A connected Kubernetes client.
#[derive(Clone)]
pub struct Kube {
    client: Client,
    origin: Origin,
    server: String,
}

fn kubeconfig_env() -> Option<String> {
    std::env::var("KUBECONFIG")
        .ok()
        .filter(|v| !v.trim().is_empty())
}

/// The kubeconfig `Kubeconfig::read` reads, as messages name it.
fn kubeconfig_env_shown() -> String {
    kubeconfig_env().unwrap_or_else(|| "~/.kube/config".into())
}

fn default_kubeconfig_exists() -> bool {
    std::env::var_os("HOME")
        .map(|h| std::path::Path::new(&h).join(".kube/config").exists())
        .unwrap_or(false)
}

fn not_configured() -> anyhow::Error {
    anyhow::Error::new(NotConfigured(
        "no Kubernetes cluster configured: give --kubeconfig (and --context), set KUBECONFIG, or put a \
         kubeconfig in ~/.kube/config (inside a pod the service account is used)"
            .into(),
    ))
}

/// The refusal for a kubeconfig that cannot be read, or lacks the context.
fn unusable_kubeconfig(file: &str, e: &dyn fmt::Display) -> anyhow::Error {
    refused(format!(
        "cannot use the kubeconfig {file}: {e}. Check the file, or name a context that exists with --context"
    ))
}

/// The client settings from a kubeconfig read from `file` (given, named by
/// KUBECONFIG or the default), for `context` or its current context.
async fn from_kubeconfig(
    kc: Kubeconfig,
    file: String,
    context: Option<&str>,
) -> Result<(Config, Origin)> {
    let name = context
        .map(str::to_string)
        .or_else(|| kc.current_context.clone())
        .unwrap_or_default();
    let options = KubeConfigOptions {
        context: context.map(str::to_string),
        ..KubeConfigOptions::default()
    };
    let config = Config::from_custom_kubeconfig(kc, &options)
        .await
        .map_err(|e| unusable_kubeconfig(&file, &e))?;
    Ok((
        config,
        Origin::Kubeconfig {
            context: name,
            file,
        },
    ))
}

/// The kube crate reads kubeconfigs itself, with no bound: a path that is a
/// FIFO hangs it and one linked to /dev/zero grows it without limit. So
/// each file it would read is checked first: regular and size-capped.
/// Missing files are left for it to report as it does.
fn check_kubeconfig_files(explicit: Option<&std::path::Path>) -> Result<()> {
    let paths: Vec<std::path::PathBuf> = match explicit {
        Some(path) => vec![path.to_path_buf()],
        None => match std::env::var_os("KUBECONFIG") {
            Some(value) if std::env::split_paths(&value).any(|p| !p.as_os_str().is_empty()) => {
                std::env::split_paths(&value)
                    .filter(|p| !p.as_os_str().is_empty())
                    .collect()
            }
            _ => std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| std::path::Path::new(&h).join(".kube/config"))
                .into_iter()
                .collect(),
        },
    };
    for path in paths {
        match files::check_regular_file(&path, files::KUBECONFIG_CAP) {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(refused(format!("cannot use the kubeconfig: {e}"))),
        }
    }
    Ok(())
}

impl Kube {
    /// Loads the settings (see the module comment) and builds the client.
    /// No request is made yet.
    pub async fn connect(
        kubeconfig: Option<&std::path::Path>,
        context: Option<&str>,
        timeout: Duration,
    ) -> Result<Kube> {
        crate::clients::tls::install_crypto_provider();
        check_kubeconfig_files(kubeconfig)?;
        let (mut config, origin) = match kubeconfig {
            Some(path) => {
                let file = path.display().to_string();
                let kc = Kubeconfig::read_from(path).map_err(|e| unusable_kubeconfig(&file, &e))?;
                from_kubeconfig(kc, file, context).await?
            }
            None => match Kubeconfig::read() {
                Ok(kc) => {
                    let file = kubeconfig_env_shown();
                    from_kubeconfig(kc, file, context).await?
                }
                Err(_)
                    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
                        && context.is_none() =>
                {
                    let config = Config::incluster().map_err(|e| {
                        refused(format!(
                            "running in a pod, but the service account's credentials cannot be read: {e}. \
                             Mount the service account token (automountServiceAccountToken) or give --kubeconfig"
                        ))
                    })?;
                    (config, Origin::InCluster)
                }
                // A kubeconfig that is named or present but unreadable is an
                // error to report, not a cluster that is not configured.
                Err(e) if kubeconfig_env().is_some() || default_kubeconfig_exists() => {
                    let file = kubeconfig_env_shown();
                    return Err(unusable_kubeconfig(&file, &e));
                }
                Err(_) => return Err(not_configured()),
            },
        };
        config.connect_timeout = Some(timeout);
        config.read_timeout = Some(timeout);
        config.write_timeout = Some(timeout);
        let server = config.cluster_url.to_string();
        let client = Client::try_from(config).map_err(|e| {
            refused(format!(
                "cannot set up the Kubernetes client for {server} ({origin}): {e}"
            ))
        })?;
        Ok(Kube {
            client,
            origin,
            server,
        })
    }

    /// Whether the doctor runs inside the cluster (then Services are
    /// reachable directly, without a port-forward).
    pub fn in_cluster(&self) -> bool {
        self.origin == Origin::InCluster
    }

    /// The cluster in a few words: its kubeconfig context, or in-cluster.
    pub fn short(&self) -> String {
        match &self.origin {
            Origin::Kubeconfig { context, .. } => format!("context {context}"),
            Origin::InCluster => "in-cluster".to_string(),
        }
    }

    pub fn describe(&self) -> String {
        format!("{} ({})", self.server.trim_end_matches('/'), self.origin)
    }

    /// Turns a client error into a message that says what to do.
    pub fn explain(&self, call: Call<'_>, err: kube::Error) -> anyhow::Error {
        let server = self.server.trim_end_matches('/');
        match err {
            kube::Error::Api(status) => match status.code {
                401 => denied(format!(
                    "the Kubernetes API server at {server} rejected the credentials of {} (401 Unauthorized): \
                     the token has expired or was revoked. Log in again (refresh the kubeconfig, e.g. with your \
                     cloud provider's CLI or `kubectl oidc-login`), or give another --kubeconfig / --context",
                    self.origin
                )),
                403 => denied(format!(
                    "the cluster does not allow harbor-doctor to {} (403 Forbidden). It needs {}; the roles in \
                     deploy/rbac.yaml grant what each command needs (harbor-doctor-diagnose for diagnose, \
                     harbor-doctor-repair for fix). The server said: {}",
                    call.describe(),
                    call.rule(),
                    status.message
                )),
                409 => anyhow::Error::new(Conflict(format!(
                    "the Kubernetes API server refused to {} (409 {}): {}",
                    call.describe(),
                    status.reason,
                    status.message
                ))),
                code => anyhow::anyhow!(
                    "the Kubernetes API server refused to {} ({code} {}): {}",
                    call.describe(),
                    status.reason,
                    status.message
                ),
            },
            other => refused(format!(
                "cannot reach the Kubernetes API server at {server} ({}) to {}: {}. Check the kubeconfig \
                 context, the VPN or network path, or raise --timeout",
                self.origin,
                call.describe(),
                error_chain(&other)
            )),
        }
    }

    fn call<'a>(
        verb: &'a str,
        namespace: Option<&'a str>,
        name: Option<&'a str>,
        plural: &'a str,
        group: &'a str,
    ) -> Call<'a> {
        Call {
            verb,
            group,
            resource: plural,
            namespace,
            name,
        }
    }

    /// Every object of a namespaced kind in `ns` that matches the selectors.
    pub async fn list_in<K>(
        &self,
        ns: &str,
        labels: Option<&str>,
        fields: Option<&str>,
    ) -> Result<Vec<K>>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + fmt::Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), ns);
        self.list_with(api, Some(ns), labels, fields).await
    }

    /// Every object of a namespaced kind in `ns` that a workload's label
    /// selector picks, matchLabels and matchExpressions both.
    pub async fn list_selected_in<K>(&self, ns: &str, selector: &LabelSelector) -> Result<Vec<K>>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + fmt::Debug,
    {
        let query = selector_query(selector).map_err(|e| {
            anyhow::anyhow!(
                "a label selector in namespace {ns} cannot be sent to the API server ({e}): Kubernetes knows \
                 only the operators In, NotIn, Exists and DoesNotExist; check the object's spec.selector"
            )
        })?;
        self.list_in(ns, Some(&query), None).await
    }

    /// Every object of a cluster-scoped kind that matches the selectors.
    pub async fn list_cluster<K>(
        &self,
        labels: Option<&str>,
        fields: Option<&str>,
    ) -> Result<Vec<K>>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug,
    {
        let api: Api<K> = Api::all(self.client.clone());
        self.list_with(api, None, labels, fields).await
    }

    async fn list_with<K>(
        &self,
        api: Api<K>,
        ns: Option<&str>,
        labels: Option<&str>,
        fields: Option<&str>,
    ) -> Result<Vec<K>>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug,
    {
        let plural = K::plural(&()).to_string();
        let group = K::group(&()).to_string();
        let mut lp = ListParams::default().limit(PAGE);
        if let Some(l) = labels {
            lp = lp.labels(l);
        }
        if let Some(f) = fields {
            lp = lp.fields(f);
        }
        let mut items = Vec::new();
        loop {
            let page = api
                .list(&lp)
                .await
                .map_err(|e| self.explain(Self::call("list", ns, None, &plural, &group), e))?;
            items.extend(page.items);
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => lp = lp.continue_token(&token),
                None => break,
            }
        }
        Ok(items)
    }

    /// One namespaced object, or None when it does not exist.
    pub async fn get_in<K>(&self, ns: &str, name: &str) -> Result<Option<K>>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + fmt::Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), ns);
        let (plural, group) = (K::plural(&()).to_string(), K::group(&()).to_string());
        api.get_opt(name)
            .await
            .map_err(|e| self.explain(Self::call("get", Some(ns), Some(name), &plural, &group), e))
    }

    /// One cluster-scoped object, or None when it does not exist.
    pub async fn get_cluster<K>(&self, name: &str) -> Result<Option<K>>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug,
    {
        let api: Api<K> = Api::all(self.client.clone());
        let (plural, group) = (K::plural(&()).to_string(), K::group(&()).to_string());
        api.get_opt(name)
            .await
            .map_err(|e| self.explain(Self::call("get", None, Some(name), &plural, &group), e))
    }

    /// The cluster's identity: the UID of its kube-system namespace, made
    /// once when the cluster was created. The same through any kubeconfig
    /// or context that reaches this cluster, different for any other.
    pub async fn cluster_uid(&self) -> Result<Option<String>> {
        use k8s_openapi::api::core::v1::Namespace;
        Ok(self
            .get_cluster::<Namespace>("kube-system")
            .await?
            .and_then(|ns| ns.metadata.uid))
    }

    /// Deletes a namespaced object, but only the one with `uid` (a newer
    /// object of the same name is left alone: the server answers 409), and
    /// lets the garbage collector remove its dependents in the background.
    pub async fn delete_exact<K>(&self, ns: &str, name: &str, uid: &str) -> Result<()>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + fmt::Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), ns);
        let (plural, group) = (K::plural(&()).to_string(), K::group(&()).to_string());
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        api.delete(name, &dp).await.map(|_| ()).map_err(|e| {
            self.explain(
                Self::call("delete", Some(ns), Some(name), &plural, &group),
                e,
            )
        })
    }

    /// Creates a namespaced object (409 from the server when it exists).
    pub async fn create_in<K>(&self, ns: &str, obj: &K) -> Result<K>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + serde::Serialize
            + fmt::Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), ns);
        let (plural, group) = (K::plural(&()).to_string(), K::group(&()).to_string());
        let name = obj.meta().name.clone();
        api.create(&kube::api::PostParams::default(), obj)
            .await
            .map_err(|e| {
                self.explain(
                    Self::call("create", Some(ns), name.as_deref(), &plural, &group),
                    e,
                )
            })
    }

    /// Replaces a namespaced object. `obj` carries the resourceVersion it
    /// was read at: the server refuses (409) when it changed since.
    pub async fn replace_in<K>(&self, ns: &str, name: &str, obj: &K) -> Result<K>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + serde::Serialize
            + fmt::Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), ns);
        let (plural, group) = (K::plural(&()).to_string(), K::group(&()).to_string());
        api.replace(name, &kube::api::PostParams::default(), obj)
            .await
            .map_err(|e| {
                self.explain(
                    Self::call("update", Some(ns), Some(name), &plural, &group),
                    e,
                )
            })
    }

    /// A strategic merge patch of a namespaced object.
    pub async fn patch_strategic<K>(
        &self,
        ns: &str,
        name: &str,
        patch: &serde_json::Value,
    ) -> Result<K>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + fmt::Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), ns);
        let (plural, group) = (K::plural(&()).to_string(), K::group(&()).to_string());
        api.patch(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
            .map_err(|e| {
                self.explain(
                    Self::call("patch", Some(ns), Some(name), &plural, &group),
                    e,
                )
            })
    }

    /// Opens a port-forward to `pod`:`port` and returns its byte stream.
    pub async fn port_forward(&self, ns: &str, pod: &str, port: u16) -> Result<ForwardedStream> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let call = Call {
            verb: "create",
            group: "",
            resource: "pods/portforward",
            namespace: Some(ns),
            name: Some(pod),
        };
        let mut forwarder = api
            .portforward(pod, &[port])
            .await
            .map_err(|e| self.explain(call, e))?;
        let stream = forwarder.take_stream(port).ok_or_else(|| {
            refused(format!(
                "the port-forward to {ns}/{pod} gave no stream for port {port}"
            ))
        })?;
        let error = forwarder.take_error(port).map(|f| f.boxed());
        Ok(ForwardedStream {
            stream,
            error,
            _forwarder: forwarder,
        })
    }

    /// A [`StreamOpener`] that opens a fresh port-forward for each database
    /// connection.
    pub fn port_forward_opener(&self, ns: &str, pod: &str, port: u16) -> StreamOpener {
        let kube = self.clone();
        let (ns, pod) = (ns.to_string(), pod.to_string());
        Arc::new(
            move || -> BoxFuture<'static, std::io::Result<Box<dyn DbStream>>> {
                let (kube, ns, pod) = (kube.clone(), ns.clone(), pod.clone());
                async move {
                    kube.port_forward(&ns, &pod, port)
                        .await
                        .map(|s| Box::new(s) as Box<dyn DbStream>)
                        .map_err(|e| std::io::Error::other(format!("{e:#}")))
                }
                .boxed()
            },
        )
    }
}

/// An error and its causes on one line (kube's errors nest the useful part).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// A port-forwarded connection. Keeps the forwarder alive as long as the
/// stream, and turns a message on the port's error channel (the pod refused
/// the connection) into a read error instead of a silent hang.
pub struct ForwardedStream {
    stream: DuplexStream,
    error: Option<BoxFuture<'static, Option<String>>>,
    _forwarder: kube::api::Portforwarder,
}

impl ForwardedStream {
    fn poll_error(&mut self, cx: &mut TaskContext<'_>) -> Option<std::io::Error> {
        let fut = self.error.as_mut()?;
        match fut.poll_unpin(cx) {
            Poll::Ready(Some(message)) => {
                self.error = None;
                Some(std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    message,
                ))
            }
            Poll::Ready(None) => {
                self.error = None;
                None
            }
            Poll::Pending => None,
        }
    }
}

impl AsyncRead for ForwardedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.poll_error(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ForwardedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if let Some(e) = this.poll_error(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

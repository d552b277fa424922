//! The contract check: run a test's Harbor traffic through Prism, a proxy
//! that validates every request and response against Harbor's own API
//! description, so the simulator (and the doctor's use of it) cannot drift
//! from the real API unnoticed.
//!
//! It is switched on by the environment: when `HARBOR_DOCTOR_PRISM` names the
//! `prism` executable (`npm ci` in `ci/prism/` installs it), `start_for_test`
//! starts the simulator, then `prism proxy --errors <spec> <simulator>` on a
//! free port, and hands out the proxy's URL. `finish` stops Prism and fails
//! when its log shows any violation. Without the variable the test talks to
//! the simulator directly.
//!
//! Prism needs two adjustments to `../shared/harbor/swagger.yaml` (FACTS.md):
//! it ignores Swagger 2's `basePath`, so every path key gets the `/api/v2.0`
//! prefix; and the registry's own endpoints (`/service/token`, `/v2/`) are
//! not in the description, so permissive entries are added for them. The
//! adjusted copy is written to a temporary directory, never to the repo.
//! A missing description is an error, never a silent skip.

use std::net::TcpListener;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use super::{HarborOptions, HarborSim};

/// Names the Prism executable; when set, tests run through Prism.
pub const PRISM_ENV: &str = "HARBOR_DOCTOR_PRISM";
/// Overrides where Harbor's API description is read from.
pub const SPEC_ENV: &str = "HARBOR_DOCTOR_HARBOR_SPEC";

/// How long Prism may take to load the description and listen.
const PRISM_START_TIMEOUT: Duration = Duration::from_secs(90);

/// Where Harbor's API description lives: `$HARBOR_DOCTOR_HARBOR_SPEC`, else
/// `shared/harbor/swagger.yaml` beside the repository.
pub fn spec_path() -> PathBuf {
    match std::env::var_os(SPEC_ENV) {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/harbor/swagger.yaml"),
    }
}

/// Writes the copy of Harbor's API description that Prism can use into
/// `dest_dir` and returns its path.
pub fn write_adjusted_spec(src: &Path, dest_dir: &Path) -> Result<PathBuf> {
    let text = std::fs::read_to_string(src).with_context(|| {
        format!(
            "reading Harbor's API description {}: the contract stage needs it \
             (set {SPEC_ENV} to its path, or put shared/harbor/swagger.yaml beside the repository)",
            src.display()
        )
    })?;
    let spec: Value = serde_yaml::from_str(&text)
        .with_context(|| format!("parsing {} as YAML", src.display()))?;
    let adjusted = adjust_spec(spec)?;
    std::fs::create_dir_all(dest_dir)
        .with_context(|| format!("creating {}", dest_dir.display()))?;
    let out = dest_dir.join("harbor-swagger.prism.json");
    std::fs::write(&out, serde_json::to_vec(&adjusted)?)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(out)
}

/// Prefixes every path with the base path and adds the registry endpoints.
pub fn adjust_spec(mut spec: Value) -> Result<Value> {
    let base = spec
        .get("basePath")
        .and_then(Value::as_str)
        .unwrap_or("/api/v2.0")
        .trim_end_matches('/')
        .to_string();
    let paths = spec
        .get_mut("paths")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| anyhow!("the API description has no `paths` object"))?;
    let original = std::mem::take(paths);
    for (path, item) in original {
        paths.insert(format!("{base}{path}"), item);
    }
    // The registry's endpoints: any query, any answer with a JSON body; the
    // point of routing them through Prism is only that it does not 404 them.
    let any_json = json!({"description": "any answer", "schema": {"type": "object"}});
    paths.insert(
        "/service/token".into(),
        json!({"get": {
            "operationId": "registryToken",
            "summary": "The registry's token service (not in Harbor's API description).",
            "security": [{"basic": []}, {}],
            "parameters": [
                {"name": "service", "in": "query", "type": "string", "required": false},
                {"name": "scope", "in": "query", "type": "array", "items": {"type": "string"},
                 "collectionFormat": "multi", "required": false},
                {"name": "account", "in": "query", "type": "string", "required": false}
            ],
            "responses": {"200": any_json, "400": any_json, "401": any_json, "default": any_json}
        }}),
    );
    paths.insert(
        "/v2/".into(),
        json!({"get": {
            "operationId": "registryBase",
            "summary": "The registry's base endpoint (not in Harbor's API description).",
            "security": [],
            "responses": {"200": any_json, "401": any_json, "default": any_json}
        }}),
    );
    if let Some(obj) = spec.as_object_mut() {
        obj.remove("basePath");
    }
    Ok(spec)
}

/// The adjusted description, built once per test process.
fn prism_spec() -> Result<PathBuf> {
    static SPEC: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    SPEC.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("harbor-doctor-prism-{}", std::process::id()));
        write_adjusted_spec(&spec_path(), &dir).map_err(|e| format!("{e:#}"))
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// A running Prism proxy in front of a simulator.
struct PrismProxy {
    child: tokio::process::Child,
    url: String,
    log_path: PathBuf,
}

/// The simulator a test talks to, directly or through Prism. It derefs to
/// the simulator for seeding and inspection; `url` is the one clients use.
pub struct HarborEndpoint {
    sim: HarborSim,
    prism: Option<PrismProxy>,
}

impl HarborEndpoint {
    /// The URL clients must use: Prism's when it is in front.
    pub fn url(&self) -> String {
        match &self.prism {
            Some(p) => p.url.clone(),
            None => self.sim.url(),
        }
    }

    /// The CA to trust for `url`: none through Prism, which listens on HTTP.
    pub fn ca_pem(&self) -> Option<&str> {
        match self.prism {
            Some(_) => None,
            None => self.sim.ca_pem(),
        }
    }

    pub fn sim(&self) -> &HarborSim {
        &self.sim
    }

    pub fn through_prism(&self) -> bool {
        self.prism.is_some()
    }

    /// Stops Prism (when running) and fails when it saw any request or
    /// response that breaks Harbor's API description. Call it at the end of
    /// every test that used `start_for_test`.
    pub async fn finish(mut self) -> Result<()> {
        let Some(mut prism) = self.prism.take() else {
            return Ok(());
        };
        // Prism logs a verdict just after it answers: let the log settle
        // before stopping it.
        let mut last_len = None;
        let settle_deadline = Instant::now() + Duration::from_secs(5);
        loop {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let len = std::fs::metadata(&prism.log_path).map(|m| m.len()).ok();
            if len == last_len || Instant::now() > settle_deadline {
                break;
            }
            last_len = len;
        }
        let _ = prism.child.kill().await;
        let log = std::fs::read_to_string(&prism.log_path).unwrap_or_default();
        // A response that breaks the description logs `Violation:`; a request
        // that breaks it is refused and logs an error (`✖`).
        let violations: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("Violation") || l.contains('✖'))
            .collect();
        if violations.is_empty() {
            Ok(())
        } else {
            // With --errors, Prism puts the details of each broken rule in the
            // answer it gave the client instead (a problem+json body with a
            // `validation` list); its log names the request.
            bail!(
                "Prism found {} violation(s) of Harbor's API description; the client got \
                 Prism's problem+json answer listing each broken rule (full log: {}):\n{}",
                violations.len(),
                prism.log_path.display(),
                violations.join("\n")
            )
        }
    }
}

impl From<HarborSim> for HarborEndpoint {
    /// The simulator without Prism, for tests that provoke answers outside
    /// Harbor's API description on purpose (faults, HTML, races).
    fn from(sim: HarborSim) -> Self {
        HarborEndpoint { sim, prism: None }
    }
}

impl Deref for HarborEndpoint {
    type Target = HarborSim;
    fn deref(&self) -> &HarborSim {
        &self.sim
    }
}

pub(super) async fn start_for_test(opts: HarborOptions) -> Result<HarborEndpoint> {
    let sim = HarborSim::start(opts).await?;
    let Some(prism_bin) = std::env::var_os(PRISM_ENV) else {
        return Ok(HarborEndpoint { sim, prism: None });
    };
    let spec = prism_spec()?;
    let port = free_port()?;
    let dir = spec
        .parent()
        .expect("the spec sits in a directory")
        .to_path_buf();
    let log_path = dir.join(format!("prism-{port}.log"));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let mut cmd = tokio::process::Command::new(&prism_bin);
    cmd.arg("proxy")
        .arg("--errors")
        .arg(&spec)
        .arg(sim.url())
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .env("NO_COLOR", "1")
        .env("FORCE_COLOR", "0")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    if let Some(ca) = sim.ca_pem() {
        let ca_path = dir.join(format!("ca-{port}.pem"));
        std::fs::write(&ca_path, ca)?;
        cmd.env("NODE_EXTRA_CA_CERTS", ca_path);
    }
    let mut child = cmd.spawn().with_context(|| {
        format!(
            "starting Prism from {PRISM_ENV}={}",
            Path::new(&prism_bin).display()
        )
    })?;
    let deadline = Instant::now() + PRISM_START_TIMEOUT;
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            bail!("Prism exited ({status}) before listening:\n{log}");
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            bail!("Prism did not listen on port {port} within {PRISM_START_TIMEOUT:?}:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(HarborEndpoint {
        sim,
        prism: Some(PrismProxy {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log_path,
        }),
    })
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port for Prism")?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_get_the_base_path_and_registry_entries() {
        let spec = json!({
            "swagger": "2.0",
            "basePath": "/api/v2.0",
            "paths": {"/ping": {"get": {}}, "/projects/{project_name_or_id}": {"get": {}}}
        });
        let adjusted = adjust_spec(spec).unwrap();
        let paths = adjusted["paths"].as_object().unwrap();
        assert!(paths.contains_key("/api/v2.0/ping"));
        assert!(paths.contains_key("/api/v2.0/projects/{project_name_or_id}"));
        assert!(paths.contains_key("/service/token"));
        assert!(paths.contains_key("/v2/"));
        assert!(!paths.contains_key("/ping"));
        assert!(adjusted.get("basePath").is_none());
    }

    #[test]
    fn a_missing_description_is_an_error_that_says_where_it_looked() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_adjusted_spec(&dir.path().join("nope.yaml"), dir.path()).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("nope.yaml"), "{msg}");
        assert!(msg.contains(SPEC_ENV), "{msg}");
    }
}

//! `serve` and `diagnose -o prometheus` as Prometheus sees them: the
//! metric families DESIGN.md fixes, checked by the real `promtool`; the
//! HTTP paths (`/report` only with `--report`, 503 before the first run);
//! no user, subject or URL in any label; a check that hangs cut at
//! `--timeout` while the server keeps answering; exit codes for a bad
//! option (2), an address in use (3) and SIGTERM (0); and a real
//! Prometheus server scraping `serve` against the lab with
//! deploy/monitoring.yaml's rules, before and after the README's repair loop.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;
use harbor_doctor_sim::harbor::{HarborOptions, HarborSim};
use harbor_doctor_sim::lab::{Lab, Postgres};

const STATUSES: [&str; 5] = ["ok", "warning", "problem", "skipped", "error"];

/// The real promtool, from Debian's `prometheus` package (.ci/run installs
/// it). Missing, the tests fail: a skipped format check proves nothing.
pub fn promtool() -> std::process::Command {
    let found = version_status("promtool").is_some_and(|s| s.success());
    assert!(
        found,
        "promtool is not installed: these tests check the metrics and alert rules with the real \
         Prometheus tools (apt-get install prometheus)"
    );
    std::process::Command::new("promtool")
}

/// `promtool check metrics` on `text`; panics with its complaints.
pub fn assert_promtool_accepts(text: &str) {
    let mut child = promtool()
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `serve` process on a free local port, killed when dropped.
struct Serving {
    child: Option<Child>,
    base: String,
    http: reqwest::Client,
}

impl Serving {
    async fn start(env: &[(&str, String)], args: &[&str]) -> Serving {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut cmd = bare_doctor_process();
        cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .args(["serve", "--listen", &listen])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let serving = Serving {
            child: Some(cmd.spawn().unwrap()),
            base: format!("http://{listen}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while serving.try_get("/healthz").await.is_none() {
            assert!(Instant::now() < deadline, "serve did not start answering");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        serving
    }

    async fn try_get(&self, path: &str) -> Option<(u16, String, String)> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .ok()?;
        let status = r.status().as_u16();
        let kind = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        Some((status, kind, r.text().await.ok()?))
    }

    async fn get(&self, path: &str) -> (u16, String, String) {
        self.try_get(path)
            .await
            .unwrap_or_else(|| panic!("serve stopped answering {path}"))
    }

    /// `/metrics` once `runs` runs have completed.
    async fn metrics_after(&self, runs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, _, body) = self.get("/metrics").await;
            if sample(&body, "harbor_doctor_runs_total").is_some_and(|n| n >= runs as f64) {
                return body;
            }
            assert!(Instant::now() < deadline, "no run {runs} yet:\n{body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends SIGTERM and returns the exit code.
    async fn terminate(mut self) -> i32 {
        let mut child = self.child.take().unwrap();
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        tokio::task::spawn_blocking(move || child.wait().unwrap().code().unwrap_or(-1))
            .await
            .unwrap()
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The value of the sample `series` (name and labels as printed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Each check's status, from `harbor_doctor_check_status`, holding it to
/// DESIGN.md's shape: all five statuses per check, exactly one of them 1.
fn statuses(text: &str) -> BTreeMap<String, String> {
    let mut current = BTreeMap::new();
    for check in CHECK_IDS {
        let mut set = vec![];
        for status in STATUSES {
            let series =
                format!("harbor_doctor_check_status{{check=\"{check}\",status=\"{status}\"}}");
            match sample(text, &series) {
                Some(1.0) => set.push(status),
                Some(0.0) => {}
                other => panic!("{series} is {other:?}:\n{text}"),
            }
        }
        assert_eq!(set.len(), 1, "{check} has one status: {set:?}\n{text}");
        current.insert(check.to_string(), set[0].to_string());
    }
    current
}

fn assert_families(text: &str, names: &[(&str, &str)]) {
    for (name, kind) in names {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "HELP for {name}:\n{text}"
        );
        assert!(
            text.contains(&format!("# TYPE {name} {kind}\n")),
            "TYPE {kind} for {name}:\n{text}"
        );
    }
}

const GAUGES: [(&str, &str); 5] = [
    ("harbor_doctor_check_status", "gauge"),
    ("harbor_doctor_check_findings", "gauge"),
    ("harbor_doctor_check_duration_seconds", "gauge"),
    ("harbor_doctor_check_last_run_timestamp_seconds", "gauge"),
    ("harbor_doctor_build_info", "gauge"),
];
const COUNTERS: [(&str, &str); 2] = [
    ("harbor_doctor_runs_total", "counter"),
    ("harbor_doctor_run_errors_total", "counter"),
];

/// Nothing from the report's subjects (user names, emails, objects) nor
/// any URL host of the installation appears in the metrics.
fn assert_no_subject_or_url(metrics: &str, report: &serde_json::Value, lab: &Lab) {
    let mut words = vec![];
    for check in report["checks"].as_array().unwrap() {
        for f in check["findings"].as_array().unwrap() {
            let subject = f["subject"].as_str().unwrap();
            words.extend(subject.split_whitespace().skip(1).map(str::to_string));
        }
    }
    assert!(!words.is_empty(), "the broken lab has findings: {report:#}");
    for (_, value) in lab.env() {
        if let Ok(url) = url::Url::parse(value) {
            if let Some(host) = url.host_str() {
                words.push(host.to_string());
            }
        }
    }
    words.extend(["alice".to_string(), "@".to_string(), "://".to_string()]);
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        for word in &words {
            assert!(
                !line.contains(word.as_str()),
                "{word:?} in a metric: {line}"
            );
        }
    }
}

fn lab_env(lab: &Lab) -> Vec<(&str, String)> {
    let mut env: Vec<(&str, String)> = lab.env().iter().map(|(k, v)| (*k, v.clone())).collect();
    env.push(("HARBOR_DOCTOR_TIMEOUT", "60".into()));
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_against_the_broken_lab_answers_prometheus_and_stops_on_sigterm() {
    let lab = Lab::start(Postgres::Shared, |_| {}).await.unwrap();
    let serving = Serving::start(&lab_env(&lab), &["--interval", "1h", "--report"]).await;
    let (status, _, body) = serving.get("/healthz").await;
    assert_eq!(status, 200, "{body}");

    let metrics = serving.metrics_after(1).await;
    let (status, kind, again) = serving.get("/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(kind, "text/plain; version=0.0.4; charset=utf-8");
    assert_eq!(again, metrics, "no new run within the hour: the same set");
    assert_families(&metrics, &GAUGES);
    assert_families(&metrics, &COUNTERS);
    assert_promtool_accepts(&metrics);

    // The lab's planted issues, as diagnose -o json reports them.
    let current = statuses(&metrics);
    for check in ["oidc-users", "multi-attach", "cli-login", "teams"] {
        assert_eq!(current[check], "problem", "{metrics}");
    }
    assert_eq!(current["connectivity"], "ok");
    assert_eq!(current["registry-strategy"], "warning");
    let findings = |check: &str, severity: &str| {
        sample(
            &metrics,
            &format!("harbor_doctor_check_findings{{check=\"{check}\",severity=\"{severity}\"}}"),
        )
        .unwrap_or_else(|| panic!("findings of {check}/{severity}:\n{metrics}"))
    };
    assert!(findings("teams", "problem") >= 1.0);
    assert_eq!(findings("connectivity", "problem"), 0.0);
    assert_eq!(findings("connectivity", "warning"), 0.0);
    for check in CHECK_IDS {
        let at = sample(
            &metrics,
            &format!("harbor_doctor_check_last_run_timestamp_seconds{{check=\"{check}\"}}"),
        )
        .unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(now - at < 120.0 && at <= now + 1.0, "{check} ran at {at}");
        assert!(sample(
            &metrics,
            &format!("harbor_doctor_check_duration_seconds{{check=\"{check}\"}}")
        )
        .is_some());
    }
    assert_eq!(sample(&metrics, "harbor_doctor_runs_total"), Some(1.0));
    assert_eq!(
        sample(&metrics, "harbor_doctor_run_errors_total"),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &metrics,
            &format!(
                "harbor_doctor_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            )
        ),
        Some(1.0)
    );

    // --report: the diagnose -o json document of the same run.
    let (status, kind, doc) = serving.get("/report").await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(kind, "application/json");
    let report: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(report["summary"]["problem"], 4, "{report:#}");
    assert_no_subject_or_url(&metrics, &report, &lab);

    let (status, _, _) = serving.get("/nothing-here").await;
    assert_eq!(status, 404);
    assert_eq!(serving.terminate().await, 0, "SIGTERM ends serve with 0");
    lab.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_report_the_report_path_does_not_exist() {
    // Nothing configured: every check is skipped, and serve still serves.
    let serving = Serving::start(&[], &["--interval", "1h"]).await;
    let metrics = serving.metrics_after(1).await;
    for (check, status) in statuses(&metrics) {
        assert_eq!(status, "skipped", "{check}");
    }
    let (status, _, body) = serving.get("/report").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("--report"), "{body}");
    assert_eq!(serving.terminate().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_check_is_cut_at_the_timeout_while_the_server_keeps_answering() {
    // Each request is slow enough that teams' reads of Harbor cannot
    // finish within --timeout 2 (connectivity bounds each system itself,
    // so it reports a problem instead).
    let harbor = HarborSim::start(HarborOptions {
        latency: Duration::from_millis(1200),
        ..HarborOptions::default()
    })
    .await
    .unwrap();
    let env = [
        ("HARBOR_URL", harbor.url()),
        ("HARBOR_PASSWORD", harbor.admin_password()),
    ];
    let serving = Serving::start(&env, &["--interval", "1h", "--timeout", "2", "--report"]).await;
    // The first run is under way: the server answers, /report is not ready
    // and /metrics has no check yet, never half a run.
    let started = Instant::now();
    let (status, _, body) = serving.get("/report").await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "answered at once"
    );
    assert_eq!(status, 503, "{body}");
    let (status, _, before) = serving.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(!before.contains("check=\""), "{before}");
    assert_eq!(sample(&before, "harbor_doctor_runs_total"), Some(0.0));
    assert_promtool_accepts(&before);
    let (status, _, _) = serving.get("/healthz").await;
    assert_eq!(status, 200);

    let metrics = serving.metrics_after(1).await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the run was cut at --timeout"
    );
    assert_eq!(statuses(&metrics)["teams"], "error", "{metrics}");
    assert_eq!(statuses(&metrics)["connectivity"], "problem", "{metrics}");
    assert_eq!(
        sample(&metrics, "harbor_doctor_run_errors_total"),
        Some(1.0)
    );
    let (status, _, doc) = serving.get("/report").await;
    assert_eq!(status, 200);
    assert!(
        doc.contains("did not finish within 2 s (--timeout)"),
        "{doc}"
    );
    assert_eq!(serving.terminate().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_in_use_gives_3_and_says_so() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut cmd = bare_doctor();
    cmd.args(["serve", "--listen", &addr])
        .timeout(Duration::from_secs(20));
    let o = run(cmd).await;
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("already in use"), "{}", stderr(&o));
    assert!(stderr(&o).contains(&addr), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_intervals_and_addresses_are_usage_errors() {
    for args in [
        ["--interval", "0"],
        ["--interval", "0s"],
        ["--interval", "five minutes"],
        ["--interval", "5x"],
        ["--listen", "not-an-address"],
        ["--listen", "127.0.0.1"],
    ] {
        let mut cmd = bare_doctor();
        cmd.arg("serve").args(args).timeout(Duration::from_secs(20));
        let o = run(cmd).await;
        assert_exit(&o, 2);
        assert!(stderr(&o).contains(args[0]), "{args:?}: {}", stderr(&o));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_prints_the_gauges_once_for_a_textfile_or_a_pushgateway() {
    let lab = Lab::start(Postgres::Shared, |_| {}).await.unwrap();
    let mut cmd = bare_doctor();
    cmd.envs(lab_env(&lab))
        .args(["diagnose", "-o", "prometheus"]);
    let o = run(cmd).await;
    assert_exit(&o, 1); // the lab is broken: the exit code is diagnose's
    let text = stdout(&o);
    assert_families(&text, &GAUGES);
    assert!(!text.contains("_total"), "no counters in one run: {text}");
    assert_promtool_accepts(&text);
    let current = statuses(&text);
    assert_eq!(current["teams"], "problem");
    assert_eq!(current["connectivity"], "ok");
    assert!(!text.contains("alice"), "{text}");
    lab.shutdown().unwrap();

    // Other commands have nothing to say in that format.
    for args in [
        vec!["runbook", "-o", "prometheus"],
        vec!["provision", "--all", "-o", "prometheus"],
    ] {
        let mut cmd = bare_doctor();
        cmd.args(&args);
        let o = run(cmd).await;
        assert_exit(&o, 2);
        assert!(
            stderr(&o).contains("-o prometheus is for diagnose only"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
}

/// The alerts deploy/monitoring.yaml's PrometheusRule defines, in order.
const ALERTS: [&str; 4] = [
    "HarborDoctorProblem",
    "HarborDoctorCheckErroring",
    "HarborDoctorDown",
    "HarborDoctorStale",
];

/// deploy/monitoring.yaml's PrometheusRule's `spec.groups`, as a Prometheus
/// rules file (which is what that field is), after checking that the file
/// holds the ServiceMonitor and the rule, with [`ALERTS`].
fn monitoring_rules_file() -> String {
    let docs: Vec<serde_json::Value> =
        serde_yaml::Deserializer::from_str(include_str!("../../deploy/monitoring.yaml"))
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["ServiceMonitor", "PrometheusRule"]);
    let rule = &docs[1];
    let alerts: Vec<&str> = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["alert"].as_str().unwrap())
        .collect();
    assert_eq!(alerts, ALERTS);
    serde_yaml::to_string(&serde_json::json!({"groups": rule["spec"]["groups"]})).unwrap()
}

/// `promtool check rules` and `promtool test rules` (our own cases in
/// tests/e2e/fixtures/alerts.test.yaml) on deploy/monitoring.yaml's
/// PrometheusRule, whose `spec.groups` is a Prometheus rules file.
#[test]
fn the_prometheus_rules_pass_promtool_and_their_tests() {
    let rules = monitoring_rules_file();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yaml"), rules).unwrap();
    std::fs::write(
        dir.path().join("alerts.test.yaml"),
        include_str!("fixtures/alerts.test.yaml"),
    )
    .unwrap();
    for args in [
        ["check", "rules", "rules.yaml"],
        ["test", "rules", "alerts.test.yaml"],
    ] {
        let o = promtool()
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// The installation goes away between runs: the next runs say so in the
/// metrics (errors, not a stale "problem"), and serve keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installation_that_disappears_shows_as_errors_while_serve_keeps_running() {
    let lab = Lab::start(Postgres::Shared, |_| {}).await.unwrap();
    let mut env = lab_env(&lab);
    env.retain(|(k, _)| *k != "HARBOR_DOCTOR_TIMEOUT");
    env.push(("HARBOR_DOCTOR_TIMEOUT", "5".into()));
    let serving = Serving::start(&env, &["--interval", "1s"]).await;
    let first = serving.metrics_after(1).await;
    assert_eq!(statuses(&first)["connectivity"], "ok", "{first}");
    let runs = sample(&first, "harbor_doctor_runs_total").unwrap() as u64;
    lab.shutdown().unwrap();
    // The run under way may have seen the lab; the one after cannot.
    let later = serving.metrics_after(runs + 2).await;
    let now = statuses(&later);
    // Unreachable systems are connectivity's own problem finding; the
    // checks that needed them could not run.
    assert_eq!(now["connectivity"], "problem", "{later}");
    for check in ["multi-attach", "registry-strategy", "cli-login", "teams"] {
        assert_eq!(now[check], "error", "{check}: {later}");
    }
    assert!(sample(&later, "harbor_doctor_run_errors_total").unwrap() >= 1.0);
    let (status, _, _) = serving.get("/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(serving.terminate().await, 0);
}

/// A real Prometheus server (Debian's `prometheus` package, which .ci/run
/// installs) on a free local port, with its storage and log in a scratch
/// directory; killed when dropped.
struct Prometheus {
    child: Option<Child>,
    dir: tempfile::TempDir,
    base: String,
    http: reqwest::Client,
}

/// How long any one thing the Prometheus test waits for may take.
const PROMETHEUS_WAIT: Duration = Duration::from_secs(60);

impl Prometheus {
    /// Scrapes `target` (host:port) every second as job `harbor-doctor`,
    /// the job name deploy/monitoring.yaml's HarborDoctorDown expects, and
    /// evaluates deploy/monitoring.yaml's rules every second.
    async fn start(target: &str) -> Prometheus {
        let found = version_status("prometheus").is_some_and(|s| s.success());
        assert!(
            found,
            "prometheus is not installed: this test scrapes serve with a real Prometheus server \
             (apt-get install prometheus)"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rules.yaml"), monitoring_rules_file()).unwrap();
        let config = serde_json::json!({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": ["rules.yaml"],
            "scrape_configs": [{
                "job_name": "harbor-doctor",
                "static_configs": [{"targets": [target]}],
            }],
        });
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, serde_yaml::to_string(&config).unwrap()).unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let listen = format!("127.0.0.1:{}", free_port());
        let child = std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={listen}"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut prometheus = Prometheus {
            child: Some(child),
            dir,
            base: format!("http://{listen}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        };
        let deadline = Instant::now() + PROMETHEUS_WAIT;
        loop {
            let ready = prometheus
                .http
                .get(format!("{}/-/ready", prometheus.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return prometheus;
            }
            if let Some(status) = prometheus.child.as_mut().unwrap().try_wait().unwrap() {
                prometheus.give_up(&format!("prometheus ended ({status}) before it was ready"));
            }
            if Instant::now() > deadline {
                prometheus.give_up("prometheus was not ready within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Fails the test with `what` and Prometheus's own log.
    fn give_up(&self, what: &str) -> ! {
        let log = std::fs::read_to_string(self.dir.path().join("prometheus.log"))
            .unwrap_or_else(|e| format!("(no log: {e})"));
        panic!("{what}\n--- prometheus's log:\n{log}");
    }

    /// `GET /api/v1/{path}` until `accept` takes its `data`, for at most
    /// [`PROMETHEUS_WAIT`]; `what` names what is awaited when it never comes.
    async fn wait_for<T>(
        &self,
        what: &str,
        path: &str,
        query: &[(&str, &str)],
        accept: impl Fn(&serde_json::Value) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + PROMETHEUS_WAIT;
        let mut last;
        loop {
            let answer = self
                .http
                .get(format!("{}/api/v1/{path}", self.base))
                .query(query)
                .send()
                .await;
            match answer {
                Ok(r) => {
                    let status = r.status();
                    let body = r.text().await.unwrap_or_default();
                    if !status.is_success() {
                        self.give_up(&format!(
                            "/api/v1/{path} {query:?} answered {status}: {body}"
                        ));
                    }
                    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
                    assert_eq!(doc["status"], "success", "{body}");
                    if let Some(found) = accept(&doc["data"]) {
                        return found;
                    }
                    last = body;
                }
                Err(e) => last = format!("no answer: {e}"),
            }
            if Instant::now() > deadline {
                self.give_up(&format!(
                    "not within 60 s: {what}\n--- last answer of /api/v1/{path} {query:?}:\n{last}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The value of an instant query whose result is one sample (None for
    /// an empty result).
    async fn wait_for_value(
        &self,
        what: &str,
        promql: &str,
        accept: impl Fn(Option<f64>) -> bool,
    ) -> Option<f64> {
        self.wait_for(what, "query", &[("query", promql)], |data| {
            let result = data["result"].as_array()?;
            let value = match result.as_slice() {
                [] => None,
                [one] => Some(one["value"][1].as_str()?.parse().ok()?),
                _ => panic!("{promql} gives one sample or none: {data}"),
            };
            accept(value).then_some(value)
        })
        .await
    }

    /// The active alerts (pending or firing), as (alert, check) and state.
    async fn wait_for_alerts(
        &self,
        what: &str,
        accept: impl Fn(&BTreeMap<(String, String), String>) -> bool,
    ) -> BTreeMap<(String, String), String> {
        self.wait_for(what, "alerts", &[], |data| {
            let alerts: BTreeMap<(String, String), String> = data["alerts"]
                .as_array()?
                .iter()
                .map(|a| {
                    let label = |k: &str| a["labels"][k].as_str().unwrap_or_default().to_string();
                    (
                        (label("alertname"), label("check")),
                        a["state"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect();
            accept(&alerts).then_some(alerts)
        })
        .await
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

const PROBLEMS: &str = r#"sum(harbor_doctor_check_findings{severity="problem"})"#;

/// The whole path an on-call engineer relies on: a real Prometheus scrapes
/// `serve` against the broken lab, loads deploy/monitoring.yaml's rules
/// without error, and sees the problem findings and the pending
/// HarborDoctorProblem alerts; the README's repair loop, run in the lab's
/// environment, brings them to zero at the next interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_sees_the_labs_problems_until_the_readme_loop_repairs_them() {
    assert_jq_installed();
    let lab = Lab::start(Postgres::Shared, |_| {}).await.unwrap();
    let serving = Serving::start(&lab_env(&lab), &["--interval", "2s"]).await;
    let prometheus = Prometheus::start(serving.base.strip_prefix("http://").unwrap()).await;

    // The rules loaded and every one evaluates without error (a rule file
    // Prometheus cannot parse stops it at start, which `start` reports).
    prometheus
        .wait_for(
            "deploy/monitoring.yaml's rules loaded, each evaluated without error",
            "rules",
            &[],
            |data| {
                let groups = data["groups"].as_array()?;
                let [group] = groups.as_slice() else {
                    panic!("one rule group: {data}");
                };
                assert_eq!(group["name"], "harbor-doctor", "{data}");
                let rules = group["rules"].as_array()?;
                let names: Vec<&str> = rules.iter().filter_map(|r| r["name"].as_str()).collect();
                assert_eq!(names, ALERTS, "{data}");
                rules
                    .iter()
                    .all(|r| {
                        r["health"] == "ok" && r["lastError"].as_str().unwrap_or("").is_empty()
                    })
                    .then_some(())
            },
        )
        .await;
    prometheus
        .wait_for_value(
            "serve is scraped (up is 1)",
            r#"up{job="harbor-doctor"}"#,
            |v| v == Some(1.0),
        )
        .await;

    // The broken lab: problems, and HarborDoctorProblem pending (it fires
    // only after 10 minutes) for exactly the checks that find one.
    let broken = prometheus
        .wait_for_value("problem findings while the lab is broken", PROBLEMS, |v| {
            v.is_some_and(|n| n > 0.0)
        })
        .await
        .unwrap();
    assert!(
        broken >= 4.0,
        "at least one problem per broken check: {broken}"
    );
    // Waited for as an exact set: before the first scrape HarborDoctorDown
    // is pending (absent(up)), and it leaves only when its own rule is next
    // evaluated, which can be after the Problem rule of the same round has
    // already turned pending. A Down or any other alert that stays is a
    // failure: the wait ends with the last answer.
    let problem_checks = ["cli-login", "multi-attach", "oidc-users", "teams"];
    let expected: BTreeSet<(String, String)> = problem_checks
        .iter()
        .map(|c| ("HarborDoctorProblem".to_string(), c.to_string()))
        .collect();
    let alerts = prometheus
        .wait_for_alerts(
            "HarborDoctorProblem pending for the broken checks, and no other alert",
            |a| a.keys().cloned().collect::<BTreeSet<_>>() == expected,
        )
        .await;
    for ((alert, check), state) in &alerts {
        assert_eq!(alert, "HarborDoctorProblem", "no other alert: {alerts:?}");
        assert!(problem_checks.contains(&check.as_str()), "{alerts:?}");
        assert_eq!(state, "pending", "for: 10m has not passed: {alerts:?}");
    }

    // The README's loop, as a user runs it against the lab: the lab's
    // environment, the doctor on PATH, a home of its own for the seal key.
    let home = tempfile::tempdir().unwrap();
    let doctor_dir = std::path::Path::new(env!("CARGO_BIN_EXE_harbor-doctor"))
        .parent()
        .unwrap();
    let path = format!(
        "{}:{}",
        doctor_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut walk = std::process::Command::new("sh");
    walk.args(["-ec", &readme_walk()])
        .env_clear()
        .envs(lab_env(&lab))
        .env("PATH", path)
        .env("HOME", home.path());
    let o = tokio::task::spawn_blocking(move || walk.output().unwrap())
        .await
        .unwrap();
    assert_exit(&o, 0);

    // The next runs find nothing, Prometheus says so, and the alerts end.
    prometheus
        .wait_for_value("zero problem findings after the repairs", PROBLEMS, |v| {
            v == Some(0.0)
        })
        .await;
    prometheus
        .wait_for_alerts("no alert once repaired", |a| a.is_empty())
        .await;
    assert_eq!(serving.terminate().await, 0);
    drop(prometheus);
    lab.shutdown().unwrap();
}

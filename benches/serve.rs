//! Benchmark: `serve` against the lab grown to 500 teams and 100,000 OIDC
//! users (DESIGN.md's size for a large installation).
//!
//! Measured, each as a ratio against a baseline taken in the same run, as
//! these machines are shared and noisy:
//! - CPU per run of `serve` (user + system time between two completed
//!   runs) against one `diagnose -o json` of the same checks, started as
//!   its own process;
//! - `serve`'s resident memory (VmRSS after a run, VmHWM) against the
//!   `diagnose` process's peak (ru_maxrss);
//! - `/metrics` response time against `/healthz` on the same server
//!   (which answers from no state), median of 50 requests each.
//!
//! Run: `cargo bench --bench serve` (TEAMS=N, USERS=N to change the size).
//! Prints a table and writes target/bench-serve.json.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harbor_doctor_sim::lab::{Lab, Postgres};

const BIN: &str = env!("CARGO_BIN_EXE_harbor-doctor");

fn size(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn doctor(lab: &Lab, backups: &std::path::Path) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .envs(lab.env().iter().map(|(k, v)| (*k, v.as_str())))
        .env("HOME", std::env::temp_dir())
        .env("HARBOR_DOCTOR_TIMEOUT", "600")
        .env("HARBOR_DOCTOR_BACKUP_DIR", backups);
    c
}

/// A child's CPU seconds and peak resident KiB, from wait4.
// wait4 reaps the child: std's wait cannot report its resource usage.
#[allow(clippy::zombie_processes)]
fn run_measured(mut cmd: Command) -> (Duration, f64, u64) {
    let started = Instant::now();
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    let cpu = tv(usage.ru_utime) + tv(usage.ru_stime);
    (wall, cpu, usage.ru_maxrss as u64)
}

fn tv(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

/// A process's CPU seconds so far (utime + stime, /proc/<pid>/stat).
fn cpu_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / ticks
}

/// VmRSS and VmHWM in KiB.
fn memory_of(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// One HTTP/1.1 GET; the body and how long it took.
fn get(port: u16, path: &str) -> (String, Duration) {
    let started = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    (text, started.elapsed())
}

fn runs_total(port: u16) -> u64 {
    // Not listening yet: no run.
    if TcpStream::connect(("127.0.0.1", port)).is_err() {
        return 0;
    }
    let (text, _) = get(port, "/metrics");
    text.lines()
        .find(|l| l.starts_with("harbor_doctor_runs_total"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

fn wait_for_runs(port: u16, n: u64, limit: Duration) {
    let started = Instant::now();
    while runs_total(port) < n {
        assert!(
            started.elapsed() < limit,
            "serve did not finish run {n} in {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Stops `serve` however the benchmark ends, so that it never outlives it
/// (holding the ports, or a lock the benchmark's runner passed on).
struct Serving(std::process::Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let teams = size("TEAMS", 500);
    let users = size("USERS", 100_000);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let lab = rt.block_on(async {
        let lab = Lab::start(Postgres::Own, |_| {}).await.unwrap();
        lab.grow(teams.saturating_sub(5), users).await.unwrap();
        lab
    });
    let backups = tempfile::tempdir().unwrap();

    // Baseline: one diagnosis as its own process.
    let mut diagnose = doctor(&lab, backups.path());
    diagnose.args(["diagnose", "-o", "json"]);
    let (diag_wall, diag_cpu, diag_rss) = run_measured(diagnose);

    // serve: wait for its first run, then time a second whole run.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let interval = (diag_wall.as_secs() + 5).max(10);
    let mut serve = doctor(&lab, backups.path());
    serve
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--interval", &format!("{interval}s")])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut serving = Serving(serve.spawn().unwrap());
    let child = &mut serving.0;
    let limit = Duration::from_secs(interval * 3 + 60);
    wait_for_runs(port, 1, limit);
    let cpu_after_first = cpu_of(child.id());
    wait_for_runs(port, 2, limit);
    let cpu_per_run = cpu_of(child.id()) - cpu_after_first;
    let (rss, hwm) = memory_of(child.id());
    let metrics = median((0..50).map(|_| get(port, "/metrics").1).collect());
    let healthz = median((0..50).map(|_| get(port, "/healthz").1).collect());
    let metrics_bytes = get(port, "/metrics").0.len();
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    drop(serving);

    let rows = [
        (
            "diagnose (baseline): wall",
            format!("{:.2} s", diag_wall.as_secs_f64()),
            String::new(),
        ),
        (
            "diagnose (baseline): CPU",
            format!("{diag_cpu:.2} s"),
            "1.00".into(),
        ),
        (
            "serve: CPU per run",
            format!("{cpu_per_run:.2} s"),
            format!("{:.2}", cpu_per_run / diag_cpu),
        ),
        (
            "diagnose (baseline): peak RSS",
            format!("{} MiB", diag_rss / 1024),
            "1.00".into(),
        ),
        (
            "serve: RSS after two runs",
            format!("{} MiB", rss / 1024),
            format!("{:.2}", rss as f64 / diag_rss as f64),
        ),
        (
            "serve: peak RSS",
            format!("{} MiB", hwm / 1024),
            format!("{:.2}", hwm as f64 / diag_rss as f64),
        ),
        (
            "/healthz (baseline): median",
            format!("{:.2} ms", healthz.as_secs_f64() * 1e3),
            "1.00".into(),
        ),
        (
            "/metrics: median",
            format!(
                "{:.2} ms ({metrics_bytes} bytes)",
                metrics.as_secs_f64() * 1e3
            ),
            format!("{:.2}", metrics.as_secs_f64() / healthz.as_secs_f64()),
        ),
    ];
    println!("serve against the lab with {teams} teams and {users} OIDC users");
    println!("{:<32} {:>28} {:>8}", "measure", "value", "ratio");
    for (name, value, ratio) in &rows {
        println!("{name:<32} {value:>28} {ratio:>8}");
    }
    let json = serde_json::json!({
        "teams": teams, "users": users,
        "diagnose_wall_s": diag_wall.as_secs_f64(), "diagnose_cpu_s": diag_cpu,
        "diagnose_peak_rss_kib": diag_rss,
        "serve_cpu_per_run_s": cpu_per_run, "serve_cpu_ratio": cpu_per_run / diag_cpu,
        "serve_rss_kib": rss, "serve_peak_rss_kib": hwm,
        "serve_rss_ratio": rss as f64 / diag_rss as f64,
        "metrics_median_ms": metrics.as_secs_f64() * 1e3,
        "healthz_median_ms": healthz.as_secs_f64() * 1e3,
        "metrics_ratio": metrics.as_secs_f64() / healthz.as_secs_f64(),
    });
    let _ = std::fs::write(
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench-serve.json"),
        serde_json::to_string_pretty(&json).unwrap(),
    );
    lab.shutdown().unwrap();
}

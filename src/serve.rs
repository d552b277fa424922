//! `serve`: diagnose on a schedule and answer Prometheus.
//!
//! Every check runs at start and then every `--interval`, never a repair.
//! Runs are sequential in one task, so a slow run delays the next instead
//! of overlapping it (each check is cut at `--timeout`, so a run is
//! bounded too). Each run gets a fresh context: clients, port-forwards and
//! discovered credentials from one run are not trusted in the next, so a
//! cluster or Harbor that went away and came back is seen as it is now.
//!
//! The HTTP side reads one snapshot that a finished run replaces whole, so
//! a scrape during a run gets the last complete set, never a half-updated
//! one. hyper rather than a framework: three fixed paths do not need one,
//! and a build without the lab links no web framework.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Result;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::cli::{CheckId, GlobalOptions, ServeArgs};
use crate::context::Ctx;
use crate::issues::CheckOptions;
use crate::metrics::{self, Counters};
use crate::outcome::{refused, ExitCode};
use crate::report::{CheckStatus, DiagnoseReport};

/// `--interval`: a number and a unit (`30s`, `5m`, `1h`, `1d`; a bare
/// number is seconds), at least one second.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| {
        format!("{text:?} is not a duration: give a whole number and a unit, such as 30s, 5m or 1h")
    })?;
    let scale = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}: use s, m, h or d (30s, 5m, 1h)"
            ))
        }
    };
    let secs = n
        .checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too long an interval"))?;
    if secs == 0 {
        return Err("the interval must be at least 1s".to_string());
    }
    Ok(Duration::from_secs(secs))
}

/// What the HTTP side answers with, replaced whole after each run.
#[derive(Default)]
struct Snapshot {
    /// The `/metrics` body.
    metrics: String,
    /// The last run's `diagnose -o json` document; None before the first.
    report: Option<String>,
}

struct Shared {
    snapshot: RwLock<Snapshot>,
    /// Whether `/report` exists (`--report`): it names users.
    report_enabled: bool,
}

pub async fn run(opts: &GlobalOptions, args: &ServeArgs) -> Result<ExitCode> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| cannot_listen(args.listen, &e))?;
    let shared = Arc::new(Shared {
        snapshot: RwLock::new(Snapshot {
            metrics: metrics::exposition(None, Counters::default()),
            report: None,
        }),
        report_enabled: args.report,
    });
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| refused(format!("cannot catch SIGTERM: {e}")))?;
    tracing::info!(
        "serving on {} (/metrics, /healthz{}), a run every {:?}",
        args.listen,
        if args.report { ", /report" } else { "" },
        args.interval
    );
    let server = tokio::spawn(accept(listener, shared.clone()));
    tokio::select! {
        _ = schedule(opts, args.interval, &shared) => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    // A run in progress is abandoned: it only reads, so nothing is left
    // half done.
    server.abort();
    tracing::info!("stopping on a signal");
    Ok(ExitCode::Ok)
}

fn cannot_listen(addr: SocketAddr, e: &std::io::Error) -> anyhow::Error {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => refused(format!(
            "cannot listen on {addr}: the address is already in use (another serve, or another \
             program, listens there); stop it or choose another address with --listen"
        )),
        std::io::ErrorKind::AddrNotAvailable => refused(format!(
            "cannot listen on {addr}: no network interface of this machine has that address; \
             use 0.0.0.0:PORT for all of them"
        )),
        std::io::ErrorKind::PermissionDenied => refused(format!(
            "cannot listen on {addr}: permission denied (ports below 1024 need privileges); \
             choose a port above 1024 with --listen"
        )),
        _ => refused(format!("cannot listen on {addr}: {e}")),
    }
}

/// Runs the checks now and then every `interval`, one run at a time.
async fn schedule(opts: &GlobalOptions, interval: Duration, shared: &Shared) {
    let mut ticks = tokio::time::interval(interval);
    // After a run longer than the interval, the next starts an interval
    // later, not at once to catch up.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut counters = Counters::default();
    loop {
        ticks.tick().await;
        let ctx = Ctx::new(opts.clone());
        let report =
            crate::diagnose::collect(&ctx, CheckId::all(), &CheckOptions::default(), |_| {}).await;
        let finished = SystemTime::now();
        counters.runs += 1;
        let errored: Vec<&str> = report
            .checks
            .iter()
            .filter(|c| c.status == CheckStatus::Error)
            .map(|c| c.id.as_str())
            .collect();
        if !errored.is_empty() {
            counters.run_errors += 1;
            tracing::warn!(
                "run {}: these checks errored: {}",
                counters.runs,
                errored.join(", ")
            );
        }
        publish(shared, &report, finished, counters);
    }
}

fn publish(shared: &Shared, report: &DiagnoseReport, finished: SystemTime, counters: Counters) {
    let next = Snapshot {
        metrics: metrics::exposition(Some((report, finished)), counters),
        report: match serde_json::to_string_pretty(report) {
            Ok(doc) => Some(doc),
            Err(e) => {
                tracing::error!("could not encode the report as JSON: {e}");
                None
            }
        },
    };
    *shared.snapshot.write().unwrap_or_else(|e| e.into_inner()) = next;
}

async fn accept(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: pass, and retry.
                tracing::warn!("accepting a connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(answer(&shared, &req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                // A client that never sends its headers does not hold a task.
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
}

fn answer(shared: &Shared, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    }
    match req.uri().path() {
        "/metrics" => {
            let body = shared
                .snapshot
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .metrics
                .clone();
            reply(StatusCode::OK, metrics::CONTENT_TYPE, body)
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/report" if shared.report_enabled => {
            let report = shared
                .snapshot
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .report
                .clone();
            match report {
                Some(doc) => reply(StatusCode::OK, "application/json", doc),
                None => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the first run has not finished yet; try again shortly\n",
                ),
            }
        }
        "/report" => text(
            StatusCode::NOT_FOUND,
            "/report is off: it names users; start serve with --report to turn it on\n",
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics or /healthz\n",
        ),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    reply(status, "text/plain; charset=utf-8", body.to_string())
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::parse_interval;
    use std::time::Duration;

    #[test]
    fn intervals_in_seconds_minutes_hours() {
        assert_eq!(parse_interval("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_interval("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_interval("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_interval("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_interval("7"), Ok(Duration::from_secs(7)));
    }

    #[test]
    fn zero_unparsable_and_unknown_units_are_refused() {
        for bad in [
            "0",
            "0s",
            "",
            "s",
            "5x",
            "-1m",
            "1.5m",
            "99999999999999999999h",
        ] {
            assert!(parse_interval(bad).is_err(), "{bad:?}");
        }
        assert!(parse_interval("0s").unwrap_err().contains("at least 1s"));
    }
}

//! `diagnose connectivity`: can the doctor reach everything it works with,
//! and do they accept its credentials?
//!
//! - Harbor: the API answers `ping`; `health` reports every component
//!   healthy; the admin credentials are accepted (and are an admin's); the
//!   version and external URL, for context.
//! - The registry database: a connection and a first query.
//! - The cluster, when configured: the API server answers and
//!   `--harbor-namespace` exists.
//! - Keycloak, given or found through the cluster (Harbor's oidc_endpoint,
//!   the Secret keycloak/keycloak-initial-admin): an admin token and the
//!   realm, and how each part was found; a failed discovery is a problem.
//!
//! A system that is not configured is noted, not a finding; one that is
//! configured but fails is a problem, with the exact error. There is no
//! automatic repair: the runbook says what to look at for each failure.
//!
//! The four are checked at once, each within a little less than
//! `--timeout`: one that hangs is its own problem (`*-timeout`, naming the
//! step it was waiting on) while the others report, instead of the whole
//! check ending as "did not finish".

use std::cell::Cell;
use std::future::Future;
use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::core::v1::Namespace;

use crate::clients::harbor::status_of;
use crate::clients::is_not_configured;
use crate::context::Ctx;
use crate::issues::{FindingKind, KnownIssue, Runbook};
use crate::report::{CheckOutcome, Finding, Severity};

pub const CHECK: &str = "connectivity";
pub const RUNBOOK: &str = "connectivity";

pub static ISSUE: KnownIssue = KnownIssue {
    check: CHECK,
    about: "whether Harbor, its database and Keycloak answer and accept the credentials",
    runbook: Runbook {
        id: RUNBOOK,
        summary: "Harbor, its database or Keycloak unreachable, or credentials refused; check connectivity",
        text: include_str!("../../runbooks/connectivity.md"),
    },
    kinds: &[
    FindingKind {
        id: "harbor-settings-unusable",
        about: "the Harbor URL, password or CA certificate given cannot be used",
    },
    FindingKind {
        id: "harbor-unreachable",
        about: "Harbor's API does not answer",
    },
    FindingKind {
        id: "harbor-timeout",
        about: "Harbor did not answer within --timeout",
    },
    FindingKind {
        id: "harbor-component-unhealthy",
        about: "Harbor reports one of its components unhealthy",
    },
    FindingKind {
        id: "harbor-unhealthy",
        about: "Harbor reports its overall health as not healthy",
    },
    FindingKind {
        id: "harbor-health-failed",
        about: "Harbor's health endpoint failed",
    },
    FindingKind {
        id: "harbor-credentials-rejected",
        about: "Harbor rejected the admin credentials",
    },
    FindingKind {
        id: "harbor-not-admin",
        about: "the Harbor user is not an administrator",
    },
    FindingKind {
        id: "harbor-configuration-unreadable",
        about: "Harbor's configuration could not be read as the admin",
    },
    FindingKind {
        id: "harbor-systeminfo-unreadable",
        about: "Harbor's system information could not be read",
    },
    FindingKind {
        id: "database-unreachable",
        about: "the registry database cannot be connected to",
    },
    FindingKind {
        id: "database-timeout",
        about: "the registry database did not answer within --timeout",
    },
    FindingKind {
        id: "database-unreadable",
        about: "connected, but Harbor's configuration rows could not be read",
    },
    FindingKind {
        id: "cluster-unusable",
        about: "the kubeconfig or in-cluster config cannot be used",
    },
    FindingKind {
        id: "namespace-missing",
        about: "the cluster has no namespace --harbor-namespace names",
    },
    FindingKind {
        id: "cluster-unreachable",
        about: "the cluster's API does not answer or refuses",
    },
    FindingKind {
        id: "cluster-timeout",
        about: "the cluster's API did not answer within --timeout",
    },
    FindingKind {
        id: "keycloak-unusable",
        about: "Keycloak was not found or its admin login failed",
    },
    FindingKind {
        id: "keycloak-unreachable",
        about: "Keycloak's realm does not answer or refuses the admin",
    },
    FindingKind {
        id: "keycloak-timeout",
        about: "Keycloak did not answer within --timeout",
    },
    ],
    diagnose: |ctx, _| Box::pin(diagnose(ctx)),
    repair: None,
};

fn problem(kind: &str, subject: &str, summary: String) -> Finding {
    Finding::new(CHECK, kind, Severity::Problem, subject, summary, RUNBOOK)
}

/// `diagnose connectivity`.
pub async fn diagnose(ctx: &Ctx) -> Result<CheckOutcome> {
    let budget = component_budget(ctx.timeout());
    let mut parts: [CheckOutcome; 4] = Default::default();
    let steps: [Cell<&'static str>; 4] = Default::default();
    let [harbor, db, cluster, keycloak] = &mut parts;
    let configured = tokio::join!(
        within(budget, check_harbor(ctx, harbor, &steps[0])),
        within(budget, check_database(ctx, db, &steps[1])),
        within(budget, check_cluster(ctx, cluster, &steps[2])),
        within(budget, check_keycloak(ctx, keycloak, &steps[3])),
    );
    let configured = [configured.0, configured.1, configured.2, configured.3];
    let mut out = CheckOutcome::default();
    for (i, (part, answered)) in parts.into_iter().zip(configured).enumerate() {
        out.findings.extend(part.findings);
        out.notes.extend(part.notes);
        if answered.is_none() {
            out.findings
                .push(timed_out(ctx, Component::ALL[i], steps[i].get(), budget));
        }
    }
    // A system that did not answer in time was configured: it was asked.
    if configured.iter().all(|c| *c == Some(false)) {
        return Ok(CheckOutcome::skipped(
            "nothing to check: give --harbor-url, --db-url, a kubeconfig or the --keycloak-* options",
        ));
    }
    Ok(out)
}

/// How long each system may take: all of `--timeout` but a margin, so
/// that a system that hangs is reported as such before the whole check
/// runs out of its own time (also `--timeout`).
fn component_budget(timeout: Duration) -> Duration {
    timeout - (timeout / 10).min(Duration::from_millis(500))
}

/// Runs one system's part; None when it did not finish within `budget`.
async fn within(budget: Duration, part: impl Future<Output = bool>) -> Option<bool> {
    tokio::time::timeout(budget, part).await.ok()
}

#[derive(Clone, Copy)]
enum Component {
    Harbor,
    Database,
    Cluster,
    Keycloak,
}

impl Component {
    /// In the order of the parts in [`diagnose`].
    const ALL: [Component; 4] = [
        Component::Harbor,
        Component::Database,
        Component::Cluster,
        Component::Keycloak,
    ];
}

/// The finding for a system that did not answer in time; `step` is what
/// its part was waiting for.
fn timed_out(ctx: &Ctx, component: Component, step: &str, budget: Duration) -> Finding {
    let (kind, name, subject, evidence) = match component {
        Component::Harbor => {
            let url = ctx.harbor_if_ready().map(|h| h.base_url().to_string());
            (
                "harbor-timeout",
                "Harbor",
                url.as_ref()
                    .map_or("harbor".to_string(), |u| format!("harbor {u}")),
                url.map(|u| ("url", u)),
            )
        }
        Component::Database => (
            "database-timeout",
            "the registry database",
            "registry database".to_string(),
            ctx.db_if_ready()
                .map(|d| ("database", d.describe().to_string())),
        ),
        Component::Cluster => (
            "cluster-timeout",
            "the cluster",
            "cluster".to_string(),
            ctx.kube_if_ready().map(|k| ("cluster", k.describe())),
        ),
        Component::Keycloak => ("keycloak-timeout", "Keycloak", "keycloak".to_string(), None),
    };
    let waiting = if step.is_empty() {
        String::new()
    } else {
        format!(", waiting for {step}")
    };
    let mut f = problem(
        kind,
        &subject,
        format!(
            "{name} did not answer within {} (--timeout {}){waiting}. A healthy one answers in well \
             under a second: look for a firewall, a proxy or an overloaded server in between; raise \
             --timeout only to confirm",
            seconds(budget),
            ctx.opts.timeout
        ),
    )
    .evidence("waiting_for", step)
    .evidence("timeout_s", ctx.opts.timeout.to_string());
    if let Some((key, value)) = evidence {
        f = f.evidence(key, value);
    }
    f
}

/// A duration as people read it: `29.5 s`, `2 s`.
fn seconds(d: Duration) -> String {
    let tenths = (d.as_millis() + 50) / 100;
    if tenths % 10 == 0 {
        format!("{} s", tenths / 10)
    } else {
        format!("{}.{} s", tenths / 10, tenths % 10)
    }
}

/// Returns whether Harbor is configured.
async fn check_harbor(ctx: &Ctx, out: &mut CheckOutcome, step: &Cell<&'static str>) -> bool {
    step.set("finding Harbor's URL and password");
    let harbor = match ctx.harbor().await {
        Ok(h) => h,
        Err(e) if is_not_configured(&e) => {
            out.notes.push(format!("Harbor: not checked ({e:#})"));
            return false;
        }
        Err(e) => {
            out.findings.push(problem(
                "harbor-settings-unusable",
                "harbor",
                format!("the doctor cannot use the Harbor settings it was given: {e:#}"),
            ));
            return true;
        }
    };
    let subject = format!("harbor {}", harbor.base_url());
    step.set("GET /api/v2.0/ping");
    if let Err(e) = harbor.ping().await {
        out.findings.push(
            problem(
                "harbor-unreachable",
                &subject,
                format!("Harbor's API does not answer: {e:#}"),
            )
            .evidence("url", harbor.base_url()),
        );
        return true;
    }
    step.set("GET /api/v2.0/health");
    match harbor.health().await {
        Ok(health) => {
            for c in health.components.iter().filter(|c| c.status != "healthy") {
                out.findings.push(
                    problem(
                        "harbor-component-unhealthy",
                        &format!("harbor component {}", c.name),
                        format!(
                            "Harbor reports its {} component {}{}",
                            c.name,
                            c.status,
                            c.error
                                .as_deref()
                                .map(|e| format!(": {e}"))
                                .unwrap_or_default()
                        ),
                    )
                    .evidence("component", c.name.clone())
                    .evidence("status", c.status.clone())
                    .evidence("error", c.error.clone().unwrap_or_default()),
                );
            }
            if health.status != "healthy" && health.components.iter().all(|c| c.status == "healthy")
            {
                out.findings.push(problem(
                    "harbor-unhealthy",
                    &subject,
                    format!("Harbor reports its overall health as {:?}", health.status),
                ));
            }
        }
        Err(e) => out.findings.push(problem(
            "harbor-health-failed",
            &subject,
            format!("Harbor's health endpoint failed: {e:#}"),
        )),
    }
    if !harbor.has_password() {
        out.notes.push(format!(
            "Harbor at {}: reachable; credentials not checked (no admin password given)",
            harbor.base_url()
        ));
        return true;
    }
    // The configuration is admin-only: reading it proves the credentials
    // are accepted and are an admin's.
    step.set("GET /api/v2.0/configurations");
    match harbor.configurations().await {
        Ok(_) => {}
        Err(e) => {
            let what = match status_of(&e) {
                Some(401) => (
                    "harbor-credentials-rejected",
                    "Harbor rejected the admin credentials",
                ),
                Some(403) => (
                    "harbor-not-admin",
                    "the Harbor user is not an administrator",
                ),
                _ => (
                    "harbor-configuration-unreadable",
                    "reading Harbor's configuration as the admin failed",
                ),
            };
            out.findings.push(
                problem(
                    what.0,
                    &format!("harbor user {}", harbor.username()),
                    format!("{}: {e:#}", what.1),
                )
                .evidence("url", harbor.base_url())
                .evidence("username", harbor.username()),
            );
            return true;
        }
    }
    step.set("GET /api/v2.0/systeminfo");
    match harbor.systeminfo().await {
        Ok(info) => out.notes.push(format!(
            "Harbor {} at {} (external URL {}, auth mode {})",
            info.harbor_version
                .as_deref()
                .unwrap_or("(version unknown)"),
            harbor.base_url(),
            info.external_url.as_deref().unwrap_or("unset"),
            info.auth_mode.as_deref().unwrap_or("unknown"),
        )),
        Err(e) => out.findings.push(problem(
            "harbor-systeminfo-unreadable",
            &subject,
            format!("Harbor's system information could not be read: {e:#}"),
        )),
    }
    true
}

async fn check_database(ctx: &Ctx, out: &mut CheckOutcome, step: &Cell<&'static str>) -> bool {
    step.set("connecting to the database");
    let db = match ctx.db().await {
        Ok(db) => db,
        Err(e) if is_not_configured(&e) => {
            out.notes
                .push(format!("registry database: not checked ({e:#})"));
            return false;
        }
        Err(e) => {
            out.findings.push(problem(
                "database-unreachable",
                "registry database",
                format!("cannot connect: {e:#}"),
            ));
            return true;
        }
    };
    step.set("reading Harbor's configuration rows");
    match db.stored_config().await {
        Ok(s) => out.notes.push(format!(
            "registry database {}: reachable (auth_mode {})",
            db.describe(),
            s.auth_mode.as_deref().unwrap_or("unset")
        )),
        Err(e) => out.findings.push(
            problem(
                "database-unreadable",
                "registry database",
                format!("connected, but reading Harbor's configuration failed: {e:#}"),
            )
            .evidence("database", db.describe()),
        ),
    }
    true
}

async fn check_cluster(ctx: &Ctx, out: &mut CheckOutcome, step: &Cell<&'static str>) -> bool {
    step.set("connecting to the cluster's API server");
    let kube = match ctx.kube().await {
        Ok(k) => k,
        Err(e) if is_not_configured(&e) => {
            out.notes.push(format!("cluster: not checked ({e:#})"));
            return false;
        }
        Err(e) => {
            out.findings.push(problem(
                "cluster-unusable",
                "cluster",
                format!("cannot use the cluster: {e:#}"),
            ));
            return true;
        }
    };
    let ns = &ctx.opts.harbor_namespace;
    step.set("reading the namespace");
    match kube.get_cluster::<Namespace>(ns).await {
        Ok(Some(_)) => out.notes.push(format!(
            "cluster {}: reachable, namespace {ns} exists",
            kube.describe()
        )),
        Ok(None) => out.findings.push(
            problem(
                "namespace-missing",
                &format!("namespace {ns}"),
                format!(
                    "the cluster has no namespace {ns}: give the namespace Harbor is installed in \
                     with --harbor-namespace"
                ),
            )
            .evidence("cluster", kube.describe()),
        ),
        Err(e) => out.findings.push(
            problem("cluster-unreachable", "cluster", format!("{e:#}"))
                .evidence("cluster", kube.describe()),
        ),
    }
    true
}

async fn check_keycloak(ctx: &Ctx, out: &mut CheckOutcome, step: &Cell<&'static str>) -> bool {
    step.set("finding Keycloak and logging in");
    let access = ctx.keycloak_access().await;
    let how = access.found.join("; ");
    let kc = match (&access.keycloak, &access.missing) {
        (Some(kc), _) => kc,
        (None, Some(missing)) if missing.failed => {
            out.findings.push(
                problem(
                    "keycloak-unusable",
                    "keycloak",
                    format!("Keycloak cannot be used: {}", missing.why),
                )
                .evidence("found", how),
            );
            return true;
        }
        (None, missing) => {
            out.notes.push(format!(
                "Keycloak: not checked ({})",
                missing
                    .as_ref()
                    .map_or("not configured", |m| m.why.as_str())
            ));
            return false;
        }
    };
    step.set("reading the realm");
    match kc.realm_sessions().await {
        Ok(_) => out.notes.push(format!(
            "Keycloak realm {} ({}): reachable, admin login accepted; found: {how}",
            kc.realm(),
            kc.realm_issuer()
        )),
        Err(e) => out.findings.push(
            problem(
                "keycloak-unreachable",
                &format!("keycloak realm {}", kc.realm()),
                format!("{e:#}"),
            )
            .evidence("issuer", kc.realm_issuer())
            .evidence("found", how),
        ),
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_system_gets_nearly_all_of_the_timeout() {
        assert_eq!(
            component_budget(Duration::from_secs(1)),
            Duration::from_millis(900)
        );
        assert_eq!(
            component_budget(Duration::from_secs(30)),
            Duration::from_millis(29_500)
        );
        assert_eq!(seconds(Duration::from_millis(29_500)), "29.5 s");
        assert_eq!(seconds(Duration::from_millis(1_800)), "1.8 s");
        assert_eq!(seconds(Duration::from_secs(2)), "2 s");
    }
}

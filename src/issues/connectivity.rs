//! `diagnose connectivity`: can the doctor reach everything it works with,
//! and do they accept its credentials?
//!
//! - Harbor: the API answers `ping`; `health` reports every component
//!   healthy; the admin credentials are accepted (and are an admin's); the
//!   version and external URL, for context.
//! - The registry database: a connection and a first query.
//! - The cluster, when configured: the API server answers and
//!   `--harbor-namespace` exists.
//! - Keycloak, when configured: an admin token and the realm.
//!
//! A system that is not configured is noted, not a finding; one that is
//! configured but fails is a problem, with the exact error. There is no
//! automatic repair: the runbook says what to look at for each failure.

use anyhow::Result;
use k8s_openapi::api::core::v1::Namespace;

use crate::clients::harbor::status_of;
use crate::clients::is_not_configured;
use crate::context::Ctx;
use crate::issues::{KnownIssue, Runbook};
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
    diagnose: |ctx, _| Box::pin(diagnose(ctx)),
    repair: None,
};

fn problem(subject: &str, summary: String) -> Finding {
    Finding::new(CHECK, Severity::Problem, subject, summary, RUNBOOK)
}

/// `diagnose connectivity`.
pub async fn diagnose(ctx: &Ctx) -> Result<CheckOutcome> {
    let mut out = CheckOutcome::default();
    let mut configured = 0;
    configured += check_harbor(ctx, &mut out).await as usize;
    configured += check_database(ctx, &mut out).await as usize;
    configured += check_cluster(ctx, &mut out).await as usize;
    configured += check_keycloak(ctx, &mut out).await as usize;
    if configured == 0 {
        return Ok(CheckOutcome::skipped(
            "nothing to check: give --harbor-url, --db-url, a kubeconfig or the --keycloak-* options",
        ));
    }
    Ok(out)
}

/// Returns whether Harbor is configured.
async fn check_harbor(ctx: &Ctx, out: &mut CheckOutcome) -> bool {
    let harbor = match ctx.harbor().await {
        Ok(h) => h,
        Err(e) if is_not_configured(&e) => {
            out.notes.push(format!("Harbor: not checked ({e:#})"));
            return false;
        }
        Err(e) => {
            out.findings.push(problem(
                "harbor",
                format!("the doctor cannot use the Harbor settings it was given: {e:#}"),
            ));
            return true;
        }
    };
    let subject = format!("harbor {}", harbor.base_url());
    if let Err(e) = harbor.ping().await {
        out.findings.push(
            problem(&subject, format!("Harbor's API does not answer: {e:#}"))
                .evidence("url", harbor.base_url()),
        );
        return true;
    }
    match harbor.health().await {
        Ok(health) => {
            for c in health.components.iter().filter(|c| c.status != "healthy") {
                out.findings.push(
                    problem(
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
                    &subject,
                    format!("Harbor reports its overall health as {:?}", health.status),
                ));
            }
        }
        Err(e) => out.findings.push(problem(
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
    match harbor.configurations().await {
        Ok(_) => {}
        Err(e) => {
            let what = match status_of(&e) {
                Some(401) => "Harbor rejected the admin credentials",
                Some(403) => "the Harbor user is not an administrator",
                _ => "reading Harbor's configuration as the admin failed",
            };
            out.findings.push(
                problem(
                    &format!("harbor user {}", harbor.username()),
                    format!("{what}: {e:#}"),
                )
                .evidence("url", harbor.base_url())
                .evidence("username", harbor.username()),
            );
            return true;
        }
    }
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
            &subject,
            format!("Harbor's system information could not be read: {e:#}"),
        )),
    }
    true
}

async fn check_database(ctx: &Ctx, out: &mut CheckOutcome) -> bool {
    let db = match ctx.db().await {
        Ok(db) => db,
        Err(e) if is_not_configured(&e) => {
            out.notes
                .push(format!("registry database: not checked ({e:#})"));
            return false;
        }
        Err(e) => {
            out.findings.push(problem(
                "registry database",
                format!("cannot connect: {e:#}"),
            ));
            return true;
        }
    };
    match db.stored_config().await {
        Ok(s) => out.notes.push(format!(
            "registry database {}: reachable (auth_mode {})",
            db.describe(),
            s.auth_mode.as_deref().unwrap_or("unset")
        )),
        Err(e) => out.findings.push(
            problem(
                "registry database",
                format!("connected, but reading Harbor's configuration failed: {e:#}"),
            )
            .evidence("database", db.describe()),
        ),
    }
    true
}

async fn check_cluster(ctx: &Ctx, out: &mut CheckOutcome) -> bool {
    let kube = match ctx.kube().await {
        Ok(k) => k,
        Err(e) if is_not_configured(&e) => {
            out.notes.push(format!("cluster: not checked ({e:#})"));
            return false;
        }
        Err(e) => {
            out.findings
                .push(problem("cluster", format!("cannot use the cluster: {e:#}")));
            return true;
        }
    };
    let ns = &ctx.opts.harbor_namespace;
    match kube.get_cluster::<Namespace>(ns).await {
        Ok(Some(_)) => out.notes.push(format!(
            "cluster {}: reachable, namespace {ns} exists",
            kube.describe()
        )),
        Ok(None) => out.findings.push(
            problem(
                &format!("namespace {ns}"),
                format!(
                    "the cluster has no namespace {ns}: give the namespace Harbor is installed in \
                     with --harbor-namespace"
                ),
            )
            .evidence("cluster", kube.describe()),
        ),
        Err(e) => out
            .findings
            .push(problem("cluster", format!("{e:#}")).evidence("cluster", kube.describe())),
    }
    true
}

async fn check_keycloak(ctx: &Ctx, out: &mut CheckOutcome) -> bool {
    let kc = match ctx.keycloak().await {
        Ok(Some(kc)) => kc,
        Ok(None) => {
            out.notes
                .push("Keycloak: not checked (no --keycloak-url with admin credentials)".into());
            return false;
        }
        Err(e) => {
            out.findings.push(problem(
                "keycloak",
                format!("the doctor cannot use the Keycloak settings it was given: {e:#}"),
            ));
            return true;
        }
    };
    match kc.realm_sessions().await {
        Ok(_) => out.notes.push(format!(
            "Keycloak realm {} ({}): reachable, admin credentials accepted",
            kc.realm(),
            kc.realm_issuer()
        )),
        Err(e) => out.findings.push(
            problem(&format!("keycloak realm {}", kc.realm()), format!("{e:#}"))
                .evidence("issuer", kc.realm_issuer()),
        ),
    }
    true
}

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
        id: "keycloak-unusable",
        about: "Keycloak was not found or its admin login failed",
    },
    FindingKind {
        id: "keycloak-unreachable",
        about: "Keycloak's realm does not answer or refuses the admin",
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
                "harbor-settings-unusable",
                "harbor",
                format!("the doctor cannot use the Harbor settings it was given: {e:#}"),
            ));
            return true;
        }
    };
    let subject = format!("harbor {}", harbor.base_url());
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
                "database-unreachable",
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
                "database-unreadable",
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
            out.findings.push(problem(
                "cluster-unusable",
                "cluster",
                format!("cannot use the cluster: {e:#}"),
            ));
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

async fn check_keycloak(ctx: &Ctx, out: &mut CheckOutcome) -> bool {
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

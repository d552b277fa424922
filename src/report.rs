//! What the doctor tells its users: findings, check results, plans and
//! repair outcomes. These types serialize to exactly the JSON shapes that
//! DESIGN.md fixes for scripts; `render` turns them into tables for people.

use serde::Serialize;
use serde_json::{Map, Value};

/// How bad a finding is. Ordered: a problem is worse than a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Works today but will break, or works badly.
    Warning,
    /// Broken now, or broken at the next login/rollout.
    Problem,
}

/// One thing a check found wrong, with what proves it and what to do.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub check: String,
    /// A stable identifier of what was found, unique within its check
    /// (`sub-changed`, `robot-missing`, ...); documented with the check.
    pub kind: String,
    pub severity: Severity,
    /// Who or what is affected, e.g. `user alice`, `deployment harbor/harbor-registry`.
    pub subject: String,
    /// One plain sentence: what is wrong and what the user will see.
    pub summary: String,
    /// The facts behind it, as found. Never a secret.
    pub evidence: Map<String, Value>,
    /// A complete command line that repairs it, or None when no automatic
    /// repair is safe (then `summary` says what to do).
    pub repair: Option<String>,
    /// The runbook id that explains it.
    pub runbook: String,
}

/// The kind of every [`Finding::not_examined`], in every check.
pub const NOT_EXAMINED: &str = "not-examined";

impl Finding {
    /// A check's honest "I did not look": it ran, but could not examine
    /// the main cause it exists for. A warning with no repair, whose
    /// summary says what was not checked and what to supply.
    pub fn not_examined(
        check: &str,
        subject: &str,
        summary: impl Into<String>,
        runbook: &str,
    ) -> Self {
        Finding::new(
            check,
            NOT_EXAMINED,
            Severity::Warning,
            format!("coverage: {subject}"),
            summary,
            runbook,
        )
    }

    pub fn new(
        check: &str,
        kind: &str,
        severity: Severity,
        subject: impl Into<String>,
        summary: impl Into<String>,
        runbook: &str,
    ) -> Self {
        Finding {
            check: check.to_string(),
            kind: kind.to_string(),
            severity,
            subject: subject.into(),
            summary: summary.into(),
            evidence: Map::new(),
            repair: None,
            runbook: runbook.to_string(),
        }
    }

    pub fn evidence(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.evidence.insert(key.to_string(), value.into());
        self
    }

    pub fn repair(mut self, command: impl Into<String>) -> Self {
        self.repair = Some(command.into());
        self
    }
}

/// The status of one check, as scripts see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Ok,
    Warning,
    Problem,
    Skipped,
    Error,
}

/// One check's result in `diagnose -o json`.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub id: String,
    pub status: CheckStatus,
    /// Why it was skipped or errored; null otherwise.
    pub reason: Option<String>,
    pub duration_ms: u64,
    /// What the check looked at, in one line (its notes joined), or null.
    pub detail: Option<String>,
    pub findings: Vec<Finding>,
    /// What the check looked at, one fact each (which issuer was used and
    /// where it came from...): the report's `-v` lines, and `detail`.
    #[serde(skip)]
    pub notes: Vec<String>,
}

/// What a check function returns when it ran.
#[derive(Debug, Default)]
pub struct CheckOutcome {
    pub findings: Vec<Finding>,
    pub notes: Vec<String>,
    /// Set when the check could not run because its system is not configured.
    pub skipped: Option<String>,
}

impl CheckOutcome {
    pub fn skipped(reason: impl Into<String>) -> Self {
        CheckOutcome {
            skipped: Some(reason.into()),
            ..Default::default()
        }
    }
}

impl CheckReport {
    pub fn from_outcome(id: &str, outcome: CheckOutcome, duration_ms: u64) -> Self {
        let status = if let Some(reason) = &outcome.skipped {
            return CheckReport {
                id: id.to_string(),
                status: CheckStatus::Skipped,
                reason: Some(reason.clone()),
                duration_ms,
                detail: detail_of(&outcome.notes),
                findings: vec![],
                notes: outcome.notes,
            };
        } else {
            match outcome.findings.iter().map(|f| f.severity).max() {
                None => CheckStatus::Ok,
                Some(Severity::Warning) => CheckStatus::Warning,
                Some(Severity::Problem) => CheckStatus::Problem,
            }
        };
        CheckReport {
            id: id.to_string(),
            status,
            reason: None,
            duration_ms,
            detail: detail_of(&outcome.notes),
            findings: outcome.findings,
            notes: outcome.notes,
        }
    }

    pub fn error(id: &str, reason: impl Into<String>, duration_ms: u64) -> Self {
        CheckReport {
            id: id.to_string(),
            status: CheckStatus::Error,
            reason: Some(reason.into()),
            duration_ms,
            detail: None,
            findings: vec![],
            notes: vec![],
        }
    }
}

fn detail_of(notes: &[String]) -> Option<String> {
    (!notes.is_empty()).then(|| notes.join("; "))
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub ok: usize,
    pub warning: usize,
    pub problem: usize,
    pub skipped: usize,
    pub error: usize,
}

/// The whole `diagnose -o json` document.
#[derive(Debug, Clone, Serialize)]
pub struct DiagnoseReport {
    pub checks: Vec<CheckReport>,
    pub summary: Summary,
    /// The distinct repair commands, in the order to run them.
    pub next_steps: Vec<String>,
    /// The doctor's version, so a stored report says what produced it.
    pub version: &'static str,
}

impl DiagnoseReport {
    pub fn new(checks: Vec<CheckReport>) -> Self {
        let mut summary = Summary::default();
        for c in &checks {
            match c.status {
                CheckStatus::Ok => summary.ok += 1,
                CheckStatus::Warning => summary.warning += 1,
                CheckStatus::Problem => summary.problem += 1,
                CheckStatus::Skipped => summary.skipped += 1,
                CheckStatus::Error => summary.error += 1,
            }
        }
        let next_steps = next_steps(&checks);
        DiagnoseReport {
            checks,
            summary,
            next_steps,
            version: env!("CARGO_PKG_VERSION"),
        }
    }

    /// Rewrites every repair command (the kubectl plugin's `kubectl
    /// harbor-doctor ...`), keeping `next_steps` the same commands.
    pub fn map_repairs(&mut self, f: impl Fn(&str) -> String) {
        for finding in self.checks.iter_mut().flat_map(|c| c.findings.iter_mut()) {
            if let Some(repair) = &finding.repair {
                finding.repair = Some(f(repair));
            }
        }
        self.next_steps = next_steps(&self.checks);
    }

    pub fn findings(&self) -> impl Iterator<Item = &Finding> {
        self.checks.iter().flat_map(|c| c.findings.iter())
    }
}

/// The repair commands to run, each once, in the order that lets each
/// one work: by the stage its repair acts at (the database before
/// Kubernetes before provisioning, see [`RepairStage`]), then in report
/// order.
fn next_steps(checks: &[CheckReport]) -> Vec<String> {
    let mut steps: Vec<(RepairStage, usize, String)> = vec![];
    for (i, f) in checks.iter().flat_map(|c| c.findings.iter()).enumerate() {
        let Some(command) = f.repair.as_deref() else {
            continue;
        };
        let fix = crate::issues::KnownIssue::find(&f.check).and_then(|issue| issue.repair.as_ref());
        let stage = fix.map_or(RepairStage::Provisioning, |r| r.stage);
        // `provision --team b` joins an earlier `provision --team a`.
        let joined = fix.and_then(|r| r.repeats).and_then(|option| {
            let (head, value) = command.rsplit_once(&format!(" {option} "))?;
            let step = steps
                .iter_mut()
                .find(|(_, _, c)| c.starts_with(&format!("{head} {option} ")))?;
            let repeated = format!(" {option} {value}");
            if !format!("{} ", step.2).contains(&format!("{repeated} ")) {
                step.2.push_str(&repeated);
            }
            Some(())
        });
        if joined.is_none() && !steps.iter().any(|(_, _, c)| c == command) {
            steps.push((stage, i, command.to_string()));
        }
    }
    steps.sort_by_key(|(stage, i, _)| (*stage, *i));
    steps.into_iter().map(|(_, _, c)| c).collect()
}

/// Where a repair acts, in the order repairs are best run: one that
/// restores the database (a user's login) does not depend on the cluster;
/// provisioning recreates Secrets, which needs Harbor's configuration and
/// the cluster in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RepairStage {
    Database,
    HarborConfiguration,
    Kubernetes,
    Provisioning,
}

/// One change a repair will make, shown before it is made.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PlanStep {
    /// Verb: `update`, `delete`, `create`, `patch`, ...
    pub action: String,
    /// What it changes, e.g. `oidc_user id=7`, `replicaset harbor/harbor-registry-5d9c`.
    pub target: String,
    /// The change itself, e.g. `subiss: <old> -> <new>`. Never a secret.
    pub detail: String,
}

impl PlanStep {
    pub fn new(action: &str, target: impl Into<String>, detail: impl Into<String>) -> Self {
        PlanStep {
            action: action.to_string(),
            target: target.into(),
            detail: detail.into(),
        }
    }
}

/// A repair's `-o json` document.
#[derive(Debug, Clone, Serialize)]
pub struct RepairReport {
    pub repair: String,
    pub plan: Vec<PlanStep>,
    pub applied: bool,
    pub verified: bool,
    pub backup: Option<String>,
}

//! Known issue: docker login with an OIDC user's CLI secret fails.
//!
//! Harbor accepts an OIDC user's CLI secret only while it can refresh the
//! OIDC token it stored at the user's last web login. Without a refresh
//! token that outlives the IdP session (`oidc_scope` lacking
//! `offline_access`), every docker login fails once the session has ended,
//! until the user opens the web UI again. Platform operators (Otomi's
//! `apl-harbor-operator`) may also rewrite Harbor's configuration every
//! minute, undoing a scope change made by hand.
//!
//! - diagnose: auth mode and scope (Harbor API), Keycloak's lifespans as one
//!   sentence, whether Otomi's operator runs (Kubernetes), and with `--user`
//!   one try of the user's CLI secret against the registry token service;
//! - `fix cli-login`: adds `offline_access` to `oidc_scope` (backup of the
//!   old value, verify by reading it back), warning when the operator will
//!   revert it.

use std::io::{IsTerminal, Read};

use anyhow::Result;
use serde_json::{json, Map, Value};

use crate::backup::{Backup, BackupItem};
use crate::cli::DiagnoseArgs;
use crate::clients::harbor::{status_of, Harbor, Secret, TokenCheck};
use crate::clients::is_not_configured;
use crate::clients::keycloak::RealmSessions;
use crate::context::Ctx;
use crate::issues::CheckOptions;
use crate::issues::{no_options, FindingKind, FixCommand, KnownIssue, Runbook};
use crate::outcome::{incomplete, refused};
use crate::repair::{BackupSink, Repair, Verification};
use crate::report::{CheckOutcome, Finding, PlanStep, RepairStage, Severity};

pub const CHECK: &str = "cli-login";
pub const RUNBOOK: &str = "cli-login";
const REPAIR: &str = "cli-login";

pub static ISSUE: KnownIssue = KnownIssue {
    check: CHECK,
    about: "whether OIDC users' CLI secrets keep working for docker login (--user: one user's)",
    runbook: Runbook {
        id: RUNBOOK,
        summary: "docker login with a CLI secret fails unless the user just used the web UI",
        text: include_str!("../../runbooks/cli-login.md"),
    },
    kinds: &[
        FindingKind {
            id: "scope-without-offline-access",
            about: "Harbor's OIDC scope lacks offline_access, so CLI secrets stop working when sessions end",
        },
        FindingKind {
            id: "cli-secret-rejected",
            about: "the user's CLI secret is rejected by Harbor's registry token service",
        },
    ],
    diagnose: |ctx, opts| Box::pin(diagnose(ctx, opts)),
    repair: Some(FixCommand {
        name: REPAIR,
        stage: RepairStage::HarborConfiguration,
        repeats: None,
        about: "Add offline_access to Harbor's OIDC scope so CLI secrets keep working",
        options: no_options,
        run: |ctx, _| {
            Box::pin(async move { crate::repair::run(ctx, &mut CliLoginRepair::new()).await })
        },
    }),
};
const SCOPE_KEY: &str = "oidc_scope";
const OIDC_MODE: &str = "oidc_auth";
/// Where Otomi (APL) runs the operator that re-applies Harbor's
/// configuration every minute, with `oidc_scope: openid`.
pub const OPERATOR_NAMESPACE: &str = "apl-harbor-operator";
/// What to do while the operator keeps the scope at `openid`.
const WORKAROUND: &str = "harbor-doctor docker-login --team <id>";

/// The scope that makes Keycloak issue a refresh token that outlives the
/// browser session.
pub const OFFLINE_ACCESS: &str = "offline_access";

/// Whether a comma-separated `oidc_scope` asks for `offline_access`.
pub fn has_offline_access(scope: &str) -> bool {
    scope.split(',').any(|s| s.trim() == OFFLINE_ACCESS)
}

/// `scope` with `offline_access` added at the end; the other scopes keep
/// their order and spelling. Harbor's own default is `openid,offline_access`.
pub fn scope_with_offline_access(scope: &str) -> String {
    if has_offline_access(scope) {
        return scope.to_string();
    }
    let kept = scope.trim().trim_end_matches([',', ' ']);
    if kept.is_empty() {
        return format!("openid,{OFFLINE_ACCESS}");
    }
    let separator = if kept.contains(", ") { ", " } else { "," };
    format!("{kept}{separator}{OFFLINE_ACCESS}")
}

/// A number of seconds as people say it: "1 minute", "30 minutes",
/// "10 hours", "30 days", "90 seconds".
pub fn plain_duration(seconds: i64) -> String {
    let (n, unit) = [(86_400, "day"), (3_600, "hour"), (60, "minute")]
        .into_iter()
        .find(|(size, _)| seconds >= *size && seconds % size == 0)
        .map(|(size, unit)| (seconds / size, unit))
        .unwrap_or((seconds, "second"));
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

/// A lifespan Keycloak reported, when it means a limit (Keycloak uses 0 for
/// "not set").
fn limit(value: Option<i64>) -> Option<i64> {
    value.filter(|v| *v > 0)
}

/// What the realm's token and session lifespans mean for CLI secrets, as
/// one plain sentence.
pub fn lifespan_sentence(sessions: &RealmSessions, offline_access: bool) -> String {
    if offline_access {
        return match limit(sessions.offline_session_idle_timeout) {
            Some(idle) => format!(
                "CLI secrets keep working as long as they are used at least once every {} (Keycloak's \
                 offline session idle timeout); after a longer pause the user must log in to the web UI once",
                plain_duration(idle)
            ),
            None => "CLI secrets keep working while Keycloak keeps the user's offline session; Keycloak did \
                     not report its offline session idle timeout"
                .to_string(),
        };
    }
    let access = limit(sessions.access_token_lifespan).map(|a| {
        format!(
            "Harbor's copy of the user's token lasts {}",
            plain_duration(a)
        )
    });
    let idle = limit(sessions.sso_session_idle_timeout);
    let max = limit(sessions.sso_session_max_lifespan);
    let refresh = "can only be refreshed while the user's Keycloak session lives";
    let why = match access {
        Some(a) => format!("{a} and {refresh}"),
        None => format!("Harbor's copy of the user's token {refresh}"),
    };
    match (idle, max) {
        (Some(idle), Some(max)) if max > idle => format!(
            "CLI secrets stop working {} after the user's last web login, and {} after it at the latest: {why}",
            plain_duration(idle),
            plain_duration(max)
        ),
        (Some(idle), Some(max)) => format!(
            "CLI secrets stop working {} after the user's last web login: {why}",
            plain_duration(idle.min(max))
        ),
        (Some(end), None) | (None, Some(end)) => format!(
            "CLI secrets stop working {} after the user's last web login: {why}",
            plain_duration(end)
        ),
        (None, None) => format!(
            "CLI secrets stop working when the user's Keycloak session ends (Keycloak did not report how \
             long that is): {why}"
        ),
    }
}

/// Reads the CLI secret when this `diagnose` will try a user's, before the
/// checks start: a person typing it at the prompt must not race the
/// per-check timeout.
pub fn read_cli_secret(args: &DiagnoseArgs) -> Result<Option<Secret>> {
    let Some(user) = args.user.as_deref() else {
        return Ok(None);
    };
    if args.checks.is_empty() || args.checks.iter().any(|c| c.is(&ISSUE)) {
        return cli_secret(user).map(Some);
    }
    Ok(None)
}

/// The CLI secret: HARBOR_CLI_SECRET, else a hidden prompt when stdin is a
/// terminal, else the first line of stdin.
fn cli_secret(user: &str) -> Result<Secret> {
    let given = match std::env::var("HARBOR_CLI_SECRET")
        .ok()
        .filter(|s| !s.trim().is_empty())
    {
        Some(s) => s,
        None if std::io::stdin().is_terminal() => {
            let term = console::Term::stderr();
            term.write_str(&format!(
                "CLI secret of {user} (Harbor web UI, User Profile; input hidden): "
            ))
            .and_then(|_| term.read_secure_line())
            .map_err(|e| refused(format!("could not read the CLI secret: {e}")))?
        }
        None => {
            let mut all = String::new();
            std::io::stdin()
                .read_to_string(&mut all)
                .map_err(|e| refused(format!("could not read the CLI secret from stdin: {e}")))?;
            all.lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or_default()
                .to_string()
        }
    };
    let given = given.trim();
    if given.is_empty() {
        return Err(refused(format!(
            "no CLI secret to try for {user}: set HARBOR_CLI_SECRET, type it at the prompt, or give it on stdin"
        )));
    }
    Ok(Secret::new(given))
}

/// What Keycloak said about the realm's lifespans.
enum KeycloakView {
    NotConfigured,
    Read {
        realm: String,
        sessions: RealmSessions,
    },
    Failed(String),
}

/// Whether an operator that rewrites Harbor's configuration runs.
enum OperatorView {
    /// Deployments in the operator's namespace with replicas wanted.
    Running(Vec<String>),
    Absent,
    /// The cluster could not be asked, and why.
    Unknown(String),
}

impl OperatorView {
    fn running(&self) -> bool {
        matches!(self, OperatorView::Running(_))
    }

    fn describe(&self) -> String {
        match self {
            OperatorView::Running(names) => names
                .iter()
                .map(|n| format!("deployment {OPERATOR_NAMESPACE}/{n}"))
                .collect::<Vec<_>>()
                .join(", "),
            OperatorView::Absent => "none".into(),
            OperatorView::Unknown(_) => "unknown".into(),
        }
    }

    /// The warning to give before or after a scope change.
    fn will_revert(&self) -> Option<String> {
        self.running().then(|| {
            format!(
                "Otomi's Harbor operator ({}) re-applies Harbor's configuration every minute with oidc_scope \
                 \"openid\", so a scope change made here or in the web UI is undone within a minute. The lasting \
                 change belongs in the operator (its Harbor configuration in linode/apl-tasks sets oidc_scope); \
                 meanwhile log docker in with the team's robot: `{WORKAROUND}`",
                self.describe()
            )
        })
    }
}

async fn operator(ctx: &Ctx) -> OperatorView {
    use k8s_openapi::api::apps::v1::Deployment;
    let kube = match ctx.kube().await {
        Ok(kube) => kube,
        Err(e) if is_not_configured(&e) => {
            return OperatorView::Unknown("no Kubernetes cluster configured".into())
        }
        Err(e) => return OperatorView::Unknown(format!("{e:#}")),
    };
    match kube
        .list_in::<Deployment>(OPERATOR_NAMESPACE, None, None)
        .await
    {
        Ok(deployments) => {
            let running: Vec<String> = deployments
                .into_iter()
                .filter(|d| d.spec.as_ref().and_then(|s| s.replicas) != Some(0))
                .filter_map(|d| d.metadata.name)
                .collect();
            if running.is_empty() {
                OperatorView::Absent
            } else {
                OperatorView::Running(running)
            }
        }
        Err(e) => OperatorView::Unknown(format!("{e:#}")),
    }
}

/// What Harbor, Keycloak and the cluster say about CLI logins.
struct Examination {
    auth_mode: Option<String>,
    scope: Option<String>,
    keycloak: KeycloakView,
    operator: OperatorView,
}

impl Examination {
    fn oidc(&self) -> bool {
        self.auth_mode.as_deref() == Some(OIDC_MODE)
    }

    fn offline(&self) -> bool {
        self.scope.as_deref().is_some_and(has_offline_access)
    }

    fn scope_shown(&self) -> &str {
        self.scope.as_deref().unwrap_or("")
    }

    /// How long CLI secrets keep working, from Keycloak when it was read.
    fn sentence(&self) -> String {
        match &self.keycloak {
            KeycloakView::Read { sessions, .. } => lifespan_sentence(sessions, self.offline()),
            _ if self.offline() => "CLI secrets keep working while the user's Keycloak offline session lives \
                                    (it ends after 30 days without use unless the realm says otherwise)"
                .to_string(),
            _ => "CLI secrets stop working when the user's Keycloak session ends (in Otomi's realm 30 minutes \
                  after the user's last web login; give the --keycloak-* options to read this realm's)"
                .to_string(),
        }
    }

    fn with_evidence(&self, mut f: Finding) -> Finding {
        f = f
            .evidence("auth_mode", self.auth_mode.clone().unwrap_or_default())
            .evidence(SCOPE_KEY, self.scope_shown());
        if let KeycloakView::Read { realm, sessions } = &self.keycloak {
            f = f
                .evidence("keycloak_realm", realm.clone())
                .evidence(
                    "access_token_lifespan_s",
                    json!(sessions.access_token_lifespan),
                )
                .evidence(
                    "sso_session_idle_timeout_s",
                    json!(sessions.sso_session_idle_timeout),
                )
                .evidence(
                    "sso_session_max_lifespan_s",
                    json!(sessions.sso_session_max_lifespan),
                )
                .evidence(
                    "offline_session_idle_timeout_s",
                    json!(sessions.offline_session_idle_timeout),
                );
        }
        f.evidence("lifespans", self.sentence())
            .evidence("operator", self.operator.describe())
    }
}

async fn harbor_config(harbor: &Harbor) -> Result<(Option<String>, Option<String>)> {
    let config = harbor.configurations().await?;
    let text = |key: &str| config.get(key).and_then(Value::as_str).map(str::to_string);
    Ok((text("auth_mode"), text(SCOPE_KEY)))
}

async fn examine(ctx: &Ctx) -> Result<Examination> {
    let harbor = ctx.harbor().await?;
    let (auth_mode, scope) = harbor_config(harbor).await?;
    let mut ex = Examination {
        auth_mode,
        scope,
        keycloak: KeycloakView::NotConfigured,
        operator: OperatorView::Absent,
    };
    if !ex.oidc() {
        return Ok(ex);
    }
    ex.operator = operator(ctx).await;
    // Keycloak only explains; when it cannot be read the check still runs.
    ex.keycloak = match ctx.keycloak().await {
        Ok(None) => KeycloakView::NotConfigured,
        Ok(Some(kc)) => match kc.realm_sessions().await {
            Ok(sessions) => KeycloakView::Read {
                realm: kc.realm().to_string(),
                sessions,
            },
            Err(e) => KeycloakView::Failed(format!("{e:#}")),
        },
        Err(e) => KeycloakView::Failed(format!("{e:#}")),
    };
    Ok(ex)
}

fn fix_command() -> String {
    format!("harbor-doctor fix {REPAIR}")
}

fn scope_finding(ex: &Examination) -> Finding {
    let summary = format!(
        "Harbor's OIDC scope {:?} does not ask for offline_access: {}; after that every docker login with a \
         CLI secret fails until the user opens the web UI again",
        ex.scope_shown(),
        ex.sentence()
    );
    let f = ex.with_evidence(Finding::new(
        CHECK,
        "scope-without-offline-access",
        Severity::Problem,
        format!("Harbor {SCOPE_KEY}"),
        "",
        RUNBOOK,
    ));
    match ex.operator.will_revert() {
        Some(warning) => Finding {
            summary: format!("{summary}. {warning}"),
            ..f
        },
        None => Finding {
            summary: format!("{summary}."),
            ..f
        }
        .repair(fix_command()),
    }
}

fn rejected_secret_finding(ex: &Examination, user: &str) -> Finding {
    let why = if ex.offline() {
        format!(
            "oidc_scope asks for offline_access, so most likely the secret is not the current one (it changes \
             when regenerated in the web UI), {user} has not logged in to the web UI since offline_access was \
             added, or their offline session has ended ({}). Log in to the web UI, copy the CLI secret from User \
             Profile and try again",
            ex.sentence()
        )
    } else if ex.operator.running() {
        format!(
            "most likely {user}'s Keycloak session has ended and Harbor cannot refresh their token because \
             oidc_scope lacks offline_access ({}). Logging in to the web UI once makes it work for a while; \
             Otomi's Harbor operator keeps the scope without offline_access, so for lasting access use the \
             team's robot: `{WORKAROUND}`",
            ex.sentence()
        )
    } else {
        format!(
            "most likely {user}'s Keycloak session has ended and Harbor cannot refresh their token because \
             oidc_scope lacks offline_access ({}). Logging in to the web UI once makes it work for a while; \
             `{}` makes it last",
            ex.sentence(),
            fix_command()
        )
    };
    let f = Finding::new(
        CHECK,
        "cli-secret-rejected",
        Severity::Problem,
        format!("user {user}"),
        format!(
            "{user}'s CLI secret is rejected by Harbor's registry token service, so docker login fails with \
             'unauthorized': {why}"
        ),
        RUNBOOK,
    )
    // The scope finding carries the lifespans; this one only what is its own.
    .evidence("user", user)
    .evidence("token_service", "401 Unauthorized")
    .evidence(SCOPE_KEY, ex.scope_shown())
    .evidence("operator", ex.operator.describe());
    // No repair of its own: adding offline_access (the scope finding's
    // repair) only helps once the user logs in to the web UI again, so
    // running a command could never make this finding go away by itself.
    f
}

/// `diagnose cli-login`.
pub async fn diagnose(ctx: &Ctx, opts: &CheckOptions) -> Result<CheckOutcome> {
    let ex = examine(ctx).await?;
    let mut out = CheckOutcome::default();
    if !ex.oidc() {
        out.notes.push(format!(
            "Harbor's auth_mode is {}: CLI secrets exist only in OIDC mode ({OIDC_MODE}), so there is \
             nothing to check",
            ex.auth_mode.as_deref().unwrap_or("unset")
        ));
        if let Some(user) = &opts.user {
            out.notes.push(format!(
                "{user}'s CLI secret was not tried: Harbor is not in OIDC mode"
            ));
        }
        return Ok(out);
    }
    out.notes.push(format!(
        "auth_mode {OIDC_MODE}; {SCOPE_KEY} {:?}",
        ex.scope_shown()
    ));
    match &ex.keycloak {
        KeycloakView::Read { realm, .. } => out
            .notes
            .push(format!("Keycloak realm {realm}: {}", ex.sentence())),
        KeycloakView::Failed(e) => out
            .notes
            .push(format!("Keycloak's lifespans could not be read: {e}")),
        KeycloakView::NotConfigured => {
            let access = ctx.keycloak_access().await;
            let why = access
                .missing
                .as_ref()
                .map_or("not configured", |m| m.why.as_str());
            out.notes
                .push(format!("Keycloak's lifespans were not read: {why}"))
        }
    }
    match &ex.operator {
        OperatorView::Running(_) if ex.offline() => out.notes.push(format!(
            "Otomi's Harbor operator runs ({}); unless it was changed to keep offline_access it will reset \
             oidc_scope to \"openid\" within a minute: run this check again then",
            ex.operator.describe()
        )),
        OperatorView::Running(_) => {}
        OperatorView::Absent => out.notes.push(format!(
            "no operator in namespace {OPERATOR_NAMESPACE} rewrites Harbor's configuration"
        )),
        OperatorView::Unknown(why) => out.notes.push(format!(
            "whether an operator rewrites Harbor's configuration is unknown ({why})"
        )),
    }
    if !ex.offline() {
        out.findings.push(scope_finding(&ex));
    }
    if let Some(user) = &opts.user {
        let secret = opts.cli_secret.as_ref().ok_or_else(|| {
            refused(format!(
                "no CLI secret was read for {user}; nothing was tried"
            ))
        })?;
        // Once only: Harbor delays and briefly locks a name after each rejected login.
        match ctx
            .harbor()
            .await?
            .registry_token(user, secret, None)
            .await?
        {
            TokenCheck::Accepted => out.notes.push(format!(
                "{user}'s CLI secret works now (the registry token service accepted it); {}",
                ex.sentence()
            )),
            TokenCheck::Rejected => out.findings.push(rejected_secret_finding(&ex, user)),
        }
    }
    Ok(out)
}

/// `fix cli-login`: adds `offline_access` to Harbor's `oidc_scope`.
#[derive(Default)]
pub struct CliLoginRepair {
    /// The scope as the plan saw it.
    seen: String,
    wanted: String,
    notes: Vec<String>,
}

impl CliLoginRepair {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Repair for CliLoginRepair {
    fn id(&self) -> &'static str {
        REPAIR
    }

    fn subject(&self) -> String {
        SCOPE_KEY.to_string()
    }

    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }

    async fn plan(&mut self, ctx: &Ctx) -> Result<Vec<PlanStep>> {
        let harbor = ctx.harbor().await?;
        let (auth_mode, scope) = harbor_config(harbor).await?;
        if auth_mode.as_deref() != Some(OIDC_MODE) {
            return Err(refused(format!(
                "Harbor's auth_mode is {}, not {OIDC_MODE}: CLI secrets and oidc_scope only matter in OIDC \
                 mode; nothing was changed",
                auth_mode.as_deref().unwrap_or("unset")
            )));
        }
        self.seen = scope.unwrap_or_default();
        if has_offline_access(&self.seen) {
            self.notes.push(format!(
                "{SCOPE_KEY} {:?} already asks for offline_access.",
                self.seen
            ));
            return Ok(vec![]);
        }
        self.wanted = scope_with_offline_access(&self.seen);
        match operator(ctx).await {
            view @ OperatorView::Running(_) => {
                ctx.out.warn(view.will_revert().unwrap_or_default());
            }
            OperatorView::Unknown(why) => self.notes.push(format!(
                "Could not check for an operator that rewrites Harbor's configuration ({why}); on Otomi, \
                 apl-harbor-operator reverts this change within a minute."
            )),
            OperatorView::Absent => {}
        }
        self.notes.push(
            "After the change each user must log in to the web UI once; from then on their CLI secret keeps \
             working."
                .into(),
        );
        Ok(vec![PlanStep::new(
            "update",
            format!("Harbor configuration {SCOPE_KEY}"),
            format!("{:?} -> {:?}", self.seen, self.wanted),
        )])
    }

    async fn apply(&mut self, ctx: &Ctx, backups: &mut BackupSink) -> Result<()> {
        let harbor = ctx.harbor().await?;
        let (_, now) = harbor_config(harbor).await?;
        let now = now.unwrap_or_default();
        if now != self.seen {
            return Err(refused(format!(
                "{SCOPE_KEY} changed since the plan was made (it is now {now:?}); nothing was changed. Run the \
                 fix again to see a fresh plan"
            )));
        }
        let source = crate::backup::Source {
            description: format!("Harbor {}", harbor.base_url()),
            harbor: harbor.systeminfo().await?.external_url,
            ..Default::default()
        };
        backups.write(&Backup::new(
            REPAIR,
            SCOPE_KEY,
            source,
            vec![BackupItem::HarborConfig {
                key: SCOPE_KEY.into(),
                value: json!(self.seen),
                after: Some(json!(self.wanted)),
            }],
        ))?;
        let mut change = Map::new();
        change.insert(SCOPE_KEY.into(), json!(self.wanted));
        harbor
            .set_configurations(&change)
            .await
            .map_err(config_write_failed)
    }

    async fn verify(&mut self, ctx: &Ctx) -> Result<Verification> {
        let (_, now) = harbor_config(ctx.harbor().await?).await?;
        Ok(if now.as_deref() == Some(self.wanted.as_str()) {
            Verification::Verified
        } else {
            Verification::NotVerified(format!(
                "Harbor's {SCOPE_KEY} reads {:?}, not {:?}",
                now.unwrap_or_default(),
                self.wanted
            ))
        })
    }
}

/// A failed configuration write: Harbor's refusal changed nothing (exit 3);
/// anything else leaves the outcome unknown (exit 5).
pub fn config_write_failed(e: anyhow::Error) -> anyhow::Error {
    match status_of(&e) {
        Some(s) if (400..500).contains(&s) => {
            refused(format!("Harbor refused the change ({e:#}); nothing was changed"))
        }
        _ => incomplete(format!(
            "writing Harbor's configuration failed ({e:#}); whether Harbor applied it is unknown. Run \
             `harbor-doctor diagnose {CHECK}` to see the state; the backup above holds the old value"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::keycloak::{Keycloak, KeycloakSettings};
    use harbor_doctor_sim::keycloak::{KeycloakSim, RealmLifespans};

    #[test]
    fn says_durations_plainly() {
        assert_eq!(plain_duration(60), "1 minute");
        assert_eq!(plain_duration(1800), "30 minutes");
        assert_eq!(plain_duration(36_000), "10 hours");
        assert_eq!(plain_duration(2_592_000), "30 days");
        assert_eq!(plain_duration(90), "90 seconds");
        assert_eq!(plain_duration(5400), "90 minutes");
        assert_eq!(plain_duration(1), "1 second");
    }

    #[test]
    fn adds_offline_access_keeping_the_other_scopes() {
        assert_eq!(scope_with_offline_access("openid"), "openid,offline_access");
        assert_eq!(
            scope_with_offline_access("openid,email,profile"),
            "openid,email,profile,offline_access"
        );
        assert_eq!(
            scope_with_offline_access("openid, profile,"),
            "openid, profile, offline_access"
        );
        assert_eq!(
            scope_with_offline_access("openid, offline_access ,email"),
            "openid, offline_access ,email"
        );
        assert_eq!(scope_with_offline_access(""), "openid,offline_access");
        assert!(has_offline_access("openid, offline_access"));
        assert!(!has_offline_access("openid,offline_access_x"));
    }

    fn sessions(access: i64, idle: i64, max: i64, offline: i64) -> RealmSessions {
        RealmSessions {
            access_token_lifespan: Some(access),
            sso_session_idle_timeout: Some(idle),
            sso_session_max_lifespan: Some(max),
            offline_session_idle_timeout: Some(offline),
        }
    }

    #[test]
    fn explains_lifespans_in_one_sentence() {
        let s = sessions(60, 1800, 36_000, 2_592_000);
        assert_eq!(
            lifespan_sentence(&s, false),
            "CLI secrets stop working 30 minutes after the user's last web login, and 10 hours after it \
             at the latest: Harbor's copy of the user's token lasts 1 minute and can only be refreshed \
             while the user's Keycloak session lives"
        );
        assert!(lifespan_sentence(&s, true).starts_with(
            "CLI secrets keep working as long as they are used at least once every 30 days"
        ));
        // A max lifespan shorter than the idle timeout is what ends the session.
        assert!(lifespan_sentence(&sessions(300, 7200, 3600, 0), false)
            .starts_with("CLI secrets stop working 1 hour after the user's last web login:"));
        let unknown = RealmSessions {
            access_token_lifespan: None,
            sso_session_idle_timeout: Some(0),
            sso_session_max_lifespan: None,
            offline_session_idle_timeout: None,
        };
        assert!(lifespan_sentence(&unknown, false).contains("did not report"));
        assert!(lifespan_sentence(&unknown, true).contains("did not report"));
    }

    #[tokio::test]
    async fn reads_the_lifespans_from_keycloak() {
        let kc = KeycloakSim::start("kc-admin", "kc-pass").await.unwrap();
        kc.add_realm("otomi", RealmLifespans::otomi());
        let client = Keycloak::new(
            KeycloakSettings {
                base_url: kc.url(),
                realm: "otomi".into(),
                username: "kc-admin".into(),
                password: "kc-pass".into(),
                ca_cert: None,
            },
            std::time::Duration::from_secs(10),
        )
        .unwrap();
        let s = client.realm_sessions().await.unwrap();
        assert!(lifespan_sentence(&s, false).starts_with(
            "CLI secrets stop working 30 minutes after the user's last web login, and 10 hours after it"
        ));
        assert!(lifespan_sentence(&s, false).contains("lasts 1 minute"));
        kc.shutdown();
    }
}

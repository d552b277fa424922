//! Known issue: team provisioning and its drift (check `teams`, command
//! `provision`, runbook `provisioning`).
//!
//! Every team `<id>` gets, exactly as Otomi makes them (so an installation
//! Otomi provisioned is adopted, never duplicated): Harbor project
//! `team-<id>` with OIDC groups `team-<id>` (developer) and `all-teams-admin`
//! (project admin); system robots `team-<id>-pull` and `team-<id>-push`; and
//! in namespace `team-<id>` the Secrets `harbor-pullsecret` and
//! `harbor-pushsecret` for Harbor's registry host, the pull secret listed on
//! the `default` ServiceAccount (created when missing). Where the
//! installation uses build robots (current Otomi; see `plan::builds_use`),
//! also robot `team-<id>-builds` with the Opaque Secret
//! `harbor-pushsecret-builds`. When any piece drifts, pods fail with
//! ImagePullBackOff.
//!
//! - diagnose: everything is read in one pass (projects and robots paged
//!   once, each Secret kind and the ServiceAccounts listed once, members per
//!   team project), then each robot's credentials from its Secret are tried
//!   once against the token service, with bounded concurrency, never retried.
//! - plan (`plan`): per team, what to create or change; the Secret is the
//!   source of truth for a robot's password.
//! - apply (`apply`): teams in parallel (`--concurrency`), a failed team
//!   does not stop the others; a rerun converges. Beside another writer
//!   (a second run, Otomi's operator) the Secret is written first and a
//!   writer that loses a race takes the password the winner stored.
//! - verify: each Secret this run touched is read again and its
//!   credentials get one token request, so success is only reported when
//!   what is in the cluster now works, whoever wrote it last.

mod apply;
mod cluster;
pub mod model;
mod plan;

use std::collections::BTreeMap;

use anyhow::Result;
use futures::stream::{self, StreamExt};

use self::apply::{ToVerify, Writes};
use self::cluster::ClusterState;
use self::model::RobotKind;
use self::model::{TeamId, ADMIN_TEAM};
use self::plan::{BuildsUse, Credentials, HarborState, ServiceAccountStep, TeamPlan};
use crate::backup::{Backup, BackupItem};
use crate::cli::ProvisionArgs;
use crate::clients::harbor::{Harbor, TokenCheck};
use crate::clients::is_not_configured;
use crate::clients::kube::Kube;
use crate::context::Ctx;
use crate::issues::{fix_options, FindingKind, FixCommand, KnownIssue, Runbook};
use crate::outcome::{incomplete, refused};
use crate::render::Output;
use crate::repair::{BackupSink, Repair, Verification};
use crate::report::{CheckOutcome, Finding, PlanStep, RepairStage};

pub const CHECK: &str = "teams";
pub const RUNBOOK: &str = "provisioning";
const REPAIR: &str = "provision";

pub static ISSUE: KnownIssue = KnownIssue {
    check: CHECK,
    about: "teams whose Harbor project, members, robots, Secrets or ServiceAccount drifted",
    runbook: Runbook {
        id: RUNBOOK,
        summary:
            "teams whose project, robots, pull/push Secrets or ServiceAccount drifted; check teams",
        text: include_str!("../../../runbooks/provisioning.md"),
    },
    kinds: &[
        FindingKind {
            id: "namespace-missing",
            about: "the team's namespace does not exist (no repair: the platform creates it)",
        },
        FindingKind {
            id: "project-missing",
            about: "Harbor has no project for the team",
        },
        FindingKind {
            id: "member-missing",
            about: "the team's group is not a member of its project, with the right role",
        },
        FindingKind {
            id: "robot-missing",
            about: "one of the team's robot accounts (pull, push, builds) does not exist",
        },
        FindingKind {
            id: "robot-disabled",
            about: "a team robot is disabled",
        },
        FindingKind {
            id: "robot-expired",
            about: "a team robot has expired",
        },
        FindingKind {
            id: "robot-permissions",
            about: "a team robot's permissions are not the ones provisioning gives it",
        },
        FindingKind {
            id: "secret-missing",
            about: "the Secret holding a robot's credentials is missing from the team's namespace",
        },
        FindingKind {
            id: "secret-malformed",
            about: "a robot's Secret has the wrong type or key, or unreadable content",
        },
        FindingKind {
            id: "secret-wrong-host",
            about: "a robot's Secret names another registry host",
        },
        FindingKind {
            id: "secret-wrong-user",
            about: "a robot's Secret names another robot",
        },
        FindingKind {
            id: "credentials-rejected",
            about: "Harbor's token service rejects the credentials in a robot's Secret",
        },
        FindingKind {
            id: "serviceaccount-missing",
            about: "the team namespace has no default ServiceAccount",
        },
        FindingKind {
            id: "pull-secret-not-on-serviceaccount",
            about: "the default ServiceAccount does not list the pull Secret",
        },
        FindingKind {
            id: "not-examined",
            about: "the teams' Secrets and ServiceAccounts were not checked: no cluster",
        },
    ],
    diagnose: |ctx, _| Box::pin(diagnose(ctx)),
    // `fix teams` is `provision`, with the same options.
    repair: Some(FixCommand {
        name: CHECK,
        stage: RepairStage::Provisioning,
        repeats: Some("--team"),
        about: "Provision teams: the same as `provision`",
        options: <ProvisionArgs as clap::Args>::augment_args,
        run: |ctx, m| {
            Box::pin(async move {
                let args: ProvisionArgs = fix_options(m)?;
                provision(ctx, &args).await
            })
        },
    }),
};
/// Token requests and member listings at once during a diagnosis.
const DIAGNOSE_CONCURRENCY: usize = 8;

/// Which teams a run is about.
#[derive(Debug, Clone)]
pub enum Selection {
    /// Every namespace `team-<id>` except `team-admin`.
    All,
    Teams(Vec<TeamId>),
}

/// Everything read for a run, once.
pub struct Observation {
    pub harbor: HarborState,
    pub cluster: Option<ClusterState>,
    pub teams: Vec<TeamId>,
    pub credentials: Credentials,
    /// Why the installation uses build robots, when it does.
    pub builds: Option<BuildsUse>,
    /// The robots every team should have.
    pub kinds: Vec<RobotKind>,
}

/// Every team of the installation: namespaces `team-<id>` (Harbor's
/// `team-*` projects without a cluster), except Otomi's admin team.
fn all_teams(harbor: &HarborState, cluster: Option<&ClusterState>) -> Vec<TeamId> {
    let names: Vec<&String> = match cluster {
        Some(c) => c.namespaces.iter().collect(),
        None => harbor.projects.keys().collect(),
    };
    names
        .into_iter()
        .filter_map(|n| TeamId::from_namespace(n))
        .filter(|t| t.id() != ADMIN_TEAM)
        .collect()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The cluster, or None when none is configured (the teams check then
/// judges Harbor alone).
async fn cluster(ctx: &Ctx) -> Result<Option<&Kube>> {
    match ctx.kube().await {
        Ok(k) => Ok(Some(k)),
        Err(e) if is_not_configured(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads what Harbor holds for the teams.
async fn observe_harbor(harbor: &Harbor) -> Result<HarborState> {
    let info = harbor.systeminfo().await?;
    let host = info.registry_host().ok_or_else(|| {
        refused(
            "Harbor's systeminfo has no external_url, so the registry host for the pull \
             Secrets is unknown; set externalURL in the Harbor chart",
        )
    })?;
    let prefix = harbor.robot_prefix().await?.to_string();
    let projects = harbor
        .projects()
        .await?
        .into_iter()
        .map(|p| (p.name.clone(), p))
        .collect();
    let robots = harbor
        .robots()
        .await?
        .into_iter()
        .filter_map(|r| {
            let bare = r.name.strip_prefix(&prefix)?.to_string();
            Some((bare, r))
        })
        .collect();
    Ok(HarborState {
        host,
        prefix,
        projects,
        robots,
        members: BTreeMap::new(),
    })
}

async fn observe(
    ctx: &Ctx,
    selection: &Selection,
    kube: Option<&Kube>,
    concurrency: usize,
    builds_asked: bool,
) -> Result<Observation> {
    let harbor = ctx.harbor().await?;
    let (mut state, cluster) = match kube {
        Some(c) => {
            let (h, k) = tokio::try_join!(observe_harbor(harbor), cluster::observe(c))?;
            (h, Some(k))
        }
        None => (observe_harbor(harbor).await?, None),
    };
    let teams: Vec<TeamId> = match selection {
        Selection::Teams(t) => t.clone(),
        Selection::All => all_teams(&state, cluster.as_ref()),
    };
    let builds = plan::builds_use(&state, cluster.as_ref(), builds_asked);
    let kinds = plan::robot_kinds(builds.as_ref());
    let with_project: Vec<String> = teams
        .iter()
        .map(TeamId::name)
        .filter(|n| state.projects.contains_key(n))
        .collect();
    let members: Vec<(String, Vec<crate::clients::harbor::Member>)> = stream::iter(with_project)
        .map(|p| async move {
            let m = harbor.members(&p).await?;
            Ok::<_, anyhow::Error>((p, m))
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    state.members = members.into_iter().collect();

    let mut credentials = Credentials::new();
    if let Some(c) = &cluster {
        let now = now();
        let to_test: Vec<_> = teams
            .iter()
            .flat_map(|t| {
                plan::credentials_to_test(t, &kinds, &state, c, now)
                    .into_iter()
                    .map(move |(k, auth)| (t.clone(), k, auth))
            })
            .collect();
        let results: Vec<_> = stream::iter(to_test)
            .map(|(t, k, auth)| async move {
                let r = harbor
                    .registry_token(&auth.username, &auth.password, None)
                    .await;
                (t, k, r)
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        for (t, k, r) in results {
            credentials.insert((t, k), r?);
        }
    }
    Ok(Observation {
        harbor: state,
        cluster,
        teams,
        credentials,
        builds,
        kinds,
    })
}

/// `diagnose teams`.
pub async fn diagnose(ctx: &Ctx) -> Result<CheckOutcome> {
    let kube = cluster(ctx).await?;
    let obs = observe(ctx, &Selection::All, kube, DIAGNOSE_CONCURRENCY, false).await?;
    let mut out = CheckOutcome::default();
    out.notes.push(format!(
        "{} team(s); registry host {}; robot prefix {}; {} credential(s) tested",
        obs.teams.len(),
        obs.harbor.host,
        obs.harbor.prefix,
        obs.credentials.len()
    ));
    if let Some(why) = &obs.builds {
        out.notes.push(format!(
            "the installation uses build robots ({}): every team should have robot \
             team-<id>-builds and Secret {}",
            why.describe(),
            RobotKind::Builds.secret_name()
        ));
    }
    let now = now();
    for team in &obs.teams {
        for drift in plan::assess(
            team,
            &obs.kinds,
            &obs.harbor,
            obs.cluster.as_ref(),
            &obs.credentials,
            now,
        ) {
            let (summary, evidence) = drift.describe(team, &obs.harbor);
            let mut f = Finding::new(
                CHECK,
                drift.kind(),
                drift.severity(),
                format!("team {team}"),
                summary,
                RUNBOOK,
            );
            f.evidence = evidence;
            if drift != plan::Drift::NamespaceMissing {
                f = f.repair(team.provision_command());
            }
            out.findings.push(f);
        }
    }
    // Last: what the check could not look at. Without the cluster, the
    // Secrets pods pull and push with (half of what breaks a team) are unseen.
    if obs.cluster.is_none() {
        out.findings.push(Finding::not_examined(
            CHECK,
            "cluster",
            "the teams' Secrets and ServiceAccounts were not checked, because no cluster is configured \
             (teams were taken from Harbor's team-* projects): give a kubeconfig (--kubeconfig, \
             KUBECONFIG) to check them",
            RUNBOOK,
        ));
    }
    Ok(out)
}

/// `provision`: the repair for every `teams` finding.
pub struct ProvisionRepair {
    selection: Selection,
    concurrency: usize,
    duration: i64,
    builds_asked: bool,
    /// What the plan says about build robots, when they are in use.
    builds_note: Option<String>,
    state: Option<HarborState>,
    plans: Vec<TeamPlan>,
    settled: usize,
    to_verify: Vec<ToVerify>,
}

impl ProvisionRepair {
    pub fn new(args: &ProvisionArgs) -> Result<ProvisionRepair> {
        let selection = if args.all {
            Selection::All
        } else {
            let mut ids = Vec::new();
            let mut bad = Vec::new();
            for raw in &args.team {
                match TeamId::parse(raw) {
                    Ok(t) if !ids.contains(&t) => ids.push(t),
                    Ok(_) => {}
                    Err(e) => bad.push(e),
                }
            }
            if !bad.is_empty() {
                return Err(refused(format!("{}; nothing was changed", bad.join("; "))));
            }
            Selection::Teams(ids)
        };
        Ok(ProvisionRepair {
            selection,
            concurrency: usize::from(args.concurrency),
            duration: args.robot_duration.map(i64::from).unwrap_or(-1),
            builds_asked: args.builds,
            builds_note: None,
            state: None,
            plans: Vec::new(),
            settled: 0,
            to_verify: Vec::new(),
        })
    }

    fn changes(&self) -> impl Iterator<Item = &TeamPlan> {
        self.plans.iter().filter(|p| !p.is_empty())
    }
}

impl Repair for ProvisionRepair {
    fn id(&self) -> &'static str {
        REPAIR
    }

    fn command(&self) -> String {
        REPAIR.to_string()
    }

    fn proven_by(&self) -> Option<&'static str> {
        Some(CHECK)
    }

    fn subject(&self) -> String {
        match &self.selection {
            Selection::All => "all teams".into(),
            Selection::Teams(t) if t.len() == 1 => format!("team {}", t[0]),
            Selection::Teams(t) => format!("{} teams", t.len()),
        }
    }

    async fn plan(&mut self, ctx: &Ctx) -> Result<Vec<PlanStep>> {
        let kube = ctx.kube().await.map_err(|e| {
            if is_not_configured(&e) {
                refused(format!(
                    "provisioning writes the teams' Secrets and needs the cluster: {e:#}"
                ))
            } else {
                e
            }
        })?;
        let obs = observe(
            ctx,
            &self.selection,
            Some(kube),
            self.concurrency,
            self.builds_asked,
        )
        .await?;
        let cluster = obs.cluster.expect("observed with a client");
        let missing: Vec<String> = obs
            .teams
            .iter()
            .map(TeamId::name)
            .filter(|n| !cluster.namespaces.contains(n))
            .collect();
        if !missing.is_empty() {
            return Err(refused(format!(
                "namespace(s) {} do not exist; create them first (Otomi creates a team's \
                 namespace) and run again; nothing was changed",
                missing.join(", ")
            )));
        }
        let now = now();
        self.plans = obs
            .teams
            .iter()
            .map(|t| {
                plan::plan_team(
                    t,
                    &obs.kinds,
                    &obs.harbor,
                    &cluster,
                    &obs.credentials,
                    self.duration,
                    now,
                )
            })
            .collect();
        self.settled = self.plans.iter().filter(|p| p.is_empty()).count();
        self.builds_note = obs.builds.as_ref().map(|why| {
            let everyone = all_teams(&obs.harbor, Some(&cluster));
            builds_note(why, &obs.teams, &everyone)
        });
        let steps = self.changes().flat_map(|p| p.steps(&obs.harbor)).collect();
        self.state = Some(obs.harbor);
        Ok(steps)
    }

    fn show_plan(&self, out: &Output, _title: &str, steps: &[PlanStep]) {
        let state = self.state.as_ref().expect("planned");
        let mut rows = Vec::new();
        for p in self.changes() {
            for (i, s) in p.steps(state).into_iter().enumerate() {
                let what = s
                    .target
                    .split_once(": ")
                    .map(|(_, w)| w.to_string())
                    .unwrap_or(s.target.clone());
                rows.push(vec![
                    if i == 0 { p.team.name() } else { String::new() },
                    format!("{} {what}", s.action),
                    s.detail,
                ]);
            }
        }
        out.print_table(
            &format!(
                "Plan: provision {}: {} change(s)",
                self.subject(),
                steps.len()
            ),
            &["team", "change", "detail"],
            rows,
        );
    }

    async fn apply(&mut self, ctx: &Ctx, backups: &mut BackupSink) -> Result<()> {
        let harbor = ctx.harbor().await?;
        let kube = ctx.kube().await?;
        let state = self.state.clone().expect("planned");
        // What the cluster held before, for objects this run replaces.
        let mut items = Vec::new();
        for p in self.changes() {
            for rp in &p.robots {
                if let (true, Some(old)) = (rp.write_secret, &rp.existing_secret) {
                    items.push(kube_item(
                        "Secret",
                        &p.team.name(),
                        rp.kind.secret_name(),
                        old,
                    )?);
                }
            }
            if let ServiceAccountStep::AddPullSecret(sa) = &p.service_account {
                items.push(kube_item("ServiceAccount", &p.team.name(), "default", sa)?);
            }
        }
        if !items.is_empty() {
            backups.write(&Backup::new(
                REPAIR,
                &self.subject(),
                harbor.base_url(),
                items,
            ))?;
        }
        let plans: Vec<TeamPlan> = self.changes().cloned().collect();
        let progress = crate::progress::counter(&ctx.out, plans.len(), "teams");
        let writes = Writes::default();
        let results: Vec<(TeamId, Result<Vec<ToVerify>>)> = stream::iter(plans)
            .map(|p| {
                let (state, progress, writes) = (&state, &progress, &writes);
                async move {
                    let r = apply::apply_team(harbor, kube, state, &p, writes).await;
                    progress.inc(1);
                    (p.team.clone(), r)
                }
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        progress.finish_and_clear();
        let total = results.len();
        let mut failed = Vec::new();
        for (team, r) in results {
            match r {
                Ok(v) => self.to_verify.extend(v),
                Err(e) => failed.push(format!("team {team}: {e:#}")),
            }
        }
        if failed.is_empty() {
            return Ok(());
        }
        failed.sort();
        if !writes.any() {
            return Err(refused(format!(
                "provisioning failed for {} of {total} team(s) before any change; nothing was \
                 changed. Run the same command again once the cause is fixed.\n  {}",
                failed.len(),
                failed.join("\n  ")
            )));
        }
        Err(incomplete(format!(
            "provisioning failed for {} of {total} team(s); the others were provisioned. Run the \
             same command again once the cause is fixed: it continues where this run stopped.\n  {}",
            failed.len(),
            failed.join("\n  ")
        )))
    }

    async fn verify(&mut self, ctx: &Ctx) -> Result<Verification> {
        let harbor = ctx.harbor().await?;
        let kube = ctx.kube().await?;
        let state = self.state.as_ref().expect("planned");
        // The Secrets as they are now, not the passwords this run chose:
        // another writer may have stored its own since, and what counts is
        // that the credentials pods and people use work. One token request
        // per robot: Harbor delays and locks a name after a rejected login.
        let results: Vec<(ToVerify, Result<std::result::Result<TokenCheck, String>>)> =
            stream::iter(self.to_verify.clone())
                .map(|v| async move {
                    let r = async {
                        let now = cluster::read_secret(kube, &v.team.name(), v.kind).await?;
                        match plan::robot_credentials(now.as_ref(), state, &v.team, v.kind) {
                            Ok(auth) => Ok(Ok(harbor
                                .registry_token(&auth.username, &auth.password, None)
                                .await?)),
                            Err(why) => Ok(Err(why)),
                        }
                    }
                    .await;
                    (v, r)
                })
                .buffer_unordered(self.concurrency)
                .collect()
                .await;
        let mut problems = Vec::new();
        for (v, r) in results {
            let secret = format!("{}/{}", v.team.name(), v.kind.secret_name());
            match r? {
                Ok(TokenCheck::Accepted) => {}
                Ok(TokenCheck::Rejected) => problems.push(format!(
                    "Harbor refuses the credentials now in {secret} (robot {})",
                    v.login
                )),
                Err(why) => problems.push(format!("{secret} is not usable now: {why}")),
            }
        }
        if problems.is_empty() {
            Ok(Verification::Verified)
        } else {
            problems.sort();
            Ok(Verification::NotVerified(format!(
                "{}. Another writer (a second provision, Otomi's operator) may have changed \
                 them meanwhile; run `harbor-doctor diagnose teams` in a minute and provision \
                 again if it still reports them",
                problems.join("; ")
            )))
        }
    }

    fn notes(&self) -> Vec<String> {
        let changing = self.plans.len() - self.settled;
        let mut notes = vec![format!(
            "{} team(s): {changing} to provision or repair, {} already as they should be",
            self.plans.len(),
            self.settled
        )];
        notes.extend(self.builds_note.clone());
        notes
    }
}

/// What a provision plan says about build robots: why every team gets
/// one, and when `--builds` turns them on for some teams only, that the
/// others are now reported as lacking theirs.
fn builds_note(why: &BuildsUse, teams: &[TeamId], everyone: &[TeamId]) -> String {
    let what = format!(
        "robot team-<id>-builds and Secret {}",
        RobotKind::Builds.secret_name()
    );
    let mut note = match why {
        BuildsUse::Asked => format!(
            "build robots: the installation has none yet; --builds turns them on for all {} \
             team(s) of this run: each gets {what}",
            teams.len()
        ),
        _ => format!(
            "build robots: the installation uses them ({}), so each of the {} team(s) of this \
             run has {what}",
            why.describe(),
            teams.len()
        ),
    };
    let others = everyone.iter().filter(|t| !teams.contains(t)).count();
    if *why == BuildsUse::Asked && others > 0 {
        note.push_str(&format!(
            "; the installation's {others} other team(s) then lack theirs, which `diagnose \
             teams` reports and `provision --all` repairs"
        ));
    }
    note
}

fn kube_item<T: serde::Serialize>(
    kind: &str,
    namespace: &str,
    name: &str,
    object: &T,
) -> Result<BackupItem> {
    Ok(BackupItem::Kubernetes {
        api_version: "v1".into(),
        kind: kind.into(),
        namespace: Some(namespace.into()),
        name: name.into(),
        object: serde_json::to_value(object)?,
        after: None,
    })
}

/// Runs `provision`.
pub async fn provision(ctx: &Ctx, args: &ProvisionArgs) -> Result<crate::outcome::ExitCode> {
    let mut repair = ProvisionRepair::new(args)?;
    crate::repair::run(ctx, &mut repair).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn teams(ids: &[&str]) -> Vec<TeamId> {
        ids.iter().map(|i| TeamId::parse(i).unwrap()).collect()
    }

    #[test]
    fn the_plan_says_for_how_many_teams_builds_turns_build_robots_on() {
        let all = teams(&["a", "b", "c"]);
        let note = builds_note(&BuildsUse::Asked, &all, &all);
        assert!(
            note.contains("--builds turns them on for all 3 team(s)"),
            "{note}"
        );
        assert!(!note.contains("other team"), "{note}");
        // Some teams only: the others are then reported as lacking theirs.
        let note = builds_note(&BuildsUse::Asked, &teams(&["a"]), &all);
        assert!(
            note.contains("for all 1 team(s)") && note.contains("2 other team(s)"),
            "{note}"
        );
        let note = builds_note(
            &BuildsUse::Robot("team-b-builds".into()),
            &teams(&["a"]),
            &all,
        );
        assert!(
            note.contains("uses them (robot team-b-builds exists)"),
            "{note}"
        );
        assert!(!note.contains("other team"), "{note}");
    }
}

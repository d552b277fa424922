//! From what Harbor and the cluster hold to what is wrong with a team
//! (drifts, which become findings) and what provisioning will do about it
//! (a team plan). Pure functions: every decision about a team is made here,
//! from state read once, so a rerun with nothing to do plans nothing.
//!
//! The team's Secret is the source of truth for a robot's password: a
//! robot that is missing, recreated or whose secret no longer works gets
//! the password from its Secret; only when the Secret is missing or
//! unusable are both regenerated together, the Secret first (see `apply`),
//! so that any other writer reading it sets the robot from the same one.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use k8s_openapi::api::core::v1::ServiceAccount;

use super::cluster::ClusterState;
use super::model::{
    builds_robot_team, describe_scope, read_docker_secret, scope_is_exact, DockerAuth, RobotKind,
    SecretState, TeamId, ALL_TEAMS_ADMIN, ROLE_DEVELOPER, ROLE_PROJECT_ADMIN,
};
use crate::clients::harbor::{Member, Project, Robot, Secret, TokenCheck};
use crate::report::{PlanStep, Severity};

/// What Harbor holds, read once for all teams.
#[derive(Debug, Clone)]
pub struct HarborState {
    /// The registry host the Secrets must name (systeminfo external_url).
    pub host: String,
    pub prefix: String,
    pub projects: BTreeMap<String, Project>,
    /// System-level robots by name without the prefix.
    pub robots: BTreeMap<String, Robot>,
    /// Members of the team projects that exist.
    pub members: BTreeMap<String, Vec<Member>>,
}

impl HarborState {
    pub fn login_name(&self, team: &TeamId, kind: RobotKind) -> String {
        format!("{}{}", self.prefix, team.robot_name(kind))
    }
}

/// Results of the one token request per robot a run makes.
pub type Credentials = BTreeMap<(TeamId, RobotKind), TokenCheck>;

/// The members every team project has.
pub fn wanted_members(team: &TeamId) -> [(String, i64); 2] {
    [
        (team.name(), ROLE_DEVELOPER),
        (ALL_TEAMS_ADMIN.to_string(), ROLE_PROJECT_ADMIN),
    ]
}

/// Harbor's rule for a robot secret chosen by the caller.
pub fn harbor_accepts_secret(secret: &str) -> bool {
    (8..=128).contains(&secret.len())
        && secret.bytes().any(|b| b.is_ascii_lowercase())
        && secret.bytes().any(|b| b.is_ascii_uppercase())
        && secret.bytes().any(|b| b.is_ascii_digit())
}

/// Why an installation uses build robots (current Otomi gives every team
/// one; installations from before it have none, and then none is wanted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildsUse {
    /// A team has a builds robot (its name without the prefix).
    Robot(String),
    /// A team namespace holds a builds Secret (the namespace).
    Secret(String),
    /// `provision --builds` turns them on.
    Asked,
}

impl BuildsUse {
    /// The reason, for notes: "robot team-a-builds exists".
    pub fn describe(&self) -> String {
        match self {
            BuildsUse::Robot(name) => format!("robot {name} exists"),
            BuildsUse::Secret(ns) => {
                format!("Secret {ns}/{} exists", RobotKind::Builds.secret_name())
            }
            BuildsUse::Asked => "--builds asks for them".into(),
        }
    }
}

/// Whether the installation uses build robots: any team has a builds
/// robot or a builds Secret, or the run asks for them. Judged over the
/// whole installation, whichever teams a run is about, so that one team is
/// never told to lack what no team has.
pub fn builds_use(
    harbor: &HarborState,
    cluster: Option<&ClusterState>,
    asked: bool,
) -> Option<BuildsUse> {
    if let Some(name) = harbor
        .robots
        .keys()
        .find(|n| builds_robot_team(n).is_some())
    {
        return Some(BuildsUse::Robot(name.clone()));
    }
    let secret = cluster.and_then(|c| {
        c.secrets
            .keys()
            .find(|(ns, kind)| *kind == RobotKind::Builds && TeamId::from_namespace(ns).is_some())
    });
    if let Some((ns, _)) = secret {
        return Some(BuildsUse::Secret(ns.clone()));
    }
    asked.then_some(BuildsUse::Asked)
}

/// The robots every team of the installation has.
pub fn robot_kinds(builds: Option<&BuildsUse>) -> Vec<RobotKind> {
    let mut kinds = RobotKind::ALWAYS.to_vec();
    if builds.is_some() {
        kinds.push(RobotKind::Builds);
    }
    kinds
}

/// One thing wrong with a team.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    NamespaceMissing,
    ProjectMissing,
    MemberMissing { group: String, role: i64 },
    RobotMissing(RobotKind),
    RobotDisabled(RobotKind),
    RobotExpired { kind: RobotKind, expired_at: i64 },
    RobotScope { kind: RobotKind, found: String },
    SecretMissing(RobotKind),
    SecretMalformed { kind: RobotKind, why: String },
    SecretWrongHost { kind: RobotKind, found: String },
    SecretWrongUser { kind: RobotKind, found: String },
    CredentialsRejected(RobotKind),
    ServiceAccountMissing,
    PullSecretNotOnServiceAccount,
}

impl Drift {
    /// The finding's `kind` (the teams check's `ISSUE.kinds`).
    pub fn kind(&self) -> &'static str {
        match self {
            Drift::NamespaceMissing => "namespace-missing",
            Drift::ProjectMissing => "project-missing",
            Drift::MemberMissing { .. } => "member-missing",
            Drift::RobotMissing(_) => "robot-missing",
            Drift::RobotDisabled(_) => "robot-disabled",
            Drift::RobotExpired { .. } => "robot-expired",
            Drift::RobotScope { .. } => "robot-permissions",
            Drift::SecretMissing(_) => "secret-missing",
            Drift::SecretMalformed { .. } => "secret-malformed",
            Drift::SecretWrongHost { .. } => "secret-wrong-host",
            Drift::SecretWrongUser { .. } => "secret-wrong-user",
            Drift::CredentialsRejected(_) => "credentials-rejected",
            Drift::ServiceAccountMissing => "serviceaccount-missing",
            Drift::PullSecretNotOnServiceAccount => "pull-secret-not-on-serviceaccount",
        }
    }

    pub fn severity(&self) -> Severity {
        match self {
            // Users lose access, but images still pull.
            Drift::MemberMissing { .. } => Severity::Warning,
            _ => Severity::Problem,
        }
    }

    /// A plain sentence about what is wrong and what it breaks, plus evidence.
    pub fn describe(&self, team: &TeamId, harbor: &HarborState) -> (String, Map<String, Value>) {
        let name = team.name();
        let mut ev = Map::new();
        let robot_ev = |ev: &mut Map<String, Value>, kind: RobotKind| {
            ev.insert("robot".into(), json!(harbor.login_name(team, kind)));
        };
        let summary = match self {
            Drift::NamespaceMissing => format!(
                "namespace {name} does not exist; its Secrets cannot be provisioned until it does"
            ),
            Drift::ProjectMissing => {
                ev.insert("project".into(), json!(name));
                format!("Harbor has no project {name}: the team cannot push or pull images")
            }
            Drift::MemberMissing { group, role } => {
                ev.insert("group".into(), json!(group));
                ev.insert("role_id".into(), json!(role));
                format!(
                    "OIDC group {group} is not a member of project {name}; its users cannot reach the project"
                )
            }
            Drift::RobotMissing(kind) => {
                robot_ev(&mut ev, *kind);
                format!(
                    "robot {} is missing: the credentials in {} are refused ({})",
                    harbor.login_name(team, *kind),
                    kind.secret_name(),
                    breaks(*kind)
                )
            }
            Drift::RobotDisabled(kind) => {
                robot_ev(&mut ev, *kind);
                format!(
                    "robot {} is disabled: {}",
                    harbor.login_name(team, *kind),
                    breaks(*kind)
                )
            }
            Drift::RobotExpired { kind, expired_at } => {
                robot_ev(&mut ev, *kind);
                ev.insert("expires_at".into(), json!(expired_at));
                format!(
                    "robot {} expired at {}: {}",
                    harbor.login_name(team, *kind),
                    chrono::DateTime::from_timestamp(*expired_at, 0)
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_else(|| expired_at.to_string()),
                    breaks(*kind)
                )
            }
            Drift::RobotScope { kind, found } => {
                robot_ev(&mut ev, *kind);
                ev.insert("permissions".into(), json!(found));
                ev.insert(
                    "expected".into(),
                    json!(format!(
                        "project {name} [{}]",
                        kind.actions()
                            .iter()
                            .map(|a| format!("repository:{a}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                );
                format!(
                    "robot {} has other permissions than Otomi gives it",
                    harbor.login_name(team, *kind)
                )
            }
            Drift::SecretMissing(kind) => {
                ev.insert(
                    "secret".into(),
                    json!(format!("{name}/{}", kind.secret_name())),
                );
                format!(
                    "Secret {name}/{} is missing: {}",
                    kind.secret_name(),
                    breaks(*kind)
                )
            }
            Drift::SecretMalformed { kind, why } => {
                ev.insert(
                    "secret".into(),
                    json!(format!("{name}/{}", kind.secret_name())),
                );
                ev.insert("problem".into(), json!(why));
                format!(
                    "Secret {name}/{} is unusable ({why}): {}",
                    kind.secret_name(),
                    breaks(*kind)
                )
            }
            Drift::SecretWrongHost { kind, found } => {
                ev.insert(
                    "secret".into(),
                    json!(format!("{name}/{}", kind.secret_name())),
                );
                ev.insert("registry_host".into(), json!(found));
                ev.insert("expected_host".into(), json!(harbor.host));
                format!(
                    "Secret {name}/{} is for registry {found}, not Harbor's {}: {}",
                    kind.secret_name(),
                    harbor.host,
                    breaks(*kind)
                )
            }
            Drift::SecretWrongUser { kind, found } => {
                ev.insert(
                    "secret".into(),
                    json!(format!("{name}/{}", kind.secret_name())),
                );
                ev.insert("username".into(), json!(found));
                robot_ev(&mut ev, *kind);
                format!(
                    "Secret {name}/{} logs in as {found}, not as robot {}: {}",
                    kind.secret_name(),
                    harbor.login_name(team, *kind),
                    breaks(*kind)
                )
            }
            Drift::CredentialsRejected(kind) => {
                robot_ev(&mut ev, *kind);
                ev.insert(
                    "secret".into(),
                    json!(format!("{name}/{}", kind.secret_name())),
                );
                format!(
                    "Harbor refuses the credentials in {name}/{} (the robot's secret was changed in \
                     Harbor but not in the cluster): {}",
                    kind.secret_name(),
                    breaks(*kind)
                )
            }
            Drift::ServiceAccountMissing => {
                ev.insert("service_account".into(), json!(format!("{name}/default")));
                format!(
                    "namespace {name} has no default ServiceAccount: Kubernetes' ServiceAccount \
                     controller makes one in every namespace, so it is not running (see \
                     kube-controller-manager) or someone deleted this one; pods that name no \
                     ServiceAccount are refused, and none carries the pull secret"
                )
            }
            Drift::PullSecretNotOnServiceAccount => {
                ev.insert("service_account".into(), json!(format!("{name}/default")));
                format!(
                    "ServiceAccount {name}/default does not list harbor-pullsecret in \
                     imagePullSecrets: pods without their own pull secret get ImagePullBackOff"
                )
            }
        };
        (summary, ev)
    }
}

fn breaks(kind: RobotKind) -> &'static str {
    match kind {
        RobotKind::Pull => "the team's pods fail with ImagePullBackOff",
        RobotKind::Push => "pushes with harbor-pushsecret (and docker-login) fail",
        RobotKind::Builds => "the team's build pipelines cannot push the images they build",
    }
}

/// The state of one team's robot and Secret, derived once.
struct RobotView<'a> {
    robot: Option<&'a Robot>,
    secret: SecretState,
    existing: Option<&'a k8s_openapi::api::core::v1::Secret>,
}

fn robot_view<'a>(
    team: &TeamId,
    kind: RobotKind,
    harbor: &'a HarborState,
    cluster: Option<&'a ClusterState>,
) -> RobotView<'a> {
    let existing = cluster.and_then(|c| c.secrets.get(&(team.name(), kind)));
    let secret = match existing {
        None => SecretState::Missing,
        Some(s) => read_docker_secret(kind, s, &harbor.host),
    };
    RobotView {
        robot: harbor.robots.get(&team.robot_name(kind)),
        secret,
        existing,
    }
}

/// The credentials worth one token request: an enabled, unexpired robot
/// whose Secret logs in as that robot. Anything else is already known to
/// fail, and a failed login costs Harbor 1.5 s.
pub fn credentials_to_test(
    team: &TeamId,
    kinds: &[RobotKind],
    harbor: &HarborState,
    cluster: &ClusterState,
    now: i64,
) -> Vec<(RobotKind, DockerAuth)> {
    kinds
        .iter()
        .copied()
        .filter_map(|kind| {
            let v = robot_view(team, kind, harbor, Some(cluster));
            let robot = v.robot?;
            if robot.disable || robot.is_expired(now) {
                return None;
            }
            match v.secret {
                SecretState::Valid { auth, .. }
                    if auth.username == harbor.login_name(team, kind) =>
                {
                    Some((kind, auth))
                }
                _ => None,
            }
        })
        .collect()
}

/// Everything wrong with a team, for the robots it should have (`kinds`).
/// Without a cluster only Harbor is judged.
pub fn assess(
    team: &TeamId,
    kinds: &[RobotKind],
    harbor: &HarborState,
    cluster: Option<&ClusterState>,
    credentials: &Credentials,
    now: i64,
) -> Vec<Drift> {
    let name = team.name();
    let mut drifts = Vec::new();
    if let Some(c) = cluster {
        if !c.namespaces.contains(&name) {
            drifts.push(Drift::NamespaceMissing);
        }
    }
    match harbor.members.get(&name) {
        _ if !harbor.projects.contains_key(&name) => drifts.push(Drift::ProjectMissing),
        Some(members) => {
            for (group, role) in wanted_members(team) {
                let present = members
                    .iter()
                    .any(|m| m.entity_type == "g" && m.entity_name == group);
                if !present {
                    drifts.push(Drift::MemberMissing { group, role });
                }
            }
        }
        None => {}
    }
    for &kind in kinds {
        let v = robot_view(team, kind, harbor, cluster);
        match v.robot {
            None => drifts.push(Drift::RobotMissing(kind)),
            Some(r) => {
                if r.is_expired(now) {
                    drifts.push(Drift::RobotExpired {
                        kind,
                        expired_at: r.expires_at,
                    });
                } else if r.disable {
                    drifts.push(Drift::RobotDisabled(kind));
                }
                if !scope_is_exact(r, kind, &name) {
                    drifts.push(Drift::RobotScope {
                        kind,
                        found: describe_scope(r),
                    });
                }
            }
        }
        if !namespace_exists(cluster, &name) {
            // No cluster to judge, or NamespaceMissing says it all.
            continue;
        }
        match &v.secret {
            SecretState::Missing => drifts.push(Drift::SecretMissing(kind)),
            SecretState::Malformed(why) => drifts.push(Drift::SecretMalformed {
                kind,
                why: why.clone(),
            }),
            SecretState::Valid {
                auth, misshapen, ..
            } => {
                if let Some(why) = misshapen {
                    drifts.push(Drift::SecretMalformed {
                        kind,
                        why: why.clone(),
                    });
                }
                if auth.host != harbor.host {
                    drifts.push(Drift::SecretWrongHost {
                        kind,
                        found: auth.host.clone(),
                    });
                }
                if auth.username != harbor.login_name(team, kind) {
                    drifts.push(Drift::SecretWrongUser {
                        kind,
                        found: auth.username.clone(),
                    });
                } else if credentials.get(&(team.clone(), kind)) == Some(&TokenCheck::Rejected) {
                    drifts.push(Drift::CredentialsRejected(kind));
                }
            }
        }
    }
    if let Some(c) = cluster {
        if c.namespaces.contains(&name) {
            match c.pull_secrets_of(&name) {
                None => drifts.push(Drift::ServiceAccountMissing),
                Some(list) if !list.iter().any(|n| n == RobotKind::Pull.secret_name()) => {
                    drifts.push(Drift::PullSecretNotOnServiceAccount)
                }
                Some(_) => {}
            }
        }
    }
    drifts
}

fn namespace_exists(cluster: Option<&ClusterState>, name: &str) -> bool {
    cluster.is_some_and(|c| c.namespaces.contains(name))
}

/// What happens to a robot account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RobotStep {
    Keep,
    Create,
    /// Expired: delete and create again.
    Recreate {
        id: i64,
    },
    /// Enable it and/or give it exactly its permissions.
    Update {
        id: i64,
        why: String,
    },
}

/// Where the robot's password comes from after this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordStep {
    /// It already works: nothing to do.
    Keep,
    /// Set the robot's secret to the password in the Secret.
    FromSecret(Secret),
    /// A new password made here: written to the Secret first, then given
    /// to the robot (on creation, or set on the existing one). Never one
    /// Harbor regenerates: another writer may have stored one meanwhile.
    Generate,
}

#[derive(Debug, Clone)]
pub struct RobotPlan {
    pub kind: RobotKind,
    pub robot: RobotStep,
    pub password: PasswordStep,
    /// Rewrite the Secret (wrong host or user, or a new password).
    pub write_secret: bool,
    /// The Secret as read, to replace it only if unchanged since.
    pub existing_secret: Option<k8s_openapi::api::core::v1::Secret>,
    /// The password in the Secret, when it can be the robot's.
    pub current_password: Option<Secret>,
}

impl RobotPlan {
    pub fn is_noop(&self) -> bool {
        self.robot == RobotStep::Keep && self.password == PasswordStep::Keep && !self.write_secret
    }
}

/// What happens to the namespace's `default` ServiceAccount.
#[derive(Debug, Clone)]
pub enum ServiceAccountStep {
    Keep,
    /// Missing: create it with the pull secret (a 409 from a controller
    /// that made it meanwhile counts as made; the pull secret is then added).
    Create,
    /// Add the pull secret to it, as read (its resourceVersion).
    AddPullSecret(Box<ServiceAccount>),
}

/// Everything provisioning will do for one team.
#[derive(Debug, Clone)]
pub struct TeamPlan {
    pub team: TeamId,
    pub create_project: bool,
    pub add_members: Vec<(String, i64)>,
    pub robots: Vec<RobotPlan>,
    pub service_account: ServiceAccountStep,
    /// Robot duration for new robots (days, -1 never).
    pub duration: i64,
}

impl TeamPlan {
    pub fn is_empty(&self) -> bool {
        !self.create_project
            && self.add_members.is_empty()
            && self.robots.iter().all(RobotPlan::is_noop)
            && matches!(self.service_account, ServiceAccountStep::Keep)
    }

    /// The plan as steps for people and for `-o json`. Never a secret.
    pub fn steps(&self, harbor: &HarborState) -> Vec<PlanStep> {
        let t = &self.team;
        let name = t.name();
        let mut steps = Vec::new();
        let target = |what: String| format!("team {}: {what}", t.id());
        if self.create_project {
            steps.push(PlanStep::new(
                "create",
                target(format!("project {name}")),
                "private Harbor project",
            ));
        }
        for (group, role) in &self.add_members {
            steps.push(PlanStep::new(
                "add",
                target(format!("member {group}")),
                format!(
                    "OIDC group {group} as {}",
                    if *role == ROLE_PROJECT_ADMIN {
                        "project admin (role 1)"
                    } else {
                        "developer (role 2)"
                    }
                ),
            ));
        }
        for rp in &self.robots {
            let login = harbor.login_name(t, rp.kind);
            let duration = if self.duration == -1 {
                "never expires".to_string()
            } else {
                format!("expires in {} days", self.duration)
            };
            match &rp.robot {
                RobotStep::Keep => {}
                RobotStep::Create => steps.push(PlanStep::new(
                    "create",
                    target(format!("robot {login}")),
                    format!(
                        "system robot, repository {} on {name}, {duration}",
                        rp.kind.actions().join("+")
                    ),
                )),
                RobotStep::Recreate { id } => steps.push(PlanStep::new(
                    "recreate",
                    target(format!("robot {login}")),
                    format!("delete expired robot id {id}, create it again ({duration})"),
                )),
                RobotStep::Update { id, why } => steps.push(PlanStep::new(
                    "update",
                    target(format!("robot {login}")),
                    format!("robot id {id}: {why}"),
                )),
            }
            match &rp.password {
                PasswordStep::Keep => {}
                PasswordStep::FromSecret(_) => steps.push(PlanStep::new(
                    "set",
                    target(format!("robot {login} secret")),
                    format!("to the password in {name}/{}", rp.kind.secret_name()),
                )),
                // A robot created now is created with the new password.
                PasswordStep::Generate
                    if matches!(rp.robot, RobotStep::Create | RobotStep::Recreate { .. }) => {}
                PasswordStep::Generate => steps.push(PlanStep::new(
                    "regenerate",
                    target(format!("robot {login} secret")),
                    format!(
                        "new password, written to {name}/{} first, then set on the robot; whatever else \
                         logs in as {login} with the old one (a copy of that Secret elsewhere, a CI \
                         variable, a docker config) is refused from then on",
                        rp.kind.secret_name()
                    ),
                )),
            }
            if rp.write_secret {
                steps.push(PlanStep::new(
                    if rp.existing_secret.is_some() {
                        "replace"
                    } else {
                        "create"
                    },
                    target(format!("secret {name}/{}", rp.kind.secret_name())),
                    format!(
                        "{} ({}) for {} as {login}, with {}",
                        rp.kind.secret_type(),
                        rp.kind.secret_key(),
                        harbor.host,
                        match rp.password {
                            PasswordStep::Generate => "a new password",
                            _ => "the password it holds now",
                        }
                    ),
                ));
            }
        }
        match &self.service_account {
            ServiceAccountStep::Keep => {}
            ServiceAccountStep::Create => steps.push(PlanStep::new(
                "create",
                target(format!("serviceaccount {name}/default")),
                "with harbor-pullsecret in imagePullSecrets (the ServiceAccount controller did \
                 not make it)",
            )),
            ServiceAccountStep::AddPullSecret(_) => steps.push(PlanStep::new(
                "patch",
                target(format!("serviceaccount {name}/default")),
                "add harbor-pullsecret to imagePullSecrets",
            )),
        }
        steps
    }
}

/// The credentials a robot's Secret holds for it, or why it holds none
/// (a reason safe to show): read again after another writer won a race,
/// and by verification.
pub fn robot_credentials(
    secret: Option<&k8s_openapi::api::core::v1::Secret>,
    harbor: &HarborState,
    team: &TeamId,
    kind: RobotKind,
) -> Result<DockerAuth, String> {
    let Some(secret) = secret else {
        return Err("it does not exist".into());
    };
    match read_docker_secret(kind, secret, &harbor.host) {
        SecretState::Missing => Err("it does not exist".into()),
        SecretState::Malformed(why) => Err(why),
        SecretState::Valid {
            misshapen: Some(why),
            ..
        } => Err(why),
        SecretState::Valid { auth, .. } if auth.host != harbor.host => Err(format!(
            "it is for registry {}, not {}",
            auth.host, harbor.host
        )),
        SecretState::Valid { auth, .. } if auth.username != harbor.login_name(team, kind) => {
            Err(format!("it logs in as {}", auth.username))
        }
        SecretState::Valid { other_hosts, .. } if !other_hosts.is_empty() => {
            Err(format!("it also names {}", other_hosts.join(", ")))
        }
        SecretState::Valid { auth, .. } => Ok(auth),
    }
}

/// What to do with a Secret that changed since it was read (a create or
/// replace answered 409): another writer stored it.
#[derive(Debug, Clone, PartialEq)]
pub enum SecretDecision {
    /// It holds usable credentials for the robot: take its password and
    /// write nothing, so both writers set the robot from the same Secret.
    Adopt(Secret),
    /// It still needs writing: replace it as read now (None: create it).
    Write(Option<Box<k8s_openapi::api::core::v1::Secret>>),
}

pub fn redecide_secret(
    reread: Option<k8s_openapi::api::core::v1::Secret>,
    harbor: &HarborState,
    team: &TeamId,
    kind: RobotKind,
) -> SecretDecision {
    match robot_credentials(reread.as_ref(), harbor, team, kind) {
        Ok(auth) if harbor_accepts_secret(auth.password.expose()) => {
            SecretDecision::Adopt(auth.password)
        }
        _ => SecretDecision::Write(reread.map(Box::new)),
    }
}

/// Decides what provisioning does for a team (whose namespace exists),
/// for the robots it should have (`kinds`).
pub fn plan_team(
    team: &TeamId,
    kinds: &[RobotKind],
    harbor: &HarborState,
    cluster: &ClusterState,
    credentials: &Credentials,
    duration: i64,
    now: i64,
) -> TeamPlan {
    let name = team.name();
    let drifts = assess(team, kinds, harbor, Some(cluster), credentials, now);
    let mut plan = TeamPlan {
        team: team.clone(),
        create_project: drifts.contains(&Drift::ProjectMissing),
        add_members: Vec::new(),
        robots: Vec::new(),
        service_account: ServiceAccountStep::Keep,
        duration,
    };
    plan.add_members = if plan.create_project {
        wanted_members(team).to_vec()
    } else {
        drifts
            .iter()
            .filter_map(|d| match d {
                Drift::MemberMissing { group, role } => Some((group.clone(), *role)),
                _ => None,
            })
            .collect()
    };
    for &kind in kinds {
        let v = robot_view(team, kind, harbor, Some(cluster));
        // The Secret's password, when it can become the robot's.
        let reusable = match &v.secret {
            SecretState::Valid { auth, .. } if harbor_accepts_secret(auth.password.expose()) => {
                Some(auth.password.clone())
            }
            _ => None,
        };
        let secret_fixes_needed = match &v.secret {
            SecretState::Valid {
                auth,
                other_hosts,
                misshapen,
            } => {
                misshapen.is_some()
                    || auth.host != harbor.host
                    || auth.username != harbor.login_name(team, kind)
                    || !other_hosts.is_empty()
            }
            _ => true,
        };
        let from_secret_or_generate = || match &reusable {
            Some(p) => PasswordStep::FromSecret(p.clone()),
            None => PasswordStep::Generate,
        };
        let (robot, password) = match v.robot {
            None => (RobotStep::Create, from_secret_or_generate()),
            Some(r) if r.is_expired(now) => {
                (RobotStep::Recreate { id: r.id }, from_secret_or_generate())
            }
            Some(r) => {
                let mut why = Vec::new();
                if r.disable {
                    why.push("enable it".to_string());
                }
                if !scope_is_exact(r, kind, &name) {
                    why.push(format!(
                        "set its permissions to repository {} on {name}",
                        kind.actions().join("+")
                    ));
                }
                let robot = if why.is_empty() {
                    RobotStep::Keep
                } else {
                    RobotStep::Update {
                        id: r.id,
                        why: why.join(", "),
                    }
                };
                let tested = credentials.get(&(team.clone(), kind));
                let password = match (&reusable, tested) {
                    (Some(_), Some(TokenCheck::Accepted)) => PasswordStep::Keep,
                    // Untested because disabled or logging in as another
                    // user: the Secret's password is set to be sure.
                    (Some(p), _) => PasswordStep::FromSecret(p.clone()),
                    (None, _) => PasswordStep::Generate,
                };
                (robot, password)
            }
        };
        let write_secret = password == PasswordStep::Generate || secret_fixes_needed;
        plan.robots.push(RobotPlan {
            kind,
            robot,
            password,
            write_secret,
            existing_secret: v.existing.cloned(),
            current_password: reusable,
        });
    }
    if drifts.contains(&Drift::ServiceAccountMissing) {
        plan.service_account = ServiceAccountStep::Create;
    } else if drifts.contains(&Drift::PullSecretNotOnServiceAccount) {
        if let Some(sa) = cluster.service_accounts.get(&name) {
            plan.service_account = ServiceAccountStep::AddPullSecret(Box::new(sa.clone()));
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::super::model::docker_config_json;
    use super::*;
    use crate::clients::harbor::RobotPermission;
    use k8s_openapi::api::core::v1::{LocalObjectReference, Secret as KubeSecret, ServiceAccount};
    use k8s_openapi::ByteString;
    use kube::api::ObjectMeta;

    const HOST: &str = "harbor.example.com";
    /// The robots of an installation from before build robots.
    const OLD: &[RobotKind] = &RobotKind::ALWAYS;
    /// The robots of one that uses them.
    const CURRENT: &[RobotKind] = &RobotKind::ALL;
    const PASSWORD: &str = "Secret1234Abcd";

    fn team() -> TeamId {
        TeamId::parse("a").unwrap()
    }

    fn robot(kind: RobotKind, id: i64) -> Robot {
        Robot {
            id,
            name: format!("otomi-team-a-{}", kind.suffix()),
            description: String::new(),
            level: "system".into(),
            duration: Some(-1),
            disable: false,
            expires_at: -1,
            permissions: kind.permissions("team-a"),
        }
    }

    fn healthy_harbor() -> HarborState {
        let mut robots = BTreeMap::new();
        robots.insert("team-a-pull".into(), robot(RobotKind::Pull, 10));
        robots.insert("team-a-push".into(), robot(RobotKind::Push, 11));
        let project: Project =
            serde_json::from_value(json!({"project_id": 5, "name": "team-a"})).unwrap();
        let members: Vec<Member> = serde_json::from_value(json!([
            {"id": 1, "entity_name": "team-a", "entity_type": "g", "role_id": 2},
            {"id": 2, "entity_name": "all-teams-admin", "entity_type": "g", "role_id": 1}
        ]))
        .unwrap();
        HarborState {
            host: HOST.into(),
            prefix: "otomi-".into(),
            projects: BTreeMap::from([("team-a".to_string(), project)]),
            robots,
            members: BTreeMap::from([("team-a".to_string(), members)]),
        }
    }

    fn secret(kind: RobotKind, host: &str, user: &str, password: &str) -> KubeSecret {
        KubeSecret {
            metadata: ObjectMeta {
                name: Some(kind.secret_name().into()),
                namespace: Some("team-a".into()),
                ..Default::default()
            },
            type_: Some(kind.secret_type().into()),
            data: Some(BTreeMap::from([(
                kind.secret_key().to_string(),
                ByteString(docker_config_json(kind, host, user, &Secret::new(password))),
            )])),
            ..Default::default()
        }
    }

    fn healthy_cluster() -> ClusterState {
        let mut c = ClusterState::default();
        c.namespaces.insert("team-a".into());
        for kind in RobotKind::ALWAYS {
            c.secrets.insert(
                ("team-a".into(), kind),
                secret(
                    kind,
                    HOST,
                    &format!("otomi-team-a-{}", kind.suffix()),
                    PASSWORD,
                ),
            );
        }
        c.service_accounts.insert(
            "team-a".into(),
            ServiceAccount {
                metadata: ObjectMeta {
                    name: Some("default".into()),
                    namespace: Some("team-a".into()),
                    ..Default::default()
                },
                image_pull_secrets: Some(vec![LocalObjectReference {
                    name: "harbor-pullsecret".into(),
                }]),
                ..Default::default()
            },
        );
        c
    }

    fn accepted() -> Credentials {
        RobotKind::ALL
            .into_iter()
            .map(|k| ((team(), k), TokenCheck::Accepted))
            .collect()
    }

    #[test]
    fn a_healthy_team_has_no_drift_and_an_empty_plan() {
        let (h, c) = (healthy_harbor(), healthy_cluster());
        assert_eq!(assess(&team(), OLD, &h, Some(&c), &accepted(), 0), vec![]);
        assert!(plan_team(&team(), OLD, &h, &c, &accepted(), -1, 0).is_empty());
        assert_eq!(credentials_to_test(&team(), OLD, &h, &c, 0).len(), 2);
    }

    #[test]
    fn a_rotated_secret_is_set_back_from_the_cluster() {
        let (h, c) = (healthy_harbor(), healthy_cluster());
        let mut creds = accepted();
        creds.insert((team(), RobotKind::Push), TokenCheck::Rejected);
        assert_eq!(
            assess(&team(), OLD, &h, Some(&c), &creds, 0),
            vec![Drift::CredentialsRejected(RobotKind::Push)]
        );
        let plan = plan_team(&team(), OLD, &h, &c, &creds, -1, 0);
        let push = &plan.robots[1];
        assert_eq!(push.robot, RobotStep::Keep);
        assert_eq!(
            push.password,
            PasswordStep::FromSecret(Secret::new(PASSWORD))
        );
        assert!(!push.write_secret);
        assert!(plan.robots[0].is_noop());
    }

    #[test]
    fn a_missing_robot_is_created_with_the_secrets_password() {
        let (mut h, c) = (healthy_harbor(), healthy_cluster());
        h.robots.remove("team-a-pull");
        let plan = plan_team(&team(), OLD, &h, &c, &accepted(), -1, 0);
        assert_eq!(plan.robots[0].robot, RobotStep::Create);
        assert_eq!(
            plan.robots[0].password,
            PasswordStep::FromSecret(Secret::new(PASSWORD))
        );
        assert!(!plan.robots[0].write_secret);
    }

    #[test]
    fn a_missing_secret_regenerates_both_and_a_wrong_host_is_rewritten() {
        let (h, mut c) = (healthy_harbor(), healthy_cluster());
        c.secrets.remove(&("team-a".to_string(), RobotKind::Pull));
        c.secrets.insert(
            ("team-a".into(), RobotKind::Push),
            secret(
                RobotKind::Push,
                "old.example.com",
                "otomi-team-a-push",
                PASSWORD,
            ),
        );
        let drifts = assess(&team(), OLD, &h, Some(&c), &accepted(), 0);
        assert!(drifts.contains(&Drift::SecretMissing(RobotKind::Pull)));
        assert!(drifts.contains(&Drift::SecretWrongHost {
            kind: RobotKind::Push,
            found: "old.example.com".into()
        }));
        let plan = plan_team(&team(), OLD, &h, &c, &accepted(), -1, 0);
        assert_eq!(plan.robots[0].password, PasswordStep::Generate);
        assert!(plan.robots[0].write_secret);
        assert_eq!(plan.robots[1].password, PasswordStep::Keep);
        assert!(plan.robots[1].write_secret);
    }

    #[test]
    fn disabled_expired_and_widened_robots_are_repaired() {
        let (mut h, c) = (healthy_harbor(), healthy_cluster());
        h.robots.get_mut("team-a-pull").unwrap().disable = true;
        h.robots.get_mut("team-a-push").unwrap().expires_at = 100;
        let drifts = assess(&team(), OLD, &h, Some(&c), &Credentials::new(), 200);
        assert!(drifts.contains(&Drift::RobotDisabled(RobotKind::Pull)));
        assert!(drifts.contains(&Drift::RobotExpired {
            kind: RobotKind::Push,
            expired_at: 100
        }));
        let plan = plan_team(&team(), OLD, &h, &c, &Credentials::new(), -1, 200);
        assert!(matches!(plan.robots[0].robot, RobotStep::Update { .. }));
        assert_eq!(plan.robots[1].robot, RobotStep::Recreate { id: 11 });

        let (mut h, c) = (healthy_harbor(), healthy_cluster());
        h.robots.get_mut("team-a-pull").unwrap().permissions =
            RobotKind::Push.permissions("team-a");
        let drifts = assess(&team(), OLD, &h, Some(&c), &accepted(), 0);
        assert!(matches!(
            drifts[0],
            Drift::RobotScope {
                kind: RobotKind::Pull,
                ..
            }
        ));
        let plan = plan_team(&team(), OLD, &h, &c, &accepted(), -1, 0);
        assert!(matches!(plan.robots[0].robot, RobotStep::Update { .. }));
        assert_eq!(plan.robots[0].password, PasswordStep::Keep);

        let mut other = robot(RobotKind::Pull, 1);
        other.permissions = vec![RobotPermission {
            kind: "project".into(),
            namespace: "team-b".into(),
            access: RobotKind::Pull.permissions("team-b")[0].access.clone(),
        }];
        assert!(!scope_is_exact(&other, RobotKind::Pull, "team-a"));
    }

    #[test]
    fn a_secret_another_writer_stored_is_adopted_only_when_usable() {
        let h = healthy_harbor();
        let pull = RobotKind::Pull;
        let good = secret(pull, HOST, "otomi-team-a-pull", "Other1Writer");
        assert_eq!(
            redecide_secret(Some(good), &h, &team(), pull),
            SecretDecision::Adopt(Secret::new("Other1Writer"))
        );
        // Still wrong, or a password Harbor would refuse: write it again,
        // as read now; gone meanwhile: create it.
        for bad in [
            secret(pull, "old.example.com", "otomi-team-a-pull", PASSWORD),
            secret(pull, HOST, "someone-else", PASSWORD),
            secret(pull, HOST, "otomi-team-a-pull", "short"),
        ] {
            assert_eq!(
                redecide_secret(Some(bad.clone()), &h, &team(), pull),
                SecretDecision::Write(Some(Box::new(bad)))
            );
        }
        assert_eq!(
            redecide_secret(None, &h, &team(), pull),
            SecretDecision::Write(None)
        );
        let why = robot_credentials(None, &h, &team(), pull).unwrap_err();
        assert!(why.contains("does not exist"), "{why}");
    }

    #[test]
    fn a_missing_secret_beside_an_existing_robot_gets_a_new_password_set_on_it() {
        let (h, mut c) = (healthy_harbor(), healthy_cluster());
        c.secrets.remove(&("team-a".to_string(), RobotKind::Push));
        let plan = plan_team(&team(), OLD, &h, &c, &accepted(), -1, 0);
        let push = &plan.robots[1];
        assert_eq!(push.robot, RobotStep::Keep);
        assert_eq!(push.password, PasswordStep::Generate);
        assert!(push.write_secret && push.existing_secret.is_none());
        let steps = plan.steps(&h);
        let regenerate = steps.iter().find(|s| s.action == "regenerate").unwrap();
        assert!(regenerate.detail.contains("first"), "{regenerate:?}");
    }

    #[test]
    fn a_new_team_gets_everything() {
        let h = HarborState {
            projects: BTreeMap::new(),
            robots: BTreeMap::new(),
            members: BTreeMap::new(),
            ..healthy_harbor()
        };
        let mut c = ClusterState::default();
        c.namespaces.insert("team-a".into());
        c.service_accounts
            .insert("team-a".into(), ServiceAccount::default());
        let plan = plan_team(&team(), OLD, &h, &c, &Credentials::new(), 30, 0);
        assert!(plan.create_project);
        assert_eq!(plan.add_members.len(), 2);
        assert!(plan.robots.iter().all(|r| r.robot == RobotStep::Create
            && r.password == PasswordStep::Generate
            && r.write_secret));
        assert!(matches!(
            plan.service_account,
            ServiceAccountStep::AddPullSecret(_)
        ));
        let steps = plan.steps(&h);
        assert_eq!(steps.len(), 1 + 2 + 2 * 2 + 1, "{steps:#?}");
        assert!(steps.iter().all(|s| !s.detail.contains(PASSWORD)));
    }

    /// The healthy team of an installation that uses build robots.
    fn with_builds(mut h: HarborState, mut c: ClusterState) -> (HarborState, ClusterState) {
        h.robots
            .insert("team-a-builds".into(), robot(RobotKind::Builds, 12));
        c.secrets.insert(
            ("team-a".into(), RobotKind::Builds),
            secret(RobotKind::Builds, HOST, "otomi-team-a-builds", PASSWORD),
        );
        (h, c)
    }

    #[test]
    fn build_robots_are_used_when_any_team_has_one_or_they_are_asked_for() {
        let (h, c) = (healthy_harbor(), healthy_cluster());
        assert_eq!(builds_use(&h, Some(&c), false), None);
        assert_eq!(robot_kinds(None), OLD);
        assert_eq!(builds_use(&h, Some(&c), true), Some(BuildsUse::Asked));

        // Another team's builds robot, whatever teams a run is about.
        let mut other = h.clone();
        other
            .robots
            .insert("team-b-builds".into(), robot(RobotKind::Builds, 20));
        let why = builds_use(&other, None, false);
        assert_eq!(why, Some(BuildsUse::Robot("team-b-builds".into())));
        assert_eq!(robot_kinds(why.as_ref()), CURRENT);

        // Or only a builds Secret in a team namespace.
        let mut secret_only = c.clone();
        secret_only.secrets.insert(
            ("team-c".into(), RobotKind::Builds),
            secret(RobotKind::Builds, HOST, "otomi-team-c-builds", PASSWORD),
        );
        assert_eq!(
            builds_use(&h, Some(&secret_only), false),
            Some(BuildsUse::Secret("team-c".into()))
        );
        // A robot or Secret of that name outside Otomi's naming is not one.
        let mut unrelated = c.clone();
        unrelated.secrets.insert(
            ("ci".into(), RobotKind::Builds),
            secret(RobotKind::Builds, HOST, "x", PASSWORD),
        );
        let mut odd = h.clone();
        odd.robots
            .insert("builds".into(), robot(RobotKind::Builds, 21));
        assert_eq!(builds_use(&odd, Some(&unrelated), false), None);
    }

    #[test]
    fn a_healthy_team_with_its_builds_robot_plans_nothing() {
        let (h, c) = with_builds(healthy_harbor(), healthy_cluster());
        assert_eq!(
            assess(&team(), CURRENT, &h, Some(&c), &accepted(), 0),
            vec![]
        );
        assert!(plan_team(&team(), CURRENT, &h, &c, &accepted(), -1, 0).is_empty());
        assert_eq!(credentials_to_test(&team(), CURRENT, &h, &c, 0).len(), 3);
        // Where build robots are not used, one that exists is left alone.
        assert!(plan_team(&team(), OLD, &h, &c, &accepted(), -1, 0).is_empty());
    }

    #[test]
    fn a_team_without_its_builds_robot_and_secret_gets_both() {
        let (h, c) = (healthy_harbor(), healthy_cluster());
        assert_eq!(
            assess(&team(), CURRENT, &h, Some(&c), &accepted(), 0),
            vec![
                Drift::RobotMissing(RobotKind::Builds),
                Drift::SecretMissing(RobotKind::Builds)
            ]
        );
        let plan = plan_team(&team(), CURRENT, &h, &c, &accepted(), -1, 0);
        assert!(plan.robots[0].is_noop() && plan.robots[1].is_noop());
        let builds = &plan.robots[2];
        assert_eq!(builds.kind, RobotKind::Builds);
        assert_eq!(builds.robot, RobotStep::Create);
        assert_eq!(builds.password, PasswordStep::Generate);
        assert!(builds.write_secret && builds.existing_secret.is_none());
        let steps = plan.steps(&h);
        let targets: Vec<&str> = steps.iter().map(|s| s.target.as_str()).collect();
        assert_eq!(
            targets,
            [
                "team a: robot otomi-team-a-builds",
                "team a: secret team-a/harbor-pushsecret-builds"
            ]
        );
        assert!(
            steps[0].detail.contains("repository pull+push"),
            "{steps:?}"
        );
        assert!(
            steps[1]
                .detail
                .starts_with("Opaque (config.json) for harbor.example.com"),
            "{steps:?}"
        );
    }

    #[test]
    fn a_builds_secret_in_the_pull_secrets_shape_is_rewritten_keeping_its_password() {
        let (h, mut c) = with_builds(healthy_harbor(), healthy_cluster());
        // Written like the pull Secret: type dockerconfigjson, .dockerconfigjson.
        let mut wrong = secret(RobotKind::Pull, HOST, "otomi-team-a-builds", PASSWORD);
        wrong.metadata.name = Some("harbor-pushsecret-builds".into());
        c.secrets
            .insert(("team-a".into(), RobotKind::Builds), wrong.clone());
        let drifts = assess(&team(), CURRENT, &h, Some(&c), &accepted(), 0);
        assert!(
            matches!(&drifts[..], [Drift::SecretMalformed { kind: RobotKind::Builds, why }]
                if why.contains("not Opaque") && why.contains("not config.json")),
            "{drifts:?}"
        );
        // The credentials in it still work (one token request tells), so
        // the robot keeps its password and only the Secret is rewritten.
        assert_eq!(credentials_to_test(&team(), CURRENT, &h, &c, 0).len(), 3);
        let plan = plan_team(&team(), CURRENT, &h, &c, &accepted(), -1, 0);
        let builds = &plan.robots[2];
        assert_eq!(builds.robot, RobotStep::Keep);
        assert_eq!(builds.password, PasswordStep::Keep);
        assert!(builds.write_secret);
        assert_eq!(builds.current_password, Some(Secret::new(PASSWORD)));
        // After a race, or at verification, only the right shape counts.
        let why = robot_credentials(Some(&wrong), &h, &team(), RobotKind::Builds).unwrap_err();
        assert!(why.contains("not Opaque"), "{why}");
        assert_eq!(
            redecide_secret(Some(wrong.clone()), &h, &team(), RobotKind::Builds),
            SecretDecision::Write(Some(Box::new(wrong)))
        );

        // Opaque but under the wrong key, and its password no longer works:
        // the robot is set from the Secret, which is rewritten.
        let mut wrong_key = secret(RobotKind::Builds, HOST, "otomi-team-a-builds", PASSWORD);
        let data = wrong_key.data.as_mut().unwrap();
        let config = data.remove("config.json").unwrap();
        data.insert(".dockerconfigjson".into(), config);
        c.secrets
            .insert(("team-a".into(), RobotKind::Builds), wrong_key);
        let mut creds = accepted();
        creds.insert((team(), RobotKind::Builds), TokenCheck::Rejected);
        let drifts = assess(&team(), CURRENT, &h, Some(&c), &creds, 0);
        assert!(drifts.contains(&Drift::CredentialsRejected(RobotKind::Builds)));
        let plan = plan_team(&team(), CURRENT, &h, &c, &creds, -1, 0);
        let builds = &plan.robots[2];
        assert_eq!(
            builds.password,
            PasswordStep::FromSecret(Secret::new(PASSWORD))
        );
        assert!(builds.write_secret);
    }

    #[test]
    fn a_missing_default_service_account_is_created_and_says_why_it_is_missing() {
        let (h, mut c) = (healthy_harbor(), healthy_cluster());
        c.service_accounts.remove("team-a");
        let drifts = assess(&team(), OLD, &h, Some(&c), &accepted(), 0);
        assert_eq!(drifts, vec![Drift::ServiceAccountMissing]);
        let (summary, evidence) = drifts[0].describe(&team(), &h);
        assert!(
            summary.contains("ServiceAccount controller") && summary.contains("deleted"),
            "{summary}"
        );
        assert_eq!(evidence["service_account"], "team-a/default");
        let plan = plan_team(&team(), OLD, &h, &c, &accepted(), -1, 0);
        assert!(matches!(plan.service_account, ServiceAccountStep::Create));
        assert!(!plan.is_empty());
        let steps = plan.steps(&h);
        assert_eq!(steps.len(), 1, "{steps:?}");
        assert_eq!(steps[0].action, "create");
        assert_eq!(steps[0].target, "team a: serviceaccount team-a/default");
        assert!(steps[0].detail.contains("harbor-pullsecret"), "{steps:?}");
    }
}

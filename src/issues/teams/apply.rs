//! Carrying out one team's plan, step by step, beside other writers (a
//! second `provision`, Otomi's operator, which runs every minute).
//!
//! The Secret is the source of truth, so it is written before the robot:
//! with a create that fails when the Secret exists, or a replace that fails
//! when it changed since it was read. A writer that loses re-reads the
//! Secret and takes the password it holds now, so every writer ends up
//! setting the robot from the same Secret; none regenerates a secret
//! another may have just stored. A 409 from Harbor on something the plan
//! meant to create means another writer created it: it is adopted, and a
//! robot adopted that way gets its secret from the Secret as read then.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{anyhow, Context, Result};

use super::cluster;
use super::model::{docker_config_json, generate_password, RobotKind, TeamId, OIDC_GROUP};
use super::plan::{
    redecide_secret, robot_credentials, HarborState, PasswordStep, RobotPlan, RobotStep,
    SecretDecision, ServiceAccountStep, TeamPlan,
};
use crate::clients::harbor::{is_conflict, status_of, Harbor, NewRobot, Secret};
use crate::clients::kube::{self, Kube};

/// How often a Secret that keeps changing under this run is read again
/// and rewritten before the team is given up (a rerun continues).
const SECRET_ATTEMPTS: usize = 3;

/// A robot whose Secret's credentials are checked once everything is
/// applied.
#[derive(Debug, Clone)]
pub struct ToVerify {
    pub team: TeamId,
    pub kind: RobotKind,
    pub login: String,
}

/// Whether this run sent any write, to Harbor or the cluster: a request
/// sent may have taken effect even when its answer was an error, so after
/// one the run can no longer say that nothing changed.
#[derive(Debug, Default)]
pub struct Writes(AtomicBool);

impl Writes {
    fn sending(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn any(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Applies one team's plan; returns the robots whose credentials it changed.
pub async fn apply_team(
    harbor: &Harbor,
    kube: &Kube,
    state: &HarborState,
    plan: &TeamPlan,
    writes: &Writes,
) -> Result<Vec<ToVerify>> {
    let team = &plan.team;
    let project = team.name();
    if plan.create_project {
        writes.sending();
        match harbor.create_project(&project).await {
            Ok(()) => {}
            Err(e) if is_conflict(&e) => {
                tracing::info!("project {project} was created meanwhile; keeping it")
            }
            Err(e) => return Err(e.context(format!("creating project {project}"))),
        }
    }
    for (group, role) in &plan.add_members {
        writes.sending();
        match harbor
            .add_group_member(&project, group, OIDC_GROUP, *role)
            .await
        {
            Ok(()) => {}
            Err(e) if is_conflict(&e) => {
                tracing::info!("{group} became a member of {project} meanwhile")
            }
            Err(e) => return Err(e.context(format!("adding group {group} to project {project}"))),
        }
    }
    let mut verify = Vec::new();
    for rp in &plan.robots {
        if rp.is_noop() {
            continue;
        }
        apply_robot(harbor, kube, state, plan, rp, writes).await?;
        verify.push(ToVerify {
            team: team.clone(),
            kind: rp.kind,
            login: state.login_name(team, rp.kind),
        });
    }
    // After the Secrets, so that the pull secret it names exists.
    match &plan.service_account {
        ServiceAccountStep::Keep => {}
        ServiceAccountStep::Create => {
            writes.sending();
            cluster::create_default_service_account(kube, &project)
                .await
                .with_context(|| format!("creating ServiceAccount {project}/default"))?;
        }
        ServiceAccountStep::AddPullSecret(sa) => {
            writes.sending();
            cluster::add_pull_secret(kube, &project, sa).await?;
        }
    }
    Ok(verify)
}

fn new_robot(plan: &TeamPlan, kind: RobotKind) -> NewRobot {
    NewRobot {
        name: plan.team.robot_name(kind),
        description: kind.description(&plan.team),
        level: "system".into(),
        duration: plan.duration,
        disable: false,
        permissions: kind.permissions(&plan.team.name()),
    }
}

async fn set_secret(
    harbor: &Harbor,
    writes: &Writes,
    id: i64,
    name: &str,
    password: &Secret,
) -> Result<()> {
    writes.sending();
    harbor
        .set_robot_secret(id, password)
        .await
        .with_context(|| format!("setting the secret of robot {name}"))
}

/// Creates the robot with the Secret's password. When another writer
/// created it first (409), finds it by its exact name and sets its secret
/// from the Secret as it is now: that writer may have stored another
/// password there meanwhile, or none yet.
async fn create_robot(
    harbor: &Harbor,
    kube: &Kube,
    state: &HarborState,
    plan: &TeamPlan,
    kind: RobotKind,
    password: &Secret,
    writes: &Writes,
) -> Result<()> {
    let team = &plan.team;
    let name = team.robot_name(kind);
    writes.sending();
    match harbor
        .create_robot_with_secret(&new_robot(plan, kind), password)
        .await
    {
        Ok(created) if created.secret == *password => Ok(()),
        // A Harbor that ignores a chosen secret made its own.
        Ok(created) => set_secret(harbor, writes, created.id, &name, password).await,
        Err(e) if is_conflict(&e) => {
            let robot = harbor.robot(&name).await?.ok_or_else(|| {
                anyhow!(
                    "Harbor said robot {name} exists (409) but does not list it; run the same \
                     command again"
                )
            })?;
            let now = cluster::read_secret(kube, &team.name(), kind).await?;
            let password = robot_credentials(now.as_ref(), state, team, kind)
                .map(|auth| auth.password)
                .map_err(|why| {
                    anyhow!(
                        "robot {name} was created meanwhile by another writer, and Secret {}/{} \
                         cannot give it its password now ({why}); run the same command again",
                        team.name(),
                        kind.secret_name()
                    )
                })?;
            tracing::info!(
                "robot {name} was created meanwhile; setting its secret from the Secret"
            );
            set_secret(harbor, writes, robot.id, &name, &password).await
        }
        Err(e) => Err(e.context(format!("creating robot {name}"))),
    }
}

/// Writes the Secret with `wanted` and returns the password it holds
/// afterwards: `wanted`, or the one another writer stored first.
async fn store_secret(
    kube: &Kube,
    state: &HarborState,
    team: &TeamId,
    kind: RobotKind,
    wanted: Secret,
    existing: Option<k8s_openapi::api::core::v1::Secret>,
    writes: &Writes,
) -> Result<Secret> {
    let (namespace, name) = (team.name(), kind.secret_name());
    let config = docker_config_json(kind, &state.host, &state.login_name(team, kind), &wanted);
    let mut current = existing;
    for _ in 0..SECRET_ATTEMPTS {
        writes.sending();
        let written =
            cluster::write_docker_secret(kube, &namespace, kind, config.clone(), current.as_ref())
                .await;
        match written {
            Ok(()) => return Ok(wanted),
            Err(e) if kube::is_conflict(&e) => {
                let now = cluster::read_secret(kube, &namespace, kind).await?;
                match redecide_secret(now, state, team, kind) {
                    SecretDecision::Adopt(password) => {
                        tracing::info!(
                            "Secret {namespace}/{name} was written meanwhile by another writer; \
                             using the password it holds"
                        );
                        return Ok(password);
                    }
                    SecretDecision::Write(read) => current = read.map(|b| *b),
                }
            }
            Err(e) => return Err(e.context(format!("writing Secret {namespace}/{name}"))),
        }
    }
    Err(anyhow!(
        "Secret {namespace}/{name} changed {SECRET_ATTEMPTS} times while this run wrote it: \
         another writer keeps changing it. Find that writer (kubectl get secret -n {namespace} \
         {name} -o yaml shows its managedFields), then run the same command again"
    ))
}

/// Applies one robot's plan: the Secret first, then the robot from it.
async fn apply_robot(
    harbor: &Harbor,
    kube: &Kube,
    state: &HarborState,
    plan: &TeamPlan,
    rp: &RobotPlan,
    writes: &Writes,
) -> Result<()> {
    let team = &plan.team;
    let kind = rp.kind;
    let name = team.robot_name(kind);
    let chosen = match &rp.password {
        PasswordStep::FromSecret(p) => p.clone(),
        PasswordStep::Keep => rp
            .current_password
            .clone()
            .with_context(|| format!("the Secret of robot {name} holds no usable password"))?,
        PasswordStep::Generate => generate_password(),
    };
    let password = if rp.write_secret {
        store_secret(
            kube,
            state,
            team,
            kind,
            chosen,
            rp.existing_secret.clone(),
            writes,
        )
        .await?
    } else {
        chosen
    };
    // The robot already has the password unless the plan changes it or
    // another writer's Secret won.
    let set_needed =
        rp.password != PasswordStep::Keep || rp.current_password.as_ref() != Some(&password);
    match &rp.robot {
        RobotStep::Create => {
            create_robot(harbor, kube, state, plan, kind, &password, writes).await?
        }
        RobotStep::Recreate { id } => {
            writes.sending();
            match harbor.delete_robot(*id).await {
                Ok(()) => {}
                Err(e) if status_of(&e) == Some(404) => {}
                Err(e) => return Err(e.context(format!("deleting expired robot {name}"))),
            }
            create_robot(harbor, kube, state, plan, kind, &password, writes).await?
        }
        RobotStep::Update { id, .. } => {
            let mut robot = state
                .robots
                .get(&name)
                .cloned()
                .with_context(|| format!("robot {name} vanished from the plan's state"))?;
            robot.disable = false;
            robot.permissions = kind.permissions(&team.name());
            writes.sending();
            harbor
                .update_robot(&robot)
                .await
                .with_context(|| format!("updating robot {name}"))?;
            if set_needed {
                set_secret(harbor, writes, *id, &name, &password).await?;
            }
        }
        RobotStep::Keep => {
            let robot = state
                .robots
                .get(&name)
                .with_context(|| format!("robot {name} vanished from the plan's state"))?;
            if set_needed {
                set_secret(harbor, writes, robot.id, &name, &password).await?;
            }
        }
    }
    Ok(())
}

//! Carrying out one team's plan, step by step, tolerating the races a
//! second provisioner (or Otomi's operator) causes: a 409 on something the
//! plan meant to create means it exists now, which is what was wanted.

use anyhow::{anyhow, Context, Result};

use super::cluster;
use super::model::{docker_config_json, RobotKind, TeamId, OIDC_GROUP};
use super::plan::{HarborState, PasswordStep, RobotPlan, RobotStep, TeamPlan};
use crate::clients::harbor::{is_conflict, status_of, Harbor, NewRobot, Secret};
use crate::clients::kube::Kube;

/// Credentials to check once everything is applied.
#[derive(Debug, Clone)]
pub struct ToVerify {
    pub team: TeamId,
    pub kind: RobotKind,
    pub login: String,
    pub password: Secret,
}

/// Applies one team's plan; returns the robot credentials it changed.
pub async fn apply_team(
    harbor: &Harbor,
    kube: &Kube,
    state: &HarborState,
    plan: &TeamPlan,
) -> Result<Vec<ToVerify>> {
    let team = &plan.team;
    let project = team.name();
    if plan.create_project {
        match harbor.create_project(&project).await {
            Ok(()) => {}
            Err(e) if is_conflict(&e) => {
                tracing::info!("project {project} was created meanwhile; keeping it")
            }
            Err(e) => return Err(e.context(format!("creating project {project}"))),
        }
    }
    for (group, role) in &plan.add_members {
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
        let password = apply_robot(harbor, kube, state, plan, rp).await?;
        verify.push(ToVerify {
            team: team.clone(),
            kind: rp.kind,
            login: state.login_name(team, rp.kind),
            password,
        });
    }
    if let Some(sa) = &plan.add_pull_secret_to_sa {
        cluster::add_pull_secret(kube, &project, sa).await?;
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

/// Creates a robot; when another provisioner created it first, finds it.
/// Returns its id and, when this run created it, its generated secret.
async fn create_robot(
    harbor: &Harbor,
    plan: &TeamPlan,
    kind: RobotKind,
) -> Result<(i64, Option<Secret>)> {
    let name = plan.team.robot_name(kind);
    match harbor.create_robot(&new_robot(plan, kind)).await {
        Ok(created) => Ok((created.id, Some(created.secret))),
        Err(e) if is_conflict(&e) => {
            let robot = harbor.robot(&name).await?.ok_or_else(|| {
                anyhow!("Harbor said robot {name} exists (409) but does not list it")
            })?;
            tracing::info!("robot {name} was created meanwhile; adopting it");
            Ok((robot.id, None))
        }
        Err(e) => Err(e.context(format!("creating robot {name}"))),
    }
}

/// Applies one robot's plan and returns the password it ends with.
async fn apply_robot(
    harbor: &Harbor,
    kube: &Kube,
    state: &HarborState,
    plan: &TeamPlan,
    rp: &RobotPlan,
) -> Result<Secret> {
    let team = &plan.team;
    let kind = rp.kind;
    let name = team.robot_name(kind);
    let (id, generated) = match &rp.robot {
        RobotStep::Create => create_robot(harbor, plan, kind).await?,
        RobotStep::Recreate { id } => {
            match harbor.delete_robot(*id).await {
                Ok(()) => {}
                Err(e) if status_of(&e) == Some(404) => {}
                Err(e) => return Err(e.context(format!("deleting expired robot {name}"))),
            }
            create_robot(harbor, plan, kind).await?
        }
        RobotStep::Update { id, .. } => {
            let mut robot = state
                .robots
                .get(&name)
                .cloned()
                .with_context(|| format!("robot {name} vanished from the plan's state"))?;
            robot.disable = false;
            robot.permissions = kind.permissions(&team.name());
            harbor
                .update_robot(&robot)
                .await
                .with_context(|| format!("updating robot {name}"))?;
            (*id, None)
        }
        RobotStep::Keep => {
            let robot = state
                .robots
                .get(&name)
                .with_context(|| format!("robot {name} vanished from the plan's state"))?;
            (robot.id, None)
        }
    };
    let password = match (&rp.password, generated) {
        (PasswordStep::FromSecret(p), _) => {
            harbor
                .set_robot_secret(id, p)
                .await
                .with_context(|| format!("setting the secret of robot {name}"))?;
            p.clone()
        }
        (PasswordStep::Generate, Some(g)) => g,
        // Not created now (or adopted after a race): ask Harbor for a new one.
        (PasswordStep::Generate, None) => harbor
            .regenerate_robot_secret(id)
            .await
            .with_context(|| format!("regenerating the secret of robot {name}"))?,
        (PasswordStep::Keep, Some(_)) => {
            // Cannot happen: Keep is only planned for a robot that exists.
            return Err(anyhow!(
                "robot {name} was created although the plan kept it"
            ));
        }
        (PasswordStep::Keep, None) => rp
            .current_password
            .clone()
            .with_context(|| format!("the Secret of robot {name} holds no usable password"))?,
    };
    if rp.write_secret {
        let json = docker_config_json(&state.host, &state.login_name(team, kind), &password);
        cluster::write_docker_secret(kube, &team.name(), kind, json, rp.existing_secret.as_ref())
            .await?;
    }
    Ok(password)
}

//! The rest of the finding kinds a repair is offered for, planted on top of
//! the lab's own issues, so that one test can run each finding's repair and
//! see that finding gone. `harbor-doctor lab` does not plant these: its
//! report stays the one screen the README shows.

use anyhow::{anyhow, Result};
use serde_json::json;

use super::{docker_secret, Lab, LAB_CREDENTIALS, REALM};
use crate::harbor::RobotPermission;
use crate::registry_seed::{self as seed, NewUser};

/// Where a team's drift is planted, by the kind the teams check reports.
const TEAM_KINDS: [(&str, &str); 10] = [
    ("team-kind-project", "project-missing"),
    ("team-kind-member", "member-missing"),
    ("team-kind-disabled", "robot-disabled"),
    ("team-kind-expired", "robot-expired"),
    ("team-kind-permissions", "robot-permissions"),
    ("team-kind-malformed", "secret-malformed"),
    ("team-kind-host", "secret-wrong-host"),
    ("team-kind-user", "secret-wrong-user"),
    ("team-kind-rejected", "credentials-rejected"),
    (
        "team-kind-serviceaccount",
        "pull-secret-not-on-serviceaccount",
    ),
];

impl Lab {
    /// Plants one case of every repairable kind the lab itself leaves out:
    /// a team for each of [`TEAM_KINDS`], a user whose link names an old
    /// issuer, and a deleted user who still holds a link.
    pub async fn plant_every_repairable_kind(&self) -> Result<()> {
        let host = self.registry_host()?;
        for (team, kind) in TEAM_KINDS {
            self.add_team(team, &host)?;
            self.break_team(team, kind, &host)?;
        }

        let sql = self.database().await?;
        let issuer = self.keycloak.issuer(REALM);

        // Harbor's OIDC settings moved to a new issuer URL; this user's
        // Keycloak id is the same.
        let sub = uuid::Uuid::new_v4().to_string();
        let email = "dave@example.com";
        self.keycloak.add_user(REALM, "dave", Some(email), &sub);
        let dave = seed::add_user(&sql, &NewUser::new(email, Some(email))).await?;
        let old_issuer = issuer.replace("/realms/", "/auth/realms/");
        seed::link(&sql, dave, &sub, &old_issuer, LAB_CREDENTIALS).await?;

        // Harbor renames a user it deletes to `name#id` and keeps the row.
        let erin = seed::add_user(
            &sql,
            &NewUser::new("erin@example.com", Some("erin@example.com")),
        )
        .await?;
        sql.execute(
            "UPDATE harbor_user SET deleted = true, username = username || '#' || user_id, \
             email = email || '#' || user_id WHERE user_id = $1",
            &[&erin],
        )
        .await?;
        seed::link(
            &sql,
            erin,
            &uuid::Uuid::new_v4().to_string(),
            &issuer,
            LAB_CREDENTIALS,
        )
        .await?;
        Ok(())
    }

    /// Breaks one healthy team in the way the teams check reports as `kind`.
    fn break_team(&self, team: &str, kind: &str, host: &str) -> Result<()> {
        let push = self
            .harbor
            .robot(&format!("{team}-push"))
            .ok_or_else(|| anyhow!("{team} has no push robot"))?;
        let login = self.harbor.robot_login_name(&push);
        let push_secret = |host: &str, user: &str, password: &str| {
            self.kube
                .put(docker_secret(
                    team,
                    "harbor-pushsecret",
                    host,
                    user,
                    password,
                ))
                .map(|_| ())
        };
        match kind {
            "project-missing" => {
                self.harbor.remove_project(team);
            }
            "member-missing" => {
                self.harbor.remove_member(team, team);
            }
            "robot-disabled" => self.harbor.set_robot_disabled(push.id, true),
            "robot-expired" => self.harbor.set_robot_expires_at(push.id, 1),
            "robot-permissions" => self
                .harbor
                .set_robot_permissions(push.id, vec![RobotPermission::repository(team, &["pull"])]),
            "secret-malformed" => {
                self.kube.put(json!({
                    "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
                    "metadata": {"name": "harbor-pushsecret", "namespace": team},
                    "data": {".dockerconfigjson": "bm90IGpzb24="}}))?;
            }
            "secret-wrong-host" => push_secret("registry.elsewhere.example", &login, &push.secret)?,
            "secret-wrong-user" => push_secret(host, &format!("{login}-old"), &push.secret)?,
            "credentials-rejected" => push_secret(host, &login, "not-the-robots-secret")?,
            "pull-secret-not-on-serviceaccount" => {
                self.kube.put(json!({
                    "apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": "default", "namespace": team},
                    "imagePullSecrets": [{"name": "harbor-pushsecret"}]}))?;
            }
            other => return Err(anyhow!("no way to plant {other}")),
        }
        Ok(())
    }
}

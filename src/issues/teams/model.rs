//! The names and shapes of a provisioned team, as Otomi makes them, so
//! that installations Otomi provisioned are recognised and adopted: team
//! ids, the project, robots and Secrets they imply, the permissions a robot
//! must have, and the docker config a robot's Secret carries.

use base64::Engine;
use serde_json::{json, Value};

use k8s_openapi::api::core::v1::Secret as KubeSecret;

use crate::clients::harbor::{Access, Robot, RobotPermission, Secret};

/// The OIDC group every team's members are in.
pub const ALL_TEAMS_ADMIN: &str = "all-teams-admin";
/// Harbor's group type for OIDC groups.
pub const OIDC_GROUP: i64 = 3;
/// Harbor's roles.
pub const ROLE_PROJECT_ADMIN: i64 = 1;
pub const ROLE_DEVELOPER: i64 = 2;
/// Otomi's platform team: never provisioned by `--all`.
pub const ADMIN_TEAM: &str = "admin";
/// The key of a `kubernetes.io/dockerconfigjson` Secret.
pub const DOCKERCONFIG_KEY: &str = ".dockerconfigjson";
pub const DOCKERCONFIG_TYPE: &str = "kubernetes.io/dockerconfigjson";
/// The type Kubernetes gives a Secret created without one.
pub const OPAQUE_TYPE: &str = "Opaque";
/// The key of the builds Secret: the file name the build tools (kaniko,
/// buildpacks) read the docker config from when it is mounted.
pub const CONFIG_JSON_KEY: &str = "config.json";
/// The email Otomi puts in the builds Secret's docker config entry.
const BUILDS_EMAIL: &str = "not@val.id";

/// A team id that makes valid names everywhere it is used: the namespace
/// `team-<id>` (a DNS label), the Harbor project `team-<id>` and the robots
/// `team-<id>-pull` / `-push` / `-builds` (Harbor's name pattern).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TeamId(String);

impl TeamId {
    pub fn parse(id: &str) -> Result<TeamId, String> {
        let reason = if id.is_empty() {
            Some("it is empty".to_string())
        } else if let Some(c) = id
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            Some(format!(
                "{c:?} is not allowed: use lower-case letters, digits and single hyphens"
            ))
        } else if id.starts_with('-') || id.ends_with('-') {
            Some("it starts or ends with a hyphen".into())
        } else if id.contains("--") {
            Some("Harbor names cannot hold two hyphens in a row".into())
        } else if format!("team-{id}").len() > 63 {
            Some(format!(
                "namespace team-{id} would be longer than Kubernetes' 63 characters"
            ))
        } else {
            None
        };
        match reason {
            Some(r) => Err(format!("team id {id:?} is not valid: {r}")),
            None => Ok(TeamId(id.to_string())),
        }
    }

    /// The id of a namespace named `team-<id>`, if it is one.
    pub fn from_namespace(ns: &str) -> Option<TeamId> {
        TeamId::parse(ns.strip_prefix("team-")?).ok()
    }

    pub fn id(&self) -> &str {
        &self.0
    }

    /// Namespace and Harbor project share the name.
    pub fn name(&self) -> String {
        format!("team-{}", self.0)
    }

    pub fn robot_name(&self, kind: RobotKind) -> String {
        format!("team-{}-{}", self.0, kind.suffix())
    }

    pub fn provision_command(&self) -> String {
        format!("harbor-doctor provision --team {}", self.0)
    }
}

impl std::fmt::Display for TeamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A team's robot accounts, as Otomi names them (`team-<id>-<kind>`); also
/// `docker-login --robot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum RobotKind {
    /// The pull robot, whose Secret the namespace's default ServiceAccount uses
    Pull,
    /// The push robot, for team members
    Push,
    /// The builds robot, for the team's build pipelines (current Otomi)
    Builds,
}

impl RobotKind {
    pub const ALL: [RobotKind; 3] = [RobotKind::Pull, RobotKind::Push, RobotKind::Builds];
    /// The robots every team has; the builds robot only where the
    /// installation uses build robots.
    pub const ALWAYS: [RobotKind; 2] = [RobotKind::Pull, RobotKind::Push];

    pub fn suffix(self) -> &'static str {
        match self {
            RobotKind::Pull => "pull",
            RobotKind::Push => "push",
            RobotKind::Builds => "builds",
        }
    }

    pub fn secret_name(self) -> &'static str {
        match self {
            RobotKind::Pull => "harbor-pullsecret",
            RobotKind::Push => "harbor-pushsecret",
            RobotKind::Builds => "harbor-pushsecret-builds",
        }
    }

    /// The type of the robot's Secret. Otomi mounts the builds Secret into
    /// build pods as a file, so it is Opaque with a `config.json` key.
    pub fn secret_type(self) -> &'static str {
        match self {
            RobotKind::Pull | RobotKind::Push => DOCKERCONFIG_TYPE,
            RobotKind::Builds => OPAQUE_TYPE,
        }
    }

    /// The key holding the docker config in the robot's Secret.
    pub fn secret_key(self) -> &'static str {
        match self {
            RobotKind::Pull | RobotKind::Push => DOCKERCONFIG_KEY,
            RobotKind::Builds => CONFIG_JSON_KEY,
        }
    }

    pub fn actions(self) -> &'static [&'static str] {
        match self {
            RobotKind::Pull => &["pull"],
            RobotKind::Push | RobotKind::Builds => &["pull", "push"],
        }
    }

    /// The one permission Otomi gives this robot.
    pub fn permissions(self, project: &str) -> Vec<RobotPermission> {
        vec![RobotPermission {
            kind: "project".into(),
            namespace: project.into(),
            access: self
                .actions()
                .iter()
                .map(|a| Access {
                    resource: "repository".into(),
                    action: (*a).into(),
                    effect: None,
                })
                .collect(),
        }]
    }

    pub fn description(self, team: &TeamId) -> String {
        format!(
            "{} robot of team {team} (harbor-doctor, as Otomi names it)",
            match self {
                RobotKind::Pull => "Pull",
                RobotKind::Push => "Push",
                RobotKind::Builds => "Builds",
            }
        )
    }
}

/// The team id in a builds robot's name (`team-<id>-builds`, without the
/// prefix), if it is one.
pub fn builds_robot_team(bare_name: &str) -> Option<TeamId> {
    let id = bare_name.strip_prefix("team-")?.strip_suffix("-builds")?;
    TeamId::parse(id).ok()
}

/// Whether a robot's permissions are exactly what Otomi gives it: one
/// project permission on the team's project with the kind's repository
/// actions, nothing missing and nothing more.
pub fn scope_is_exact(robot: &Robot, kind: RobotKind, project: &str) -> bool {
    let mut have: Vec<(String, String, String, String)> = robot
        .permissions
        .iter()
        .flat_map(|p| {
            p.access.iter().map(move |a| {
                (
                    p.kind.clone(),
                    p.namespace.clone(),
                    a.resource.clone(),
                    a.action.clone(),
                )
            })
        })
        .collect();
    have.sort();
    have.dedup();
    let mut want: Vec<(String, String, String, String)> = kind
        .actions()
        .iter()
        .map(|a| {
            (
                "project".to_string(),
                project.to_string(),
                "repository".to_string(),
                a.to_string(),
            )
        })
        .collect();
    want.sort();
    let denies = robot
        .permissions
        .iter()
        .any(|p| p.access.iter().any(|a| a.effect.as_deref() == Some("deny")));
    have == want && !denies
}

/// A short description of a robot's permissions, for evidence.
pub fn describe_scope(robot: &Robot) -> String {
    let parts: Vec<String> = robot
        .permissions
        .iter()
        .map(|p| {
            let actions: Vec<String> = p
                .access
                .iter()
                .map(|a| format!("{}:{}", a.resource, a.action))
                .collect();
            format!("{} {} [{}]", p.kind, p.namespace, actions.join(", "))
        })
        .collect();
    if parts.is_empty() {
        "no permissions".into()
    } else {
        parts.join("; ")
    }
}

/// The credentials a docker config Secret holds for one registry host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerAuth {
    pub host: String,
    pub username: String,
    pub password: Secret,
}

/// What a robot's Secret looks like, as far as provisioning cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretState {
    Missing,
    /// Present but unusable; the reason is safe to show (no secret in it).
    Malformed(String),
    /// Readable credentials; `other_hosts` lists further registries in it.
    /// `misshapen` says why the Secret is not of its kind's type and key
    /// (the other robots' shape, say) although its credentials can be read:
    /// they are kept while the Secret is rewritten in its shape.
    Valid {
        auth: DockerAuth,
        other_hosts: Vec<String>,
        misshapen: Option<String>,
    },
}

/// Why a `.dockerconfigjson` value holds no `auths` to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DockerConfigError {
    NotJson,
    NoAuths,
}

/// The `auths` of a docker config document (a `.dockerconfigjson` or
/// `config.json` value, raw bytes, already base64-decoded by the API
/// client): registry key, as written, to its entry. Otomi's robot Secrets,
/// `provision` and `docker-login` all read them through this one parser.
pub fn docker_auths(data: &[u8]) -> Result<Vec<(String, AuthEntry)>, DockerConfigError> {
    let doc = serde_json::from_slice::<Value>(data).map_err(|_| DockerConfigError::NotJson)?;
    let auths = doc
        .get("auths")
        .and_then(Value::as_object)
        .ok_or(DockerConfigError::NoAuths)?;
    Ok(auths
        .iter()
        .map(|(host, entry)| {
            // A field of another type counts as absent: the entry then
            // holds no credentials, which is what to report.
            let field = |k: &str| entry.get(k).and_then(Value::as_str).map(str::to_string);
            let entry = AuthEntry {
                username: field("username"),
                password: field("password"),
                auth: field("auth"),
            };
            (host.clone(), entry)
        })
        .collect())
}

/// One registry's entry in `auths`: `username` and `password`, and the
/// `auth` (base64 of `username:password`) docker itself reads.
#[derive(Debug, Clone, Default)]
pub struct AuthEntry {
    pub username: Option<String>,
    pub password: Option<String>,
    pub auth: Option<String>,
}

impl AuthEntry {
    /// The username and password fields, when both are set.
    fn fields_pair(&self) -> Option<(String, String)> {
        match (&self.username, &self.password) {
            (Some(u), Some(p)) if !u.is_empty() && !p.is_empty() => Some((u.clone(), p.clone())),
            _ => None,
        }
    }

    /// `auth` decoded; only the first colon separates, as passwords may
    /// hold colons.
    fn auth_pair(&self) -> Option<(String, String)> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(self.auth.as_deref()?.trim())
            .ok()?;
        let text = String::from_utf8(raw).ok()?;
        text.split_once(':')
            .map(|(u, p)| (u.to_string(), p.to_string()))
    }

    /// The credentials: the username and password fields, else those in
    /// `auth`; `None` when neither gives both.
    pub fn credentials(&self) -> Option<(String, String)> {
        self.fields_pair().or_else(|| {
            self.auth_pair()
                .filter(|(u, p)| !u.is_empty() && !p.is_empty())
        })
    }

    /// True when `auth` names other credentials than the fields do: a
    /// Secret edited by hand, where kubelet and docker may log in as someone
    /// else than the fields say.
    pub fn auth_disagrees(&self) -> bool {
        matches!((self.fields_pair(), self.auth_pair()), (Some(f), Some(a)) if f != a)
    }
}

/// The Secret's type as Kubernetes reads it: a Secret created without one
/// is Opaque.
pub fn secret_type_of(secret: &KubeSecret) -> &str {
    secret.type_.as_deref().unwrap_or(OPAQUE_TYPE)
}

/// Reads a robot's Secret (its type and the kind's key, already
/// base64-decoded by the API client) into credentials for `want_host`, or
/// for the only host it names when `want_host` is absent from it.
pub fn read_docker_secret(kind: RobotKind, secret: &KubeSecret, want_host: &str) -> SecretState {
    let (want_type, key) = (kind.secret_type(), kind.secret_key());
    // A Secret in the other shape (a builds Secret written like the pull
    // Secret, or the reverse) still holds the robot's credentials.
    let other_key = if key == DOCKERCONFIG_KEY {
        CONFIG_JSON_KEY
    } else {
        DOCKERCONFIG_KEY
    };
    let found_type = secret_type_of(secret);
    let data = secret.data.as_ref();
    let mut misshapen = Vec::new();
    if found_type != want_type {
        misshapen.push(format!("its type is {found_type}, not {want_type}"));
    }
    let value = match (
        data.and_then(|d| d.get(key)),
        data.and_then(|d| d.get(other_key)),
    ) {
        (Some(v), _) => v,
        (None, Some(v)) => {
            misshapen.push(format!("its docker config is under {other_key}, not {key}"));
            v
        }
        (None, None) => {
            // The keys it has instead (names only) show what was written.
            let keys: Vec<&str> = data
                .into_iter()
                .flatten()
                .map(|(k, _)| k.as_str())
                .collect();
            misshapen.push(if keys.is_empty() {
                format!("it has no {key} key")
            } else {
                format!("it has no {key} key (only {})", keys.join(", "))
            });
            return SecretState::Malformed(misshapen.join(" and "));
        }
    };
    let mut unusable = |why: String| {
        misshapen.push(why);
        SecretState::Malformed(misshapen.join(" and "))
    };
    let mut auths = match docker_auths(&value.0) {
        Ok(auths) => auths,
        Err(DockerConfigError::NotJson) => return unusable("its docker config is not JSON".into()),
        Err(DockerConfigError::NoAuths) => {
            return unusable("its docker config has no \"auths\" map".into())
        }
    };
    let index = match auths.iter().position(|(h, _)| h == want_host) {
        Some(i) => i,
        None if auths.len() == 1 => 0,
        None => {
            return SecretState::Malformed(format!(
                "it names {} registries and none is {want_host}",
                auths.len()
            ))
        }
    };
    let (host, entry) = auths.remove(index);
    if entry.auth_disagrees() {
        return unusable(format!(
            "its entry for {host} has an \"auth\" that disagrees with its username and password"
        ));
    }
    let Some((username, password)) = entry.credentials() else {
        return unusable(format!(
            "its entry for {host} holds no username and password"
        ));
    };
    SecretState::Valid {
        auth: DockerAuth {
            host,
            username,
            password: Secret::new(password),
        },
        other_hosts: auths.into_iter().map(|(h, _)| h).collect(),
        misshapen: (!misshapen.is_empty()).then(|| misshapen.join(" and ")),
    }
}

/// A new robot password that Harbor accepts (8-128 characters with an
/// upper-case letter, a lower-case letter and a digit), made here so that
/// it can be stored in the Secret before the robot gets it.
pub fn generate_password() -> Secret {
    use rand::distr::{Alphanumeric, SampleString};
    loop {
        let candidate = Alphanumeric.sample_string(&mut rand::rng(), 32);
        if super::plan::harbor_accepts_secret(&candidate) {
            return Secret::new(candidate);
        }
    }
}

/// The docker config Otomi writes into a robot's Secret: one registry,
/// with username, password and the `auth` docker reads; the builds
/// Secret's entry also has Otomi's placeholder email.
pub fn docker_config_json(
    kind: RobotKind,
    host: &str,
    username: &str,
    password: &Secret,
) -> Vec<u8> {
    let auth = base64::engine::general_purpose::STANDARD
        .encode(format!("{username}:{}", password.expose()));
    let mut entry = json!({"username": username, "password": password.expose(), "auth": auth});
    if kind == RobotKind::Builds {
        entry["email"] = json!(BUILDS_EMAIL);
    }
    json!({ "auths": { host: entry } }).to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn team_ids_must_make_valid_names_everywhere() {
        for ok in ["a", "demo", "team-1", "x9"] {
            assert!(TeamId::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Demo",
            "a_b",
            "a--b",
            "-a",
            "a-",
            "a.b",
            "a b",
            &"x".repeat(59),
        ] {
            assert!(TeamId::parse(bad).is_err(), "{bad:?}");
        }
        let t = TeamId::parse("demo").unwrap();
        assert_eq!(t.name(), "team-demo");
        assert_eq!(t.robot_name(RobotKind::Push), "team-demo-push");
        assert_eq!(TeamId::from_namespace("team-demo"), Some(t));
        assert_eq!(TeamId::from_namespace("kube-system"), None);
    }

    #[test]
    fn generated_passwords_meet_harbors_rule_and_differ() {
        let (a, b) = (generate_password(), generate_password());
        for p in [&a, &b] {
            assert!(super::super::plan::harbor_accepts_secret(p.expose()));
        }
        assert_ne!(a, b);
    }

    /// A Secret as the API server returns it.
    fn kube_secret(ty: Option<&str>, data: &[(&str, &[u8])]) -> KubeSecret {
        KubeSecret {
            type_: ty.map(str::to_string),
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), k8s_openapi::ByteString(v.to_vec())))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn an_auth_that_disagrees_with_the_fields_is_malformed() {
        let auth = base64::engine::general_purpose::STANDARD.encode("someone-else:Other1pw");
        let data =
            json!({"auths": {"h": {"username": "u", "password": "p", "auth": auth}}}).to_string();
        let s = kube_secret(
            Some(DOCKERCONFIG_TYPE),
            &[(DOCKERCONFIG_KEY, data.as_bytes())],
        );
        match read_docker_secret(RobotKind::Pull, &s, "h") {
            SecretState::Malformed(why) => assert!(why.contains("disagrees"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn docker_secrets_round_trip_and_bad_ones_are_explained() {
        let pw = Secret::new("Abcdefgh1234");
        let data = docker_config_json(
            RobotKind::Pull,
            "harbor.example.com",
            "otomi-team-a-pull",
            &pw,
        );
        let good = kube_secret(Some(DOCKERCONFIG_TYPE), &[(DOCKERCONFIG_KEY, &data)]);
        match read_docker_secret(RobotKind::Pull, &good, "harbor.example.com") {
            SecretState::Valid {
                auth,
                other_hosts,
                misshapen,
            } => {
                assert_eq!(auth.username, "otomi-team-a-pull");
                assert_eq!(auth.password, pw);
                assert!(other_hosts.is_empty());
                assert_eq!(misshapen, None);
            }
            other => panic!("{other:?}"),
        }
        // Another host: still readable, so the credentials can be kept.
        match read_docker_secret(RobotKind::Pull, &good, "other.example.com") {
            SecretState::Valid { auth, .. } => assert_eq!(auth.host, "harbor.example.com"),
            other => panic!("{other:?}"),
        }
        // The wrong type: the credentials are still read, to be kept.
        let opaque = kube_secret(Some("Opaque"), &[(DOCKERCONFIG_KEY, &data)]);
        match read_docker_secret(RobotKind::Pull, &opaque, "h") {
            SecretState::Valid {
                auth, misshapen, ..
            } => {
                assert_eq!(auth.password, pw);
                assert_eq!(
                    misshapen.as_deref(),
                    Some("its type is Opaque, not kubernetes.io/dockerconfigjson")
                );
            }
            other => panic!("{other:?}"),
        }
        let cases = [
            (
                kube_secret(Some("Opaque"), &[("password", b"x")]),
                "its type is Opaque, not kubernetes.io/dockerconfigjson and it has no \
                 .dockerconfigjson key (only password)",
            ),
            (
                kube_secret(Some(DOCKERCONFIG_TYPE), &[]),
                "no .dockerconfigjson",
            ),
            (
                kube_secret(Some(DOCKERCONFIG_TYPE), &[(DOCKERCONFIG_KEY, b"{not json")]),
                "not JSON",
            ),
            (
                kube_secret(
                    Some(DOCKERCONFIG_TYPE),
                    &[(DOCKERCONFIG_KEY, b"{\"auths\":{\"h\":{}}}")],
                ),
                "no username",
            ),
        ];
        for (secret, want) in cases {
            match read_docker_secret(RobotKind::Pull, &secret, "h") {
                SecretState::Malformed(why) => assert!(why.contains(want), "{why}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn the_builds_secret_is_opaque_with_config_json_and_otomis_email() {
        let pw = Secret::new("Abcdefgh1234");
        let data = docker_config_json(RobotKind::Builds, "h", "otomi-team-a-builds", &pw);
        let doc: Value = serde_json::from_slice(&data).unwrap();
        assert_eq!(doc["auths"]["h"]["email"], "not@val.id");
        // Only the builds Secret carries the email.
        let push: Value =
            serde_json::from_slice(&docker_config_json(RobotKind::Push, "h", "u", &pw)).unwrap();
        assert!(push["auths"]["h"].get("email").is_none());

        let good = kube_secret(Some(OPAQUE_TYPE), &[(CONFIG_JSON_KEY, &data)]);
        // A Secret created without a type is Opaque.
        let untyped = kube_secret(None, &[(CONFIG_JSON_KEY, &data)]);
        for secret in [good, untyped] {
            assert!(matches!(
                read_docker_secret(RobotKind::Builds, &secret, "h"),
                SecretState::Valid {
                    misshapen: None,
                    ..
                }
            ));
        }
        // The pull Secret's shape is wrong for the builds robot, in type or
        // key or both; its credentials are still the robot's.
        for (secret, want) in [
            (
                kube_secret(Some(DOCKERCONFIG_TYPE), &[(DOCKERCONFIG_KEY, &data)]),
                "its type is kubernetes.io/dockerconfigjson, not Opaque and its docker config \
                 is under .dockerconfigjson, not config.json",
            ),
            (
                kube_secret(Some(OPAQUE_TYPE), &[(DOCKERCONFIG_KEY, &data)]),
                "its docker config is under .dockerconfigjson, not config.json",
            ),
        ] {
            match read_docker_secret(RobotKind::Builds, &secret, "h") {
                SecretState::Valid {
                    auth, misshapen, ..
                } => {
                    assert_eq!(auth.password, pw);
                    assert_eq!(misshapen.as_deref(), Some(want));
                }
                other => panic!("{other:?}"),
            }
        }
        match read_docker_secret(
            RobotKind::Builds,
            &kube_secret(Some(OPAQUE_TYPE), &[(CONFIG_JSON_KEY, b"{}")]),
            "h",
        ) {
            SecretState::Malformed(why) => {
                assert_eq!(why, "its docker config has no \"auths\" map")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn builds_robots_are_told_from_other_robots_by_name() {
        assert_eq!(
            builds_robot_team("team-a-builds"),
            Some(TeamId::parse("a").unwrap())
        );
        assert_eq!(
            builds_robot_team("team-ci-builds"),
            Some(TeamId::parse("ci").unwrap())
        );
        for other in [
            "team-a-push",
            "team-builds-pull",
            "team--builds",
            "ci-builds",
        ] {
            assert_eq!(builds_robot_team(other), None, "{other}");
        }
        let t = TeamId::parse("a").unwrap();
        assert_eq!(t.robot_name(RobotKind::Builds), "team-a-builds");
        assert_eq!(RobotKind::Builds.actions(), RobotKind::Push.actions());
    }
}

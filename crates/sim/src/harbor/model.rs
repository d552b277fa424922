//! What the simulated Harbor knows: projects, members, robots, OIDC users,
//! configuration, component health, and the bookkeeping behind its login
//! penalty. Types here that tests see are plain data; the HTTP handlers in
//! `api` and `registry` are the only code that changes the state on behalf of
//! clients.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::faults::{Fault, Pause};
use super::HarborRequest;

/// The user id Harbor always gives its local `admin`.
pub const ADMIN_USER_ID: i64 = 1;

/// Harbor's user group types (`user_group.group_type`).
pub const LDAP_GROUP: i64 = 1;
pub const HTTP_GROUP: i64 = 2;
pub const OIDC_GROUP: i64 = 3;

/// Harbor's member roles, by the ids its API uses.
pub fn role_name(role_id: i64) -> Option<&'static str> {
    match role_id {
        1 => Some("projectAdmin"),
        2 => Some("developer"),
        3 => Some("guest"),
        4 => Some("maintainer"),
        5 => Some("limitedGuest"),
        _ => None,
    }
}

/// Harbor's rule for project and robot names.
pub fn is_valid_name(name: &str) -> bool {
    // ^[a-z0-9]+(?:[._-][a-z0-9]+)*$ without pulling in a regex engine:
    // alphanumeric runs separated by single '.', '_' or '-'.
    !name.is_empty()
        && name.split(['.', '_', '-']).all(|run| {
            !run.is_empty()
                && run
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// Harbor's rule for a robot secret chosen by the caller.
pub fn is_valid_robot_secret(secret: &str) -> bool {
    (8..=128).contains(&secret.len())
        && secret.bytes().any(|b| b.is_ascii_lowercase())
        && secret.bytes().any(|b| b.is_ascii_uppercase())
        && secret.bytes().any(|b| b.is_ascii_digit())
}

/// A secret the way Harbor generates one: 32 characters that satisfy its
/// own secret rule.
pub fn generate_secret() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    loop {
        let s: String = (0..32)
            .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
            .collect();
        if is_valid_robot_secret(&s) {
            return s;
        }
    }
}

/// Timestamps as Harbor's API renders them.
pub fn api_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: i64,
    /// `u` for a user, `g` for a group.
    pub entity_type: String,
    pub entity_id: i64,
    pub entity_name: String,
    pub role_id: i64,
}

/// A row of Harbor's `user_group` table: a group Harbor has onboarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserGroup {
    pub id: i64,
    pub name: String,
    /// 1 LDAP, 2 HTTP, 3 OIDC.
    pub group_type: i64,
    pub ldap_group_dn: String,
}

impl UserGroup {
    pub fn to_api(&self) -> Value {
        json!({
            "id": self.id,
            "group_name": self.name,
            "group_type": self.group_type,
            "ldap_group_dn": self.ldap_group_dn,
        })
    }
}

/// Why Harbor could not find or onboard the group a member request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRefusal {
    /// 404 with this message: the authenticator has no way to find groups
    /// (database authentication).
    NotFound(String),
    /// 500: the authenticator's search failed with an error Harbor does not
    /// map to a status (HTTP auth without skip-search, LDAP with a name that
    /// is not a DN).
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub id: i64,
    pub name: String,
    pub public: bool,
    pub owner_id: i64,
    pub creation_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
    pub members: Vec<Member>,
    /// Metadata other than `public` (`auto_scan`, `severity`, ...), as the
    /// strings Harbor stores.
    pub metadata: BTreeMap<String, String>,
    /// Repository names, without the project. Harbor refuses to delete a
    /// project that has any.
    pub repositories: Vec<String>,
}

impl Project {
    pub fn to_api(&self, current_user_role: Option<i64>) -> Value {
        let created = api_time(self.creation_time);
        let mut metadata = serde_json::Map::new();
        for (k, v) in &self.metadata {
            metadata.insert(k.clone(), json!(v));
        }
        metadata.insert(
            "public".into(),
            json!(if self.public { "true" } else { "false" }),
        );
        let mut v = json!({
            "project_id": self.id,
            "owner_id": self.owner_id,
            "name": self.name,
            "registry_id": 0,
            "creation_time": created,
            "update_time": api_time(self.update_time),
            "deleted": false,
            "owner_name": "admin",
            "togglable": true,
            "repo_count": self.repositories.len(),
            "metadata": metadata,
            "cve_allowlist": {
                "id": self.id,
                "project_id": self.id,
                "items": [],
                "creation_time": created,
                "update_time": created
            }
        });
        if let Some(role) = current_user_role {
            v["current_user_role_id"] = json!(role);
            v["current_user_role_ids"] = json!([role]);
        }
        v
    }

    pub fn member_to_api(&self, m: &Member) -> Value {
        json!({
            "id": m.id,
            "project_id": self.id,
            "entity_name": m.entity_name,
            "role_name": role_name(m.role_id).unwrap_or("unknown"),
            "role_id": m.role_id,
            "entity_id": m.entity_id,
            "entity_type": m.entity_type,
        })
    }
}

/// One access rule of a robot permission, as in Harbor's API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RobotAccess {
    pub resource: String,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
}

/// A robot permission, as in Harbor's API: `kind` is `project` (with the
/// project name as `namespace`, or `*` for all projects) or `system`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RobotPermission {
    pub kind: String,
    pub namespace: String,
    #[serde(default)]
    pub access: Vec<RobotAccess>,
}

impl RobotPermission {
    /// A `project` permission on `project` for the given repository actions.
    pub fn repository(project: &str, actions: &[&str]) -> Self {
        Self {
            kind: "project".into(),
            namespace: project.into(),
            access: actions
                .iter()
                .map(|a| RobotAccess {
                    resource: "repository".into(),
                    action: (*a).into(),
                    effect: None,
                })
                .collect(),
        }
    }
}

/// A robot account as the simulator stores it. `name` is the stored name:
/// without the robot name prefix, and `<project>+<name>` for project-level
/// robots (Harbor adds the prefix when it shows or authenticates a robot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Robot {
    pub id: i64,
    pub name: String,
    pub description: String,
    /// `system` or `project`.
    pub level: String,
    /// 0 for system-level robots.
    pub project_id: i64,
    /// Days, or -1 for never.
    pub duration: i64,
    pub disabled: bool,
    /// Unix seconds, or -1 for never.
    pub expires_at: i64,
    pub permissions: Vec<RobotPermission>,
    /// In clear: test equipment, so tests can read what Harbor would only
    /// store as a hash.
    pub secret: String,
    pub creation_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

impl Robot {
    pub fn is_expired(&self) -> bool {
        self.expires_at != -1 && self.expires_at <= Utc::now().timestamp()
    }

    pub fn to_api(&self, prefix: &str) -> Value {
        json!({
            "id": self.id,
            "name": format!("{prefix}{}", self.name),
            "description": self.description,
            "level": self.level,
            "duration": self.duration,
            "editable": true,
            "disable": self.disabled,
            "expires_at": self.expires_at,
            "permissions": self.permissions,
            "creator_type": "local",
            "creator_ref": ADMIN_USER_ID,
            "creation_time": api_time(self.creation_time),
            "update_time": api_time(self.update_time),
        })
    }
}

/// A user who signs in to Harbor through OIDC and uses a CLI secret for
/// docker. Harbor accepts the CLI secret only while it can refresh the
/// user's stored OIDC token: with an offline token (the scope asked for
/// `offline_access` when they last logged in) or while their IdP session is
/// still alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcUser {
    pub user_id: i64,
    pub username: String,
    pub cli_secret: String,
    /// The OIDC groups from their last login.
    pub groups: Vec<String>,
    pub offline_token: bool,
    pub idp_session_alive: bool,
}

impl OidcUser {
    pub fn cli_secret_works(&self) -> bool {
        self.offline_token || self.idp_session_alive
    }
}

/// The JSON type of a configuration item, from Harbor's `Configurations`
/// schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    String,
    Bool,
    Integer,
}

/// Harbor's user-settable configuration items: name, type, whether GET
/// returns it (secrets are write-only), and the default.
pub fn config_items() -> Vec<(&'static str, ConfigType, bool, Value)> {
    use ConfigType::*;
    vec![
        ("auth_mode", String, true, json!("db_auth")),
        ("primary_auth_mode", Bool, true, json!(false)),
        ("ldap_base_dn", String, true, json!("")),
        ("ldap_filter", String, true, json!("")),
        ("ldap_group_base_dn", String, true, json!("")),
        ("ldap_group_admin_dn", String, true, json!("")),
        ("ldap_group_attribute_name", String, true, json!("")),
        ("ldap_group_search_filter", String, true, json!("")),
        ("ldap_group_search_scope", Integer, true, json!(2)),
        ("ldap_group_attach_parallel", Bool, true, json!(false)),
        ("ldap_scope", Integer, true, json!(2)),
        ("ldap_search_dn", String, true, json!("")),
        ("ldap_search_password", String, false, json!("")),
        ("ldap_timeout", Integer, true, json!(5)),
        ("ldap_uid", String, true, json!("cn")),
        ("ldap_url", String, true, json!("")),
        ("ldap_verify_cert", Bool, true, json!(true)),
        (
            "ldap_group_membership_attribute",
            String,
            true,
            json!("memberof"),
        ),
        (
            "project_creation_restriction",
            String,
            true,
            json!("everyone"),
        ),
        ("read_only", Bool, true, json!(false)),
        ("self_registration", Bool, true, json!(false)),
        ("token_expiration", Integer, true, json!(30)),
        ("uaa_client_id", String, true, json!("")),
        ("uaa_client_secret", String, false, json!("")),
        ("uaa_endpoint", String, true, json!("")),
        ("uaa_verify_cert", Bool, true, json!(false)),
        ("http_authproxy_endpoint", String, true, json!("")),
        (
            "http_authproxy_tokenreview_endpoint",
            String,
            true,
            json!(""),
        ),
        ("http_authproxy_admin_groups", String, true, json!("")),
        ("http_authproxy_admin_usernames", String, true, json!("")),
        ("http_authproxy_verify_cert", Bool, true, json!(true)),
        ("http_authproxy_skip_search", Bool, true, json!(false)),
        ("http_authproxy_server_certificate", String, true, json!("")),
        ("oidc_name", String, true, json!("")),
        ("oidc_endpoint", String, true, json!("")),
        ("oidc_client_id", String, true, json!("")),
        ("oidc_client_secret", String, false, json!("")),
        ("oidc_groups_claim", String, true, json!("")),
        ("oidc_admin_group", String, true, json!("")),
        ("oidc_group_filter", String, true, json!("")),
        ("oidc_scope", String, true, json!("")),
        ("oidc_user_claim", String, true, json!("")),
        ("oidc_verify_cert", Bool, true, json!(true)),
        ("oidc_auto_onboard", Bool, true, json!(false)),
        ("oidc_extra_redirect_parms", String, true, json!("{}")),
        ("oidc_logout", Bool, true, json!(false)),
        ("robot_token_duration", Integer, true, json!(30)),
        ("robot_name_prefix", String, true, json!("robot$")),
        ("notification_enable", Bool, true, json!(true)),
        ("quota_per_project_enable", Bool, true, json!(true)),
        ("storage_per_project", Integer, true, json!(-1)),
        ("audit_log_forward_endpoint", String, true, json!("")),
        ("skip_audit_log_database", Bool, true, json!(false)),
        ("scanner_skip_update_pulltime", Bool, true, json!(false)),
        ("session_timeout", Integer, true, json!(60)),
        ("banner_message", String, true, json!("")),
        ("disabled_audit_log_event_types", String, true, json!("")),
    ]
}

/// A token issued by `/service/token`, for `/v2/` to accept.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub expires: Instant,
}

/// Everything the simulator keeps, behind one lock.
pub struct HarborState {
    pub admin_password: String,
    pub harbor_version: String,
    pub external_url: String,
    pub config: BTreeMap<String, Value>,
    pub projects: BTreeMap<i64, Project>,
    pub robots: BTreeMap<i64, Robot>,
    pub oidc_users: BTreeMap<String, OidcUser>,
    /// The groups Harbor has onboarded (its `user_group` table), by id.
    pub groups: BTreeMap<i64, UserGroup>,
    /// Component name → error, `None` when healthy.
    pub health: BTreeMap<String, Option<String>>,
    pub failed_logins: HashMap<String, u32>,
    pub locked_until: HashMap<String, Instant>,
    pub tokens: HashMap<String, IssuedToken>,
    pub requests: Vec<HarborRequest>,
    pub faults: Vec<Fault>,
    pub(crate) pauses: Vec<Pause>,
    pub latency: Duration,
    pub login_penalty: Duration,
    next_id: i64,
}

impl HarborState {
    pub fn new(admin_password: String, harbor_version: String) -> Self {
        let config = config_items()
            .into_iter()
            .map(|(k, _, _, v)| (k.to_string(), v))
            .collect();
        let health = [
            "core",
            "database",
            "jobservice",
            "portal",
            "redis",
            "registry",
            "registryctl",
            "trivy",
        ]
        .into_iter()
        .map(|c| (c.to_string(), None))
        .collect();
        let mut st = Self {
            admin_password,
            harbor_version,
            external_url: String::new(),
            config,
            projects: BTreeMap::new(),
            robots: BTreeMap::new(),
            oidc_users: BTreeMap::new(),
            groups: BTreeMap::new(),
            health,
            failed_logins: HashMap::new(),
            locked_until: HashMap::new(),
            tokens: HashMap::new(),
            requests: Vec::new(),
            faults: Vec::new(),
            pauses: Vec::new(),
            latency: Duration::ZERO,
            login_penalty: Duration::from_millis(1500),
            // Ids 1 (admin) and 2 (anonymous) are taken, as in Harbor.
            next_id: 3,
        };
        // Every Harbor starts with the public `library` project.
        st.create_project("library", true);
        st
    }

    /// A fresh id. One sequence serves every table: tests only need ids to
    /// be unique and increasing.
    pub fn next_id(&mut self) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    pub fn config_str(&self, key: &str) -> String {
        self.config
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }

    pub fn robot_prefix(&self) -> String {
        self.config_str("robot_name_prefix")
    }

    pub fn is_oidc(&self) -> bool {
        self.config_str("auth_mode") == "oidc_auth"
    }

    pub fn create_project(&mut self, name: &str, public: bool) -> i64 {
        let id = self.next_id();
        let member_id = self.next_id();
        let now = Utc::now();
        self.projects.insert(
            id,
            Project {
                id,
                name: name.to_string(),
                public,
                owner_id: ADMIN_USER_ID,
                creation_time: now,
                update_time: now,
                metadata: BTreeMap::new(),
                repositories: Vec::new(),
                // Harbor makes the creator the project's admin.
                members: vec![Member {
                    id: member_id,
                    entity_type: "u".into(),
                    entity_id: ADMIN_USER_ID,
                    entity_name: "admin".into(),
                    role_id: 1,
                }],
            },
        );
        id
    }

    pub fn project_by_name(&self, name: &str) -> Option<&Project> {
        self.projects.values().find(|p| p.name == name)
    }

    pub fn project_id_by_name(&self, name: &str) -> Option<i64> {
        self.project_by_name(name).map(|p| p.id)
    }

    /// The group with this name and type, when Harbor has one.
    pub fn find_group(&self, name: &str, group_type: i64) -> Option<i64> {
        self.groups
            .values()
            .find(|g| g.name == name && g.group_type == group_type)
            .map(|g| g.id)
    }

    /// The id of the group with this name and type, inserting the row when
    /// there is none (Harbor's read-or-create on name and type).
    pub fn ensure_group(&mut self, name: &str, group_type: i64) -> i64 {
        if let Some(id) = self.find_group(name, group_type) {
            return id;
        }
        let id = self.next_id();
        self.groups.insert(
            id,
            UserGroup {
                id,
                name: name.to_string(),
                group_type,
                ldap_group_dn: String::new(),
            },
        );
        id
    }

    /// The group a member request names by `group_name` (or LDAP DN) and
    /// `group_type`, found or onboarded the way Harbor's member controller
    /// does: an existing row with that exact name and type wins, whatever
    /// the auth mode; otherwise the current authenticator searches and
    /// onboards it. In `oidc_auth` that always makes (or finds) an OIDC
    /// group (type 3), whatever type was asked for; in `http_auth` with
    /// skip-search an HTTP group (type 2).
    pub fn member_group(&mut self, key: &str, group_type: i64) -> Result<i64, GroupRefusal> {
        if let Some(id) = self.find_group(key, group_type) {
            return Ok(id);
        }
        match self.config_str("auth_mode").as_str() {
            "oidc_auth" => Ok(self.ensure_group(key, OIDC_GROUP)),
            "http_auth" => {
                let skip_search = self
                    .config
                    .get("http_authproxy_skip_search")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                if skip_search {
                    Ok(self.ensure_group(key, HTTP_GROUP))
                } else {
                    Err(GroupRefusal::Internal)
                }
            }
            "ldap_auth" => Err(GroupRefusal::Internal),
            _ => Err(GroupRefusal::NotFound(format!("{key} not found"))),
        }
    }

    /// The group a member request names by LDAP DN: an LDAP group with that
    /// DN, else what the authenticator onboards for it (in OIDC mode an OIDC
    /// group named after the DN).
    pub fn member_ldap_group(&mut self, dn: &str) -> Result<i64, GroupRefusal> {
        if let Some(g) = self
            .groups
            .values()
            .find(|g| g.group_type == LDAP_GROUP && g.ldap_group_dn.eq_ignore_ascii_case(dn))
        {
            return Ok(g.id);
        }
        self.member_group(dn, LDAP_GROUP)
    }

    /// The username of a user id Harbor knows (admin or an OIDC user).
    pub fn username(&self, user_id: i64) -> Option<String> {
        if user_id == ADMIN_USER_ID {
            return Some("admin".into());
        }
        self.oidc_users
            .values()
            .find(|u| u.user_id == user_id)
            .map(|u| u.username.clone())
    }

    /// The user id for a username Harbor knows (admin or an OIDC user).
    pub fn user_id(&self, username: &str) -> Option<i64> {
        if username == "admin" {
            return Some(ADMIN_USER_ID);
        }
        self.oidc_users.get(username).map(|u| u.user_id)
    }

    pub fn robot_by_login_name(&self, login: &str) -> Option<&Robot> {
        let stored = login.strip_prefix(&self.robot_prefix())?;
        self.robots.values().find(|r| r.name == stored)
    }

    /// A robot's expiry from its duration in days, as Harbor computes it.
    pub fn expiry_for(&self, duration: i64, created: DateTime<Utc>) -> (i64, i64) {
        match duration {
            -1 => (-1, -1),
            0 => {
                let days = self
                    .config
                    .get("robot_token_duration")
                    .and_then(Value::as_i64)
                    .unwrap_or(30);
                (days, (created + chrono::Duration::days(days)).timestamp())
            }
            d => (d, (created + chrono::Duration::days(d)).timestamp()),
        }
    }

    /// The repository actions a principal holds in `project`, for a token.
    pub fn registry_actions(&self, who: &super::auth::Principal, project: &str) -> Vec<String> {
        use super::auth::Principal;
        let Some(p) = self.project_by_name(project) else {
            return Vec::new();
        };
        let all = || vec!["pull".to_string(), "push".to_string(), "delete".to_string()];
        match who {
            Principal::Admin => all(),
            Principal::Robot(id) => {
                let Some(robot) = self.robots.get(id) else {
                    return Vec::new();
                };
                let mut actions: Vec<String> = robot
                    .permissions
                    .iter()
                    .filter(|perm| {
                        perm.kind == "project"
                            && (perm.namespace == project || perm.namespace == "*")
                    })
                    .flat_map(|perm| perm.access.iter())
                    .filter(|a| a.resource == "repository" && a.effect.as_deref() != Some("deny"))
                    .map(|a| a.action.clone())
                    .collect();
                actions.sort();
                actions.dedup();
                actions
            }
            Principal::OidcUser(name) => {
                let Some(user) = self.oidc_users.get(name) else {
                    return Vec::new();
                };
                // At login Harbor onboards the token's groups as OIDC groups
                // (type 3) and the user belongs to those ids only: a member
                // that names an HTTP or LDAP group of the same name grants
                // nothing.
                let role = p
                    .members
                    .iter()
                    .filter(|m| {
                        (m.entity_type == "u" && m.entity_id == user.user_id)
                            || (m.entity_type == "g"
                                && self.groups.get(&m.entity_id).is_some_and(|g| {
                                    g.group_type == OIDC_GROUP && user.groups.contains(&g.name)
                                }))
                    })
                    .map(|m| m.role_id)
                    .min();
                match role {
                    Some(1 | 2 | 4) => vec!["pull".into(), "push".into()],
                    Some(_) => vec!["pull".into()],
                    None if p.public => vec!["pull".into()],
                    None => Vec::new(),
                }
            }
            Principal::Anonymous | Principal::Rejected => {
                if p.public {
                    vec!["pull".into()]
                } else {
                    Vec::new()
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_harbors_pattern() {
        for ok in ["team-a", "a", "team.a_b-1", "0x"] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in [
            "", "Team", "team--a", "-team", "team-", "team a", "team+a", "team$",
        ] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn secret_rule_needs_upper_lower_digit_and_length() {
        assert!(is_valid_robot_secret("Abcdefg1"));
        assert!(!is_valid_robot_secret("Abcdef1"));
        assert!(!is_valid_robot_secret("abcdefg1"));
        assert!(!is_valid_robot_secret("ABCDEFG1"));
        assert!(!is_valid_robot_secret("Abcdefgh"));
        assert!(!is_valid_robot_secret(&format!("A1{}", "a".repeat(127))));
        assert!(is_valid_robot_secret(&generate_secret()));
    }

    fn state(auth_mode: &str) -> HarborState {
        let mut st = HarborState::new("pw".into(), "v2.11.1".into());
        st.config.insert("auth_mode".into(), json!(auth_mode));
        st
    }

    #[test]
    fn oidc_mode_onboards_an_oidc_group_whatever_type_is_asked_for() {
        let mut st = state("oidc_auth");
        let asked_http = st.member_group("team-a", HTTP_GROUP).unwrap();
        assert_eq!(st.groups[&asked_http].group_type, OIDC_GROUP);
        assert_eq!(st.member_group("team-a", OIDC_GROUP).unwrap(), asked_http);
        assert_eq!(st.member_group("team-a", 0).unwrap(), asked_http);
        assert_eq!(st.groups.len(), 1);
    }

    #[test]
    fn an_existing_group_of_the_asked_type_wins_over_onboarding() {
        let mut st = state("oidc_auth");
        let http = st.ensure_group("team-b", HTTP_GROUP);
        assert_eq!(st.member_group("team-b", HTTP_GROUP).unwrap(), http);
        let oidc = st.member_group("team-b", OIDC_GROUP).unwrap();
        assert_ne!(oidc, http);
        assert_eq!(st.groups[&oidc].group_type, OIDC_GROUP);
    }

    #[test]
    fn other_modes_find_or_refuse_groups_as_their_authenticators_do() {
        let mut st = state("db_auth");
        assert_eq!(
            st.member_group("team-a", OIDC_GROUP),
            Err(GroupRefusal::NotFound("team-a not found".into()))
        );
        let mut st = state("http_auth");
        assert_eq!(
            st.member_group("team-a", HTTP_GROUP),
            Err(GroupRefusal::Internal)
        );
        st.config
            .insert("http_authproxy_skip_search".into(), json!(true));
        let id = st.member_group("team-a", OIDC_GROUP).unwrap();
        assert_eq!(st.groups[&id].group_type, HTTP_GROUP);
        let mut st = state("ldap_auth");
        assert_eq!(
            st.member_group("team-a", LDAP_GROUP),
            Err(GroupRefusal::Internal)
        );
        // An LDAP DN in OIDC mode becomes an OIDC group named after it.
        let mut st = state("oidc_auth");
        let id = st.member_ldap_group("cn=team-a,dc=example").unwrap();
        assert_eq!(st.groups[&id].name, "cn=team-a,dc=example");
        assert_eq!(st.groups[&id].group_type, OIDC_GROUP);
    }

    #[test]
    fn only_oidc_group_members_grant_oidc_users_access() {
        use super::super::auth::Principal;
        let mut st = state("oidc_auth");
        let oidc_project = st.create_project("team-a", false);
        let http_project = st.create_project("team-b", false);
        let oidc = st.ensure_group("devs", OIDC_GROUP);
        let http = st.ensure_group("devs", HTTP_GROUP);
        for (pid, gid) in [(oidc_project, oidc), (http_project, http)] {
            let id = st.next_id();
            st.projects.get_mut(&pid).unwrap().members.push(Member {
                id,
                entity_type: "g".into(),
                entity_id: gid,
                entity_name: "devs".into(),
                role_id: 2,
            });
        }
        let user_id = st.next_id();
        st.oidc_users.insert(
            "dev@example.com".into(),
            OidcUser {
                user_id,
                username: "dev@example.com".into(),
                cli_secret: "s".into(),
                groups: vec!["devs".into()],
                offline_token: true,
                idp_session_alive: true,
            },
        );
        let who = Principal::OidcUser("dev@example.com".into());
        assert_eq!(st.registry_actions(&who, "team-a"), ["pull", "push"]);
        assert!(st.registry_actions(&who, "team-b").is_empty());
    }
}

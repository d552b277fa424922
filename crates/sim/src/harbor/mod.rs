//! A simulated Harbor: the REST API the doctor and Otomi's Harbor operator
//! use, the registry token service and `/v2/`, with Harbor's status codes,
//! error bodies, naming rules and login penalty, on 127.0.0.1 over HTTP or
//! HTTPS, each over HTTP/1.1 or HTTP/2 (prior knowledge on plain HTTP, ALPN
//! over TLS).
//!
//! Tests and `harbor-doctor lab` seed and inspect its state directly (projects,
//! members, groups, repositories, robots and their secrets, configuration,
//! OIDC users), read the log of requests it served (to assert, say, that a
//! rerun wrote nothing), and inject faults (500s, HTML pages, garbage,
//! slowness) into the next matching requests. `start_for_test` can put
//! Prism, the validating proxy, in front of it so that every request and
//! response is checked against Harbor's own API description (see `prism`).
//! Prism speaks HTTP/1.1 only: an HTTP/2 client pointed at it gets no HTTP
//! answer at all, so HTTP/2 tests talk to `HarborEndpoint::sim().url()`.
//!
//! # What it serves
//!
//! Of the `project`, `member`, `usergroup`, `robot`, `configure` and
//! `systeminfo` operations of Harbor's API description (`swagger.yaml`):
//!
//! | tag | served | not served |
//! | --- | --- | --- |
//! | project | listProjects, headProject, createProject, getProject, updateProject, deleteProject, getProjectDeletable | getProjectSummary, the `metadatas`, `repositories`/`artifacts`, `scanner`, `logs`, `auditlog-exts`, `preheat`, `immutabletagrules` and `webhook` sub-resources |
//! | member | listProjectMembers, createProjectMember, getProjectMember, updateProjectMember, deleteProjectMember | — |
//! | usergroup | listUserGroups, getUserGroup | createUserGroup, searchUserGroups, updateUserGroup, deleteUserGroup |
//! | robot | ListRobot, CreateRobot, GetRobotByID, UpdateRobot, RefreshSec, DeleteRobot | — |
//! | configure | getConfigurations, updateConfigurations | — |
//! | systeminfo | getSystemInfo (and getPing, getHealth) | getVolumes, getCert |
//!
//! Anything else answers as Harbor's router (go-openapi) does, before any
//! handler: a path with no operation gets 404 `{"errors":[{"code":
//! "NOT_FOUND","message":"path <path> was not found"}]}`, a method the path
//! has no operation for gets 405 `METHOD_NOT_ALLOWED`, `method X is not
//! allowed, but [..] are` (Harbor's own answer, HEAD on a GET path
//! included), and an operation Harbor has but the simulator does not serve
//! gets the 404, saying so. Never an empty body. `routes::API_PATHS` is the
//! table; a test holds it to `swagger.yaml`.
//!
//! # What Harbor does there that its API description does not say
//!
//! From Harbor 2.11's handlers and controllers (`src/server/v2.0/handler`,
//! `src/controller/member`, `src/pkg/usergroup`, `src/core/auth`):
//!
//! - Project access is checked before the project is looked up: only the
//!   admin learns from a 404. `X-Is-Resource-Name: true` makes a numeric
//!   `{project_name_or_id}` a name. HEAD /projects needs a signed-in caller.
//! - `PUT /projects/{p}` keeps the name (`project_name` is ignored), merges
//!   metadata, and refuses a `cve_allowlist.project_id` of another project.
//! - `DELETE /projects/{p}` is refused with 412 `PRECONDITION` while the
//!   project has repositories (`add_repository`); robots do not block it:
//!   its project-level robots are deleted with it, system-level robots keep
//!   their permissions on it.
//! - Lists: projects sort by name unless `sort` says otherwise; `q` keys
//!   Harbor's project query does not know are ignored. Members are listed
//!   by *exact* `entityname`, but `X-Total-Count` (and `Link`) count every
//!   member of the project.
//! - `PUT /members/{mid}` and `DELETE /members/{mid}` answer 200 whether or
//!   not the member exists; the PUT stores any role id, and a member whose
//!   role names no role drops out of lists and lookups (Harbor joins the
//!   role table) while still counted.
//! - Adding a member by group name: Harbor looks up a `user_group` row with
//!   that exact name *and* type; when there is one, the member names it.
//!   Otherwise the current authenticator searches and onboards the group:
//!   in `oidc_auth` it always onboards (or finds) an **OIDC group, type 3**,
//!   whatever `group_type` was sent (Otomi's operator sends 2, the doctor
//!   3: both end up on the same group); `http_auth` with skip-search makes
//!   an HTTP group (2), without it the search fails with a bare 500, as
//!   does LDAP for a name that is not a DN; database authentication cannot
//!   search groups and answers 404 `<name> not found`. Harbor never checks
//!   `group_type`. A duplicate member is refused (409) before the role is
//!   checked (400), and the group is onboarded before either.
//! - At an OIDC login Harbor puts the user in the OIDC groups (type 3) named
//!   by the token's groups claim; a member naming an HTTP or LDAP group of
//!   the same name grants them nothing. The token service follows that.
//! - `GET /usergroups/{id}` leaves the id out of its answer.

mod api;
mod auth;
mod faults;
mod model;
pub mod prism;
mod projects;
mod registry;
pub mod routes;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use chrono::Utc;
use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::tls::{self, ServerHandle, TestPki};

pub use crate::gate::Gate;
pub use faults::Fault;
pub use model::{
    Member, OidcUser, Project, Robot, RobotAccess, RobotPermission, UserGroup, HTTP_GROUP,
    LDAP_GROUP, OIDC_GROUP,
};
pub use prism::HarborEndpoint;

/// OIDC settings as Harbor's configuration names them.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    pub name: String,
    /// The issuer URL.
    pub endpoint: String,
    pub client_id: String,
    pub client_secret: String,
    /// Comma separated, as Harbor stores it.
    pub scope: String,
    pub groups_claim: String,
    pub admin_group: String,
    pub user_claim: String,
    pub verify_cert: bool,
    pub auto_onboard: bool,
}

impl OidcSettings {
    /// Keycloak as Otomi configures it: scope `openid` only, which is what
    /// breaks docker login once the user's session ends.
    pub fn keycloak(issuer: &str) -> Self {
        Self {
            name: "keycloak".into(),
            endpoint: issuer.into(),
            client_id: "otomi".into(),
            client_secret: "oidc-client-secret-from-sim".into(),
            scope: "openid".into(),
            groups_claim: "groups".into(),
            admin_group: "admin".into(),
            user_claim: "email".into(),
            verify_cert: true,
            auto_onboard: true,
        }
    }
}

/// How to start the simulator.
#[derive(Debug, Clone)]
pub struct HarborOptions {
    /// Serve HTTPS with a fresh private CA (see `HarborSim::ca_pem`).
    pub tls: bool,
    pub admin_password: String,
    /// `robot$` by default; Otomi sets `otomi-`.
    pub robot_name_prefix: String,
    /// What systeminfo reports and Secrets should name; the simulator's own
    /// URL when `None`.
    pub external_url: Option<String>,
    pub harbor_version: String,
    /// `db_auth` or `oidc_auth` (the latter implied by `oidc`).
    pub auth_mode: String,
    pub oidc: Option<OidcSettings>,
    /// Added before every response, to make benchmarks realistic.
    pub latency: Duration,
    /// How long a rejected login sleeps (Harbor: 1.5 s). Suites lower it.
    pub login_penalty: Duration,
}

impl Default for HarborOptions {
    fn default() -> Self {
        Self {
            tls: false,
            admin_password: "Harbor12345".into(),
            robot_name_prefix: "robot$".into(),
            external_url: None,
            harbor_version: "v2.11.1-6b7ecba1".into(),
            auth_mode: "db_auth".into(),
            oidc: None,
            latency: Duration::ZERO,
            login_penalty: Duration::from_millis(1500),
        }
    }
}

impl HarborOptions {
    /// An installation as Otomi runs it: OIDC against Keycloak at `issuer`,
    /// robot prefix `otomi-`.
    pub fn otomi(issuer: &str) -> Self {
        Self {
            robot_name_prefix: "otomi-".into(),
            auth_mode: "oidc_auth".into(),
            oidc: Some(OidcSettings::keycloak(issuer)),
            ..Self::default()
        }
    }
}

/// One request as the simulator served it. Never holds a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HarborRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub status: u16,
    /// POST, PUT, PATCH or DELETE.
    pub write: bool,
    /// The basic-auth username, when one was sent.
    pub username: Option<String>,
    pub request_id: String,
}

/// A robot to seed, as `POST /robots` would create it.
#[derive(Debug, Clone)]
pub struct RobotSeed {
    /// Without prefix; for a project-level robot, without `<project>+`.
    pub name: String,
    pub description: String,
    pub level: String,
    pub duration: i64,
    pub disabled: bool,
    pub permissions: Vec<RobotPermission>,
    /// Generated when `None`.
    pub secret: Option<String>,
}

impl RobotSeed {
    /// A system-level robot with one project permission on repositories,
    /// the way Otomi makes `team-<id>-pull` and `team-<id>-push`.
    pub fn system(name: &str, project: &str, actions: &[&str]) -> Self {
        Self {
            name: name.into(),
            description: String::new(),
            level: "system".into(),
            duration: -1,
            disabled: false,
            permissions: vec![RobotPermission::repository(project, actions)],
            secret: None,
        }
    }
}

/// The server-side state shared by all handlers.
pub(crate) struct Sim {
    pub(crate) state: Mutex<model::HarborState>,
}

/// A running simulated Harbor.
pub struct HarborSim {
    sim: Arc<Sim>,
    server: ServerHandle,
    pki: Option<TestPki>,
}

impl HarborSim {
    pub async fn start(opts: HarborOptions) -> Result<Self> {
        let mut state =
            model::HarborState::new(opts.admin_password.clone(), opts.harbor_version.clone());
        state.latency = opts.latency;
        state.login_penalty = opts.login_penalty;
        state
            .config
            .insert("robot_name_prefix".into(), json!(opts.robot_name_prefix));
        let auth_mode = if opts.oidc.is_some() {
            "oidc_auth".to_string()
        } else {
            opts.auth_mode.clone()
        };
        state.config.insert("auth_mode".into(), json!(auth_mode));
        if let Some(o) = &opts.oidc {
            for (k, v) in [
                ("oidc_name", json!(o.name)),
                ("oidc_endpoint", json!(o.endpoint)),
                ("oidc_client_id", json!(o.client_id)),
                ("oidc_client_secret", json!(o.client_secret)),
                ("oidc_scope", json!(o.scope)),
                ("oidc_groups_claim", json!(o.groups_claim)),
                ("oidc_admin_group", json!(o.admin_group)),
                ("oidc_user_claim", json!(o.user_claim)),
                ("oidc_verify_cert", json!(o.verify_cert)),
                ("oidc_auto_onboard", json!(o.auto_onboard)),
            ] {
                state.config.insert(k.into(), v);
            }
        }
        let sim = Arc::new(Sim {
            state: Mutex::new(state),
        });
        let pki = if opts.tls {
            Some(TestPki::generate()?)
        } else {
            None
        };
        let server = tls::serve(router(sim.clone()), pki.as_ref()).await?;
        let this = Self { sim, server, pki };
        let external = opts.external_url.clone().unwrap_or_else(|| this.url());
        this.sim.state.lock().external_url = external;
        Ok(this)
    }

    /// Starts the simulator for a test, behind Prism when the contract stage
    /// asks for it (`HARBOR_DOCTOR_PRISM`); see [`prism`].
    pub async fn start_for_test(opts: HarborOptions) -> Result<HarborEndpoint> {
        prism::start_for_test(opts).await
    }

    /// The base URL, e.g. `http://127.0.0.1:41234`, without a trailing slash.
    pub fn url(&self) -> String {
        let scheme = if self.pki.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.server.addr)
    }

    /// The CA certificate (PEM) to trust, when serving HTTPS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.pki.as_ref().map(|p| p.ca_pem.as_str())
    }

    pub fn external_url(&self) -> String {
        self.sim.state.lock().external_url.clone()
    }

    pub fn set_external_url(&self, url: &str) {
        self.sim.state.lock().external_url = url.to_string();
    }

    pub fn admin_password(&self) -> String {
        self.sim.state.lock().admin_password.clone()
    }

    pub fn robot_prefix(&self) -> String {
        self.sim.state.lock().robot_prefix()
    }

    pub fn shutdown(&self) {
        self.server.shutdown();
    }

    // -- projects and members ------------------------------------------------

    /// Creates a project (owned by admin, who becomes its project admin) and
    /// returns its id. Panics when it exists: a mistake in the test.
    pub fn add_project(&self, name: &str, public: bool) -> i64 {
        let mut st = self.sim.state.lock();
        assert!(
            st.project_by_name(name).is_none(),
            "HarborSim::add_project: {name} exists"
        );
        st.create_project(name, public)
    }

    pub fn project(&self, name: &str) -> Option<Project> {
        self.sim.state.lock().project_by_name(name).cloned()
    }

    pub fn projects(&self) -> Vec<Project> {
        self.sim.state.lock().projects.values().cloned().collect()
    }

    pub fn remove_project(&self, name: &str) -> bool {
        let mut st = self.sim.state.lock();
        match st.project_id_by_name(name) {
            Some(id) => st.projects.remove(&id).is_some(),
            None => false,
        }
    }

    /// Adds a group (group_type 1 LDAP, 2 HTTP, 3 OIDC) to a project with a
    /// role (1 projectAdmin, 2 developer, 3 guest, 4 maintainer, 5 limitedGuest).
    /// The group row is made with exactly this type, whatever the auth mode:
    /// seeding can plant what `POST /members` in OIDC mode never makes (an
    /// HTTP group), as an earlier auth mode or `POST /usergroups` would.
    pub fn add_group_member(&self, project: &str, group: &str, group_type: i64, role_id: i64) {
        let mut st = self.sim.state.lock();
        let gid = st.ensure_group(group, group_type);
        let mid = st.next_id();
        let pid = st
            .project_id_by_name(project)
            .unwrap_or_else(|| panic!("HarborSim::add_group_member: no project {project}"));
        st.projects
            .get_mut(&pid)
            .expect("found by name")
            .members
            .push(model::Member {
                id: mid,
                entity_type: "g".into(),
                entity_id: gid,
                entity_name: group.into(),
                role_id,
            });
    }

    /// Adds a repository to a project, as a push would; Harbor refuses to
    /// delete a project that has any.
    pub fn add_repository(&self, project: &str, repository: &str) {
        let mut st = self.sim.state.lock();
        let pid = st
            .project_id_by_name(project)
            .unwrap_or_else(|| panic!("HarborSim::add_repository: no project {project}"));
        let p = st.projects.get_mut(&pid).expect("found by name");
        if !p.repositories.iter().any(|r| r == repository) {
            p.repositories.push(repository.to_string());
        }
    }

    /// Plants a `user_group` row with this name and type (as `POST
    /// /usergroups` or an earlier auth mode would) and returns its id; the
    /// existing one when there is one.
    pub fn add_user_group(&self, name: &str, group_type: i64) -> i64 {
        self.sim.state.lock().ensure_group(name, group_type)
    }

    /// The groups Harbor has onboarded (its `user_group` table).
    pub fn user_groups(&self) -> Vec<UserGroup> {
        self.sim.state.lock().groups.values().cloned().collect()
    }

    /// The group that a project member names, when it is a group member.
    pub fn member_group(&self, project: &str, entity_name: &str) -> Option<UserGroup> {
        let st = self.sim.state.lock();
        let p = st.project_by_name(project)?;
        let m = p
            .members
            .iter()
            .find(|m| m.entity_type == "g" && m.entity_name == entity_name)?;
        st.groups.get(&m.entity_id).cloned()
    }

    /// Removes a member (user or group) by name; true when one was removed.
    pub fn remove_member(&self, project: &str, entity_name: &str) -> bool {
        let mut st = self.sim.state.lock();
        let Some(pid) = st.project_id_by_name(project) else {
            return false;
        };
        let members = &mut st.projects.get_mut(&pid).expect("found by name").members;
        let before = members.len();
        members.retain(|m| m.entity_name != entity_name);
        members.len() != before
    }

    // -- robots ------------------------------------------------------------

    /// Creates a robot as `POST /robots` would and returns it (with its
    /// secret). Panics on a name clash or a missing project.
    pub fn add_robot(&self, seed: RobotSeed) -> Robot {
        let mut st = self.sim.state.lock();
        let (stored, project_id) = if seed.level == "project" {
            let project = &seed.permissions[0].namespace;
            let pid = st
                .project_id_by_name(project)
                .unwrap_or_else(|| panic!("HarborSim::add_robot: no project {project}"));
            (format!("{project}+{}", seed.name), pid)
        } else {
            (seed.name.clone(), 0)
        };
        assert!(
            !st.robots
                .values()
                .any(|r| r.name == stored && r.project_id == project_id),
            "HarborSim::add_robot: {stored} exists"
        );
        let now = Utc::now();
        let (duration, expires_at) = st.expiry_for(seed.duration, now);
        let id = st.next_id();
        let robot = Robot {
            id,
            name: stored,
            description: seed.description,
            level: seed.level,
            project_id,
            duration,
            disabled: seed.disabled,
            expires_at,
            permissions: seed.permissions,
            secret: seed.secret.unwrap_or_else(model::generate_secret),
            creation_time: now,
            update_time: now,
        };
        st.robots.insert(id, robot.clone());
        robot
    }

    pub fn robots(&self) -> Vec<Robot> {
        self.sim.state.lock().robots.values().cloned().collect()
    }

    /// A robot by its stored name (no prefix).
    pub fn robot(&self, name: &str) -> Option<Robot> {
        let st = self.sim.state.lock();
        st.robots.values().find(|r| r.name == name).cloned()
    }

    /// The username a robot logs in with: the current prefix and its name.
    pub fn robot_login_name(&self, robot: &Robot) -> String {
        format!("{}{}", self.robot_prefix(), robot.name)
    }

    fn with_robot(&self, id: i64, f: impl FnOnce(&mut Robot)) {
        let mut st = self.sim.state.lock();
        let robot = st
            .robots
            .get_mut(&id)
            .unwrap_or_else(|| panic!("HarborSim: no robot {id}"));
        f(robot);
    }

    /// Sets a robot's secret behind everyone's back: drift between Harbor
    /// and the cluster's Secret.
    pub fn set_robot_secret(&self, id: i64, secret: &str) {
        self.with_robot(id, |r| r.secret = secret.to_string());
    }

    pub fn set_robot_disabled(&self, id: i64, disabled: bool) {
        self.with_robot(id, |r| r.disabled = disabled);
    }

    /// Unix seconds, or -1 for never.
    pub fn set_robot_expires_at(&self, id: i64, expires_at: i64) {
        self.with_robot(id, |r| r.expires_at = expires_at);
    }

    pub fn set_robot_permissions(&self, id: i64, permissions: Vec<RobotPermission>) {
        self.with_robot(id, |r| r.permissions = permissions);
    }

    pub fn remove_robot(&self, id: i64) -> bool {
        self.sim.state.lock().robots.remove(&id).is_some()
    }

    // -- configuration -----------------------------------------------------

    /// A configuration value, secrets included (e.g. `oidc_client_secret`).
    pub fn config_value(&self, key: &str) -> Option<Value> {
        self.sim.state.lock().config.get(key).cloned()
    }

    /// Sets a configuration value directly, as an operator re-applying its
    /// own configuration would.
    pub fn set_config(&self, key: &str, value: Value) {
        self.sim.state.lock().config.insert(key.into(), value);
    }

    // -- OIDC users ----------------------------------------------------------

    /// Adds an OIDC user who has just logged in to the web UI: their CLI
    /// secret works, and keeps working after the IdP session ends only if
    /// the configured scope asked for `offline_access`.
    pub fn add_oidc_user(&self, username: &str, cli_secret: &str, groups: &[&str]) {
        let mut st = self.sim.state.lock();
        let user_id = st.next_id();
        let offline = scope_has_offline_access(&st.config_str("oidc_scope"));
        st.oidc_users.insert(
            username.into(),
            OidcUser {
                user_id,
                username: username.into(),
                cli_secret: cli_secret.into(),
                groups: groups.iter().map(|g| g.to_string()).collect(),
                offline_token: offline,
                idp_session_alive: true,
            },
        );
    }

    /// The user logs in to the web UI again: a new IdP session, and an
    /// offline token when the scope now asks for one.
    pub fn oidc_web_login(&self, username: &str) {
        let mut st = self.sim.state.lock();
        let offline = scope_has_offline_access(&st.config_str("oidc_scope"));
        let user = st
            .oidc_users
            .get_mut(username)
            .unwrap_or_else(|| panic!("HarborSim: no OIDC user {username}"));
        user.offline_token = offline;
        user.idp_session_alive = true;
    }

    /// The user's Keycloak session ends (idle timeout, logout, Keycloak
    /// redeployed): without an offline token, their CLI secret stops working.
    pub fn end_idp_session(&self, username: &str) {
        let mut st = self.sim.state.lock();
        if let Some(user) = st.oidc_users.get_mut(username) {
            user.idp_session_alive = false;
        }
    }

    pub fn oidc_user(&self, username: &str) -> Option<OidcUser> {
        self.sim.state.lock().oidc_users.get(username).cloned()
    }

    // -- health, timing, logins, requests, faults -----------------------------

    /// Marks a component (core, database, jobservice, portal, redis,
    /// registry, registryctl, trivy) unhealthy with `error`, or healthy.
    pub fn set_component_health(&self, component: &str, error: Option<&str>) {
        self.sim
            .state
            .lock()
            .health
            .insert(component.into(), error.map(str::to_string));
    }

    pub fn set_latency(&self, latency: Duration) {
        self.sim.state.lock().latency = latency;
    }

    pub fn set_login_penalty(&self, penalty: Duration) {
        self.sim.state.lock().login_penalty = penalty;
    }

    /// How many logins with this username were refused.
    pub fn failed_logins(&self, username: &str) -> u32 {
        self.sim
            .state
            .lock()
            .failed_logins
            .get(username)
            .copied()
            .unwrap_or(0)
    }

    pub fn requests(&self) -> Vec<HarborRequest> {
        self.sim.state.lock().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.sim.state.lock().requests.clear();
    }

    /// How many write requests (POST, PUT, PATCH, DELETE) were served.
    pub fn write_count(&self) -> usize {
        self.sim
            .state
            .lock()
            .requests
            .iter()
            .filter(|r| r.write)
            .count()
    }

    /// Makes the next matching requests fail; faults apply in the order
    /// they were injected.
    pub fn inject_fault(&self, fault: Fault) {
        self.sim.state.lock().faults.push(fault);
    }

    /// Holds the next `times` requests with this method whose path starts
    /// with `path_prefix` until the test releases them through the gate
    /// returned (before faults apply and before the request takes effect).
    pub fn pause(&self, method: &str, path_prefix: &str, times: usize) -> Gate {
        let gate = Gate::new(times);
        self.sim.state.lock().pauses.push(faults::Pause {
            method: Method::from_bytes(method.as_bytes()).expect("an HTTP method name"),
            path_prefix: path_prefix.to_string(),
            gate: gate.clone(),
        });
        gate
    }
}

fn scope_has_offline_access(scope: &str) -> bool {
    scope.split(',').any(|s| s.trim() == "offline_access")
}

fn router(sim: Arc<Sim>) -> Router {
    // Keep `routes::API_PATHS` in step: requests it does not list as served
    // never reach these routes.
    Router::new()
        .route("/api/v2.0/ping", get(api::ping))
        .route("/api/v2.0/health", get(api::health))
        .route("/api/v2.0/systeminfo", get(api::systeminfo))
        .route(
            "/api/v2.0/projects",
            get(projects::list_projects)
                .head(projects::head_project)
                .post(projects::create_project),
        )
        .route(
            "/api/v2.0/projects/{project_name_or_id}",
            get(projects::get_project)
                .put(projects::update_project)
                .delete(projects::delete_project),
        )
        .route(
            "/api/v2.0/projects/{project_name_or_id}/_deletable",
            get(projects::project_deletable),
        )
        .route(
            "/api/v2.0/projects/{project_name_or_id}/members",
            get(projects::list_members).post(projects::create_member),
        )
        .route(
            "/api/v2.0/projects/{project_name_or_id}/members/{mid}",
            get(projects::get_member)
                .put(projects::update_member)
                .delete(projects::delete_member),
        )
        .route("/api/v2.0/usergroups", get(projects::list_usergroups))
        .route(
            "/api/v2.0/usergroups/{group_id}",
            get(projects::get_usergroup),
        )
        .route(
            "/api/v2.0/robots",
            get(api::list_robots).post(api::create_robot),
        )
        .route(
            "/api/v2.0/robots/{robot_id}",
            get(api::get_robot)
                .put(api::update_robot)
                .patch(api::refresh_robot_secret)
                .delete(api::delete_robot),
        )
        .route(
            "/api/v2.0/configurations",
            get(api::get_configurations).put(api::put_configurations),
        )
        .route("/service/token", get(registry::token))
        .route("/v2/", get(registry::v2_base))
        .route("/v2", get(registry::v2_base))
        .fallback(api::api_not_found)
        .layer(middleware::from_fn_with_state(sim.clone(), around_request))
        .with_state(sim)
}

/// Runs around every request: added latency, injected faults, the echoed
/// `X-Request-Id`, and the request log.
async fn around_request(State(sim): State<Arc<Sim>>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let username = auth::basic_credentials(req.headers()).map(|(u, _)| u);
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());

    let pause = {
        let mut st = sim.state.lock();
        st.pauses.retain(|p| p.gate.is_catching());
        st.pauses
            .iter()
            .find(|p| p.matches(&method, &path))
            .map(|p| p.gate.clone())
    };
    if let Some(gate) = pause {
        gate.pass().await;
    }
    let (latency, fault) = {
        let mut st = sim.state.lock();
        let fault = st
            .faults
            .iter_mut()
            .find(|f| f.matches(&method, &path))
            .map(|f| {
                f.remaining -= 1;
                f.clone()
            });
        st.faults.retain(|f| f.remaining > 0);
        (st.latency, fault)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut resp = match fault {
        // Harbor's router answers unknown paths and methods itself, before
        // any handler (and so before authentication).
        None => match routes::refuse(&method, &path) {
            Some(refused) => refused,
            None => next.run(req).await,
        },
        Some(fault) => {
            if fault.after_apply {
                let _ = next.run(req).await;
            }
            if !fault.delay.is_zero() {
                tokio::time::sleep(fault.delay).await;
            }
            fault.response()
        }
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    let write = matches!(
        method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    sim.state.lock().requests.push(HarborRequest {
        method: method.to_string(),
        path,
        query,
        status: resp.status().as_u16(),
        write,
        username,
        request_id,
    });
    resp
}

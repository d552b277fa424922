//! The lab's installation: the simulated servers and the throwaway
//! PostgreSQL, wired together the way a real Harbor installation is (the
//! cluster's database pod port-forwards to the real PostgreSQL, Harbor's
//! OIDC issuer is the simulated Keycloak's realm), with every known issue
//! planted.
//!
//! Tests start it in-process ([`Lab::start`]) to get a broken installation;
//! `harbor-doctor lab` starts the same one and hands its environment to a
//! shell. It lives here, with the simulators, so that a doctor built without
//! its `lab` feature links none of them; it therefore knows nothing of the
//! doctor's own types and repeats the few plain values it needs (Otomi's
//! names and prefixes).

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use base64::Engine;
use serde_json::json;

use crate::harbor::{HarborOptions, HarborSim, RobotSeed};
use crate::k8s::{HarborSeed, KubeSim, MultiAttachOptions};
use crate::keycloak::{KeycloakSim, RealmLifespans};
use crate::postgres::{self, PgServer, HARBOR_SCHEMA};
use crate::registry_seed::{self as seed, NewUser, StoredCredentials};

mod every_kind;

/// Harbor's namespace and Helm release in the lab, as Otomi names them.
pub const NAMESPACE: &str = "harbor";
const RELEASE: &str = "harbor";
/// The Keycloak realm Harbor's users sign in through (Otomi's).
pub const REALM: &str = "otomi";
/// Otomi's robot name prefix.
const ROBOT_PREFIX: &str = "otomi-";
const KEYCLOAK_ADMIN: &str = "admin";
/// Where Otomi keeps Keycloak's admin login.
pub const KEYCLOAK_NAMESPACE: &str = "keycloak";
pub const KEYCLOAK_ADMIN_SECRET: &str = "keycloak-initial-admin";
/// The Harbor chart's default admin password, as the simulated cluster's
/// core Secret holds it.
const HARBOR_ADMIN_PASSWORD: &str = "Harbor12345";

/// Where Otomi (APL) runs its Harbor operator, and the ConfigMap and Secret
/// it reads its settings from (apl-tasks, `src/operators/harbor`). The lab
/// holds both, matching its Harbor, so the real operator can run against it.
pub const OPERATOR_NAMESPACE: &str = "apl-harbor-operator";
pub const OPERATOR_CONFIGMAP: &str = "apl-harbor-operator-cm";
pub const OPERATOR_SECRET: &str = "apl-harbor-operator-secret";

/// What the lab's OIDC links hold encrypted, as Harbor stores a CLI secret
/// and token; never read.
const LAB_CREDENTIALS: StoredCredentials<'static> = StoredCredentials {
    secret: "<enc-v1>bGFiLWNsaS1zZWNyZXQ=",
    token: Some("<enc-v1>bGFiLXRva2Vu"),
};

/// Users whose Keycloak id changed (Keycloak was redeployed): their next
/// login fails with a 409 conflict.
pub const STALE_USERS: [&str; 2] = ["alice", "bob"];
/// A user whose link matches Keycloak: the control.
pub const HEALTHY_USER: &str = "carol";
/// A Keycloak user whose unverified email is the first stale user's.
pub const LOOK_ALIKE: &str = "mallory";
/// A team provisioned as Otomi provisions it, left intact.
pub const HEALTHY_TEAM: &str = "alpha";
/// A team whose push robot was deleted in Harbor.
pub const TEAM_WITHOUT_ROBOT: &str = "beta";
/// A team whose `harbor-pullsecret` Secret was deleted.
pub const TEAM_WITHOUT_PULL_SECRET: &str = "gamma";
/// A team whose builds robot (current Otomi's third robot) was deleted.
pub const TEAM_WITHOUT_BUILDS_ROBOT: &str = "delta";
/// A team namespace with no `default` ServiceAccount, as when the
/// ServiceAccount controller is not running.
pub const TEAM_WITHOUT_SERVICEACCOUNT: &str = "epsilon";
/// Every team the lab provisions.
pub const TEAMS: [&str; 5] = [
    HEALTHY_TEAM,
    TEAM_WITHOUT_ROBOT,
    TEAM_WITHOUT_PULL_SECRET,
    TEAM_WITHOUT_BUILDS_ROBOT,
    TEAM_WITHOUT_SERVICEACCOUNT,
];

/// Where the registry database comes from.
pub enum Postgres {
    /// A server of the lab's own, started from the machine's PostgreSQL
    /// binaries and stopped with the lab (`harbor-doctor lab`).
    Own,
    /// A fresh database on the process-wide server the tests share.
    Shared,
}

/// The lab's server, when it has one: dropping it stops PostgreSQL and
/// removes its data directory.
enum PgHolder {
    Own(PgServer),
    Shared,
}

/// A running lab. [`Lab::shutdown`] stops everything and removes its files.
pub struct Lab {
    dir: tempfile::TempDir,
    env: Vec<(&'static str, String)>,
    planted: Vec<String>,
    kube: KubeSim,
    harbor: HarborSim,
    keycloak: KeycloakSim,
    pg: PgHolder,
}

/// The registry database as the lab made it.
struct Registry {
    url: String,
    host: String,
    port: u16,
    user: String,
    password: String,
    name: String,
}

impl Lab {
    /// Starts every server and plants every known issue, with the lab's
    /// files in a fresh temporary directory.
    /// `progress` hears what is being started, for people waiting.
    pub async fn start(postgres: Postgres, progress: impl Fn(&str)) -> Result<Lab> {
        let dir = tempfile::Builder::new()
            .prefix("harbor-doctor-lab-")
            .tempdir()
            .context("making the lab's temporary directory")?;

        progress("starting PostgreSQL (the registry database)");
        let (pg, registry) = start_postgres(postgres).await?;

        progress("starting the simulated Keycloak, Harbor and Kubernetes");
        let keycloak_password = postgres::random_token(20);
        let keycloak = KeycloakSim::start(KEYCLOAK_ADMIN, &keycloak_password).await?;
        keycloak.add_realm(REALM, RealmLifespans::otomi());
        let issuer = keycloak.issuer(REALM);

        let harbor = HarborSim::start(HarborOptions {
            tls: true,
            // The chart's default, which the seeded core Secret holds, so
            // the doctor can also find it through the cluster.
            admin_password: HARBOR_ADMIN_PASSWORD.into(),
            robot_name_prefix: ROBOT_PREFIX.into(),
            ..HarborOptions::otomi(&issuer)
        })
        .await?;
        let kube = KubeSim::start().await?;

        let mut lab = Lab {
            dir,
            env: Vec::new(),
            planted: Vec::new(),
            kube,
            harbor,
            keycloak,
            pg,
        };
        progress("planting the known issues");
        lab.plant_oidc_conflict(&registry, &issuer).await?;
        lab.plant_cluster(&registry)?;
        lab.plant_teams()?;
        lab.plant_operator_settings(&issuer)?;
        lab.plant_keycloak_admin(&keycloak_password)?;
        lab.planted.push(
            "cli-login: Harbor's oidc_scope is \"openid\", without offline_access, so CLI \
             secrets stop working when the user's Keycloak session ends"
                .into(),
        );
        lab.write_files(&registry)?;
        Ok(lab)
    }

    /// The environment a shell needs to work on the lab, in a stable order.
    /// The credentials are throwaway.
    pub fn env(&self) -> &[(&'static str, String)] {
        &self.env
    }

    /// One line per planted issue, naming its check.
    pub fn planted(&self) -> &[String] {
        &self.planted
    }

    /// A directory for the lab's own files (removed at shutdown).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn kube(&self) -> &KubeSim {
        &self.kube
    }

    pub fn harbor(&self) -> &HarborSim {
        &self.harbor
    }

    pub fn keycloak(&self) -> &KeycloakSim {
        &self.keycloak
    }

    /// Stops the servers and PostgreSQL and removes the lab's files.
    pub fn shutdown(self) -> Result<()> {
        self.kube.shutdown();
        self.harbor.shutdown();
        self.keycloak.shutdown();
        // PgServer's drop stops the server (fast shutdown) and waits for it.
        if let PgHolder::Own(server) = self.pg {
            drop(server);
        }
        let path = self.dir.path().to_path_buf();
        self.dir
            .close()
            .with_context(|| format!("removing the lab's directory {}", path.display()))
    }

    /// Where Otomi (APL) runs its Harbor operator, and the ConfigMap and Secret
    /// it reads its settings from (apl-tasks, `src/operators/harbor`). The lab
    /// holds both, matching its Harbor, so the real operator can run against it.
    pub const OPERATOR_NAMESPACE: &str = "apl-harbor-operator";
    pub const OPERATOR_CONFIGMAP: &str = "apl-harbor-operator-cm";
    pub const OPERATOR_SECRET: &str = "apl-harbor-operator-secret";

    /// Users whose Keycloak id changed since Harbor linked them, and one
    /// whose link is current. They own and belong to projects, which is
    /// why relinking (not deleting) is the repair.
    async fn plant_oidc_conflict(&mut self, registry: &Registry, issuer: &str) -> Result<()> {
        let sql = postgres::connect(&registry.url).await?;
        seed::set_properties(
            &sql,
            &[
                ("auth_mode", "oidc_auth"),
                ("oidc_endpoint", issuer),
                ("oidc_scope", "openid"),
                ("oidc_user_claim", "email"),
                ("robot_name_prefix", ROBOT_PREFIX),
            ],
        )
        .await
        .context("writing Harbor's OIDC settings into the registry database")?;
        // As on Otomi, Harbor takes usernames from the email claim, so a
        // Harbor username is the person's email address.
        for name in STALE_USERS.iter().chain([&HEALTHY_USER]) {
            let sub = uuid::Uuid::new_v4().to_string();
            let email = format!("{name}@example.com");
            self.keycloak.add_user(REALM, name, Some(&email), &sub);
            let user_id = seed::add_user(
                &sql,
                &NewUser {
                    username: &email,
                    email: Some(&email),
                    realname: name,
                    sysadmin: false,
                },
            )
            .await?;
            seed::link(&sql, user_id, &sub, issuer, LAB_CREDENTIALS).await?;
            let project_id = seed::add_project(&sql, &format!("{name}-sandbox"), user_id).await?;
            seed::add_member(&sql, project_id, user_id, seed::role::PROJECT_ADMIN).await?;
        }
        // Keycloak redeployed without its database: the stale users come
        // back with new ids, the same usernames and (verified) emails.
        for name in STALE_USERS {
            self.keycloak.add_user(
                REALM,
                name,
                Some(&format!("{name}@example.com")),
                &uuid::Uuid::new_v4().to_string(),
            );
        }
        // And a look-alike who set the first stale user's address as their
        // own email, unverified: the doctor must relink to the true account.
        self.keycloak.add_user_verified(
            REALM,
            LOOK_ALIKE,
            Some(&format!("{}@example.com", STALE_USERS[0])),
            false,
            &uuid::Uuid::new_v4().to_string(),
        );
        self.planted.push(format!(
            "oidc-users: {}'s Keycloak ids changed (Keycloak was redeployed); their next login \
             fails with a 409 conflict ({HEALTHY_USER} is healthy; {LOOK_ALIKE} set {}'s address as an \
             unverified email and must not get the account)",
            STALE_USERS.join(" and "),
            STALE_USERS[0]
        ));
        Ok(())
    }

    /// The Harbor release as the chart lays it out, its database pod
    /// port-forwarding to the real PostgreSQL, and the registry rolled into
    /// the Multi-Attach deadlock (which also leaves it on RollingUpdate
    /// over a ReadWriteOnce claim).
    fn plant_cluster(&mut self, registry: &Registry) -> Result<()> {
        let seed = HarborSeed {
            database_user: registry.user.clone(),
            database_name: registry.name.clone(),
            database_password: registry.password.clone(),
            database_target: Some(
                format!("{}:{}", registry.host, registry.port)
                    .parse()
                    .map_err(|e| anyhow!("the registry database's address: {e}"))?,
            ),
            // The core ConfigMap's EXT_ENDPOINT and the Ingress name it, so
            // the doctor finds Harbor through the cluster as well.
            external_host: self.registry_host()?,
            ..HarborSeed::new(NAMESPACE, RELEASE)
        };
        let release = self.kube.seed_harbor(&seed)?;
        let scene = self.kube.roll_deployment_into_multi_attach(
            NAMESPACE,
            &release.registry_deployment,
            MultiAttachOptions::default(),
        )?;
        self.planted.push(format!(
            "multi-attach: pod {NAMESPACE}/{} is stuck in ContainerCreating: its ReadWriteOnce \
             volume is held by pod {} of the stale ReplicaSet {}",
            scene.stuck_pod,
            scene.holder_pods.join(", "),
            scene.old_replicaset
        ));
        self.planted.push(format!(
            "registry-strategy: {} and {} roll with RollingUpdate over ReadWriteOnce claims",
            release.registry_deployment, release.jobservice_deployment
        ));
        Ok(())
    }

    /// Three teams provisioned as Otomi provisions them; then one loses its
    /// push robot in Harbor and another its pull Secret in the cluster.
    fn plant_teams(&mut self) -> Result<()> {
        let host = self.registry_host()?;
        for id in TEAMS {
            let name = format!("team-{id}");
            self.add_team(&name, &host)?;
            for (kind, missing) in [
                ("push", id == TEAM_WITHOUT_ROBOT),
                ("builds", id == TEAM_WITHOUT_BUILDS_ROBOT),
            ] {
                if missing {
                    let robot = self
                        .harbor
                        .robots()
                        .into_iter()
                        .find(|r| r.name == format!("{name}-{kind}"))
                        .ok_or_else(|| anyhow!("the lab's robot {name}-{kind} is missing"))?;
                    self.harbor.remove_robot(robot.id);
                }
            }
            if id == TEAM_WITHOUT_SERVICEACCOUNT {
                self.kube.break_serviceaccount_controller(&name);
                let _ = self
                    .kube
                    .delete("v1", "ServiceAccount", Some(&name), "default");
            }
        }
        self.kube.delete(
            "v1",
            "Secret",
            Some(&format!("team-{TEAM_WITHOUT_PULL_SECRET}")),
            "harbor-pullsecret",
        )?;
        self.planted.push(format!(
            "teams: team-{TEAM_WITHOUT_ROBOT}'s push robot was deleted in Harbor; \
             team-{TEAM_WITHOUT_PULL_SECRET}'s harbor-pullsecret Secret is missing; \
             team-{TEAM_WITHOUT_BUILDS_ROBOT}'s builds robot was deleted; \
             team-{TEAM_WITHOUT_SERVICEACCOUNT} has no default ServiceAccount (the \
             ServiceAccount controller is \"broken\" there); team-{HEALTHY_TEAM} is healthy"
        ));
        Ok(())
    }

    /// Keycloak's admin login where Otomi keeps it, so the doctor finds
    /// Keycloak with nothing but the kubeconfig.
    fn plant_keycloak_admin(&mut self, password: &str) -> Result<()> {
        let b64 = base64::engine::general_purpose::STANDARD;
        self.kube.put(json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": KEYCLOAK_NAMESPACE},
        }))?;
        self.kube.put(json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": KEYCLOAK_ADMIN_SECRET, "namespace": KEYCLOAK_NAMESPACE},
            "data": {"username": b64.encode(KEYCLOAK_ADMIN), "password": b64.encode(password)},
        }))?;
        Ok(())
    }

    /// The settings Otomi's Harbor operator reads, as Otomi's chart writes
    /// them, with the lab's Harbor credentials and OIDC configuration: the
    /// operator re-applies these to Harbor every cycle, so they must be the
    /// lab's own or it would reconfigure the lab's Harbor.
    fn plant_operator_settings(&mut self, issuer: &str) -> Result<()> {
        let config = |key: &str| {
            self.harbor
                .config_value(key)
                .ok_or_else(|| anyhow!("the lab's Harbor has no {key} configured"))
        };
        let text = |key: &str| -> Result<String> {
            Ok(config(key)?.as_str().unwrap_or_default().to_string())
        };
        let flag = |key: &str| -> Result<String> {
            Ok(config(key)?.as_bool().unwrap_or(false).to_string())
        };
        let teams = TEAMS;
        self.kube.put(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": OPERATOR_CONFIGMAP, "namespace": OPERATOR_NAMESPACE},
            "data": {
                "harborBaseRepoUrl": self.registry_host()?,
                "oidcAutoOnboard": flag("oidc_auto_onboard")?,
                "oidcUserClaim": text("oidc_user_claim")?,
                "oidcGroupsClaim": text("oidc_groups_claim")?,
                "oidcName": text("oidc_name")?,
                "oidcScope": text("oidc_scope")?,
                "oidcVerifyCert": flag("oidc_verify_cert")?,
                // Team ids; the operator works on namespaces `team-<id>`.
                "teamNamespaces": serde_json::to_string(&teams)?,
            }
        }))?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let secret = [
            ("harborUser", "admin".to_string()),
            ("harborPassword", self.harbor.admin_password()),
            ("oidcEndpoint", issuer.to_string()),
            ("oidcClientId", text("oidc_client_id")?),
            ("oidcClientSecret", text("oidc_client_secret")?),
        ];
        let data: serde_json::Map<String, serde_json::Value> = secret
            .iter()
            .map(|(k, v)| (k.to_string(), json!(b64.encode(v))))
            .collect();
        self.kube.put(json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": OPERATOR_SECRET, "namespace": OPERATOR_NAMESPACE},
            "data": data,
        }))?;
        Ok(())
    }

    /// Harbor's external host and port, as docker and the Secrets name it.
    /// One team as current Otomi provisions it: namespace, project, the
    /// team's and the admins' groups as members, pull, push and builds
    /// robots each with its Secret, and the default ServiceAccount with the
    /// pull and push Secrets.
    fn add_team(&self, name: &str, host: &str) -> Result<()> {
        self.kube
            .put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))?;
        self.harbor.add_project(name, false);
        self.harbor.add_group_member(name, name, 3, 2);
        self.harbor.add_group_member(name, "all-teams-admin", 3, 1);
        for (kind, actions) in [
            ("pull", &["pull"][..]),
            ("push", &["pull", "push"][..]),
            ("builds", &["pull", "push"][..]),
        ] {
            let robot =
                self.harbor
                    .add_robot(RobotSeed::system(&format!("{name}-{kind}"), name, actions));
            let login = self.harbor.robot_login_name(&robot);
            self.kube.put(if kind == "builds" {
                builds_secret(name, host, &login, &robot.secret)
            } else {
                docker_secret(
                    name,
                    &format!("harbor-{kind}secret"),
                    host,
                    &login,
                    &robot.secret,
                )
            })?;
        }
        self.kube
            .put(json!({"apiVersion": "v1", "kind": "ServiceAccount",
                             "metadata": {"name": "default", "namespace": name},
                             "imagePullSecrets": [{"name": "harbor-pullsecret"},
                                                  {"name": "harbor-pushsecret"}]}))?;
        Ok(())
    }

    /// Makes the lab an installation of `teams` more healthy teams and
    /// `users` more healthy OIDC users (linked in Harbor, the same ids in
    /// Keycloak), for benchmarks at a real installation's size.
    pub async fn grow(&self, teams: usize, users: usize) -> Result<()> {
        let host = self.registry_host()?;
        for n in 0..teams {
            self.add_team(&format!("team-bench{n}"), &host)?;
        }
        let sql = self.database().await?;
        let issuer = self.keycloak.issuer(REALM);
        let names: Vec<String> = (0..users).map(|n| format!("user{n}@example.com")).collect();
        let subs: Vec<String> = (0..users)
            .map(|_| uuid::Uuid::new_v4().to_string())
            .collect();
        for chunk in (0..users).collect::<Vec<_>>().chunks(5000) {
            let new: Vec<NewUser> = chunk
                .iter()
                .map(|&i| NewUser {
                    username: &names[i],
                    email: Some(&names[i]),
                    realname: &names[i],
                    sysadmin: false,
                })
                .collect();
            let ids = seed::add_users(&sql, &new).await?;
            let links: Vec<(i32, &str, &str)> = chunk
                .iter()
                .zip(ids)
                .map(|(&i, id)| (id, subs[i].as_str(), issuer.as_str()))
                .collect();
            seed::link_all(&sql, &links, LAB_CREDENTIALS).await?;
        }
        for (name, sub) in names.iter().zip(&subs) {
            self.keycloak.add_user(REALM, name, Some(name), sub);
        }
        Ok(())
    }

    /// A connection to the lab's registry database, for planting.
    async fn database(&self) -> Result<tokio_postgres::Client> {
        let url = self
            .env
            .iter()
            .find(|(k, _)| *k == "HARBOR_DATABASE_URL")
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| anyhow!("the lab has no database URL"))?;
        postgres::connect(url).await
    }

    fn registry_host(&self) -> Result<String> {
        url::Url::parse(&self.harbor.external_url())
            .ok()
            .and_then(|u| {
                let host = u.host_str()?.to_string();
                Some(match u.port() {
                    Some(p) => format!("{host}:{p}"),
                    None => host,
                })
            })
            .ok_or_else(|| anyhow!("the simulated Harbor has no external URL host"))
    }

    /// The kubeconfig, Harbor's CA, the backup and docker directories, and
    /// the environment naming them.
    fn write_files(&mut self, registry: &Registry) -> Result<()> {
        let dir = self.dir.path();
        let kubeconfig = dir.join("kubeconfig");
        self.kube
            .write_kubeconfig(&kubeconfig, self.kube.admin_token())?;
        let ca = dir.join("harbor-ca.pem");
        std::fs::write(
            &ca,
            self.harbor
                .ca_pem()
                .ok_or_else(|| anyhow!("the lab's Harbor serves HTTPS and has a CA"))?,
        )?;
        let backups = dir.join("backups");
        let docker = dir.join("docker");
        std::fs::create_dir_all(&docker)?;
        let path = |p: &Path| p.display().to_string();
        self.env = vec![
            ("KUBECONFIG", path(&kubeconfig)),
            ("HARBOR_NAMESPACE", NAMESPACE.into()),
            ("HARBOR_URL", self.harbor.url()),
            ("HARBOR_USERNAME", "admin".into()),
            ("HARBOR_PASSWORD", self.harbor.admin_password()),
            ("HARBOR_CA_CERT", path(&ca)),
            ("HARBOR_DATABASE_URL", registry.url.clone()),
            // No KEYCLOAK_* variables: as on a real Otomi cluster, the
            // doctor finds Keycloak from Harbor's oidc_endpoint and its
            // admin login in the Secret keycloak/keycloak-initial-admin.
            ("HARBOR_DOCTOR_BACKUP_DIR", path(&backups)),
            // docker-login writes here, never into the user's own
            // ~/.docker/config.json.
            ("DOCKER_CONFIG", path(&docker)),
        ];
        Ok(())
    }
}

/// A kubernetes.io/dockerconfigjson Secret as Otomi writes it for a robot.
fn docker_secret(
    ns: &str,
    name: &str,
    host: &str,
    user: &str,
    password: &str,
) -> serde_json::Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    let config = json!({"auths": {host: {
        "username": user, "password": password,
        "auth": b64.encode(format!("{user}:{password}"))}}});
    json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
           "metadata": {"name": name, "namespace": ns},
           "data": {".dockerconfigjson": b64.encode(config.to_string())}})
}

/// The builds robot's Secret as current Otomi writes it: Opaque, the docker
/// config under `config.json`, with a placeholder email.
fn builds_secret(ns: &str, host: &str, user: &str, password: &str) -> serde_json::Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    let config = json!({"auths": {host: {
        "username": user, "password": password, "email": "not@val.id",
        "auth": b64.encode(format!("{user}:{password}"))}}});
    json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
           "metadata": {"name": "harbor-pushsecret-builds", "namespace": ns},
           "data": {"config.json": b64.encode(config.to_string())}})
}

async fn start_postgres(postgres: Postgres) -> Result<(PgHolder, Registry)> {
    match postgres {
        Postgres::Shared => {
            let db = PgServer::shared().harbor_database().await?;
            let registry = Registry {
                url: db.url.clone(),
                host: db.host.clone(),
                port: db.port,
                user: db.user.clone(),
                password: db.password.clone(),
                name: db.name.clone(),
            };
            Ok((PgHolder::Shared, registry))
        }
        Postgres::Own => {
            check_binaries()?;
            // initdb and the wait for the server block: off the runtime.
            let server = tokio::task::spawn_blocking(PgServer::start)
                .await?
                .map_err(|e| {
                    anyhow!(
                        "the lab needs a throwaway PostgreSQL server and could not start one: {e:#}"
                    )
                })?;
            let registry = create_registry(&server).await?;
            Ok((PgHolder::Own(server), registry))
        }
    }
}

/// Fails with the package to install when PostgreSQL's server programs
/// are missing, before anything is started.
fn check_binaries() -> Result<()> {
    let missing = |why: String| {
        anyhow!(
            "the lab runs a throwaway PostgreSQL from this machine's PostgreSQL server \
             binaries, and {why}. Install them with `apt-get install postgresql` (Debian, \
             Ubuntu; other systems: the PostgreSQL server package), or point \
             HARBOR_DOCTOR_PG_BIN at the directory holding initdb and postgres"
        )
    };
    let dir = postgres::find_binaries().map_err(|_| {
        missing("there are none (looked in /usr/lib/postgresql/*/bin and on PATH)".into())
    })?;
    for program in ["initdb", "postgres"] {
        if !dir.join(program).is_file() {
            return Err(missing(format!("{} has no {program}", dir.display())));
        }
    }
    Ok(())
}

/// Database `registry` with Harbor's schema, as the chart names it.
async fn create_registry(server: &PgServer) -> Result<Registry> {
    let admin = postgres::connect(&server.admin_url("postgres")).await?;
    admin
        .batch_execute("CREATE DATABASE registry")
        .await
        .context("creating the registry database")?;
    let url = server.admin_url("registry");
    postgres::connect(&url)
        .await?
        .batch_execute(HARBOR_SCHEMA)
        .await
        .context("laying Harbor's schema")?;
    let parsed = url::Url::parse(&url).context("the lab's database URL")?;
    Ok(Registry {
        host: parsed.host_str().unwrap_or("127.0.0.1").to_string(),
        port: parsed.port().unwrap_or(5432),
        user: parsed.username().to_string(),
        password: parsed.password().unwrap_or_default().to_string(),
        name: "registry".into(),
        url,
    })
}

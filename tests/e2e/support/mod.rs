//! Shared equipment for the doctor's end-to-end tests: a fresh registry
//! database per test (real PostgreSQL), seeding helpers in Harbor's own
//! terms, and the doctor binary with a clean environment.

use std::path::Path;
use std::process::Output;

use harbor_doctor_sim::postgres::{HarborDatabase, PgServer};

pub const ISSUER: &str = "https://keycloak.example.com/realms/otomi";
pub const OLD_ISSUER: &str = "https://keycloak.old.example.com/realms/otomi";

/// Environment variables the doctor reads; cleared so the developer's own
/// settings never leak into a test.
const DOCTOR_ENV: &[&str] = &[
    "KUBECONFIG",
    "HARBOR_NAMESPACE",
    "HARBOR_URL",
    "HARBOR_USERNAME",
    "HARBOR_PASSWORD",
    "HARBOR_CA_CERT",
    "HARBOR_DATABASE_URL",
    "KEYCLOAK_URL",
    "KEYCLOAK_REALM",
    "KEYCLOAK_USERNAME",
    "KEYCLOAK_PASSWORD",
    "HARBOR_OIDC_ISSUER",
    "HARBOR_CLI_SECRET",
    "HARBOR_DOCTOR_BACKUP_DIR",
    "HARBOR_DOCTOR_TIMEOUT",
    "DOCKER_CONFIG",
    "RUST_LOG",
    "NO_COLOR",
];

/// A registry database seeded like an OIDC-mode Harbor.
pub struct Registry {
    pub db: HarborDatabase,
    pub sql: tokio_postgres::Client,
}

impl Registry {
    pub async fn new() -> Registry {
        let db = PgServer::shared()
            .harbor_database()
            .await
            .expect("a fresh registry database");
        let sql = db.connect().await.expect("connecting to the test database");
        sql.execute(
            "INSERT INTO properties (k, v) VALUES ('auth_mode', 'oidc_auth'), ('oidc_endpoint', $1),
                    ('oidc_scope', 'openid,email,profile'), ('oidc_user_claim', 'preferred_username')",
            &[&ISSUER],
        )
        .await
        .unwrap();
        Registry { db, sql }
    }

    pub async fn add_user(&self, name: &str, email: Option<&str>, sysadmin: bool) -> i32 {
        self.sql
            .query_one(
                "INSERT INTO harbor_user (username, email, password, realname, sysadmin_flag)
                 VALUES ($1, $2, '', $1, $3) RETURNING user_id",
                &[&name, &email, &sysadmin],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// An OIDC link for `user_id`, as Harbor writes it on onboarding.
    pub async fn link(&self, user_id: i32, sub: &str, issuer: &str) -> i32 {
        self.sql
            .query_one(
                "INSERT INTO oidc_user (user_id, secret, subiss, token)
                 VALUES ($1, '<enc-v1>c2VjcmV0', $2, '<enc-v1>dG9rZW4=') RETURNING id",
                &[&user_id, &format!("{sub}{issuer}")],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// A user with an email and a link: the usual OIDC-onboarded user.
    pub async fn oidc_user(&self, name: &str, sub: &str, issuer: &str) -> i32 {
        let id = self
            .add_user(name, Some(&format!("{name}@example.com")), false)
            .await;
        self.link(id, sub, issuer).await;
        id
    }

    pub async fn add_project(&self, name: &str, owner: i32) -> i32 {
        self.sql
            .query_one(
                "INSERT INTO project (owner_id, name) VALUES ($1, $2) RETURNING project_id",
                &[&owner, &name],
            )
            .await
            .unwrap()
            .get(0)
    }

    pub async fn add_member(&self, project_id: i32, user_id: i32, role: i32) {
        self.sql
            .execute(
                "INSERT INTO project_member (project_id, entity_id, entity_type, role) VALUES ($1, $2, 'u', $3)",
                &[&project_id, &user_id, &role],
            )
            .await
            .unwrap();
    }

    pub async fn subiss_of(&self, user_id: i32) -> Vec<String> {
        self.sql
            .query(
                "SELECT subiss FROM oidc_user WHERE user_id = $1 ORDER BY id",
                &[&user_id],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// Every row the doctor could touch, update_time aside, as one string:
    /// equal snapshots mean nothing changed.
    pub async fn snapshot(&self) -> String {
        let mut all = String::new();
        for (table, key) in [
            ("harbor_user", "user_id"),
            ("oidc_user", "id"),
            ("project", "project_id"),
            ("project_member", "id"),
            ("properties", "id"),
        ] {
            let row = self
                .sql
                .query_one(
                    &format!(
                        "SELECT coalesce(json_agg(to_jsonb(t) - 'update_time' ORDER BY {key})::text, '[]') FROM {table} t"
                    ),
                    &[],
                )
                .await
                .unwrap();
            all.push_str(table);
            all.push_str(&row.get::<_, String>(0));
            all.push('\n');
        }
        all
    }
}

/// The doctor binary with a clean environment, pointed at `registry` and a
/// backup directory.
pub fn doctor(registry: &Registry, backups: &Path) -> assert_cmd::Command {
    let mut cmd = bare_doctor();
    cmd.env("HARBOR_DATABASE_URL", &registry.db.url)
        .env("HARBOR_DOCTOR_BACKUP_DIR", backups)
        .env("HARBOR_DOCTOR_TIMEOUT", "20");
    cmd
}

/// The doctor binary with none of its environment variables set.
pub fn bare_doctor() -> assert_cmd::Command {
    assert_cmd::Command::from_std(bare_doctor_process())
}

/// [`bare_doctor`] as a plain process, for tests that run it themselves
/// (in a pseudo-terminal, or `lab` in the background).
pub fn bare_doctor_process() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_harbor-doctor"));
    for var in DOCTOR_ENV {
        cmd.env_remove(var);
    }
    // The backup seal key lives in the state directory under HOME.
    cmd.env_remove("XDG_STATE_HOME");
    cmd.env("HOME", std::env::temp_dir());
    cmd
}

/// Runs a prepared command off the async runtime's threads (the simulators
/// run on them) and returns its output.
pub async fn run(mut cmd: assert_cmd::Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the exit code, showing the output when it differs.
#[track_caller]
pub fn assert_exit(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "expected exit {code}\n--- stdout\n{}\n--- stderr\n{}",
        stdout(o),
        stderr(o)
    );
}

/// Files in the backup directory.
pub fn backups_in(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Runs the doctor against `registry` with `args` and returns its output.
pub async fn run_doctor(registry: &Registry, backups: &Path, args: &[&str]) -> Output {
    let mut cmd = doctor(registry, backups);
    cmd.args(args);
    run(cmd).await
}

pub mod k8s;
pub mod pty;
pub mod teams;

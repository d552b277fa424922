//! A real, throwaway PostgreSQL server with Harbor's registry schema.
//!
//! The registry database is never simulated: the doctor's repairs depend on
//! PostgreSQL's real constraints, foreign keys, triggers and row locks, so the
//! tests and the lab run against a real server. [`PgServer::shared`] starts one
//! server per process (initdb in a temporary directory, run as the `postgres`
//! user when we are root, TLS on with a throwaway CA, password authentication
//! on 127.0.0.1), or uses the server that `HARBOR_DOCTOR_TEST_PG_URL` names.
//! Every test then asks for its own database with [`PgServer::harbor_database`].
//!
//! That database holds the tests' own copy of Harbor's schema
//! ([`HARBOR_SCHEMA`]), which is quick to lay. With
//! `HARBOR_DOCTOR_TEST_MIGRATIONS` naming a directory of Harbor's own
//! migrations, it is built from those instead: applied once per server into a
//! template database, which every test's database then copies.

use std::collections::HashMap;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::tls::TestPki;

/// Harbor's tables, constraints and triggers, as the doctor knows them.
pub const HARBOR_SCHEMA: &str = include_str!("../sql/harbor-schema.sql");

/// The environment variable naming an existing server to use instead of
/// starting one: a URL for a role that may create databases.
pub const EXTERNAL_SERVER_ENV: &str = "HARBOR_DOCTOR_TEST_PG_URL";

/// The environment variable naming a directory of Harbor's own PostgreSQL
/// migrations (`*.up.sql`, as in Harbor's `make/migrations/postgresql`):
/// when set, [`PgServer::harbor_database`] builds from them.
pub const MIGRATIONS_ENV: &str = "HARBOR_DOCTOR_TEST_MIGRATIONS";

/// Where a registry database's schema comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HarborSchema {
    /// The tests' own copy, [`HARBOR_SCHEMA`].
    Tests,
    /// Harbor's migrations in this directory, applied in order.
    Migrations(PathBuf),
}

impl HarborSchema {
    /// The migrations `HARBOR_DOCTOR_TEST_MIGRATIONS` names, else the tests'
    /// own schema. A variable that names no directory is an error, never a
    /// quiet fallback: a CI stage that meant the real schema must not pass on
    /// the tests' copy.
    pub fn from_env() -> Result<HarborSchema> {
        match std::env::var_os(MIGRATIONS_ENV) {
            Some(dir) if !dir.is_empty() => {
                let dir = PathBuf::from(dir);
                if !dir.is_dir() {
                    bail!(
                        "{MIGRATIONS_ENV} names {}, which is not a directory; point it at \
                         Harbor's PostgreSQL migrations (make/migrations/postgresql in Harbor's \
                         source) or unset it to use the tests' own schema",
                        dir.display()
                    );
                }
                Ok(HarborSchema::Migrations(dir))
            }
            _ => Ok(HarborSchema::Tests),
        }
    }
}

/// A running PostgreSQL server that tests can create databases on.
pub struct PgServer {
    /// Superuser connection URL without a database name, e.g.
    /// `postgres://postgres:pw@127.0.0.1:5433`.
    admin_base: String,
    /// The CA that signed the server certificate (None for an external server).
    pub ca_pem: Option<String>,
    /// Where the server keeps its data and socket (None for an external server).
    pub data_dir: Option<PathBuf>,
    child: Option<Child>,
    next_db: AtomicU32,
    /// Template databases built from migrations, by directory; a failure is
    /// kept too, so every test reports it without applying them again.
    templates: tokio::sync::Mutex<HashMap<PathBuf, Result<String, String>>>,
}

/// One fresh database holding Harbor's schema.
#[derive(Clone, Debug)]
pub struct HarborDatabase {
    pub name: String,
    /// A URL the doctor can use as `--db-url` (sslmode=disable, with password).
    pub url: String,
    /// The password inside `url`, so tests can prove it never leaks.
    pub password: String,
    pub host: String,
    pub port: u16,
    pub user: String,
}

impl HarborDatabase {
    /// A connection for the test itself (seeding and asserting).
    pub async fn connect(&self) -> Result<tokio_postgres::Client> {
        connect(&self.url).await
    }

    /// The same database with another sslmode, for the TLS tests.
    pub fn url_with_sslmode(&self, mode: &str) -> String {
        self.url
            .replace("sslmode=disable", &format!("sslmode={mode}"))
    }
}

/// Connects without TLS and drives the connection in the background.
pub async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .context("connecting to the test PostgreSQL")?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

static SHARED: OnceLock<PgServer> = OnceLock::new();

extern "C" fn stop_shared_server() {
    if let Some(server) = SHARED.get() {
        server.stop_at_exit();
    }
}
static CREATE_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl PgServer {
    /// The process-wide server: the external one when
    /// `HARBOR_DOCTOR_TEST_PG_URL` is set, else one started now.
    pub fn shared() -> &'static PgServer {
        SHARED.get_or_init(|| {
            let server = match std::env::var(EXTERNAL_SERVER_ENV) {
                Ok(url) if !url.is_empty() => PgServer::external(&url),
                _ => PgServer::start(),
            };
            let server = server.unwrap_or_else(|e| {
                panic!("cannot provide a PostgreSQL server for the tests: {e:#}")
            });
            if server.child.is_some() {
                // Statics are never dropped: without this the server would
                // stop only on its parent-death signal, after the process,
                // and leave its data directory behind.
                unsafe { libc::atexit(stop_shared_server) };
            }
            server
        })
    }

    /// Fast shutdown, waited for (a bounded time, then SIGKILL), and the
    /// data directory removed; for the end of the process, where `Drop`
    /// does not run and the `Child` cannot be borrowed mutably.
    fn stop_at_exit(&self) {
        if let Some(child) = &self.child {
            let pid = child.id() as libc::pid_t;
            unsafe { libc::kill(pid, libc::SIGINT) };
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let reaped = unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
                if reaped != 0 {
                    break;
                }
                if Instant::now() > deadline {
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                        libc::waitpid(pid, std::ptr::null_mut(), 0);
                    }
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if let Some(dir) = &self.data_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    fn external(url: &str) -> Result<PgServer> {
        let base = url.trim_end_matches('/');
        let base = match base.rsplit_once('/') {
            Some((head, _db)) if head.contains('@') || head.matches('/').count() > 2 => head,
            _ => base,
        };
        Ok(PgServer {
            admin_base: base.to_string(),
            ca_pem: None,
            data_dir: None,
            child: None,
            next_db: AtomicU32::new(0),
            templates: Default::default(),
        })
    }

    /// Starts a new server in a temporary directory. As root, the server runs
    /// as the `postgres` user, because PostgreSQL refuses to run as root.
    pub fn start() -> Result<PgServer> {
        let bin = find_binaries()?;
        let run_as = if unsafe { libc::geteuid() } == 0 {
            Some(postgres_user()?)
        } else {
            None
        };
        remove_stale_dirs();
        let dir = std::env::temp_dir().join(format!("harbor-doctor-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let data = dir.join("data");
        let password: String = random_token(24);
        let pwfile = dir.join("pwfile");
        std::fs::write(&pwfile, format!("{password}\n"))?;
        if let Some((uid, gid)) = run_as {
            chown_recursive(&dir, uid, gid)?;
        }

        let out = command(&bin.join("initdb"), run_as)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "-A",
                "scram-sha-256",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .stdin(Stdio::null())
            .output()
            .context("running initdb")?;
        if !out.status.success() {
            bail!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }

        let pki = TestPki::generate()?;
        std::fs::write(data.join("server.crt"), &pki.server_cert_pem)?;
        std::fs::write(data.join("server.key"), &pki.server_key_pem)?;
        std::fs::write(dir.join("ca.crt"), &pki.ca_pem)?;
        set_mode(&data.join("server.key"), 0o600)?;
        if let Some((uid, gid)) = run_as {
            chown_recursive(&dir, uid, gid)?;
        }

        let port = free_port()?;
        let log = std::fs::File::create(dir.join("postgres.log"))?;
        if let Some((uid, gid)) = run_as {
            chown_recursive(&dir.join("postgres.log"), uid, gid)?;
        }
        let mut cmd = command(&bin.join("postgres"), run_as);
        cmd.arg("-D")
            .arg(&data)
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", &format!("port={port}")])
            .args(["-c", &format!("unix_socket_directories={}", dir.display())])
            .args([
                "-c",
                "ssl=on",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ])
            .args(["-c", "shared_buffers=64MB", "-c", "full_page_writes=off"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = spawn_from_long_lived_thread(cmd).context("starting postgres")?;

        let server = PgServer {
            admin_base: format!("postgres://postgres:{password}@127.0.0.1:{port}"),
            ca_pem: Some(pki.ca_pem),
            data_dir: Some(dir.clone()),
            child: Some(child),
            next_db: AtomicU32::new(0),
            templates: Default::default(),
        };
        server.wait_ready(&dir)?;
        Ok(server)
    }

    fn wait_ready(&self, dir: &Path) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = format!("{}/postgres?sslmode=disable", self.admin_base);
        loop {
            let ok = std::thread::scope(|s| {
                s.spawn(|| {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .ok()?;
                    rt.block_on(async {
                        tokio_postgres::connect(&url, tokio_postgres::NoTls)
                            .await
                            .ok()
                    })
                    .map(|_| ())
                })
                .join()
                .ok()
                .flatten()
                .is_some()
            });
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default();
                bail!("PostgreSQL did not accept connections within 60 s; its log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A superuser URL for database `db`.
    pub fn admin_url(&self, db: &str) -> String {
        format!("{}/{db}?sslmode=disable", self.admin_base)
    }

    /// Creates an empty database with a unique name.
    pub async fn create_database(&self, prefix: &str) -> Result<HarborDatabase> {
        self.create_database_from(prefix, None).await
    }

    /// Creates a database with a unique name, copied from `template` when
    /// given (else from PostgreSQL's default, template1).
    async fn create_database_from(
        &self,
        prefix: &str,
        template: Option<&str>,
    ) -> Result<HarborDatabase> {
        let n = self.next_db.fetch_add(1, Ordering::SeqCst);
        let name = format!(
            "{prefix}_{}_{n}_{}",
            std::process::id(),
            random_token(6).to_lowercase()
        );
        let statement = match template {
            Some(t) => format!("CREATE DATABASE \"{name}\" TEMPLATE \"{t}\""),
            None => format!("CREATE DATABASE \"{name}\""),
        };
        // Concurrent CREATE DATABASE statements copying the same template
        // fail with "source database is being accessed by other users":
        // create one at a time, and retry that transient error (a connection
        // to the template that was just closed can linger for a moment).
        let _one_at_a_time = CREATE_LOCK.lock().await;
        let admin = connect(&self.admin_url("postgres")).await?;
        let mut attempt = 0;
        loop {
            match admin.batch_execute(&statement).await {
                Ok(()) => break,
                Err(e)
                    if attempt < 20
                        && format!("{e:?}").contains("being accessed by other users") =>
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(anyhow!("creating a test database: {e:?}")),
            }
        }
        let url = self.admin_url(&name);
        let parsed: tokio_postgres::Config = url.parse()?;
        let password =
            String::from_utf8_lossy(parsed.get_password().unwrap_or_default()).into_owned();
        let host = match parsed.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "127.0.0.1".to_string(),
        };
        let port = parsed.get_ports().first().copied().unwrap_or(5432);
        let user = parsed.get_user().unwrap_or("postgres").to_string();
        Ok(HarborDatabase {
            name,
            url,
            password,
            host,
            port,
            user,
        })
    }

    /// A fresh database with Harbor's schema and its built-in rows (admin,
    /// anonymous, project `library`): from the migrations that
    /// `HARBOR_DOCTOR_TEST_MIGRATIONS` names, else the tests' own schema.
    pub async fn harbor_database(&self) -> Result<HarborDatabase> {
        self.harbor_database_with(&HarborSchema::from_env()?).await
    }

    /// A fresh database with the schema `schema` says.
    pub async fn harbor_database_with(&self, schema: &HarborSchema) -> Result<HarborDatabase> {
        match schema {
            HarborSchema::Tests => {
                let db = self.create_database("registry").await?;
                let client = db.connect().await?;
                client
                    .batch_execute(HARBOR_SCHEMA)
                    .await
                    .context("laying Harbor's schema")?;
                Ok(db)
            }
            HarborSchema::Migrations(dir) => {
                let template = self.migrations_template(dir).await?;
                self.create_database_from("registry", Some(&template)).await
            }
        }
    }

    /// The template database holding `dir`'s migrations, built on first use.
    async fn migrations_template(&self, dir: &Path) -> Result<String> {
        // Held while building, so concurrent tests wait for one build.
        let mut templates = self.templates.lock().await;
        if let Some(built) = templates.get(dir) {
            return built.clone().map_err(|e| anyhow!(e));
        }
        let built = self.build_template(dir).await.map_err(|e| format!("{e:#}"));
        templates.insert(dir.to_path_buf(), built.clone());
        built.map_err(|e| anyhow!(e))
    }

    async fn build_template(&self, dir: &Path) -> Result<String> {
        let files = migration_files(dir)?;
        let db = self.create_database("harbor_migrations").await?;
        let client = db.connect().await?;
        // golang-migrate, which Harbor uses, creates its table before the
        // first migration, and 0030 alters it.
        client
            .batch_execute(
                "CREATE TABLE schema_migrations (version bigint PRIMARY KEY, dirty boolean NOT NULL)",
            )
            .await
            .context("creating golang-migrate's schema_migrations table")?;
        for (version, file) in &files {
            let sql = std::fs::read_to_string(file)
                .with_context(|| format!("reading the migration {}", file.display()))?;
            // One transaction per file, as golang-migrate (and `psql -1`) do,
            // recording the version the way golang-migrate leaves it.
            let script = format!(
                "BEGIN;\n{sql}\n;\nDELETE FROM schema_migrations;\n\
                 INSERT INTO schema_migrations (version, dirty) VALUES ({version}, false);\nCOMMIT;"
            );
            if let Err(e) = client.batch_execute(&script).await {
                let _ = client.batch_execute("ROLLBACK").await;
                let why = e
                    .as_db_error()
                    .map(|d| d.message().to_string())
                    .unwrap_or_else(|| e.to_string());
                bail!(
                    "applying Harbor's migration {} failed: {why}; the migrations before it \
                     applied, so the directory may hold files from different Harbor versions",
                    file.display()
                );
            }
        }
        drop(client);
        // Nobody connects to the template again, and closing it to
        // connections keeps a lingering session from blocking the copies.
        let admin = connect(&self.admin_url("postgres")).await?;
        admin
            .batch_execute(&format!(
                "ALTER DATABASE \"{0}\" WITH ALLOW_CONNECTIONS false IS_TEMPLATE true",
                db.name
            ))
            .await
            .context("marking the migrated database as a template")?;
        Ok(db.name)
    }
}

/// The `*.up.sql` files in `dir`, by their numeric version prefix (the order
/// golang-migrate applies them in).
pub fn migration_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("reading the migrations directory {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !name.ends_with(".up.sql") {
            continue;
        }
        let digits: String = name.chars().take_while(|c| c.is_ascii_digit()).collect();
        let version = digits.parse::<u64>().map_err(|_| {
            anyhow!(
                "the migration {} does not start with a version number",
                path.display()
            )
        })?;
        files.push((version, path));
    }
    files.sort();
    if files.is_empty() {
        bail!(
            "{} holds no migrations (*.up.sql files); point {MIGRATIONS_ENV} at Harbor's \
             make/migrations/postgresql",
            dir.display()
        );
    }
    Ok(files)
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            let _ = child.wait();
        }
        if let Some(dir) = &self.data_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Where the PostgreSQL server binaries are: on PATH, or Debian's
/// /usr/lib/postgresql/<version>/bin (newest first), which is not on PATH.
pub fn find_binaries() -> Result<PathBuf> {
    if let Ok(dir) = std::env::var("HARBOR_DOCTOR_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("postgres").exists() && dir.join("initdb").exists() {
                return Ok(dir);
            }
        }
    }
    Err(anyhow!(
        "no PostgreSQL server binaries found (looked in /usr/lib/postgresql/*/bin and on PATH); \
         install them with `apt-get install postgresql`, or point HARBOR_DOCTOR_PG_BIN at the \
         directory holding initdb and postgres, or name a running server in {EXTERNAL_SERVER_ENV}"
    ))
}

fn postgres_user() -> Result<(u32, u32)> {
    let name = std::ffi::CString::new("postgres")?;
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        bail!(
            "running as root, PostgreSQL must run as another user, but there is no `postgres` \
             user; install the postgresql package (which creates it) or run the tests as a normal user"
        );
    }
    Ok(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

/// A command that runs as `run_as` (when given) and gets SIGINT, PostgreSQL's
/// fast shutdown, when the test process dies: a test binary never drops its
/// statics, and a leftover server would hold its port and directory.
fn command(program: &Path, run_as: Option<(u32, u32)>) -> Command {
    let mut cmd = Command::new(program);
    unsafe {
        cmd.pre_exec(move || {
            if let Some((uid, gid)) = run_as {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // Set after the uid change, which would clear it.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT);
            Ok(())
        });
    }
    cmd
}

/// Spawns `cmd` from a thread that never exits. The parent-death signal
/// fires when the spawning *thread* ends, and test harness threads end with
/// each test, which would stop the server under the next test.
fn spawn_from_long_lived_thread(mut cmd: Command) -> std::io::Result<Child> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("postgres-parent".into())
        .spawn(move || {
            let _ = tx.send(cmd.spawn());
            loop {
                std::thread::park();
            }
        })?;
    rx.recv()
        .map_err(|e| std::io::Error::other(e.to_string()))?
}

fn chown_recursive(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
    if path.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_recursive(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Removes the directories of earlier test processes that are gone.
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name
            .strip_prefix("harbor-doctor-pg-")
            .and_then(|p| p.parse::<i32>().ok())
        {
            let alive = unsafe { libc::kill(pid, 0) } == 0;
            if !alive {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A random alphanumeric string, for throwaway passwords and names.
pub fn random_token(len: usize) -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

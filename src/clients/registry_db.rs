//! Harbor's registry database (PostgreSQL): every SQL statement the doctor
//! runs lives here.
//!
//! Reads are set-based: one statement answers a question for all users at
//! once, so a diagnosis costs the same few round trips for ten users or a
//! hundred thousand. Writes happen only inside a [`RepairTx`]: its own
//! connection, one transaction, rows locked with a bounded wait, so that a
//! repair either commits whole or changes nothing.
//!
//! Connections honour `sslmode` (disable, prefer, require, verify-ca,
//! verify-full) and `sslrootcert`, like libpq, and can run over any byte
//! stream (a Kubernetes port-forward) as well as TCP. The URL's password is
//! never shown: [`RegistryDb::describe`] is the printable form.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls};

use crate::clients::tls;
use crate::outcome::{refused, ExitCode, Failure};

/// Any byte stream PostgreSQL's protocol can run over.
pub trait DbStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> DbStream for T {}

/// Opens a fresh stream to the server each time it is called (each
/// connection, e.g. each repair transaction, needs its own).
pub type StreamOpener =
    Arc<dyn Fn() -> BoxFuture<'static, std::io::Result<Box<dyn DbStream>>> + Send + Sync>;

/// How to reach the database: parsed connection settings, TLS, and
/// optionally a stream opener that replaces TCP (a port-forward).
#[derive(Clone)]
pub struct DbTarget {
    config: Config,
    tls: TlsMode,
    /// Host name used for TLS verification when connecting over a stream.
    tls_host: String,
    via: Option<StreamOpener>,
    /// Printable description, without the password.
    description: String,
}

#[derive(Clone)]
enum TlsMode {
    Disable,
    /// Encrypt when the server offers it (prefer) or always (the others);
    /// the rustls config carries how much is verified.
    Enabled {
        required: bool,
        config: Arc<rustls::ClientConfig>,
    },
}

/// Where and as whom to log in, when the caller found it (e.g. in a
/// Kubernetes Secret) rather than in a URL.
#[derive(Clone)]
pub struct DbLogin {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub dbname: String,
}

impl std::fmt::Debug for DbLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}@{}:{}/{}",
            self.user, self.host, self.port, self.dbname
        )
    }
}

/// PostgreSQL's sslmode values, as libpq defines them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Result<SslMode> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(refused(format!(
                    "the database URL has sslmode={other}, which is not one of disable, prefer, \
                     require, verify-ca, verify-full"
                )))
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl DbTarget {
    /// Parses a `postgres://` URL (or key=value string). sslmode defaults to
    /// prefer, as in libpq. `sslrootcert` names the CA file for the verify modes.
    pub fn from_url(raw: &str) -> Result<DbTarget> {
        let bad = || {
            refused(
                "the database URL is not valid; expected postgres://USER:PASSWORD@HOST:PORT/DATABASE\
                 ?sslmode=disable|prefer|require|verify-ca|verify-full (the URL is not shown, it may hold a password)",
            )
        };
        let (config, sslmode, rootcert) =
            if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
                let mut url = url::Url::parse(raw).map_err(|_| bad())?;
                let mut sslmode = None;
                let mut rootcert = None;
                let kept: Vec<(String, String)> = url
                    .query_pairs()
                    .filter_map(|(k, v)| match k.as_ref() {
                        "sslmode" => {
                            sslmode = Some(v.into_owned());
                            None
                        }
                        "sslrootcert" => {
                            rootcert = Some(v.into_owned());
                            None
                        }
                        _ => Some((k.into_owned(), v.into_owned())),
                    })
                    .collect();
                url.set_query(None);
                if !kept.is_empty() {
                    url.query_pairs_mut().extend_pairs(kept);
                }
                let config: Config = url.as_str().parse().map_err(|_| bad())?;
                (config, sslmode, rootcert)
            } else {
                return Err(bad());
            };
        let mode = SslMode::parse(sslmode.as_deref().unwrap_or("prefer"))?;
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => return Err(refused("the database URL names no host")),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let user = config.get_user().unwrap_or("postgres").to_string();
        let dbname = config.get_dbname().unwrap_or(&user).to_string();
        let description = format!("{user}@{host}:{port}/{dbname} (sslmode={})", mode.as_str());
        DbTarget::new(config, mode, rootcert.as_deref(), host, description)
    }

    /// Settings built by a caller (cluster discovery), reached through
    /// `via`; `how` says how for people (e.g. "through a port-forward").
    pub fn over_stream(
        login: &DbLogin,
        mode: SslMode,
        via: StreamOpener,
        how: &str,
    ) -> Result<DbTarget> {
        let mut config = Config::new();
        config
            .host(&login.host)
            .port(login.port)
            .user(&login.user)
            .password(&login.password)
            .dbname(&login.dbname);
        let description = format!(
            "{}@{}:{}/{} {how} (sslmode={})",
            login.user,
            login.host,
            login.port,
            login.dbname,
            mode.as_str()
        );
        let mut target = DbTarget::new(config, mode, None, login.host.clone(), description)?;
        target.via = Some(via);
        Ok(target)
    }

    fn new(
        mut config: Config,
        mode: SslMode,
        rootcert: Option<&str>,
        tls_host: String,
        description: String,
    ) -> Result<DbTarget> {
        config.application_name("harbor-doctor");
        let tls = match mode {
            SslMode::Disable => TlsMode::Disable,
            SslMode::Prefer | SslMode::Require => TlsMode::Enabled {
                required: mode == SslMode::Require,
                config: Arc::new(tls::unverified_config()),
            },
            SslMode::VerifyCa | SslMode::VerifyFull => {
                let roots = tls::root_store(rootcert.map(std::path::Path::new))
                    .map_err(|e| refused(format!("sslrootcert: {e:#}")))?;
                let cfg = if mode == SslMode::VerifyFull {
                    tls::verifying_config(roots)
                } else {
                    tls::chain_only_config(roots)?
                };
                TlsMode::Enabled {
                    required: true,
                    config: Arc::new(cfg),
                }
            }
        };
        Ok(DbTarget {
            config,
            tls,
            tls_host,
            via: None,
            description,
        })
    }

    pub fn describe(&self) -> &str {
        &self.description
    }

    /// Opens one connection and drives it in the background.
    async fn open(&self, timeout: Duration) -> Result<Client> {
        let fut = self.open_inner();
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r.map_err(|e| self.connect_error(e)),
            Err(_) => Err(refused(format!(
                "could not reach the registry database {} within {} s; check the address, \
                 the network path, or raise --timeout",
                self.description,
                timeout.as_secs()
            ))),
        }
    }

    async fn open_inner(&self) -> Result<Client, ConnectError> {
        let mut config = self.config.clone();
        match (&self.tls, &self.via) {
            (TlsMode::Disable, None) => {
                config.ssl_mode(tokio_postgres::config::SslMode::Disable);
                let (client, conn) = config.connect(NoTls).await.map_err(ConnectError::Pg)?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!("registry database connection ended: {e}");
                    }
                });
                Ok(client)
            }
            (
                TlsMode::Enabled {
                    required,
                    config: tls_config,
                },
                None,
            ) => {
                config.ssl_mode(if *required {
                    tokio_postgres::config::SslMode::Require
                } else {
                    tokio_postgres::config::SslMode::Prefer
                });
                let maker = tokio_postgres_rustls::MakeRustlsConnect::new((**tls_config).clone());
                let (client, conn) = config.connect(maker).await.map_err(ConnectError::Pg)?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!("registry database connection ended: {e}");
                    }
                });
                Ok(client)
            }
            (TlsMode::Disable, Some(via)) => {
                config.ssl_mode(tokio_postgres::config::SslMode::Disable);
                let stream = via().await.map_err(ConnectError::Stream)?;
                let (client, conn) = config
                    .connect_raw(stream, NoTls)
                    .await
                    .map_err(ConnectError::Pg)?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(client)
            }
            (
                TlsMode::Enabled {
                    required,
                    config: tls_config,
                },
                Some(via),
            ) => {
                use tokio_postgres::tls::MakeTlsConnect;
                config.ssl_mode(if *required {
                    tokio_postgres::config::SslMode::Require
                } else {
                    tokio_postgres::config::SslMode::Prefer
                });
                let mut maker =
                    tokio_postgres_rustls::MakeRustlsConnect::new((**tls_config).clone());
                let connect = <tokio_postgres_rustls::MakeRustlsConnect as MakeTlsConnect<
                    Box<dyn DbStream>,
                >>::make_tls_connect(&mut maker, &self.tls_host)
                .map_err(|e| ConnectError::Stream(std::io::Error::other(e.to_string())))?;
                let stream = via().await.map_err(ConnectError::Stream)?;
                let (client, conn) = config
                    .connect_raw(stream, connect)
                    .await
                    .map_err(ConnectError::Pg)?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(client)
            }
        }
    }

    fn connect_error(&self, e: ConnectError) -> anyhow::Error {
        let what = &self.description;
        match e {
            ConnectError::Stream(io) => refused(format!(
                "could not open a connection to the registry database {what}: {io}"
            )),
            ConnectError::Pg(e) => {
                if let Some(db) = e.as_db_error() {
                    let code = db.code();
                    if *code == SqlState::INVALID_PASSWORD
                        || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
                    {
                        return refused(format!(
                            "the registry database {what} rejected the credentials: {}. \
                             Check the user and password in --db-url / HARBOR_DATABASE_URL",
                            db.message()
                        ));
                    }
                    if *code == SqlState::INVALID_CATALOG_NAME {
                        return refused(format!(
                            "the registry database {what} does not exist: {}",
                            db.message()
                        ));
                    }
                    return refused(format!(
                        "the registry database {what} refused the connection: {}",
                        db.message()
                    ));
                }
                let mut detail = e.to_string();
                if let Some(src) = std::error::Error::source(&e) {
                    detail = format!("{detail}: {src}");
                }
                refused(format!(
                    "could not connect to the registry database {what}: {detail}. Check that the \
                     host and port are right and reachable, and the sslmode"
                ))
            }
        }
    }
}

enum ConnectError {
    Pg(tokio_postgres::Error),
    Stream(std::io::Error),
}

/// Describes a database error without its parameters (which could hold data).
fn db_error(context: &str, e: tokio_postgres::Error) -> anyhow::Error {
    match e.as_db_error() {
        Some(db) => anyhow!("{context}: {} ({})", db.message(), db.code().code()),
        None => {
            let src = std::error::Error::source(&e)
                .map(|s| format!(": {s}"))
                .unwrap_or_default();
            anyhow!("{context}: {e}{src}")
        }
    }
}

/// Harbor's configuration, as stored in the `properties` table.
#[derive(Debug, Clone, Default)]
pub struct HarborSettings {
    pub auth_mode: Option<String>,
    pub oidc_endpoint: Option<String>,
    pub oidc_scope: Option<String>,
    pub oidc_user_claim: Option<String>,
}

/// An `oidc_user` row joined with the Harbor user it links.
#[derive(Debug, Clone, PartialEq)]
pub struct OidcLink {
    pub link_id: i32,
    pub user_id: i32,
    pub username: String,
    pub email: Option<String>,
    pub user_deleted: bool,
    pub sysadmin: bool,
    /// The OIDC subject immediately followed by the issuer URL.
    pub subiss: String,
}

/// A Harbor user account (`harbor_user`).
#[derive(Debug, Clone, PartialEq)]
pub struct HarborUser {
    pub user_id: i32,
    pub username: String,
    pub email: Option<String>,
    pub deleted: bool,
    pub sysadmin: bool,
}

/// A user as the identity provider knows them now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdpIdentity {
    pub id: String,
    pub username: String,
    pub email: Option<String>,
}

/// How an OIDC link was matched to the identity provider's user.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkVsIdp {
    pub link: OidcLink,
    pub idp: IdpIdentity,
    /// `username` or `email`.
    pub matched_by: String,
}

/// A user with more than one OIDC link.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiplyLinkedUser {
    pub user: HarborUser,
    pub link_ids: Vec<i32>,
}

/// A database row as it was, for backups and restore. `row` is PostgreSQL's
/// own `row_to_json` of the row, so every value round-trips exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowImage {
    pub table: String,
    pub key_column: String,
    pub key: i64,
    pub row: Value,
}

/// The tables a repair may back up and restore, with their primary keys.
/// Restore accepts nothing else, so a backup file can never name arbitrary SQL.
const RESTORABLE_TABLES: &[(&str, &str)] = &[
    ("harbor_user", "user_id"),
    ("oidc_user", "id"),
    ("project_member", "id"),
    ("properties", "id"),
];

fn key_column_of(table: &str) -> Option<&'static str> {
    RESTORABLE_TABLES
        .iter()
        .find(|(t, _)| *t == table)
        .map(|(_, k)| *k)
}

const LINK_COLUMNS: &str =
    "o.id, o.user_id, u.username, u.email, u.deleted, u.sysadmin_flag, o.subiss";

fn link_from_row(r: &tokio_postgres::Row) -> OidcLink {
    OidcLink {
        link_id: r.get(0),
        user_id: r.get(1),
        username: r.get::<_, Option<String>>(2).unwrap_or_default(),
        email: r.get(3),
        user_deleted: r.get(4),
        sysadmin: r.get(5),
        subiss: r.get(6),
    }
}

fn user_from_row(r: &tokio_postgres::Row) -> HarborUser {
    HarborUser {
        user_id: r.get(0),
        username: r.get::<_, Option<String>>(1).unwrap_or_default(),
        email: r.get(2),
        deleted: r.get(3),
        sysadmin: r.get(4),
    }
}

/// A connection to the registry database for reading, and the means to open
/// repair transactions.
pub struct RegistryDb {
    target: DbTarget,
    client: Client,
    timeout: Duration,
}

impl RegistryDb {
    pub async fn connect(target: DbTarget, timeout: Duration) -> Result<RegistryDb> {
        let client = target.open(timeout).await?;
        Ok(RegistryDb {
            target,
            client,
            timeout,
        })
    }

    /// Where the database is, for people; never holds the password.
    pub fn describe(&self) -> &str {
        self.target.describe()
    }

    async fn query(
        &self,
        what: &str,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>> {
        match tokio::time::timeout(self.timeout, self.client.query(sql, params)).await {
            Ok(r) => r.map_err(|e| db_error(what, e)),
            Err(_) => Err(anyhow!(
                "{what}: no answer from the registry database within {} s",
                self.timeout.as_secs()
            )),
        }
    }

    /// Harbor's configuration keys the doctor needs, from `properties`.
    pub async fn harbor_settings(&self) -> Result<HarborSettings> {
        let rows = self
            .query(
                "reading Harbor's configuration from the properties table",
                "SELECT k, v FROM properties WHERE k = ANY($1)",
                &[&vec![
                    "auth_mode",
                    "oidc_endpoint",
                    "oidc_scope",
                    "oidc_user_claim",
                ]],
            )
            .await?;
        let mut s = HarborSettings::default();
        for r in rows {
            let k: String = r.get(0);
            let v: String = r.get(1);
            let v = Some(v).filter(|v| !v.is_empty());
            match k.as_str() {
                "auth_mode" => s.auth_mode = v,
                "oidc_endpoint" => s.oidc_endpoint = v,
                "oidc_scope" => s.oidc_scope = v,
                "oidc_user_claim" => s.oidc_user_claim = v,
                _ => {}
            }
        }
        Ok(s)
    }

    /// Links of live users whose issuer is not `issuer` (compared with and
    /// without a trailing slash, as Harbor stores the token's `iss` verbatim).
    pub async fn links_with_other_issuer(&self, issuer: &str) -> Result<Vec<OidcLink>> {
        let issuer = issuer.trim_end_matches('/');
        let sql = format!(
            "SELECT {LINK_COLUMNS} FROM oidc_user o JOIN harbor_user u ON u.user_id = o.user_id
             WHERE NOT u.deleted
               AND right(o.subiss, length($1)) <> $1
               AND right(o.subiss, length($1) + 1) <> $1 || '/'
             ORDER BY u.username"
        );
        let rows = self
            .query("listing OIDC links with another issuer", &sql, &[&issuer])
            .await?;
        Ok(rows.iter().map(link_from_row).collect())
    }

    /// Links of live users that differ from the identity provider's current
    /// id for the same username (or, when no username matches, the same
    /// email). One statement for all users: the provider's users travel as
    /// arrays and are hash-joined.
    pub async fn links_differing_from_idp(
        &self,
        issuer: &str,
        idp_users: &[IdpIdentity],
    ) -> Result<Vec<LinkVsIdp>> {
        let issuer = issuer.trim_end_matches('/');
        let ids: Vec<&str> = idp_users.iter().map(|u| u.id.as_str()).collect();
        let names: Vec<&str> = idp_users.iter().map(|u| u.username.as_str()).collect();
        let emails: Vec<Option<&str>> = idp_users.iter().map(|u| u.email.as_deref()).collect();
        let sql = format!(
            "WITH idp AS (
                 SELECT * FROM unnest($2::text[], $3::text[], $4::text[]) AS t(id, username, email)
             ), links AS (
                 SELECT {LINK_COLUMNS} FROM oidc_user o JOIN harbor_user u ON u.user_id = o.user_id
                 WHERE NOT u.deleted
             )
             SELECT l.*, coalesce(bn.id, be.id), coalesce(bn.username, be.username),
                    coalesce(bn.email, be.email),
                    CASE WHEN bn.id IS NOT NULL THEN 'username' ELSE 'email' END
             FROM links l
             LEFT JOIN idp bn ON lower(bn.username) = lower(l.username)
             LEFT JOIN idp be ON bn.id IS NULL AND l.email IS NOT NULL
                             AND lower(be.email) = lower(l.email)
             WHERE coalesce(bn.id, be.id) IS NOT NULL
               AND l.subiss <> coalesce(bn.id, be.id) || $1
               AND l.subiss <> coalesce(bn.id, be.id) || $1 || '/'
             ORDER BY l.username",
            LINK_COLUMNS =
                "o.id, o.user_id, u.username, u.email, u.deleted, u.sysadmin_flag, o.subiss"
        );
        let rows = self
            .query(
                "comparing OIDC links with Keycloak's users",
                &sql,
                &[&issuer, &ids, &names, &emails],
            )
            .await?;
        let mut seen = std::collections::HashSet::new();
        Ok(rows
            .iter()
            .filter_map(|r| {
                let link = link_from_row(r);
                seen.insert(link.link_id).then(|| LinkVsIdp {
                    link,
                    idp: IdpIdentity {
                        id: r.get(7),
                        username: r.get(8),
                        email: r.get(9),
                    },
                    matched_by: r.get(10),
                })
            })
            .collect())
    }

    /// Links that still point at soft-deleted users: they hold their
    /// sub+issuer, so the person cannot be onboarded again (UNIQUE(subiss)).
    pub async fn links_of_deleted_users(&self) -> Result<Vec<OidcLink>> {
        let sql = format!(
            "SELECT {LINK_COLUMNS} FROM oidc_user o JOIN harbor_user u ON u.user_id = o.user_id
             WHERE u.deleted ORDER BY u.username"
        );
        let rows = self
            .query("listing OIDC links of deleted users", &sql, &[])
            .await?;
        Ok(rows.iter().map(link_from_row).collect())
    }

    /// Live users with more than one OIDC link.
    pub async fn users_with_several_links(&self) -> Result<Vec<MultiplyLinkedUser>> {
        let rows = self
            .query(
                "listing users with several OIDC links",
                "SELECT u.user_id, u.username, u.email, u.deleted, u.sysadmin_flag,
                        array_agg(o.id ORDER BY o.id)
                 FROM oidc_user o JOIN harbor_user u ON u.user_id = o.user_id
                 WHERE NOT u.deleted
                 GROUP BY u.user_id HAVING count(*) > 1 ORDER BY u.username",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| MultiplyLinkedUser {
                user: user_from_row(r),
                link_ids: r.get(5),
            })
            .collect())
    }

    /// Live users other than the local admin that have no OIDC link.
    pub async fn users_without_link(&self) -> Result<Vec<HarborUser>> {
        let rows = self
            .query(
                "listing users without an OIDC link",
                "SELECT u.user_id, u.username, u.email, u.deleted, u.sysadmin_flag
                 FROM harbor_user u
                 WHERE NOT u.deleted AND u.user_id <> 1
                   AND NOT EXISTS (SELECT 1 FROM oidc_user o WHERE o.user_id = u.user_id)
                 ORDER BY u.username",
                &[],
            )
            .await?;
        Ok(rows.iter().map(user_from_row).collect())
    }

    /// A user by exact username (deleted users keep their renamed username,
    /// e.g. `bob#7`, and are found by it).
    pub async fn user_by_name(&self, username: &str) -> Result<Option<HarborUser>> {
        let rows = self
            .query(
                "looking up the user",
                "SELECT user_id, username, email, deleted, sysadmin_flag FROM harbor_user WHERE username = $1",
                &[&username],
            )
            .await?;
        Ok(rows.first().map(user_from_row))
    }

    /// The OIDC links of the given users, in one query.
    pub async fn links_of_users(&self, user_ids: &[i32]) -> Result<Vec<OidcLink>> {
        let sql = format!(
            "SELECT {LINK_COLUMNS} FROM oidc_user o JOIN harbor_user u ON u.user_id = o.user_id
             WHERE o.user_id = ANY($1) ORDER BY o.id"
        );
        let rows = self
            .query("reading the users' OIDC links", &sql, &[&user_ids])
            .await?;
        Ok(rows.iter().map(link_from_row).collect())
    }

    /// Names of live projects a user owns (project.owner_id).
    pub async fn projects_owned_by(&self, user_id: i32) -> Result<Vec<String>> {
        let rows = self
            .query(
                "listing the user's projects",
                "SELECT name FROM project WHERE owner_id = $1 AND NOT deleted ORDER BY name",
                &[&user_id],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// How many project memberships a user has.
    pub async fn membership_count(&self, user_id: i32) -> Result<i64> {
        let rows = self
            .query(
                "counting the user's project memberships",
                "SELECT count(*) FROM project_member WHERE entity_type = 'u' AND entity_id = $1",
                &[&user_id],
            )
            .await?;
        Ok(rows[0].get(0))
    }

    /// The link that holds a sub+issuer, if any.
    pub async fn link_holding(&self, subiss: &str) -> Result<Option<OidcLink>> {
        let sql = format!(
            "SELECT {LINK_COLUMNS} FROM oidc_user o JOIN harbor_user u ON u.user_id = o.user_id
             WHERE o.subiss = $1"
        );
        let rows = self
            .query("looking up an OIDC link", &sql, &[&subiss])
            .await?;
        Ok(rows.first().map(link_from_row))
    }

    /// Starts a repair transaction on a connection of its own. Lock waits
    /// are bounded by `lock_wait`.
    pub async fn begin(&self, lock_wait: Duration) -> Result<RepairTx> {
        let client = self.target.open(self.timeout).await?;
        let ms = lock_wait.as_millis().max(1);
        client
            .batch_execute(&format!("BEGIN; SET LOCAL lock_timeout = '{ms}ms'"))
            .await
            .map_err(|e| db_error("starting the repair transaction", e))?;
        Ok(RepairTx {
            client,
            lock_wait,
            description: self.describe().to_string(),
        })
    }
}

/// One repair's transaction. Dropping it without [`RepairTx::commit`] closes
/// its connection, and PostgreSQL rolls everything back.
pub struct RepairTx {
    client: Client,
    lock_wait: Duration,
    description: String,
}

/// How a COMMIT ended when it did not succeed.
#[derive(Debug)]
pub enum CommitError {
    /// The server answered with an error: it rolled back, nothing changed.
    RolledBack(String),
    /// The connection broke: the server may or may not have committed.
    OutcomeUnknown(String),
}

impl RepairTx {
    fn step_error(&self, what: &str, e: tokio_postgres::Error) -> anyhow::Error {
        if let Some(db) = e.as_db_error() {
            if *db.code() == SqlState::LOCK_NOT_AVAILABLE {
                return Failure::error(
                    ExitCode::CannotRun,
                    format!(
                        "{what}: the rows are locked by another session (another repair, or Harbor \
                         itself) and stayed locked for {} ms; nothing was changed. Try again in a minute",
                        self.lock_wait.as_millis()
                    ),
                );
            }
        }
        if e.is_closed() || e.as_db_error().is_none() {
            return Failure::error(
                ExitCode::Incomplete,
                format!(
                    "{what}: the connection to the registry database {} broke before the change was \
                     committed, so PostgreSQL rolled it back and nothing was changed; try again",
                    self.description
                ),
            );
        }
        db_error(what, e)
    }

    async fn rows(
        &self,
        what: &str,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>> {
        self.client
            .query(sql, params)
            .await
            .map_err(|e| self.step_error(what, e))
    }

    async fn exec(
        &self,
        what: &str,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64> {
        self.client
            .execute(sql, params)
            .await
            .map_err(|e| self.step_error(what, e))
    }

    /// Locks a user's row, links and memberships (in that order, the same
    /// order for every repair, so two repairs cannot deadlock) and returns
    /// their images as they are now, for the backup. None when the user is gone.
    pub async fn lock_user(&self, user_id: i32) -> Result<Option<(HarborUser, Vec<RowImage>)>> {
        let rows = self
            .rows(
                "locking the user's row",
                "SELECT user_id, username, email, deleted, sysadmin_flag, row_to_json(t)
                 FROM harbor_user t WHERE user_id = $1 FOR UPDATE",
                &[&user_id],
            )
            .await?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        let user = user_from_row(r);
        let mut images = vec![RowImage {
            table: "harbor_user".into(),
            key_column: "user_id".into(),
            key: user_id.into(),
            row: r.get(5),
        }];
        for (table, key, filter) in [
            ("oidc_user", "id", "user_id = $1"),
            (
                "project_member",
                "id",
                "entity_type = 'u' AND entity_id = $1",
            ),
        ] {
            let rows = self
                .rows(
                    "locking the user's related rows",
                    &format!("SELECT {key}, row_to_json(t) FROM {table} t WHERE {filter} ORDER BY {key} FOR UPDATE"),
                    &[&user_id],
                )
                .await?;
            images.extend(rows.iter().map(|r| RowImage {
                table: table.into(),
                key_column: key.into(),
                key: r.get::<_, i32>(0).into(),
                row: r.get(1),
            }));
        }
        Ok(Some((user, images)))
    }

    /// Names of live projects the user owns, read inside the transaction.
    pub async fn projects_owned_by(&self, user_id: i32) -> Result<Vec<String>> {
        let rows = self
            .rows(
                "listing the user's projects",
                "SELECT name FROM project WHERE owner_id = $1 AND NOT deleted ORDER BY name FOR SHARE",
                &[&user_id],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Who holds a sub+issuer now, read inside the transaction.
    pub async fn link_holding(&self, subiss: &str) -> Result<Option<(i32, i32)>> {
        let rows = self
            .rows(
                "checking who holds the new subject",
                "SELECT id, user_id FROM oidc_user WHERE subiss = $1",
                &[&subiss],
            )
            .await?;
        Ok(rows.first().map(|r| (r.get(0), r.get(1))))
    }

    /// Points an OIDC link at a new sub+issuer.
    pub async fn relink(&self, link_id: i32, new_subiss: &str) -> Result<()> {
        let n = self
            .exec(
                "updating the OIDC link",
                "UPDATE oidc_user SET subiss = $2 WHERE id = $1",
                &[&link_id, &new_subiss],
            )
            .await?;
        anyhow::ensure!(
            n == 1,
            "the OIDC link {link_id} disappeared during the repair"
        );
        Ok(())
    }

    /// Deletes a user the way Harbor 2.4+ does: memberships and links go,
    /// username and email become `<old>#<id>` (cut to fit 255 characters),
    /// deleted = true. For a user already deleted only the leftovers go.
    pub async fn soft_delete_user(&self, user_id: i32, already_deleted: bool) -> Result<()> {
        self.delete_memberships_and_links(user_id).await?;
        if !already_deleted {
            self.exec(
                "renaming and marking the user deleted",
                "UPDATE harbor_user SET
                     username = left(username, 255 - length('#' || user_id)) || '#' || user_id,
                     email = CASE WHEN email IS NULL THEN NULL
                                  ELSE left(email, 255 - length('#' || user_id)) || '#' || user_id END,
                     deleted = true
                 WHERE user_id = $1",
                &[&user_id],
            )
            .await?;
        }
        Ok(())
    }

    /// Hard-deletes a user's memberships, links and row. The caller has
    /// checked that they own no project; the foreign key would refuse anyway.
    pub async fn hard_delete_user(&self, user_id: i32) -> Result<()> {
        self.delete_memberships_and_links(user_id).await?;
        self.exec(
            "deleting the user row",
            "DELETE FROM harbor_user WHERE user_id = $1",
            &[&user_id],
        )
        .await?;
        Ok(())
    }

    async fn delete_memberships_and_links(&self, user_id: i32) -> Result<()> {
        self.exec(
            "deleting the user's project memberships",
            "DELETE FROM project_member WHERE entity_type = 'u' AND entity_id = $1",
            &[&user_id],
        )
        .await?;
        self.exec(
            "deleting the user's OIDC links",
            "DELETE FROM oidc_user WHERE user_id = $1",
            &[&user_id],
        )
        .await?;
        Ok(())
    }

    /// Locks the row an image came from, if it still exists, and returns its
    /// current image.
    pub async fn lock_current(&self, image: &RowImage) -> Result<Option<Value>> {
        let key_column = restorable(image)?;
        let rows = self
            .rows(
                "locking the row to restore",
                &format!(
                    "SELECT row_to_json(t) FROM {} t WHERE {key_column} = $1 FOR UPDATE",
                    image.table
                ),
                &[&(image.key as i32)],
            )
            .await?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    /// Which other rows hold a unique value that restoring `image` needs,
    /// described for people. Empty when the restore can go ahead.
    pub async fn clashes(&self, image: &RowImage) -> Result<Vec<String>> {
        let key_column = restorable(image)?;
        let key = image.key as i32;
        let get = |c: &str| image.row.get(c).cloned().unwrap_or(Value::Null);
        let mut clashes = vec![];
        // The single-column unique constraints of the restorable tables;
        // table and column names come from these lists, never from the file.
        let unique: &[&str] = match image.table.as_str() {
            "harbor_user" => &["username", "email"],
            "oidc_user" => &["subiss"],
            "properties" => &["k"],
            _ => &[],
        };
        for column in unique {
            let Value::String(v) = get(column) else {
                continue;
            };
            let sql = format!(
                "SELECT {key_column} FROM {} WHERE {column} = $1 AND {key_column} <> $2",
                image.table
            );
            let rows = self.rows("checking for clashes", &sql, &[&v, &key]).await?;
            for r in rows {
                let other: i32 = r.get(0);
                clashes.push(format!(
                    "{}.{column} {v:?} is now used by another row ({key_column} {other}), created or changed since the backup",
                    image.table
                ));
            }
        }
        if image.table == "project_member" {
            let (Some(p), Some(e), Some(t)) = (
                get("project_id").as_i64(),
                get("entity_id").as_i64(),
                get("entity_type").as_str().map(str::to_string),
            ) else {
                return Ok(clashes);
            };
            let rows = self
                .rows(
                    "checking for clashes",
                    "SELECT id FROM project_member WHERE project_id = $1 AND entity_id = $2
                       AND entity_type = $3 AND id <> $4",
                    &[&(p as i32), &(e as i32), &t, &key],
                )
                .await?;
            for r in rows {
                clashes.push(format!(
                    "project_member: the membership of entity {e} in project {p} was created again since the backup (id {})",
                    r.get::<_, i32>(0)
                ));
            }
        }
        Ok(clashes)
    }

    /// Puts a row back exactly as imaged (update_time aside, which the
    /// table's trigger sets on UPDATE): updated in place when the row
    /// exists, inserted with its old key when it was deleted.
    pub async fn restore_row(&self, image: &RowImage, exists: bool) -> Result<()> {
        let key_column = restorable(image)?;
        let columns = self.columns_of(&image.table).await?;
        let present: Vec<&String> = columns
            .iter()
            .filter(|c| image.row.get(c.as_str()).is_some())
            .collect();
        let list = present
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = if exists {
            format!(
                "UPDATE {table} SET ({list}) = (SELECT {list} FROM json_populate_record(NULL::{table}, $1::text::json))
                 WHERE {key_column} = $2",
                table = image.table
            )
        } else {
            format!(
                "INSERT INTO {table} ({list}) SELECT {list} FROM json_populate_record(NULL::{table}, $1::text::json)
                 WHERE $2::int IS NOT NULL",
                table = image.table
            )
        };
        let json = image.row.to_string();
        let n = self
            .exec("restoring a row", &sql, &[&json, &(image.key as i32)])
            .await?;
        anyhow::ensure!(
            n == 1,
            "restoring {} {}={} touched {n} rows",
            image.table,
            key_column,
            image.key
        );
        Ok(())
    }

    async fn columns_of(&self, table: &str) -> Result<Vec<String>> {
        let rows = self
            .rows(
                "reading the table's columns",
                "SELECT column_name FROM information_schema.columns
                 WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
                &[&table],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Re-reads an image of a row after a change (None when it is gone).
    pub async fn current(&self, table: &str, key: i64) -> Result<Option<Value>> {
        let key_column =
            key_column_of(table).ok_or_else(|| anyhow!("table {table} is not restorable"))?;
        let rows = self
            .rows(
                "reading a row",
                &format!("SELECT row_to_json(t) FROM {table} t WHERE {key_column} = $1"),
                &[&(key as i32)],
            )
            .await?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    /// Commits. A COMMIT whose answer never arrives has an unknown outcome,
    /// which the caller must report as such.
    pub async fn commit(self) -> Result<(), CommitError> {
        match self.client.batch_execute("COMMIT").await {
            Ok(()) => Ok(()),
            Err(e) if e.as_db_error().is_some() => Err(CommitError::RolledBack(
                e.as_db_error()
                    .map(|d| d.message().to_string())
                    .unwrap_or_default(),
            )),
            Err(e) => Err(CommitError::OutcomeUnknown(e.to_string())),
        }
    }

    /// Rolls back explicitly (dropping does the same, less politely).
    pub async fn rollback(self) {
        let _ = self.client.batch_execute("ROLLBACK").await;
    }
}

fn restorable(image: &RowImage) -> Result<&'static str> {
    let key = key_column_of(&image.table).ok_or_else(|| {
        refused(format!(
            "the backup names table {:?}, which harbor-doctor never changes",
            image.table
        ))
    })?;
    if key != image.key_column {
        return Err(refused(format!(
            "the backup names {} as the key of {}, but its key is {key}",
            image.key_column, image.table
        )));
    }
    Ok(key)
}

//! Harbor's registry database (PostgreSQL): every SQL statement the doctor
//! runs lives here.
//!
//! Reads are set-based: one statement answers a question for all users at
//! once, so a diagnosis costs the same few round trips for ten users or a
//! hundred thousand. Writes happen only inside a [`RepairTx`]: its own
//! connection, one transaction, rows locked with a bounded wait, so that a
//! repair either commits whole or changes nothing.
//!
//! - `connect`: reaching the server (URL, TLS, TCP or a port-forward);
//! - this module: the model (links, users, [`Subiss`], [`StoredConfig`])
//!   and the reads;
//! - `tx`: the repair transaction ([`RepairTx`], [`LockedUser`]);
//! - `tables`: what the doctor knows about each table it may change
//!   ([`TABLES`]), used by locking, backup, restore and clash checks.

use std::time::Duration;

use anyhow::{anyhow, Result};
use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::outcome::refused;

mod connect;
pub mod tables;
mod tx;

pub use connect::{DbLogin, DbTarget, SslMode};
pub use tables::{RowChange, TableSpec, TABLES};
pub use tx::{LockedUser, RepairTx};

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
pub struct StoredConfig {
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
    pub subiss: Subiss,
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

/// The stored form of an OIDC link's identity, `oidc_user.subiss`: the
/// `sub` claim immediately followed by the issuer URL, no separator, in a
/// varchar(255). Only this type builds or splits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subiss(String);

/// `oidc_user.subiss` is varchar(255).
pub const SUBISS_MAX: usize = 255;

impl Subiss {
    /// The stored value for `sub` at `issuer`; refuses one that would not fit.
    pub fn new(sub: &str, issuer: &str) -> Result<Subiss> {
        let v = format!("{sub}{issuer}");
        if v.chars().count() > SUBISS_MAX {
            return Err(refused(format!(
                "the subject plus the issuer is {} characters, but Harbor stores at most {SUBISS_MAX} \
                 (oidc_user.subiss); check the subject and the issuer ({issuer})",
                v.chars().count()
            )));
        }
        Ok(Subiss(v))
    }

    /// A value as read from the database.
    pub fn stored(v: String) -> Subiss {
        Subiss(v)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Splits into sub and issuer. Against the current issuer the split is
    /// exact (with or without a trailing slash, as Harbor stores the token's
    /// `iss` verbatim); otherwise the issuer is taken to start at the first
    /// `http://` or `https://` (Keycloak's subs are UUIDs, which never hold one).
    pub fn split(&self, issuer: &str) -> (String, String) {
        let subiss = self.0.as_str();
        for candidate in [issuer.to_string(), format!("{issuer}/")] {
            if let Some(sub) = subiss.strip_suffix(&candidate) {
                return (sub.to_string(), candidate);
            }
        }
        let at = ["https://", "http://"]
            .iter()
            .filter_map(|p| subiss.find(p))
            .min();
        match at {
            Some(i) => (subiss[..i].to_string(), subiss[i..].to_string()),
            None => (subiss.to_string(), String::new()),
        }
    }
}

impl std::fmt::Display for Subiss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A user with more than one OIDC link.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiplyLinkedUser {
    pub user: HarborUser,
    pub link_ids: Vec<i32>,
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
        subiss: Subiss::stored(r.get(6)),
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
    pub async fn stored_config(&self) -> Result<StoredConfig> {
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
        let mut s = StoredConfig::default();
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

    /// Every link of a live user, for matching against Keycloak in memory
    /// (one statement, whatever the number of users).
    pub async fn live_links(&self) -> Result<Vec<OidcLink>> {
        let sql = format!(
            "SELECT {LINK_COLUMNS} FROM oidc_user o JOIN harbor_user u ON u.user_id = o.user_id
             WHERE NOT u.deleted ORDER BY u.username"
        );
        let rows = self.query("listing OIDC links", &sql, &[]).await?;
        Ok(rows.iter().map(link_from_row).collect())
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
    pub async fn link_holding(&self, subiss: &Subiss) -> Result<Option<OidcLink>> {
        let subiss = subiss.as_str();
        let sql = format!(
            "SELECT {LINK_COLUMNS} FROM oidc_user o JOIN harbor_user u ON u.user_id = o.user_id
             WHERE o.subiss = $1"
        );
        let rows = self
            .query("looking up an OIDC link", &sql, &[&subiss])
            .await?;
        Ok(rows.first().map(link_from_row))
    }

    /// Starts a repair transaction on a connection of its own. Every
    /// statement and the COMMIT are bounded by `--timeout`, lock waits by
    /// `lock_wait`.
    pub async fn begin(&self, lock_wait: Duration) -> Result<RepairTx> {
        let client = self.target.open(self.timeout).await?;
        RepairTx::begin(client, self.timeout, lock_wait, self.describe().to_string()).await
    }

    /// Which database this is, told by the database itself: the same for a
    /// port-forward and the Service, different for another installation.
    pub async fn identity(&self) -> Result<DbIdentity> {
        // pg_control_system() may be closed to a non-superuser (a
        // CloudNativePG app user); the name and the admin row's creation
        // time (written once, by Harbor's first migration) still tell
        // installations apart.
        let system_identifier = match self
            .query(
                "reading the database's system identifier",
                "SELECT system_identifier::text FROM pg_control_system()",
                &[],
            )
            .await
        {
            Ok(rows) => rows.first().map(|r| r.get::<_, String>(0)),
            Err(e) => {
                tracing::debug!("no system identifier: {e:#}");
                None
            }
        };
        let rows = self
            .query(
                "reading the database's identity",
                "SELECT current_database()::text,
                        (SELECT to_char(creation_time, 'YYYY-MM-DD\"T\"HH24:MI:SS.US')
                         FROM harbor_user WHERE user_id = 1)",
                &[],
            )
            .await?;
        Ok(DbIdentity {
            system_identifier,
            database: rows[0].get(0),
            admin_created: rows[0].get(1),
        })
    }
}

/// A registry database's identity, as recorded in backups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbIdentity {
    pub system_identifier: Option<String>,
    pub database: String,
    /// When the local admin (user_id 1) was created: once per installation.
    pub admin_created: Option<String>,
}

impl DbIdentity {
    /// Why `self` (the target) is not `recorded` (a backup's source), or
    /// None when they are the same database.
    pub fn differs_from(&self, recorded: &DbIdentity) -> Option<String> {
        if let (Some(a), Some(b)) = (&self.system_identifier, &recorded.system_identifier) {
            if a != b {
                return Some(format!("its system identifier is {a}, the backup's {b}"));
            }
        }
        if self.database != recorded.database {
            return Some(format!(
                "it is database {:?}, the backup's was {:?}",
                self.database, recorded.database
            ));
        }
        if self.admin_created != recorded.admin_created {
            return Some(format!(
                "its admin account was created at {}, the backup's at {}",
                self.admin_created.as_deref().unwrap_or("?"),
                recorded.admin_created.as_deref().unwrap_or("?")
            ));
        }
        None
    }
}

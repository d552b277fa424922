//! A repair's transaction: its own connection, one transaction, every
//! statement and the COMMIT bounded in time, rows locked with a bounded
//! wait, and every write naming the rows it was planned for.
//!
//! Anything that fails before COMMIT is sent is a [`RolledBack`]: the
//! server never commits a transaction it was not asked to, so nothing
//! changed, for certain. Only a COMMIT whose answer never arrives has an
//! unknown outcome.
//!
//! Writes name the locked ids (`WHERE id = ANY(...)`), never a condition
//! that could reach rows committed after the lock was taken, and each
//! write's row count is compared with what was locked: any difference is
//! an error, and the transaction rolls back.

use std::time::Duration;

use anyhow::Result;
use serde_json::{Map, Value};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::tables::{self, TableSpec};
use super::{user_from_row, HarborUser, Subiss};
use crate::clients::error::{ClientError, ErrorKind, RolledBack};

/// One repair's transaction. Dropping it without [`RepairTx::commit`]
/// closes its connection, and PostgreSQL rolls everything back.
pub struct RepairTx {
    client: Client,
    /// The longest any one statement, or the COMMIT, may take.
    deadline: Duration,
    lock_wait: Duration,
    description: String,
}

/// A user's rows, locked, as they are now.
#[derive(Debug, Clone)]
pub struct LockedUser {
    pub user: HarborUser,
    pub row: Map<String, Value>,
    /// `oidc_user` rows by id.
    pub links: Vec<(i32, Map<String, Value>)>,
    /// `project_member` rows (entity_type 'u') by id.
    pub memberships: Vec<(i32, Map<String, Value>)>,
}

impl LockedUser {
    pub fn link_subiss(&self, link_id: i32) -> Option<&str> {
        self.links
            .iter()
            .find(|(id, _)| *id == link_id)
            .and_then(|(_, r)| r.get("subiss"))
            .and_then(Value::as_str)
    }
}

fn failed(kind: ErrorKind, message: String) -> anyhow::Error {
    anyhow::Error::new(RolledBack(ClientError::new(kind, message)))
}

fn as_map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// How much longer than the server's bound the client waits.
const CLIENT_GRACE: Duration = Duration::from_millis(500);

type Params<'a> = &'a [&'a (dyn tokio_postgres::types::ToSql + Sync)];

impl RepairTx {
    /// Opens the transaction on `client` (a connection of its own). The
    /// server enforces the same bounds as the client: `statement_timeout`
    /// stops a statement that runs too long, and
    /// `idle_in_transaction_session_timeout` ends the session, releasing
    /// its locks, when the doctor stops talking (a frozen connection).
    pub(super) async fn begin(
        client: Client,
        deadline: Duration,
        lock_wait: Duration,
        description: String,
    ) -> Result<RepairTx> {
        let tx = RepairTx {
            client,
            deadline,
            lock_wait,
            description,
        };
        let ms = deadline.as_millis().max(1);
        let lock_ms = lock_wait.as_millis().max(1);
        let setup = format!(
            "SET statement_timeout = '{ms}ms'; SET idle_in_transaction_session_timeout = '{ms}ms';
             BEGIN; SET LOCAL lock_timeout = '{lock_ms}ms'"
        );
        tx.bounded(
            "starting the repair transaction",
            tx.client.batch_execute(&setup),
        )
        .await?;
        Ok(tx)
    }

    /// Runs one request to the server within the deadline. The client
    /// waits a little longer than the server's own statement_timeout, so a
    /// server that is alive answers with its own (clearer) error first.
    async fn bounded<T>(
        &self,
        what: &str,
        fut: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.deadline + CLIENT_GRACE, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.step_error(what, e)),
            Err(_) => Err(failed(
                ErrorKind::Timeout,
                format!(
                    "{what}: the registry database {} did not answer within {} s (--timeout)",
                    self.description,
                    self.deadline.as_secs()
                ),
            )),
        }
    }

    fn step_error(&self, what: &str, e: tokio_postgres::Error) -> anyhow::Error {
        if let Some(db) = e.as_db_error() {
            let code = db.code();
            if *code == SqlState::LOCK_NOT_AVAILABLE {
                return failed(
                    ErrorKind::Locked,
                    format!(
                        "{what}: the rows are locked by another session (another repair, or Harbor itself) \
                         and stayed locked for {} ms. Try again in a minute",
                        self.lock_wait.as_millis()
                    ),
                );
            }
            if *code == SqlState::QUERY_CANCELED {
                return failed(
                    ErrorKind::Timeout,
                    format!(
                        "{what}: the statement ran longer than {} s (--timeout) and the database cancelled it",
                        self.deadline.as_secs()
                    ),
                );
            }
            if *code == SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT {
                return failed(
                    ErrorKind::Timeout,
                    format!(
                        "{what}: the database ended the transaction after it waited {} s (--timeout) for the \
                         doctor's next statement: the connection stalled on the way",
                        self.deadline.as_secs()
                    ),
                );
            }
            let kind = if [
                SqlState::UNIQUE_VIOLATION,
                SqlState::FOREIGN_KEY_VIOLATION,
                SqlState::NOT_NULL_VIOLATION,
                SqlState::CHECK_VIOLATION,
            ]
            .contains(code)
            {
                ErrorKind::Conflict
            } else {
                ErrorKind::Refused
            };
            return failed(
                kind,
                format!(
                    "{what}: the database refused: {} ({})",
                    db.message(),
                    code.code()
                ),
            );
        }
        failed(
            ErrorKind::Unreachable,
            format!(
                "{what}: the connection to the registry database {} broke before the change was committed ({e})",
                self.description
            ),
        )
    }

    async fn rows(
        &self,
        what: &str,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Vec<tokio_postgres::Row>> {
        self.bounded(what, self.client.query(sql, params)).await
    }

    async fn exec(&self, what: &str, sql: &str, params: Params<'_>) -> Result<u64> {
        self.bounded(what, self.client.execute(sql, params)).await
    }

    /// Runs a write that must touch exactly `expected` rows.
    async fn exec_exact(
        &self,
        what: &str,
        sql: &str,
        params: Params<'_>,
        expected: u64,
    ) -> Result<()> {
        let n = self.exec(what, sql, params).await?;
        if n != expected {
            return Err(failed(
                ErrorKind::Changed,
                format!(
                    "{what}: it touched {n} row(s) where the plan locked {expected}, so the rows changed \
                     while the repair ran. Run it again to see a fresh plan"
                ),
            ));
        }
        Ok(())
    }

    /// Locks a user's row, links and memberships (in that order, the same
    /// order for every repair, so two repairs cannot deadlock) and returns
    /// them as they are now. None when the user is gone.
    pub async fn lock_user(&self, user_id: i32) -> Result<Option<LockedUser>> {
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
        let row = as_map(r.get(5));
        let related = |sql: &'static str| async move {
            let rows = self
                .rows("locking the user's related rows", sql, &[&user_id])
                .await?;
            Ok::<_, anyhow::Error>(
                rows.iter()
                    .map(|r| (r.get::<_, i32>(0), as_map(r.get(1))))
                    .collect::<Vec<_>>(),
            )
        };
        let links = related(
            "SELECT id, row_to_json(t) FROM oidc_user t WHERE user_id = $1 ORDER BY id FOR UPDATE",
        )
        .await?;
        let memberships = related(
            "SELECT id, row_to_json(t) FROM project_member t
             WHERE entity_type = 'u' AND entity_id = $1 ORDER BY id FOR UPDATE",
        )
        .await?;
        Ok(Some(LockedUser {
            user,
            row,
            links,
            memberships,
        }))
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
    pub async fn link_holding(&self, subiss: &Subiss) -> Result<Option<(i32, i32)>> {
        let rows = self
            .rows(
                "checking who holds the new subject",
                "SELECT id, user_id FROM oidc_user WHERE subiss = $1",
                &[&subiss.as_str()],
            )
            .await?;
        Ok(rows.first().map(|r| (r.get(0), r.get(1))))
    }

    /// Points one OIDC link, still holding `old`, at `new`.
    pub async fn relink(&self, link_id: i32, old: &str, new: &Subiss) -> Result<()> {
        self.exec_exact(
            "updating the OIDC link",
            "UPDATE oidc_user SET subiss = $2 WHERE id = $1 AND subiss = $3",
            &[&link_id, &new.as_str(), &old],
            1,
        )
        .await
    }

    /// Deletes exactly the locked memberships and links of a user, and
    /// checks none is left (one committed after the lock would be in no
    /// backup, and would outlive the user).
    async fn delete_memberships_and_links(&self, locked: &LockedUser) -> Result<()> {
        let user_id = locked.user.user_id;
        let member_ids: Vec<i32> = locked.memberships.iter().map(|(id, _)| *id).collect();
        let link_ids: Vec<i32> = locked.links.iter().map(|(id, _)| *id).collect();
        self.exec_exact(
            "deleting the user's project memberships",
            "DELETE FROM project_member WHERE id = ANY($1) AND entity_type = 'u' AND entity_id = $2",
            &[&member_ids, &user_id],
            member_ids.len() as u64,
        )
        .await?;
        self.exec_exact(
            "deleting the user's OIDC links",
            "DELETE FROM oidc_user WHERE id = ANY($1) AND user_id = $2",
            &[&link_ids, &user_id],
            link_ids.len() as u64,
        )
        .await?;
        let left = self
            .rows(
                "checking nothing of the user's was added meanwhile",
                "SELECT (SELECT count(*) FROM project_member WHERE entity_type = 'u' AND entity_id = $1),
                        (SELECT count(*) FROM oidc_user WHERE user_id = $1)",
                &[&user_id],
            )
            .await?;
        let (members, links): (i64, i64) = (left[0].get(0), left[0].get(1));
        if members + links > 0 {
            return Err(failed(
                ErrorKind::Changed,
                format!(
                    "{} membership(s) and {} OIDC link(s) of user_id {user_id} were added while the repair ran; \
                     they are not in the backup. Run the repair again to see a fresh plan",
                    members, links
                ),
            ));
        }
        Ok(())
    }

    /// Deletes a user the way Harbor 2.4+ does: memberships and links go,
    /// username and email become `<old>#<id>` (cut to fit 255 characters),
    /// deleted = true. For a user already deleted only the leftovers go.
    pub async fn soft_delete_user(&self, locked: &LockedUser) -> Result<()> {
        self.delete_memberships_and_links(locked).await?;
        if !locked.user.deleted {
            self.exec_exact(
                "renaming and marking the user deleted",
                "UPDATE harbor_user SET
                     username = left(username, 255 - length('#' || user_id)) || '#' || user_id,
                     email = CASE WHEN email IS NULL THEN NULL
                                  ELSE left(email, 255 - length('#' || user_id)) || '#' || user_id END,
                     deleted = true
                 WHERE user_id = $1 AND NOT deleted",
                &[&locked.user.user_id],
                1,
            )
            .await?;
        }
        Ok(())
    }

    /// Hard-deletes a user's memberships, links and row. The caller has
    /// checked that they own no project; the foreign key would refuse anyway.
    pub async fn hard_delete_user(&self, locked: &LockedUser) -> Result<()> {
        self.delete_memberships_and_links(locked).await?;
        self.exec_exact(
            "deleting the user row",
            "DELETE FROM harbor_user WHERE user_id = $1",
            &[&locked.user.user_id],
            1,
        )
        .await
    }

    /// A row as it is now (locked with `FOR UPDATE` when `lock`), or None.
    pub async fn row(
        &self,
        spec: &TableSpec,
        key: i64,
        lock: bool,
    ) -> Result<Option<Map<String, Value>>> {
        let sql = format!(
            "SELECT row_to_json(t) FROM {} t WHERE {} = $1{}",
            spec.name,
            spec.key,
            if lock { " FOR UPDATE" } else { "" }
        );
        let rows = self.rows("reading a row", &sql, &[&(key as i32)]).await?;
        Ok(rows.first().map(|r| as_map(r.get(0))))
    }

    /// The table's columns, from the catalogue: column names that a backup
    /// names go into SQL only when they are in this list.
    pub async fn columns_of(&self, spec: &TableSpec) -> Result<Vec<String>> {
        let rows = self
            .rows(
                "reading the table's columns",
                "SELECT column_name FROM information_schema.columns
                 WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
                &[&spec.name],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn column_list(known: &[String], values: &Map<String, Value>) -> Result<String> {
        let mut list = vec![];
        for c in values.keys() {
            if !known.contains(c) {
                return Err(failed(
                    ErrorKind::Invalid,
                    format!(
                        "the table has no column {:?}",
                        crate::clients::http::clip(c, 64)
                    ),
                ));
            }
            list.push(format!("\"{c}\""));
        }
        Ok(list.join(", "))
    }

    /// Sets the given columns of one row to the given values (PostgreSQL
    /// converts the JSON back to each column's type).
    pub async fn update_columns(
        &self,
        spec: &TableSpec,
        key: i64,
        values: &Map<String, Value>,
    ) -> Result<()> {
        if values.is_empty() {
            return Ok(());
        }
        let known = self.columns_of(spec).await?;
        let list = Self::column_list(&known, values)?;
        let sql = format!(
            "UPDATE {t} SET ({list}) = (SELECT {list} FROM json_populate_record(NULL::{t}, $1::text::json))
             WHERE {k} = $2",
            t = spec.name,
            k = spec.key
        );
        let json = Value::Object(values.clone()).to_string();
        self.exec_exact(
            "putting a row's values back",
            &sql,
            &[&json, &(key as i32)],
            1,
        )
        .await
    }

    /// Inserts a row whole, with its old key.
    pub async fn insert_row(&self, spec: &TableSpec, row: &Map<String, Value>) -> Result<()> {
        let known = self.columns_of(spec).await?;
        let list = Self::column_list(&known, row)?;
        let sql = format!(
            "INSERT INTO {t} ({list}) SELECT {list} FROM json_populate_record(NULL::{t}, $1::text::json)",
            t = spec.name
        );
        let json = Value::Object(row.clone()).to_string();
        self.exec_exact("putting a deleted row back", &sql, &[&json], 1)
            .await
    }

    /// Deletes one row by key.
    pub async fn delete_row(&self, spec: &TableSpec, key: i64) -> Result<()> {
        let sql = format!("DELETE FROM {} WHERE {} = $1", spec.name, spec.key);
        self.exec_exact("removing a row", &sql, &[&(key as i32)], 1)
            .await
    }

    /// Which other rows hold a unique value that `row` needs, described
    /// for people. Empty when it can go in.
    pub async fn clashes(
        &self,
        spec: &TableSpec,
        key: i64,
        row: &Map<String, Value>,
    ) -> Result<Vec<String>> {
        let mut clashes = vec![];
        for columns in spec.unique {
            let values: Vec<Option<String>> = columns
                .iter()
                .map(|c| match row.get(*c) {
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(Value::Number(n)) => Some(n.to_string()),
                    Some(Value::Bool(b)) => Some(b.to_string()),
                    _ => None,
                })
                .collect();
            // NULLs never clash in a unique constraint.
            if values.iter().any(Option::is_none) {
                continue;
            }
            let values: Vec<String> = values.into_iter().flatten().collect();
            let cond = columns
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{c}::text = ${}", i + 2))
                .collect::<Vec<_>>()
                .join(" AND ");
            let sql = format!(
                "SELECT {k} FROM {t} WHERE {k} <> $1 AND {cond}",
                k = spec.key,
                t = spec.name
            );
            let key32 = key as i32;
            let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&key32];
            for v in &values {
                params.push(v);
            }
            for r in self.rows("checking for clashes", &sql, &params).await? {
                let other: i32 = r.get(0);
                let shown: Vec<String> = columns
                    .iter()
                    .zip(&values)
                    .map(|(c, v)| {
                        format!(
                            "{c} {}",
                            tables::show_value(c, Some(&Value::String(v.clone())))
                        )
                    })
                    .collect();
                clashes.push(format!(
                    "{}: {} is now held by another row ({} {other}), created or changed since the backup",
                    spec.name,
                    shown.join(", "),
                    spec.key
                ));
            }
        }
        Ok(clashes)
    }

    /// Commits. A COMMIT whose answer never arrives (the connection broke
    /// or the deadline passed) has an unknown outcome.
    pub async fn commit(self) -> Result<()> {
        match tokio::time::timeout(self.deadline, self.client.batch_execute("COMMIT")).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) if e.as_db_error().is_some() => Err(failed(
                ErrorKind::Refused,
                format!(
                    "the registry database refused to commit ({})",
                    e.as_db_error().map(|d| d.message()).unwrap_or_default()
                ),
            )),
            Ok(Err(e)) => Err(anyhow::Error::new(ClientError::new(
                ErrorKind::OutcomeUnknown,
                format!(
                    "the connection to the registry database {} broke during COMMIT ({e}), so whether the \
                     change was applied is unknown",
                    self.description
                ),
            ))),
            Err(_) => Err(anyhow::Error::new(ClientError::new(
                ErrorKind::OutcomeUnknown,
                format!(
                    "the registry database {} did not answer the COMMIT within {} s, so whether the change \
                     was applied is unknown",
                    self.description,
                    self.deadline.as_secs()
                ),
            ))),
        }
    }

    /// Rolls back explicitly (dropping does the same, less politely).
    pub async fn rollback(self) {
        let _ = tokio::time::timeout(self.deadline, self.client.batch_execute("ROLLBACK")).await;
    }
}

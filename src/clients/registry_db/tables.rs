//! What the doctor knows about each table a repair may change: one list,
//! used by locking, backups, restore and its clash checks, so a table's key
//! or unique columns are written down once.
//!
//! Table and column names in SQL only ever come from this list (or from
//! the database's own catalogue), never from a backup file.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A table a repair may change.
#[derive(Debug)]
pub struct TableSpec {
    pub name: &'static str,
    /// Its primary key (an integer).
    pub key: &'static str,
    /// Its unique constraints, each a list of columns.
    pub unique: &'static [&'static [&'static str]],
    /// Columns that change on their own (triggers, Harbor at every login);
    /// a restore neither compares nor puts them back.
    pub volatile: &'static [&'static str],
}

/// In the order rows go back: users before the rows that refer to them.
/// Deletions run in the reverse order.
pub const TABLES: &[TableSpec] = &[
    TableSpec {
        name: "harbor_user",
        key: "user_id",
        unique: &[&["username"], &["email"]],
        volatile: &["update_time"],
    },
    TableSpec {
        name: "oidc_user",
        key: "id",
        unique: &[&["subiss"]],
        // Harbor rewrites the encrypted token at every login.
        volatile: &["update_time", "token"],
    },
    TableSpec {
        name: "project_member",
        key: "id",
        unique: &[&["project_id", "entity_id", "entity_type"]],
        volatile: &["update_time"],
    },
    TableSpec {
        name: "properties",
        key: "id",
        unique: &[&["k"]],
        volatile: &[],
    },
];

pub fn table(name: &str) -> Option<&'static TableSpec> {
    TABLES.iter().find(|t| t.name == name)
}

/// Where a table stands in [`TABLES`], for ordering.
pub fn position(name: &str) -> usize {
    TABLES
        .iter()
        .position(|t| t.name == name)
        .unwrap_or(usize::MAX)
}

/// Columns whose values hold secrets, even encrypted: never shown in a
/// plan or a message (a plan says that they change, not to what).
pub const SECRET_COLUMNS: &[&str] = &["password", "salt", "secret", "token", "reset_uuid"];

/// One row a repair changed: as it was before and as the repair left it
/// (None: the row did not exist). Values are PostgreSQL's own
/// `row_to_json`, so they round-trip exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowChange {
    pub table: String,
    pub key: i64,
    pub before: Option<Map<String, Value>>,
    pub after: Option<Map<String, Value>>,
}

impl RowChange {
    /// The columns the repair changed, volatile ones aside, in the
    /// before image's order. For a row inserted or deleted, every column.
    pub fn changed_columns(&self) -> Vec<String> {
        let spec = table(&self.table);
        let volatile = |c: &str| spec.is_some_and(|s| s.volatile.contains(&c));
        match (&self.before, &self.after) {
            (Some(b), Some(a)) => b
                .iter()
                .filter(|(k, v)| !volatile(k) && a.get(k.as_str()) != Some(v))
                .map(|(k, _)| k.clone())
                .collect(),
            (Some(r), None) | (None, Some(r)) => {
                r.keys().filter(|k| !volatile(k)).cloned().collect()
            }
            (None, None) => vec![],
        }
    }
}

/// A column's change for people, one line per part: `subiss` (subject and
/// issuer glued, as Harbor stores them) shows as its subject and its issuer,
/// each `old -> new`, so that which of the two changes can be read.
pub fn show_change(column: &str, from: Option<&Value>, to: Option<&Value>) -> Vec<String> {
    if column == "subiss" {
        let split = |v: Option<&Value>| -> Option<(String, String)> {
            let s = v?.as_str()?;
            let at = ["https://", "http://"]
                .iter()
                .filter_map(|p| s.find(p))
                .min()?;
            Some((s[..at].to_string(), s[at..].to_string()))
        };
        if let (Some((sub_a, iss_a)), Some((sub_b, iss_b))) = (split(from), split(to)) {
            let part = |name: &str, a: String, b: String| {
                let (a, b) = (Value::String(a), Value::String(b));
                if a == b {
                    format!("{name}: {} (unchanged)", show_value(column, Some(&a)))
                } else {
                    format!(
                        "{name}: {} -> {}",
                        show_value(column, Some(&a)),
                        show_value(column, Some(&b))
                    )
                }
            };
            return vec![part("sub", sub_a, sub_b), part("issuer", iss_a, iss_b)];
        }
    }
    vec![format!(
        "{column}: {} -> {}",
        show_value(column, from),
        show_value(column, to)
    )]
}

/// A value for people: secrets replaced by a mark that says they exist.
pub fn show_value(column: &str, v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "null".into(),
        Some(_) if SECRET_COLUMNS.contains(&column) => "<secret, not shown>".into(),
        Some(Value::String(s)) => crate::clients::http::clip(s, 120),
        Some(other) => crate::clients::http::clip(&other.to_string(), 120),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Option<Map<String, Value>> {
        v.as_object().cloned()
    }

    #[test]
    fn changed_columns_leave_volatile_ones_out() {
        let c = RowChange {
            table: "oidc_user".into(),
            key: 1,
            before: obj(json!({"id": 1, "subiss": "a", "token": "t1", "update_time": "x"})),
            after: obj(json!({"id": 1, "subiss": "b", "token": "t2", "update_time": "y"})),
        };
        assert_eq!(c.changed_columns(), ["subiss"]);
    }

    #[test]
    fn secrets_are_never_shown() {
        assert_eq!(
            show_value("salt", Some(&json!("abc"))),
            "<secret, not shown>"
        );
        assert_eq!(show_value("username", Some(&json!("bob"))), "bob");
    }
}

//! The tests' own copy of Harbor's schema (sql/harbor-schema.sql) must not
//! drift from what Harbor's own migrations build, on the tables the doctor
//! reads and repairs: the suite runs on the copy for speed, and a repair that
//! passes there must behave the same on a real registry.
//!
//! Both are read back from pg_catalog and compared as sets of facts (one
//! line each), so a failure names exactly what differs.

use std::collections::BTreeSet;
use std::path::PathBuf;

use harbor_doctor_sim::postgres::{HarborSchema, PgServer, MIGRATIONS_ENV};

/// The tables the doctor touches.
const TABLES: &[&str] = &[
    "harbor_user",
    "oidc_user",
    "project",
    "project_member",
    "properties",
    "user_group",
];

/// Tables the doctor deletes rows from: a foreign key from *any* table that
/// points at one of them decides whether that delete fails or cascades.
const DELETED_FROM: &[&str] = &["harbor_user", "oidc_user", "project_member"];

/// Harbor's migrations: the directory `HARBOR_DOCTOR_TEST_MIGRATIONS` names,
/// else the copy CI keeps beside the clone.
fn migrations() -> Option<PathBuf> {
    match HarborSchema::from_env().expect("the migrations directory") {
        HarborSchema::Migrations(dir) => return Some(dir),
        HarborSchema::Tests => {}
    }
    let beside =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/harbor/migrations");
    beside.is_dir().then_some(beside)
}

/// pg_constraint.confdeltype in words.
fn on_delete(action: &str) -> &'static str {
    match action {
        "a" => "no action",
        "r" => "restrict",
        "c" => "cascade",
        "n" => "set null",
        "d" => "set default",
        _ => "unknown",
    }
}

/// Every fact about `TABLES` that decides how the doctor's statements
/// behave, one line each.
async fn describe(db: &tokio_postgres::Client) -> BTreeSet<String> {
    let tables: Vec<String> = TABLES.iter().map(|t| t.to_string()).collect();
    let deleted_from: Vec<String> = DELETED_FROM.iter().map(|t| t.to_string()).collect();
    let mut facts = BTreeSet::new();

    for row in db
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname = ANY($1)",
            &[&tables],
        )
        .await
        .unwrap()
    {
        facts.insert(format!("table {}", row.get::<_, String>(0)));
    }

    // Column order is left out: the doctor names every column it uses.
    for row in db
        .query(
            "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod),
                    a.attnotnull, coalesce(pg_get_expr(d.adbin, d.adrelid), '(none)')
             FROM pg_attribute a
             JOIN pg_class c ON c.oid = a.attrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             WHERE n.nspname = 'public' AND c.relname = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped",
            &[&tables],
        )
        .await
        .unwrap()
    {
        let (table, column, ty, not_null, default): (String, String, String, bool, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        let null = if not_null { "NOT NULL" } else { "NULL" };
        facts.insert(format!(
            "column {table}.{column} {ty} {null} default {default}"
        ));
    }

    // Primary keys, unique, check and exclusion constraints on the tables,
    // their foreign keys, and foreign keys from anywhere into the tables
    // the doctor deletes from. Names count: the doctor's messages and its
    // restore's clash check name them.
    for row in db
        .query(
            "SELECT src.relname::text, k.conname::text, k.contype::text, pg_get_constraintdef(k.oid),
                    k.confdeltype::\"char\"::text
             FROM pg_constraint k
             JOIN pg_class src ON src.oid = k.conrelid
             JOIN pg_namespace n ON n.oid = src.relnamespace
             LEFT JOIN pg_class dst ON dst.oid = k.confrelid
             WHERE n.nspname = 'public' AND k.contype IN ('p', 'u', 'f', 'c', 'x')
               AND (src.relname = ANY($1) OR (k.contype = 'f' AND dst.relname = ANY($2)))",
            &[&tables, &deleted_from],
        )
        .await
        .unwrap()
    {
        let (table, name, kind, def, del): (String, String, String, String, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        let mut fact = format!("constraint {table}.{name} {def}");
        if kind == "f" {
            fact.push_str(&format!(" (on delete: {})", on_delete(&del)));
        }
        facts.insert(fact);
    }

    // Unique indexes that are not constraints enforce uniqueness all the same.
    for row in db
        .query(
            "SELECT t.relname::text, pg_get_indexdef(i.oid)
             FROM pg_index x
             JOIN pg_class i ON i.oid = x.indexrelid
             JOIN pg_class t ON t.oid = x.indrelid
             JOIN pg_namespace n ON n.oid = t.relnamespace
             WHERE n.nspname = 'public' AND t.relname = ANY($1) AND x.indisunique
               AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid)",
            &[&tables],
        )
        .await
        .unwrap()
    {
        let (table, def): (String, String) = (row.get(0), row.get(1));
        facts.insert(format!("unique index on {table}: {def}"));
    }

    // Triggers, and what the function they run does (whitespace aside): the
    // update_time triggers are why an UPDATE can never put an old
    // update_time back.
    for row in db
        .query(
            "SELECT c.relname::text, pg_get_triggerdef(t.oid), p.proname::text, p.prosrc
             FROM pg_trigger t
             JOIN pg_class c ON c.oid = t.tgrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_proc p ON p.oid = t.tgfoid
             WHERE n.nspname = 'public' AND c.relname = ANY($1) AND NOT t.tgisinternal",
            &[&tables],
        )
        .await
        .unwrap()
    {
        let (table, def, function, body): (String, String, String, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        facts.insert(format!("trigger on {table}: {def}"));
        let body = body.split_whitespace().collect::<Vec<_>>().join(" ");
        facts.insert(format!("trigger function {function}: {body}"));
    }

    // The built-in rows and the ids the next rows get: tests (and the
    // doctor's guard on user_id 1) rely on admin being 1, anonymous 2, and
    // the first user they add being 3.
    for (what, sql) in [
        (
            "user",
            "SELECT user_id || ' ' || username || ' email=' || coalesce(email, '(null)')
                    || ' deleted=' || deleted || ' sysadmin=' || sysadmin_flag FROM harbor_user",
        ),
        (
            "project",
            "SELECT project_id || ' ' || name || ' owner=' || owner_id || ' deleted=' || deleted FROM project",
        ),
        (
            "member",
            "SELECT project_id || ' ' || entity_type || entity_id || ' role=' || role FROM project_member",
        ),
        ("link", "SELECT user_id || ' ' || subiss FROM oidc_user"),
        ("property", "SELECT k FROM properties"),
        ("group", "SELECT id || ' ' || group_name FROM user_group"),
    ] {
        match db.query(sql, &[]).await {
            Ok(rows) => {
                for row in rows {
                    facts.insert(format!("row {what} {}", row.get::<_, String>(0)));
                }
            }
            // A missing table or column, which its own line names.
            Err(e) => {
                let why = e.as_db_error().map_or(e.to_string(), |d| d.message().to_string());
                facts.insert(format!("row {what}: unreadable ({why})"));
            }
        }
    }
    for (table, key) in [
        ("harbor_user", "user_id"),
        ("oidc_user", "id"),
        ("project", "project_id"),
        ("project_member", "id"),
        ("properties", "id"),
        ("user_group", "id"),
    ] {
        let last = db
            .query_opt(
                "SELECT coalesce(s.last_value::text, 'none yet') FROM pg_sequences s
                 WHERE s.schemaname || '.' || s.sequencename = pg_get_serial_sequence($1, $2)",
                &[&table, &key],
            )
            .await
            // An error here means the table is missing, which its own line says.
            .map(|row| row.map_or("(no sequence)".into(), |r| r.get::<_, String>(0)))
            .unwrap_or_else(|_| "(no table)".into());
        facts.insert(format!("sequence of {table}.{key}: last value {last}"));
    }
    facts
}

/// The lines only in `left` and only in `right`, for a failure message.
fn difference(left: &BTreeSet<String>, right: &BTreeSet<String>) -> String {
    let mut out = String::new();
    for line in right.difference(left) {
        out.push_str(&format!("  real schema only:  {line}\n"));
    }
    for line in left.difference(right) {
        out.push_str(&format!("  tests' copy only:  {line}\n"));
    }
    out
}

#[tokio::test]
async fn the_tests_schema_matches_harbors_migrations_on_the_tables_the_doctor_touches() {
    let Some(dir) = migrations() else {
        eprintln!(
            "NOT COMPARED: the tests' schema was not checked against Harbor's migrations, \
             because {MIGRATIONS_ENV} is unset and there is no copy beside the repository; \
             set {MIGRATIONS_ENV} to Harbor's make/migrations/postgresql to compare \
             (CI's real-schema stage always does)"
        );
        return;
    };
    let server = PgServer::shared();
    let ours = server
        .harbor_database_with(&HarborSchema::Tests)
        .await
        .unwrap();
    let real = server
        .harbor_database_with(&HarborSchema::Migrations(dir.clone()))
        .await
        .unwrap();
    let ours = describe(&ours.connect().await.unwrap()).await;
    let real = describe(&real.connect().await.unwrap()).await;
    // A comparison of two empty descriptions would pass without comparing.
    for table in TABLES {
        assert!(
            real.contains(&format!("table {table}")),
            "{table} missing from {}",
            dir.display()
        );
    }
    assert!(
        ours == real,
        "crates/sim/sql/harbor-schema.sql has drifted from Harbor's migrations in {}:\n{}",
        dir.display(),
        difference(&ours, &real)
    );
    eprintln!(
        "compared {} facts about {} tables with Harbor's migrations in {}",
        real.len(),
        TABLES.len(),
        dir.display()
    );
}

/// The comparison sees each kind of drift it is meant to catch: proven on
/// the tests' own schema, altered one way at a time.
#[tokio::test]
async fn each_kind_of_drift_is_seen() {
    let server = PgServer::shared();
    let pristine = server
        .harbor_database_with(&HarborSchema::Tests)
        .await
        .unwrap();
    let pristine = describe(&pristine.connect().await.unwrap()).await;
    for (drift, expected) in [
        ("ALTER TABLE harbor_user ALTER COLUMN email TYPE varchar(128)", "harbor_user.email"),
        ("ALTER TABLE oidc_user ALTER COLUMN token SET NOT NULL", "oidc_user.token"),
        ("ALTER TABLE harbor_user ALTER COLUMN deleted SET DEFAULT true", "harbor_user.deleted"),
        ("ALTER TABLE oidc_user RENAME COLUMN subiss TO sub_iss", "oidc_user.sub"),
        ("ALTER TABLE oidc_user DROP CONSTRAINT oidc_user_subiss_key", "oidc_user_subiss_key"),
        (
            "ALTER TABLE project_member DROP CONSTRAINT project_member_pkey;
             ALTER TABLE project_member ADD PRIMARY KEY (project_id, entity_id, entity_type)",
            "project_member_pkey",
        ),
        (
            "ALTER TABLE oidc_user DROP CONSTRAINT oidc_user_user_id_fkey;
             ALTER TABLE oidc_user ADD CONSTRAINT oidc_user_user_id_fkey
                 FOREIGN KEY (user_id) REFERENCES harbor_user(user_id) ON DELETE CASCADE",
            "cascade",
        ),
        (
            "CREATE TABLE robot (id serial PRIMARY KEY, creator int REFERENCES harbor_user(user_id))",
            "robot_creator_fkey",
        ),
        ("CREATE UNIQUE INDEX one_link_each ON oidc_user (user_id)", "one_link_each"),
        ("DROP TRIGGER project_update_time_at_modtime ON project", "project_update_time_at_modtime"),
        (
            "CREATE OR REPLACE FUNCTION update_update_time_at_column() RETURNS trigger AS $$
             BEGIN RETURN NEW; END; $$ LANGUAGE plpgsql",
            "update_update_time_at_column",
        ),
        ("DROP TABLE user_group", "user_group"),
        ("DELETE FROM project WHERE name = 'library'", "library"),
        ("SELECT nextval('harbor_user_user_id_seq')", "sequence of harbor_user.user_id"),
    ] {
        let db = server.harbor_database_with(&HarborSchema::Tests).await.unwrap();
        let client = db.connect().await.unwrap();
        client.batch_execute(drift).await.unwrap();
        let drifted = describe(&client).await;
        let diff = difference(&drifted, &pristine);
        assert!(
            diff.contains(expected),
            "after `{drift}` the comparison should name {expected}, and says:\n{diff}"
        );
    }
}

//! A fresh registry database per test, on the PostgreSQL server the whole
//! run shares, seeded like an OIDC-mode Harbor.

use harbor_doctor_sim::postgres::{HarborDatabase, PgServer};
use harbor_doctor_sim::registry_seed::{self as seed, NewUser, TEST_CREDENTIALS};

pub const ISSUER: &str = "https://keycloak.example.com/realms/otomi";
pub const OLD_ISSUER: &str = "https://keycloak.old.example.com/realms/otomi";

/// A registry database of its own, Harbor in OIDC mode against [`ISSUER`].
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
        seed::configure_oidc(&sql, ISSUER, "openid,email,profile", "preferred_username")
            .await
            .unwrap();
        Registry { db, sql }
    }

    /// Sets one of Harbor's configuration items.
    pub async fn set_property(&self, k: &str, v: &str) {
        seed::set_properties(&self.sql, &[(k, v)]).await.unwrap();
    }

    pub async fn add_user(&self, name: &str, email: Option<&str>, sysadmin: bool) -> i32 {
        let user = NewUser {
            sysadmin,
            ..NewUser::new(name, email)
        };
        seed::add_user(&self.sql, &user).await.unwrap()
    }

    /// An OIDC link for `user_id`, as Harbor writes it on onboarding.
    pub async fn link(&self, user_id: i32, sub: &str, issuer: &str) -> i32 {
        seed::link(&self.sql, user_id, sub, issuer, TEST_CREDENTIALS)
            .await
            .unwrap()
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
        seed::add_project(&self.sql, name, owner).await.unwrap()
    }

    pub async fn add_member(&self, project_id: i32, user_id: i32, role: i32) {
        seed::add_member(&self.sql, project_id, user_id, role)
            .await
            .unwrap()
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

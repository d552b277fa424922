//! Rows in a registry database as Harbor writes them: its configuration
//! (`properties`), users, their OIDC links, projects and memberships.
//!
//! The tests, the lab and the benchmarks seed through these, so the shape
//! of what Harbor stores (a link's `subiss` is the `sub` followed by the
//! issuer, OIDC users have an empty password, ...) is written down once.
//! Every function takes a connection or an open transaction.

use anyhow::{Context, Result};
use tokio_postgres::GenericClient;

/// Harbor's project roles, as `project_member.role` holds them.
pub mod role {
    pub const PROJECT_ADMIN: i32 = 1;
    pub const DEVELOPER: i32 = 2;
    pub const GUEST: i32 = 3;
    pub const MAINTAINER: i32 = 4;
}

/// What Harbor keeps encrypted in an OIDC link: the user's CLI secret and
/// their last token, each `<enc-v1>` and a ciphertext. The doctor never
/// decrypts them, so seeded links carry values of that shape.
#[derive(Clone, Copy, Debug)]
pub struct StoredCredentials<'a> {
    pub secret: &'a str,
    pub token: Option<&'a str>,
}

/// The tests' stored credentials ("secret" and "token", base64-encoded).
pub const TEST_CREDENTIALS: StoredCredentials<'static> = StoredCredentials {
    secret: "<enc-v1>c2VjcmV0",
    token: Some("<enc-v1>dG9rZW4="),
};

/// A user as `harbor_user` holds one. Users onboarded through OIDC have an
/// empty password: they never sign in with one.
#[derive(Clone, Copy, Debug)]
pub struct NewUser<'a> {
    pub username: &'a str,
    pub email: Option<&'a str>,
    pub realname: &'a str,
    pub sysadmin: bool,
}

impl<'a> NewUser<'a> {
    /// A user who is not a system administrator, their real name their
    /// username.
    pub fn new(username: &'a str, email: Option<&'a str>) -> NewUser<'a> {
        NewUser {
            username,
            email,
            realname: username,
            sysadmin: false,
        }
    }
}

/// Sets Harbor configuration items (`properties`), replacing any value an
/// item already has, one at a time in the order given.
pub async fn set_properties(db: &impl GenericClient, items: &[(&str, &str)]) -> Result<()> {
    for (k, v) in items {
        db.execute(
            "INSERT INTO properties (k, v) VALUES ($1, $2)
             ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v",
            &[k, v],
        )
        .await
        .with_context(|| format!("setting Harbor's configuration item {k}"))?;
    }
    Ok(())
}

/// Harbor in OIDC mode against `issuer` (`oidc_endpoint`), asking for
/// `scope` and taking usernames from the `user_claim` claim.
pub async fn configure_oidc(
    db: &impl GenericClient,
    issuer: &str,
    scope: &str,
    user_claim: &str,
) -> Result<()> {
    set_properties(
        db,
        &[
            ("auth_mode", "oidc_auth"),
            ("oidc_endpoint", issuer),
            ("oidc_scope", scope),
            ("oidc_user_claim", user_claim),
        ],
    )
    .await
}

/// Adds a user; returns their user_id.
pub async fn add_user(db: &impl GenericClient, user: &NewUser<'_>) -> Result<i32> {
    let row = db
        .query_one(
            "INSERT INTO harbor_user (username, email, password, realname, sysadmin_flag)
             VALUES ($1, $2, '', $3, $4) RETURNING user_id",
            &[&user.username, &user.email, &user.realname, &user.sysadmin],
        )
        .await
        .with_context(|| format!("adding the Harbor user {}", user.username))?;
    Ok(row.get(0))
}

/// Adds many users in one statement; returns their user_ids in the order
/// given.
pub async fn add_users(db: &impl GenericClient, users: &[NewUser<'_>]) -> Result<Vec<i32>> {
    let usernames: Vec<&str> = users.iter().map(|u| u.username).collect();
    let emails: Vec<Option<&str>> = users.iter().map(|u| u.email).collect();
    let realnames: Vec<&str> = users.iter().map(|u| u.realname).collect();
    let sysadmins: Vec<bool> = users.iter().map(|u| u.sysadmin).collect();
    let rows = db
        .query(
            "INSERT INTO harbor_user (username, email, password, realname, sysadmin_flag)
             SELECT u, e, '', r, s FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[])
                 WITH ORDINALITY AS t(u, e, r, s, n)
             ORDER BY n
             RETURNING user_id, username",
            &[&usernames, &emails, &realnames, &sysadmins],
        )
        .await
        .with_context(|| format!("adding {} Harbor users", users.len()))?;
    // RETURNING promises no order: match the ids up by username (unique).
    let ids: std::collections::HashMap<String, i32> =
        rows.iter().map(|r| (r.get(1), r.get(0))).collect();
    Ok(usernames.iter().map(|u| ids[*u]).collect())
}

/// Harbor's record that `user_id` signed in through OIDC as `sub` of
/// `issuer`; returns the oidc_user id.
pub async fn link(
    db: &impl GenericClient,
    user_id: i32,
    sub: &str,
    issuer: &str,
    stored: StoredCredentials<'_>,
) -> Result<i32> {
    let row = db
        .query_one(
            "INSERT INTO oidc_user (user_id, secret, subiss, token)
             VALUES ($1, $2, $3, $4) RETURNING id",
            &[
                &user_id,
                &stored.secret,
                &subiss(sub, issuer),
                &stored.token,
            ],
        )
        .await
        .with_context(|| format!("linking Harbor user {user_id} to {sub} of {issuer}"))?;
    Ok(row.get(0))
}

/// Many links in one statement: each user_id with its (sub, issuer), all
/// with the same stored credentials.
pub async fn link_all(
    db: &impl GenericClient,
    links: &[(i32, &str, &str)],
    stored: StoredCredentials<'_>,
) -> Result<()> {
    let user_ids: Vec<i32> = links.iter().map(|l| l.0).collect();
    let subisses: Vec<String> = links.iter().map(|l| subiss(l.1, l.2)).collect();
    db.execute(
        "INSERT INTO oidc_user (user_id, secret, subiss, token)
         SELECT u, $2, s, $3 FROM unnest($1::int[], $4::text[]) AS t(u, s)",
        &[&user_ids, &stored.secret, &stored.token, &subisses],
    )
    .await
    .with_context(|| format!("linking {} Harbor users", links.len()))?;
    Ok(())
}

/// What Harbor stores as a link's key: the ID token's `sub` followed
/// directly by its issuer.
pub fn subiss(sub: &str, issuer: &str) -> String {
    format!("{sub}{issuer}")
}

/// Adds a project owned by `owner_id`; returns its project_id.
pub async fn add_project(db: &impl GenericClient, name: &str, owner_id: i32) -> Result<i32> {
    let row = db
        .query_one(
            "INSERT INTO project (owner_id, name) VALUES ($1, $2) RETURNING project_id",
            &[&owner_id, &name],
        )
        .await
        .with_context(|| format!("adding the Harbor project {name}"))?;
    Ok(row.get(0))
}

/// Makes user `user_id` a member of `project_id` with `role` (see [`role`]).
pub async fn add_member(
    db: &impl GenericClient,
    project_id: i32,
    user_id: i32,
    role: i32,
) -> Result<()> {
    db.execute(
        "INSERT INTO project_member (project_id, entity_id, entity_type, role)
         VALUES ($1, $2, 'u', $3)",
        &[&project_id, &user_id, &role],
    )
    .await
    .with_context(|| format!("adding Harbor user {user_id} to project {project_id}"))?;
    Ok(())
}

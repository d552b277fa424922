//! The throwaway PostgreSQL really has Harbor's constraints and triggers.

use harbor_doctor_sim::postgres::PgServer;

#[tokio::test]
async fn schema_has_harbor_constraints_and_triggers() {
    let db = PgServer::shared().harbor_database().await.unwrap();
    let c = db.connect().await.unwrap();
    c.batch_execute(
        "INSERT INTO harbor_user (username, email, password, realname) VALUES ('alice', 'a@x', '', 'Alice');
         INSERT INTO project (owner_id, name) VALUES (3, 'team-a');",
    )
    .await
    .unwrap();
    // project.owner_id has a foreign key without cascade.
    let err = c
        .execute("DELETE FROM harbor_user WHERE user_id = 3", &[])
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("foreign key"), "{err:?}");
    // The username is unique.
    let err = c
        .execute(
            "INSERT INTO harbor_user (username, password, realname) VALUES ('alice', '', 'x')",
            &[],
        )
        .await
        .unwrap_err();
    assert!(
        format!("{err:?}").contains("harbor_user_username_key"),
        "{err:?}"
    );
    // The trigger sets update_time on every update, so an old value cannot be written back.
    let changed: bool = c
        .query_one(
            "UPDATE harbor_user SET update_time = '2000-01-01' WHERE user_id = 3
             RETURNING update_time > '2001-01-01'::timestamp",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(changed);
}

#[tokio::test]
async fn databases_are_separate() {
    let a = PgServer::shared().harbor_database().await.unwrap();
    let b = PgServer::shared().harbor_database().await.unwrap();
    assert_ne!(a.name, b.name);
    let ca = a.connect().await.unwrap();
    ca.execute(
        "INSERT INTO properties (k, v) VALUES ('auth_mode', 'oidc_auth')",
        &[],
    )
    .await
    .unwrap();
    let cb = b.connect().await.unwrap();
    let n: i64 = cb
        .query_one("SELECT count(*) FROM properties", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

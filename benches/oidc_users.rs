//! Benchmark: `diagnose oidc-users` on 100,000 users with 100,000 OIDC links,
//! 5,000 of them stale (issuer check, no Keycloak), against the real
//! PostgreSQL the tests use.
//!
//! Reported as a ratio against a baseline measured in the same run, because
//! these machines are shared and noisy: the baseline asks the database one
//! query per user (a prepared statement, the best case for that approach).
//! Harbor has no index on oidc_user.user_id, so each of those queries scans
//! the table: the baseline is timed on a sample of users (SAMPLE, default
//! 1,000) and scaled linearly to all of them, which the output says.
//!
//! Run: `cargo bench --bench oidc_users` (USERS=N to change the size).

use std::time::{Duration, Instant};

use clap::Parser;
use harbor_doctor::cli::Cli;
use harbor_doctor::context::Ctx;
use harbor_doctor::issues::oidc_conflict;
use harbor_doctor_sim::postgres::PgServer;
use harbor_doctor_sim::registry_seed::{self as seed, NewUser, StoredCredentials};

const ISSUER: &str = "https://keycloak.example.com/realms/otomi";
const OLD_ISSUER: &str = "https://keycloak.old.example.com/realms/otomi";
/// The diagnosis never reads a link's stored credentials: the smallest
/// value of their shape.
const BENCH_CREDENTIALS: StoredCredentials<'static> = StoredCredentials {
    secret: "<enc-v1>x",
    token: None,
};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let users: i32 = std::env::var("USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let stale = users / 20;
    let db = PgServer::shared()
        .harbor_database()
        .await
        .expect("database");
    let sql = db.connect().await.unwrap();
    let seeding = Instant::now();
    seed::set_properties(
        &sql,
        &[("auth_mode", "oidc_auth"), ("oidc_endpoint", ISSUER)],
    )
    .await
    .unwrap();
    let names: Vec<(String, String, String)> = (1..=users)
        .map(|g| {
            (
                format!("user{g}"),
                format!("user{g}@example.com"),
                format!("User {g}"),
            )
        })
        .collect();
    let new_users: Vec<NewUser> = names
        .iter()
        .map(|(username, email, realname)| NewUser {
            username,
            email: Some(email),
            realname,
            sysadmin: false,
        })
        .collect();
    let ids = seed::add_users(&sql, &new_users).await.unwrap();
    // Every 20th user was linked under the old issuer: the stale ones.
    let subs: Vec<String> = ids.iter().map(|id| format!("{id:032x}")).collect();
    let links: Vec<(i32, &str, &str)> = ids
        .iter()
        .zip(&subs)
        .map(|(id, sub)| {
            let issuer = if id % 20 == 0 { OLD_ISSUER } else { ISSUER };
            (*id, sub.as_str(), issuer)
        })
        .collect();
    seed::link_all(&sql, &links, BENCH_CREDENTIALS)
        .await
        .unwrap();
    sql.batch_execute("ANALYZE").await.unwrap();
    eprintln!(
        "seeded {users} users and links ({stale} stale) in {:?}",
        seeding.elapsed()
    );

    let cli = Cli::try_parse_from([
        "harbor-doctor",
        "--db-url",
        &db.url,
        "diagnose",
        "oidc-users",
    ])
    .unwrap();
    let ctx = Ctx::new(cli.global);
    ctx.db().await.unwrap(); // connect once, outside the timing

    // The doctor: set-based SQL.
    let mut doctor_times = vec![];
    let mut found = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let outcome = oidc_conflict::diagnose(&ctx).await.unwrap();
        doctor_times.push(t.elapsed());
        found = outcome.findings.len();
    }
    assert_eq!(found as i32, stale, "the doctor must find every stale link");
    eprintln!("doctor runs done");

    // Baseline: one query per user.
    let stmt = sql
        .prepare("SELECT subiss FROM oidc_user WHERE user_id = $1")
        .await
        .unwrap();
    let sample: usize = std::env::var("SAMPLE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let all_ids: Vec<i32> = sql
        .query(
            "SELECT user_id FROM harbor_user WHERE NOT deleted AND user_id <> 1 ORDER BY user_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let ids: Vec<i32> = all_ids.iter().copied().take(sample).collect();
    let scale = all_ids.len() as f64 / ids.len() as f64;
    let mut baseline_times = vec![];
    for _ in 0..2 {
        let t = Instant::now();
        let mut n = 0;
        for id in &ids {
            for r in sql.query(&stmt, &[id]).await.unwrap() {
                let subiss: String = r.get(0);
                if !subiss.ends_with(ISSUER) {
                    n += 1;
                }
            }
        }
        baseline_times.push(t.elapsed().mul_f64(scale));
        assert_eq!(n, ids.iter().filter(|id| *id % 20 == 0).count() as i32);
        eprintln!("baseline run done");
    }

    // The whole binary, as an on-call engineer runs it.
    let bin = env!("CARGO_BIN_EXE_harbor-doctor");
    let mut process_times = vec![];
    for _ in 0..3 {
        let t = Instant::now();
        let o = std::process::Command::new(bin)
            .args(["--db-url", &db.url, "diagnose", "oidc-users", "-o", "json"])
            .output()
            .unwrap();
        process_times.push(t.elapsed());
        assert_eq!(o.status.code(), Some(1));
    }

    let d = median(doctor_times);
    let b = median(baseline_times);
    let p = median(process_times);
    println!("diagnose oidc-users, {users} users, {users} links, {stale} stale (median):");
    println!(
        "  doctor (set-based SQL)        {:>10.1} ms",
        d.as_secs_f64() * 1e3
    );
    println!(
        "  whole binary, -o json         {:>10.1} ms",
        p.as_secs_f64() * 1e3
    );
    println!(
        "  baseline (one query per user) {:>10.1} ms  (timed on {} users, scaled x{scale:.0})",
        b.as_secs_f64() * 1e3,
        ids.len()
    );
    println!(
        "  baseline / doctor             {:>10.1}x",
        b.as_secs_f64() / d.as_secs_f64()
    );
}

//! The doctor's end-to-end tests, one module per area, in one test binary:
//! one link after a change to the doctor, one PostgreSQL server for the
//! whole run (a fresh database per test), and the shared equipment in
//! [`support`] compiled once.
//!
//! Select an area with its module path: `cargo test --test e2e oidc_conflict::`.

mod support;

mod cli_login;
mod completions;
mod confirm_pty;
mod connectivity;
mod docker_login;
mod docs;
mod harbor_client;
mod harbor_discovery;
mod k8s_database;
mod k8s_rbac;
mod k8s_repairs;
mod keycloak_discovery;
// `harbor-doctor lab` exists only in a build with the lab.
#[cfg(feature = "lab")]
mod lab;
mod oidc_conflict;
mod oidc_faults;
mod oidc_keycloak;
mod packaging;
mod provision;
mod report;
mod runbooks;
mod serve;
mod teams_harbor_only;
mod terminal;

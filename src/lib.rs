//! harbor-doctor: find, explain and safely repair the known failure modes of
//! Harbor registries on Kubernetes behind OIDC (Keycloak).
//!
//! Layout, from the outside in:
//! - `cli`: the command-line contract (DESIGN.md), clap definitions only.
//! - `app`: dispatches a parsed command; `main.rs` only maps its result to
//!   an exit code.
//! - `diagnose` and `repair`: the two runners every check and every repair
//!   go through (timeouts, confirmation, backups, exit codes).
//! - `issues`: one module per known issue, each diagnose / plan / apply /
//!   verify.
//! - `clients`: one module per system (registry database, Keycloak, ...);
//!   the only places that build SQL or URLs.
//! - `report`, `render`, `confirm`, `backup`, `restore`, `runbooks` (laid
//!   out by `markdown`, shown through `pager`): what the user sees, asks,
//!   keeps and reads.

pub mod app;
pub mod backup;
pub mod cli;
pub mod clients;
pub mod confirm;
pub mod context;
pub mod diagnose;
pub mod docker_login;
pub mod issues;
pub mod lab;
pub mod markdown;
pub mod metrics;
pub mod outcome;
pub mod packaging;
pub mod pager;
pub mod pipe;
pub mod progress;
pub mod render;
pub mod repair;
pub mod report;
pub mod restore;
pub mod runbooks;
pub mod serve;
pub mod signals;

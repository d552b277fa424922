//! Simulated systems for harbor-doctor's tests and its `lab`.
//!
//! Kubernetes, Harbor and Keycloak cannot run on a developer machine or in CI,
//! so each gets a server here that speaks the real HTTP protocol on 127.0.0.1:
//! the same paths, status codes, error bodies and quirks that the doctor meets
//! in production. The registry database is not simulated: `postgres` starts a
//! real, throwaway PostgreSQL server and lays Harbor's schema into it, and
//! `registry_seed` writes rows into it as Harbor does.
//!
//! `lab` wires them into one broken installation with every known issue
//! planted, for the tests and for `harbor-doctor lab`.
//!
//! Everything here is test equipment. Credentials it makes are throwaway.

pub mod faults;
pub mod gate;
pub mod harbor;
pub mod k8s;
pub mod keycloak;
pub mod lab;
pub mod postgres;
pub mod registry_seed;
pub mod tls;

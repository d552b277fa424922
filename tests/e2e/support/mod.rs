//! Shared equipment for the doctor's end-to-end tests: a fresh registry
//! database per test (real PostgreSQL, one server for the whole run),
//! seeded in Harbor's own terms; the doctor binary with a clean
//! environment; reading its output and proving secrets stay out of it; a
//! pseudo-terminal; a simulated cluster and an Otomi-style installation.

mod doctor;
mod output;
mod readme;
mod registry;
mod secrets;
mod tools;

pub mod k8s;
pub mod pty;
pub mod teams;

pub use doctor::*;
pub use output::*;
pub use readme::*;
pub use registry::*;
pub use secrets::*;
pub use tools::*;

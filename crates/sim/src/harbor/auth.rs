//! Who is calling: Harbor's basic-auth rules, including the penalty for a
//! rejected login.
//!
//! Harbor tries, in order: a robot (the username carries the robot name
//! prefix; the robot must be enabled and unexpired), an OIDC user's CLI
//! secret (only on the registry's token and `/v2/` endpoints), then a
//! password login, which in OIDC mode only the local admin can pass. A
//! password login that fails sleeps 1.5 s server-side and locks the username
//! for that long; while locked, even the right password is refused at once.
//! A request that carries credentials Harbor rejects gets 401, never the
//! anonymous view.

use std::time::Instant;

use axum::http::{header, HeaderMap};
use base64::Engine;

use super::Sim;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Anonymous,
    Admin,
    Robot(i64),
    OidcUser(String),
    /// Credentials were sent and refused.
    Rejected,
}

impl Principal {
    pub fn is_authenticated(&self) -> bool {
        !matches!(self, Principal::Anonymous | Principal::Rejected)
    }
}

/// The username and password of a basic Authorization header.
pub fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, pass) = decoded.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

/// The bearer token of an Authorization header.
pub fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// Authenticates a request. `cli_secret_allowed` is true on the endpoints
/// where Harbor accepts an OIDC user's CLI secret. A rejected password login
/// sleeps for the configured penalty before returning.
pub async fn authenticate(sim: &Sim, headers: &HeaderMap, cli_secret_allowed: bool) -> Principal {
    let Some((username, password)) = basic_credentials(headers) else {
        return Principal::Anonymous;
    };
    let penalty = {
        let mut st = sim.state.lock();
        if let Some(robot) = st.robot_by_login_name(&username) {
            if robot.secret == password && !robot.disabled && !robot.is_expired() {
                return Principal::Robot(robot.id);
            }
        }
        if cli_secret_allowed && st.is_oidc() {
            if let Some(user) = st.oidc_users.get(&username) {
                if user.cli_secret == password && user.cli_secret_works() {
                    return Principal::OidcUser(username);
                }
            }
        }
        *st.failed_logins.entry(username.clone()).or_default() += 1;
        let now = Instant::now();
        if st.locked_until.get(&username).is_some_and(|t| *t > now) {
            // Locked by a recent failure: refused at once, without a new sleep.
            return Principal::Rejected;
        }
        if username == "admin" && password == st.admin_password {
            *st.failed_logins.entry(username).or_default() -= 1;
            return Principal::Admin;
        }
        let penalty = st.login_penalty;
        st.locked_until.insert(username, now + penalty);
        penalty
    };
    tokio::time::sleep(penalty).await;
    Principal::Rejected
}

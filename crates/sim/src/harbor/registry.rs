//! The registry side of Harbor that proves credentials really work: the
//! token service `/service/token` (what `docker login` and every pull/push
//! call first) and the registry's base endpoint `/v2/`.
//!
//! The token service takes basic auth from the admin, a robot
//! (`<prefix><name>` and its secret), or an OIDC user's CLI secret, which
//! works only while Harbor can refresh that user's OIDC token. Bad
//! credentials get 401 after the login penalty.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use chrono::Utc;
use serde_json::{json, Value};

use super::api::error;
use super::auth::{authenticate, basic_credentials, bearer_token, Principal};
use super::model::{api_time, IssuedToken};
use super::Sim;

type AppState = Arc<Sim>;

/// `GET /service/token?service=harbor-registry&scope=repository:p/r:pull,push`.
pub async fn token(
    State(sim): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let service = params
        .iter()
        .find(|(k, _)| k == "service")
        .map(|(_, v)| v.as_str());
    if service != Some("harbor-registry") {
        return error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            format!("invalid service: {}", service.unwrap_or("(none)")),
        );
    }
    let who = authenticate(&sim, &headers, true).await;
    if who == Principal::Rejected {
        return error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "unauthorized");
    }
    let subject = match &who {
        Principal::Admin => "admin".to_string(),
        Principal::Anonymous => String::new(),
        _ => basic_credentials(&headers)
            .map(|(u, _)| u)
            .unwrap_or_default(),
    };

    let mut st = sim.state.lock();
    let mut access = Vec::new();
    for scope in params.iter().filter(|(k, _)| k == "scope").map(|(_, v)| v) {
        // repository:<project>/<repo>:<actions>; the name may itself hold ':'
        // only in a tag, which scopes never carry.
        let mut parts = scope.splitn(3, ':');
        let (Some(kind), Some(name), Some(actions)) = (parts.next(), parts.next(), parts.next())
        else {
            return error(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                format!("invalid scope {scope:?}"),
            );
        };
        let project = name.split('/').next().unwrap_or_default();
        let held = if kind == "repository" {
            st.registry_actions(&who, project)
        } else {
            Vec::new()
        };
        let granted: Vec<&str> = actions
            .split(',')
            .filter(|a| held.iter().any(|h| h == a || h == "*"))
            .collect();
        access.push(json!({"type": kind, "name": name, "actions": granted}));
    }
    let minutes = st
        .config
        .get("token_expiration")
        .and_then(Value::as_i64)
        .unwrap_or(30);
    let now = Utc::now();
    let claims = json!({
        "iss": "harbor-token-issuer",
        "sub": subject,
        "aud": "harbor-registry",
        "exp": now.timestamp() + minutes * 60,
        "nbf": now.timestamp(),
        "iat": now.timestamp(),
        "jti": uuid::Uuid::new_v4().to_string(),
        "access": access,
    });
    let token = unsigned_jwt(&claims);
    st.tokens.insert(
        token.clone(),
        IssuedToken {
            expires: Instant::now() + Duration::from_secs((minutes * 60) as u64),
        },
    );
    Json(json!({
        "token": token,
        "access_token": token,
        "expires_in": minutes * 60,
        "issued_at": api_time(now),
    }))
    .into_response()
}

/// A JWT-shaped token whose claims tests can read. Its signature is random:
/// nothing outside the simulator verifies it.
fn unsigned_jwt(claims: &Value) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = json!({"typ": "JWT", "alg": "RS256", "kid": "harbor-doctor-sim"});
    let signature: [u8; 32] = rand::random();
    format!(
        "{}.{}.{}",
        b64.encode(header.to_string()),
        b64.encode(claims.to_string()),
        b64.encode(signature)
    )
}

/// `GET /v2/`: 200 with a valid token (or valid basic credentials), else 401
/// with the challenge that sends clients to the token service.
pub async fn v2_base(State(sim): State<AppState>, headers: HeaderMap) -> Response {
    let token_ok = bearer_token(&headers).is_some_and(|t| {
        let mut st = sim.state.lock();
        match st.tokens.get(&t) {
            Some(issued) if issued.expires > Instant::now() => true,
            Some(_) => {
                st.tokens.remove(&t);
                false
            }
            None => false,
        }
    });
    let authenticated = token_ok || authenticate(&sim, &headers, true).await.is_authenticated();
    if authenticated {
        let mut resp = Json(json!({})).into_response();
        resp.headers_mut().insert(
            "docker-distribution-api-version",
            HeaderValue::from_static("registry/2.0"),
        );
        return resp;
    }
    let realm = format!(
        "{}/service/token",
        sim.state.lock().external_url.trim_end_matches('/')
    );
    let challenge = format!("Bearer realm=\"{realm}\",service=\"harbor-registry\"");
    let body = json!({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required", "detail": null}]});
    let mut resp = (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    resp
}

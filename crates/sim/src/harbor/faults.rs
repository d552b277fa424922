//! Fault injection: make the next N matching requests fail the way a broken
//! Harbor or a proxy in front of it fails (500s, HTML error pages, garbage,
//! slowness), optionally after the request took effect, so tests can check
//! that the doctor stops, reports, and converges on a rerun.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use crate::gate::Gate;

/// A planned failure. Build one with [`Fault::on`] and hand it to
/// `HarborSim::inject_fault`.
#[derive(Debug, Clone)]
pub struct Fault {
    method: Option<Method>,
    path_prefix: String,
    pub(crate) remaining: u32,
    status: StatusCode,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    pub(crate) after_apply: bool,
    pub(crate) delay: Duration,
}

impl Fault {
    /// The next request whose method is `method` (`*` for any) and whose path
    /// starts with `path_prefix` answers 500 with a Harbor error body.
    pub fn on(method: &str, path_prefix: &str) -> Self {
        Self {
            method: (method != "*")
                .then(|| Method::from_bytes(method.as_bytes()).expect("an HTTP method name")),
            path_prefix: path_prefix.to_string(),
            remaining: 1,
            status: StatusCode::INTERNAL_SERVER_ERROR,
            content_type: Some("application/json"),
            body: harbor_error_body("UNKNOWN", "internal server error"),
            after_apply: false,
            delay: Duration::ZERO,
        }
    }

    /// Applies to this many matching requests instead of one.
    pub fn times(mut self, n: u32) -> Self {
        self.remaining = n;
        self
    }

    pub fn status(mut self, status: u16) -> Self {
        self.status = StatusCode::from_u16(status).expect("a valid HTTP status");
        self
    }

    /// A JSON body, e.g. a Harbor error.
    pub fn json(mut self, body: Value) -> Self {
        self.content_type = Some("application/json");
        self.body = body.to_string().into_bytes();
        self
    }

    /// An HTML page, as a reverse proxy or an ingress controller sends.
    pub fn html(mut self, page: &str) -> Self {
        self.content_type = Some("text/html");
        self.body = page.as_bytes().to_vec();
        self
    }

    /// Arbitrary bytes with an arbitrary (or no) content type.
    pub fn raw(mut self, content_type: Option<&'static str>, body: &[u8]) -> Self {
        self.content_type = content_type;
        self.body = body.to_vec();
        self
    }

    /// Lets the request take effect first, then replaces the answer: the
    /// client cannot know that its write succeeded.
    pub fn after_apply(mut self) -> Self {
        self.after_apply = true;
        self
    }

    /// Waits this long before answering (for timeouts).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    pub(crate) fn matches(&self, method: &Method, path: &str) -> bool {
        self.remaining > 0
            && self.method.as_ref().is_none_or(|m| m == method)
            && path.starts_with(&self.path_prefix)
    }

    pub(crate) fn response(&self) -> Response {
        let mut resp = Response::new(Body::from(self.body.clone()));
        *resp.status_mut() = self.status;
        if let Some(ct) = self.content_type {
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        }
        resp
    }
}

/// Requests held at a [`Gate`] until the test releases them: how tests put
/// a second writer's step between two of the doctor's requests.
#[derive(Debug, Clone)]
pub(crate) struct Pause {
    pub(crate) method: Method,
    pub(crate) path_prefix: String,
    pub(crate) gate: Gate,
}

impl Pause {
    pub(crate) fn matches(&self, method: &Method, path: &str) -> bool {
        self.gate.is_catching() && self.method == *method && path.starts_with(&self.path_prefix)
    }
}

pub(crate) fn harbor_error_body(code: &str, message: &str) -> Vec<u8> {
    json!({"errors": [{"code": code, "message": message}]})
        .to_string()
        .into_bytes()
}

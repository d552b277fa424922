//! What every HTTP client of the doctor shares: bounded bodies and URLs
//! that carry no credentials.
//!
//! An answer is untrusted input. reqwest's timeout bounds how long a body
//! may take, not how large it grows: a proxy or a hostile server streaming
//! an endless body would grow the process without limit, so bodies are read
//! chunk by chunk and refused past a cap.

use anyhow::Result;

use crate::outcome::refused;

/// The largest answer body the doctor reads. Harbor pages hold at most 100
/// items and Keycloak pages 500 users, a few hundred kilobytes; 16 MiB
/// leaves room for large installations while bounding memory.
pub const BODY_CAP: usize = 16 << 20;

/// Why a body could not be read whole.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the answer is larger than {} MiB, more than any real answer to this request; it was not read", .0 >> 20)]
    TooLarge(usize),
    #[error("reading the answer failed: {0}")]
    Transport(#[from] reqwest::Error),
}

/// Reads a response body, refusing one larger than `cap` bytes.
pub async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, BodyError> {
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(BodyError::TooLarge(cap));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > cap {
            return Err(BodyError::TooLarge(cap));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Parses a service URL given by the user (`what` names the option),
/// refusing one with a user name or password in it: such a URL would be
/// printed in findings, errors and backups. The message never repeats the
/// URL, which may hold the password.
pub fn parse_service_url(raw: &str, what: &str) -> Result<url::Url> {
    let url = url::Url::parse(raw.trim()).map_err(|e| {
        refused(format!(
            "{what} is not a URL ({e}); give it as https://host.example.com (the value is not shown, \
             it may hold a password)"
        ))
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refused(format!(
            "{what} holds a user name or password; credentials never go into a URL (it would be shown \
             in findings, errors and backups). Remove them from the URL and give them with their own \
             options or environment variables"
        )));
    }
    Ok(url)
}

/// Cuts a value that comes from outside (a user name, an answer) for a
/// message: long inputs would bury the message, or fill a terminal.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let cut: String = s.chars().take(max).collect();
    format!("{cut}… ({} characters in all)", s.chars().count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_credentials_in_urls_without_echoing_them() {
        for raw in [
            "https://admin:hunter2@harbor.example.com",
            "https://admin@harbor.example.com",
            "https://:hunter2@harbor.example.com",
        ] {
            let msg = format!("{:#}", parse_service_url(raw, "--harbor-url").unwrap_err());
            assert!(msg.contains("user name or password"), "{msg}");
            assert!(!msg.contains("hunter2") && !msg.contains("admin"), "{msg}");
        }
        let msg = format!(
            "{:#}",
            parse_service_url("not a url hunter2", "--harbor-url").unwrap_err()
        );
        assert!(!msg.contains("hunter2"), "{msg}");
        assert!(parse_service_url("https://harbor.example.com", "--harbor-url").is_ok());
    }

    #[test]
    fn clips_long_values() {
        assert_eq!(clip("alice", 10), "alice");
        let long = "x".repeat(100_000);
        let c = clip(&long, 40);
        assert!(
            c.len() < 80 && c.ends_with("(100000 characters in all)"),
            "{c}"
        );
    }
}

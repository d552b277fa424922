//! Known issue: docker login with an OIDC user's CLI secret fails.
//!
//! Harbor accepts an OIDC user's CLI secret only while it can refresh the
//! OIDC token it stored at the user's last web login. Without a refresh
//! token that outlives the IdP session (`oidc_scope` lacking
//! `offline_access`), every docker login fails once the session has ended,
//! until the user opens the web UI again. Platform operators (Otomi's
//! `apl-harbor-operator`) may also rewrite Harbor's configuration every
//! minute, undoing a scope change made by hand.

use crate::clients::keycloak::RealmSessions;

/// The scope that makes Keycloak issue a refresh token that outlives the
/// browser session.
pub const OFFLINE_ACCESS: &str = "offline_access";

/// Whether a comma-separated `oidc_scope` asks for `offline_access`.
pub fn has_offline_access(scope: &str) -> bool {
    scope.split(',').any(|s| s.trim() == OFFLINE_ACCESS)
}

/// `scope` with `offline_access` added at the end; the other scopes keep
/// their order and spelling. Harbor's own default is `openid,offline_access`.
pub fn scope_with_offline_access(scope: &str) -> String {
    if has_offline_access(scope) {
        return scope.to_string();
    }
    let kept = scope.trim().trim_end_matches([',', ' ']);
    if kept.is_empty() {
        return format!("openid,{OFFLINE_ACCESS}");
    }
    let separator = if kept.contains(", ") { ", " } else { "," };
    format!("{kept}{separator}{OFFLINE_ACCESS}")
}

/// A number of seconds as people say it: "1 minute", "30 minutes",
/// "10 hours", "30 days", "90 seconds".
pub fn plain_duration(seconds: i64) -> String {
    let (n, unit) = [(86_400, "day"), (3_600, "hour"), (60, "minute")]
        .into_iter()
        .find(|(size, _)| seconds >= *size && seconds % size == 0)
        .map(|(size, unit)| (seconds / size, unit))
        .unwrap_or((seconds, "second"));
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

/// A lifespan Keycloak reported, when it means a limit (Keycloak uses 0 for
/// "not set").
fn limit(value: Option<i64>) -> Option<i64> {
    value.filter(|v| *v > 0)
}

/// What the realm's token and session lifespans mean for CLI secrets, as
/// one plain sentence.
pub fn lifespan_sentence(sessions: &RealmSessions, offline_access: bool) -> String {
    if offline_access {
        return match limit(sessions.offline_session_idle_timeout) {
            Some(idle) => format!(
                "CLI secrets keep working as long as they are used at least once every {} (Keycloak's \
                 offline session idle timeout); after a longer pause the user must log in to the web UI once",
                plain_duration(idle)
            ),
            None => "CLI secrets keep working while Keycloak keeps the user's offline session; Keycloak did \
                     not report its offline session idle timeout"
                .to_string(),
        };
    }
    let access = limit(sessions.access_token_lifespan).map(|a| {
        format!(
            "Harbor's copy of the user's token lasts {}",
            plain_duration(a)
        )
    });
    let idle = limit(sessions.sso_session_idle_timeout);
    let max = limit(sessions.sso_session_max_lifespan);
    let refresh = "can only be refreshed while the user's Keycloak session lives";
    let why = match access {
        Some(a) => format!("{a} and {refresh}"),
        None => format!("Harbor's copy of the user's token {refresh}"),
    };
    match (idle, max) {
        (Some(idle), Some(max)) if max > idle => format!(
            "CLI secrets stop working {} after the user's last web login, and {} after it at the latest: {why}",
            plain_duration(idle),
            plain_duration(max)
        ),
        (Some(idle), Some(max)) => format!(
            "CLI secrets stop working {} after the user's last web login: {why}",
            plain_duration(idle.min(max))
        ),
        (Some(end), None) | (None, Some(end)) => format!(
            "CLI secrets stop working {} after the user's last web login: {why}",
            plain_duration(end)
        ),
        (None, None) => format!(
            "CLI secrets stop working when the user's Keycloak session ends (Keycloak did not report how \
             long that is): {why}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::keycloak::{Keycloak, KeycloakSettings};
    use harbor_doctor_sim::keycloak::{KeycloakSim, RealmLifespans};

    #[test]
    fn says_durations_plainly() {
        assert_eq!(plain_duration(60), "1 minute");
        assert_eq!(plain_duration(1800), "30 minutes");
        assert_eq!(plain_duration(36_000), "10 hours");
        assert_eq!(plain_duration(2_592_000), "30 days");
        assert_eq!(plain_duration(90), "90 seconds");
        assert_eq!(plain_duration(5400), "90 minutes");
        assert_eq!(plain_duration(1), "1 second");
    }

    #[test]
    fn adds_offline_access_keeping_the_other_scopes() {
        assert_eq!(scope_with_offline_access("openid"), "openid,offline_access");
        assert_eq!(
            scope_with_offline_access("openid,email,profile"),
            "openid,email,profile,offline_access"
        );
        assert_eq!(
            scope_with_offline_access("openid, profile,"),
            "openid, profile, offline_access"
        );
        assert_eq!(
            scope_with_offline_access("openid, offline_access ,email"),
            "openid, offline_access ,email"
        );
        assert_eq!(scope_with_offline_access(""), "openid,offline_access");
        assert!(has_offline_access("openid, offline_access"));
        assert!(!has_offline_access("openid,offline_access_x"));
    }

    fn sessions(access: i64, idle: i64, max: i64, offline: i64) -> RealmSessions {
        RealmSessions {
            access_token_lifespan: Some(access),
            sso_session_idle_timeout: Some(idle),
            sso_session_max_lifespan: Some(max),
            offline_session_idle_timeout: Some(offline),
        }
    }

    #[test]
    fn explains_lifespans_in_one_sentence() {
        let s = sessions(60, 1800, 36_000, 2_592_000);
        assert_eq!(
            lifespan_sentence(&s, false),
            "CLI secrets stop working 30 minutes after the user's last web login, and 10 hours after it \
             at the latest: Harbor's copy of the user's token lasts 1 minute and can only be refreshed \
             while the user's Keycloak session lives"
        );
        assert!(lifespan_sentence(&s, true).starts_with(
            "CLI secrets keep working as long as they are used at least once every 30 days"
        ));
        // A max lifespan shorter than the idle timeout is what ends the session.
        assert!(lifespan_sentence(&sessions(300, 7200, 3600, 0), false)
            .starts_with("CLI secrets stop working 1 hour after the user's last web login:"));
        let unknown = RealmSessions {
            access_token_lifespan: None,
            sso_session_idle_timeout: Some(0),
            sso_session_max_lifespan: None,
            offline_session_idle_timeout: None,
        };
        assert!(lifespan_sentence(&unknown, false).contains("did not report"));
        assert!(lifespan_sentence(&unknown, true).contains("did not report"));
    }

    #[tokio::test]
    async fn reads_the_lifespans_from_keycloak() {
        let kc = KeycloakSim::start("kc-admin", "kc-pass").await.unwrap();
        kc.add_realm("otomi", RealmLifespans::otomi());
        let client = Keycloak::new(
            KeycloakSettings {
                base_url: kc.url(),
                realm: "otomi".into(),
                username: "kc-admin".into(),
                password: "kc-pass".into(),
            },
            std::time::Duration::from_secs(10),
        )
        .unwrap();
        let s = client.realm_sessions().await.unwrap();
        assert!(lifespan_sentence(&s, false).starts_with(
            "CLI secrets stop working 30 minutes after the user's last web login, and 10 hours after it"
        ));
        assert!(lifespan_sentence(&s, false).contains("lasts 1 minute"));
        kc.shutdown();
    }
}

//! Who a Harbor user is in Keycloak, decided without I/O.
//!
//! A relink hands the Harbor account (projects, memberships, CLI secret) to
//! the Keycloak user it points at, so the match must be as certain as the
//! one Harbor itself would make at login. Harbor takes an OIDC user's
//! username from the claim named by `oidc_user_claim`: with `email` the
//! username *is* the Keycloak email, with `preferred_username` it is the
//! Keycloak username. Only a match on that attribute can be certain, and an
//! email counts only when Keycloak says it was verified: a user can often
//! set their own email in Keycloak's account console, so an unverified one
//! is a claim anybody can make. Everything else (unverified emails, a match
//! on the other attribute, several users) is a weak match: shown to a
//! person with its candidates, never acted on without an explicit
//! `--new-sub`.

use std::collections::HashMap;

use crate::clients::keycloak::KeycloakUser;

/// The claim Harbor takes its usernames from (`oidc_user_claim`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsernameClaim {
    Email,
    PreferredUsername,
    /// Another claim, or none (Harbor then falls back to the non-unique
    /// `name` claim): no Keycloak attribute is certain.
    Other(Option<String>),
}

impl UsernameClaim {
    pub fn from_setting(v: Option<&str>) -> UsernameClaim {
        match v.map(str::trim) {
            Some("email") => UsernameClaim::Email,
            Some("preferred_username") => UsernameClaim::PreferredUsername,
            Some("") | None => UsernameClaim::Other(None),
            Some(other) => UsernameClaim::Other(Some(other.to_string())),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            UsernameClaim::Email => "email".into(),
            UsernameClaim::PreferredUsername => "preferred_username".into(),
            UsernameClaim::Other(Some(c)) => c.clone(),
            UsernameClaim::Other(None) => "unset (Harbor falls back to `name`)".into(),
        }
    }
}

/// How a certain match was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchedBy {
    /// The Harbor username is this user's verified Keycloak email.
    VerifiedEmail,
    /// The Harbor username is this user's Keycloak username.
    Username,
}

impl MatchedBy {
    pub fn describe(self) -> &'static str {
        match self {
            MatchedBy::VerifiedEmail => "verified email = Harbor username (oidc_user_claim email)",
            MatchedBy::Username => {
                "Keycloak username = Harbor username (oidc_user_claim preferred_username)"
            }
        }
    }
}

/// A Keycloak user who might be the Harbor user, and why they are only a
/// candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub user: KeycloakUser,
    pub why: &'static str,
}

/// What Keycloak says about who a Harbor user is.
#[derive(Debug, Clone, PartialEq)]
pub enum Identity {
    Certain { user: KeycloakUser, by: MatchedBy },
    Weak { candidates: Vec<Candidate> },
    Unknown,
}

/// Keycloak's users indexed for matching; built once per run.
pub struct Directory<'a> {
    by_username: HashMap<String, Vec<&'a KeycloakUser>>,
    by_email: HashMap<String, Vec<&'a KeycloakUser>>,
    by_id: HashMap<&'a str, &'a KeycloakUser>,
}

impl<'a> Directory<'a> {
    pub fn new(users: &'a [KeycloakUser]) -> Directory<'a> {
        let mut d = Directory {
            by_username: HashMap::with_capacity(users.len()),
            by_email: HashMap::with_capacity(users.len()),
            by_id: HashMap::with_capacity(users.len()),
        };
        for u in users {
            d.by_username
                .entry(u.username.to_lowercase())
                .or_default()
                .push(u);
            if let Some(e) = &u.email {
                d.by_email.entry(e.to_lowercase()).or_default().push(u);
            }
            d.by_id.insert(u.id.as_str(), u);
        }
        d
    }

    pub fn by_id(&self, id: &str) -> Option<&'a KeycloakUser> {
        self.by_id.get(id).copied()
    }

    /// Who the Harbor user `username` (with `email` in Harbor) is.
    pub fn identify(&self, claim: &UsernameClaim, username: &str, email: Option<&str>) -> Identity {
        let name = username.to_lowercase();
        let named = |m: &HashMap<String, Vec<&'a KeycloakUser>>,
                     k: &str|
         -> Vec<&'a KeycloakUser> { m.get(k).cloned().unwrap_or_default() };
        let (primary, by) = match claim {
            UsernameClaim::Email => (
                named(&self.by_email, &name)
                    .into_iter()
                    .filter(|u| u.email_verified)
                    .collect::<Vec<_>>(),
                MatchedBy::VerifiedEmail,
            ),
            UsernameClaim::PreferredUsername => {
                (named(&self.by_username, &name), MatchedBy::Username)
            }
            UsernameClaim::Other(_) => (vec![], MatchedBy::Username),
        };
        if let [one] = primary.as_slice() {
            return Identity::Certain {
                user: (*one).clone(),
                by,
            };
        }
        let mut candidates: Vec<Candidate> = vec![];
        let mut add = |u: &KeycloakUser, why: &'static str| {
            if !candidates.iter().any(|c| c.user.id == u.id) {
                candidates.push(Candidate {
                    user: u.clone(),
                    why,
                });
            }
        };
        for u in &primary {
            add(u, "one of several Keycloak users that match equally");
        }
        for u in named(&self.by_email, &name) {
            add(
                u,
                if u.email_verified {
                    "verified email = Harbor username, but Harbor does not take usernames from email"
                } else {
                    "email = Harbor username, but Keycloak has not verified that email"
                },
            );
        }
        for u in named(&self.by_username, &name) {
            add(
                u,
                "Keycloak username = Harbor username, but Harbor does not take usernames from it",
            );
        }
        if let Some(e) = email.map(str::to_lowercase).filter(|e| *e != name) {
            for u in named(&self.by_email, &e) {
                add(
                    u,
                    if u.email_verified {
                        "verified email = the Harbor user's email, but not their username"
                    } else {
                        "email = the Harbor user's email, unverified"
                    },
                );
            }
        }
        if candidates.is_empty() {
            Identity::Unknown
        } else {
            Identity::Weak { candidates }
        }
    }
}

/// One line naming the candidates, for a summary.
pub fn describe_candidates(candidates: &[Candidate]) -> String {
    candidates
        .iter()
        .map(|c| format!("{} [{}]", c.user.describe(), c.why))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, username: &str, email: Option<&str>, verified: bool) -> KeycloakUser {
        KeycloakUser {
            id: id.into(),
            username: username.into(),
            email: email.map(Into::into),
            email_verified: verified,
        }
    }

    /// alice's true account and a look-alike who set alice's address as
    /// their own, unverified, email.
    fn otomi_realm() -> Vec<KeycloakUser> {
        vec![
            user("true-alice", "alice", Some("alice@example.com"), true),
            user("mallory", "mallory", Some("alice@example.com"), false),
            user("bob", "bob", Some("bob@example.com"), false),
            user("carol-1", "carol1", Some("carol@example.com"), true),
            user("carol-2", "carol2", Some("carol@example.com"), true),
        ]
    }

    #[test]
    fn a_verified_email_wins_over_an_unverified_look_alike() {
        let users = otomi_realm();
        let d = Directory::new(&users);
        match d.identify(
            &UsernameClaim::Email,
            "Alice@Example.com",
            Some("alice@example.com"),
        ) {
            Identity::Certain { user, by } => {
                assert_eq!(user.id, "true-alice");
                assert_eq!(by, MatchedBy::VerifiedEmail);
            }
            other => panic!("expected a certain match, got {other:?}"),
        }
    }

    #[test]
    fn an_unverified_email_alone_is_weak() {
        let users = otomi_realm();
        let d = Directory::new(&users);
        let Identity::Weak { candidates } = d.identify(
            &UsernameClaim::Email,
            "bob@example.com",
            Some("bob@example.com"),
        ) else {
            panic!("expected a weak match");
        };
        assert_eq!(candidates.len(), 1);
        assert_eq!(candidates[0].user.id, "bob");
        assert!(candidates[0].why.contains("not verified"));
    }

    #[test]
    fn several_verified_matches_are_ambiguous() {
        let users = otomi_realm();
        let d = Directory::new(&users);
        let Identity::Weak { candidates } =
            d.identify(&UsernameClaim::Email, "carol@example.com", None)
        else {
            panic!("expected a weak match");
        };
        let ids: Vec<_> = candidates.iter().map(|c| c.user.id.as_str()).collect();
        assert_eq!(ids, ["carol-1", "carol-2"]);
    }

    #[test]
    fn username_claim_matches_usernames_and_treats_email_as_weak() {
        let users = otomi_realm();
        let d = Directory::new(&users);
        assert!(matches!(
            d.identify(
                &UsernameClaim::PreferredUsername,
                "alice",
                Some("alice@example.com")
            ),
            Identity::Certain {
                by: MatchedBy::Username,
                ..
            }
        ));
        // No Keycloak username "alicia": her email only points at candidates.
        let Identity::Weak { candidates } = d.identify(
            &UsernameClaim::PreferredUsername,
            "alicia",
            Some("alice@example.com"),
        ) else {
            panic!("expected a weak match");
        };
        assert_eq!(candidates.len(), 2, "{candidates:?}");
    }

    #[test]
    fn another_claim_is_never_certain() {
        let users = otomi_realm();
        let d = Directory::new(&users);
        let claim = UsernameClaim::from_setting(Some("name"));
        assert!(matches!(
            d.identify(&claim, "alice", None),
            Identity::Weak { .. }
        ));
        assert_eq!(d.identify(&claim, "nobody", None), Identity::Unknown);
    }
}

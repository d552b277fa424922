//! Known issue: the OIDC conflicting user.
//!
//! After Keycloak is redeployed every user gets a new `sub`. Harbor matches
//! OIDC logins by sub+issuer (`oidc_user.subiss`), finds no link for the new
//! one, tries to onboard the user again and fails on the unique username or
//! email: HTTP 409 "Conflict, the user with same username or email has been
//! onboarded" (before 2.3) or "user X or email Y already exists" (after).
//! The same happens when the issuer URL changes.
//!
//! - diagnose: links whose issuer is not the current one; with Keycloak, links
//!   whose sub differs from Keycloak's current id for the user; links left on
//!   deleted users (they block re-onboarding); users with several links; and
//!   users without a link while Harbor is in OIDC mode.
//! - plan/apply: relink (point the link at the new sub+issuer; keeps
//!   memberships, ownerships and the CLI secret), soft-delete (as Harbor
//!   deletes a user), or delete (the manual runbook, refused for project
//!   owners). One transaction, rows locked with a bounded wait, the backup
//!   fsynced before COMMIT.
//! - verify: the diagnosis again, which must no longer name the users.

pub mod identity;

use anyhow::Result;
use serde_json::json;

use crate::backup::{Backup, BackupItem};
use crate::cli::{OidcConflictArgs, Strategy};
use crate::clients::http::clip;
use crate::clients::keycloak::KeycloakUser;
use crate::clients::registry_db::{
    tables, HarborUser, LockedUser, MultiplyLinkedUser, OidcLink, RegistryDb, RowChange,
    StoredConfig, Subiss,
};
use crate::context::Ctx;
use crate::issues::{fix_options, FindingKind, FixCommand, KnownIssue, Runbook};
use crate::outcome::refused;
use crate::repair::{shell_quote, BackupSink, Repair, Verification};
use crate::report::{CheckOutcome, Finding, PlanStep, RepairStage, Severity};
use identity::{describe_candidates, Directory, Identity, UsernameClaim};

pub const CHECK: &str = "oidc-users";
pub const RUNBOOK: &str = "oidc-conflict";
const REPAIR: &str = "oidc-conflict";

pub static ISSUE: KnownIssue = KnownIssue {
    check: CHECK,
    about: "users whose OIDC link no longer matches Keycloak (the 409 conflict at login)",
    runbook: Runbook {
        id: RUNBOOK,
        summary:
            "users who cannot log in after Keycloak was redeployed (409 conflict); check oidc-users",
        text: include_str!("../../../runbooks/oidc-conflict.md"),
    },
    kinds: &[
        FindingKind {
            id: "sub-changed",
            about: "the user's Keycloak id changed: their next login fails with a 409 conflict; Keycloak names them for certain",
        },
        FindingKind {
            id: "issuer-changed",
            about: "the user's link names an old issuer; Keycloak names them for certain",
        },
        FindingKind {
            id: "no-certain-match",
            about: "the user's next login fails with a 409, and Keycloak has only uncertain candidates for them",
        },
        FindingKind {
            id: "no-match",
            about: "the user's link names another issuer, and no Keycloak user could be them (or Keycloak was not asked)",
        },
        FindingKind {
            id: "leftover-link",
            about: "a deleted user still holds an OIDC link, so that person cannot be onboarded again",
        },
        FindingKind {
            id: "several-links",
            about: "a user has more than one OIDC link",
        },
        FindingKind {
            id: "no-link",
            about: "a user has no OIDC link while Harbor signs users in with OIDC",
        },
        FindingKind {
            id: "not-examined",
            about: "Keycloak could not be asked, so changed Keycloak ids were not checked",
        },
    ],
    diagnose: |ctx, _| Box::pin(diagnose(ctx)),
    repair: Some(FixCommand {
        name: REPAIR,
        stage: RepairStage::Database,
        repeats: None,
        about: "Repair users who cannot log in because their OIDC subject changed (409 conflict)",
        options: <OidcConflictArgs as clap::Args>::augment_args,
        run: |ctx, m| {
            Box::pin(async move {
                let args: OidcConflictArgs = fix_options(m)?;
                crate::repair::run(ctx, &mut OidcConflictRepair::new(args)).await
            })
        },
    }),
};
/// The local admin account, which is never changed.
pub const LOCAL_ADMIN_ID: i32 = 1;
/// How much of a user-given name goes into a message.
const NAME_IN_MESSAGE: usize = 80;

/// Where the current issuer came from (DESIGN.md, item 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuerSource {
    Option,
    HarborConfig,
    Keycloak,
}

impl IssuerSource {
    fn describe(self) -> &'static str {
        match self {
            IssuerSource::Option => "--issuer / HARBOR_OIDC_ISSUER",
            IssuerSource::HarborConfig => "Harbor's oidc_endpoint (properties table)",
            IssuerSource::Keycloak => "Keycloak's realm issuer",
        }
    }
}

/// The issuer Harbor's users are signing in with now.
#[derive(Debug, Clone)]
pub struct CurrentIssuer {
    pub url: String,
    pub source: IssuerSource,
}

async fn current_issuer(ctx: &Ctx, settings: &StoredConfig) -> Result<CurrentIssuer> {
    if let Some(url) = ctx.opts.issuer.as_deref().filter(|u| !u.trim().is_empty()) {
        return Ok(CurrentIssuer {
            url: url.trim().trim_end_matches('/').to_string(),
            source: IssuerSource::Option,
        });
    }
    if let Some(url) = &settings.oidc_endpoint {
        return Ok(CurrentIssuer {
            url: url.trim_end_matches('/').to_string(),
            source: IssuerSource::HarborConfig,
        });
    }
    if let Some(kc) = ctx.keycloak().await? {
        return Ok(CurrentIssuer {
            url: kc.realm_issuer(),
            source: IssuerSource::Keycloak,
        });
    }
    Err(refused(
        "cannot tell the current OIDC issuer: Harbor's properties table has no oidc_endpoint, and \
         neither --issuer nor Keycloak is given",
    ))
}

/// A link that will make its user's next login fail, with what Keycloak
/// says about who the user is (Unknown without Keycloak).
#[derive(Debug, Clone)]
struct StaleLink {
    link: OidcLink,
    identity: Identity,
}

/// Everything the diagnosis found, before it becomes findings.
struct Diagnosis {
    auth_mode: Option<String>,
    claim: UsernameClaim,
    issuer: CurrentIssuer,
    keycloak_used: bool,
    /// Why Keycloak's users could not be compared, when they could not.
    keycloak_unexamined: Option<String>,
    stale: Vec<StaleLink>,
    leftover: Vec<OidcLink>,
    several: Vec<MultiplyLinkedUser>,
    unlinked: Vec<HarborUser>,
}

/// Which links will fail at the next login, decided without I/O.
///
/// A link whose issuer is not the current one always fails. A link on the
/// current issuer fails when Keycloak no longer has a user with its sub
/// (Keycloak redeployed); one whose sub is still a Keycloak user logs in,
/// whatever else Keycloak says, and is left alone.
fn stale_links(
    links: Vec<OidcLink>,
    issuer: &str,
    claim: &UsernameClaim,
    directory: Option<&Directory>,
) -> Vec<StaleLink> {
    let mut out = vec![];
    for link in links {
        let (sub, stored_issuer) = link.subiss.split(issuer);
        let current_issuer = stored_issuer.trim_end_matches('/') == issuer;
        let Some(dir) = directory else {
            if !current_issuer {
                out.push(StaleLink {
                    link,
                    identity: Identity::Unknown,
                });
            }
            continue;
        };
        if current_issuer && dir.by_id(&sub).is_some() {
            continue;
        }
        let identity = dir.identify(claim, &link.username, link.email.as_deref());
        if current_issuer && identity == Identity::Unknown {
            // Keycloak has neither the sub nor anyone who could be this
            // user: they left, and their next login cannot happen anyway.
            continue;
        }
        out.push(StaleLink { link, identity });
    }
    out
}

async fn examine(ctx: &Ctx) -> Result<Diagnosis> {
    let db = ctx.db().await?;
    let settings = db.stored_config().await?;
    let issuer = current_issuer(ctx, &settings).await?;
    let claim = UsernameClaim::from_setting(settings.oidc_user_claim.as_deref());
    // Without Keycloak's users only links to another issuer can be seen,
    // not changed ids: the check says so instead of calling that healthy.
    let access = ctx.keycloak_access().await;
    let users = match &access.keycloak {
        Some(kc) => kc.users().await.map_err(|e| format!("{e:#}")),
        None => Err(access.missing.as_ref().map_or_else(
            || "Keycloak is not configured".to_string(),
            |m| m.why.clone(),
        )),
    };
    let (stale, keycloak_unexamined) = match users {
        Ok(users) => {
            let directory = Directory::new(users);
            let stale = stale_links(
                db.live_links().await?,
                &issuer.url,
                &claim,
                Some(&directory),
            );
            (stale, None)
        }
        Err(why) => {
            let links = db.links_with_other_issuer(&issuer.url).await?;
            (stale_links(links, &issuer.url, &claim, None), Some(why))
        }
    };
    let keycloak = if keycloak_unexamined.is_none() {
        access.keycloak.as_ref()
    } else {
        None
    };
    let oidc_mode = settings.auth_mode.as_deref() == Some("oidc_auth");
    Ok(Diagnosis {
        auth_mode: settings.auth_mode.clone(),
        claim,
        issuer,
        keycloak_used: keycloak.is_some(),
        keycloak_unexamined,
        stale,
        leftover: db.links_of_deleted_users().await?,
        several: db.users_with_several_links().await?,
        unlinked: if oidc_mode {
            db.users_without_link().await?
        } else {
            vec![]
        },
    })
}

/// A Keycloak user as evidence.
fn keycloak_evidence(u: &KeycloakUser) -> serde_json::Value {
    json!({"id": u.id, "username": u.username, "email": u.email, "email_verified": u.email_verified})
}

fn fix_command(user: &str) -> String {
    format!(
        "harbor-doctor fix oidc-conflict --user {}",
        shell_quote(user)
    )
}

/// `diagnose oidc-users`.
pub async fn diagnose(ctx: &Ctx) -> Result<CheckOutcome> {
    let d = examine(ctx).await?;
    let mut out = CheckOutcome::default();
    out.notes.push(format!(
        "auth_mode: {}; usernames from claim {}; issuer {} (from {}); Keycloak {}",
        d.auth_mode.as_deref().unwrap_or("unset"),
        d.claim.describe(),
        d.issuer.url,
        d.issuer.source.describe(),
        if d.keycloak_used {
            "compared"
        } else {
            "not compared"
        }
    ));
    for s in &d.stale {
        let (stored_sub, stored_issuer) = s.link.subiss.split(&d.issuer.url);
        let who = &s.link.username;
        let mut f = Finding::new(
            CHECK,
            "no-match",
            Severity::Problem,
            format!("user {who}"),
            "",
            RUNBOOK,
        )
        .evidence("stored_sub", stored_sub.clone())
        .evidence("stored_issuer", stored_issuer.clone())
        .evidence("issuer", d.issuer.url.clone())
        .evidence("issuer_source", d.issuer.source.describe())
        .evidence("user_id", s.link.user_id)
        .evidence("oidc_user_id", s.link.link_id);
        match &s.identity {
            Identity::Certain { user, by } => {
                f = f
                    .evidence("keycloak_sub", user.id.clone())
                    .evidence("keycloak_user", keycloak_evidence(user))
                    .evidence("matched_by", by.describe())
                    .repair(fix_command(who));
                let (kind, what) = if user.id != stored_sub {
                    ("sub-changed", "Keycloak id changed")
                } else {
                    ("issuer-changed", "link names an old issuer")
                };
                f.kind = kind.into();
                f.summary = format!(
                    "{who}'s {what}; their next login will fail with a 409 conflict. The repair hands the \
                     account to {} (matched by {})",
                    user.describe(),
                    by.describe()
                );
            }
            Identity::Weak { candidates } => {
                f.kind = "no-certain-match".into();
                f = f.evidence(
                    "keycloak_candidates",
                    json!(candidates
                        .iter()
                        .map(|c| {
                            let mut v = keycloak_evidence(&c.user);
                            v["why_uncertain"] = json!(c.why);
                            v
                        })
                        .collect::<Vec<_>>()),
                );
                f.summary = format!(
                    "{who}'s next login will fail with a 409 conflict, and Keycloak has no certain match for \
                     them, so no repair is automatic: relinking to the wrong person hands them the account. \
                     Candidates: {}. Make sure which one is {who} (for example ask them, or verify the email \
                     in Keycloak), then run `{} --new-sub <ID>`",
                    describe_candidates(candidates),
                    fix_command(who)
                );
            }
            Identity::Unknown => {
                f.summary = format!(
                    "{who}'s link names another issuer ({stored_issuer}); their next login will fail with a \
                     409 conflict. Find their new Keycloak id and run `{} --new-sub <ID>`, or give the \
                     --keycloak-* options so the doctor can look it up",
                    fix_command(who)
                );
                if d.keycloak_used {
                    f.summary = format!(
                        "{who}'s link names another issuer ({stored_issuer}) and Keycloak has no user who \
                         could be {who}; their next login will fail with a 409 conflict. If they left, remove \
                         them with `{} --strategy soft-delete`; else relink with --new-sub <ID>",
                        fix_command(who)
                    );
                }
            }
        }
        out.findings.push(f);
    }
    for l in &d.leftover {
        let (sub, iss) = l.subiss.split(&d.issuer.url);
        out.findings.push(
            Finding::new(
                CHECK,
                "leftover-link",
                Severity::Warning,
                format!("user {}", l.username),
                format!(
                    "deleted user {} still holds an OIDC link, so the person with that subject cannot be \
                     onboarded again (unique sub+issuer)",
                    l.username
                ),
                RUNBOOK,
            )
            .evidence("stored_sub", sub)
            .evidence("stored_issuer", iss)
            .evidence("user_id", l.user_id)
            .evidence("oidc_user_id", l.link_id)
            .repair(format!("{} --strategy soft-delete", fix_command(&l.username))),
        );
    }
    for m in &d.several {
        out.findings.push(
            Finding::new(
                CHECK,
                "several-links",
                Severity::Warning,
                format!("user {}", m.user.username),
                format!(
                    "{} has {} OIDC links; Harbor expects one. No automatic repair is safe: keep the link \
                     that matches the current issuer and Keycloak id and delete the others by hand \
                     (runbook oidc-conflict, 'by hand')",
                    m.user.username,
                    m.link_ids.len()
                ),
                RUNBOOK,
            )
            .evidence("user_id", m.user.user_id)
            .evidence("oidc_user_ids", json!(m.link_ids)),
        );
    }
    for u in &d.unlinked {
        out.findings.push(
            Finding::new(
                CHECK,
                "no-link",
                Severity::Warning,
                format!("user {}", u.username),
                format!(
                    "{} has no OIDC link while Harbor signs users in with OIDC; if this person signs in \
                     through Keycloak, Harbor will try to onboard them again and fail with a 409 conflict. \
                     If it is a local account left from before OIDC, remove it with `{} --strategy soft-delete`",
                    u.username,
                    fix_command(&u.username)
                ),
                RUNBOOK,
            )
            .evidence("user_id", u.user_id)
            .evidence("sysadmin", u.sysadmin),
        );
    }
    // Last: what was found comes first, then what could not be looked at.
    if let Some(why) = &d.keycloak_unexamined {
        out.findings.push(Finding::not_examined(
            CHECK,
            "Keycloak",
            format!(
                "changed Keycloak ids, the usual cause of the 409 at login, were not checked: {why}. Only links \
                 to another issuer were compared"
            ),
            RUNBOOK,
        ));
    }
    Ok(out)
}

/// One user's planned change, with what the plan saw, so that apply can
/// tell when the rows changed in between.
#[derive(Debug, Clone)]
enum UserChange {
    Relink {
        link_id: i32,
        old: Subiss,
        new: Subiss,
    },
    SoftDelete {
        already_deleted: bool,
        memberships: usize,
        links: usize,
    },
    Delete {
        memberships: usize,
        links: usize,
    },
}

#[derive(Debug, Clone)]
struct Target {
    user_id: i32,
    username: String,
    change: UserChange,
}

/// The subject a relink would use, and why it is believed.
struct ChosenSub {
    sub: String,
    keycloak_user: Option<KeycloakUser>,
    how: String,
}

/// `fix oidc-conflict`.
pub struct OidcConflictRepair {
    args: OidcConflictArgs,
    targets: Vec<Target>,
    notes: Vec<String>,
    issuer: Option<CurrentIssuer>,
}

/// The plan step of a relink: sub and issuer shown apart, and whom the
/// account goes to.
fn relink_step(
    link_id: i32,
    who: &str,
    old: &Subiss,
    new: &Subiss,
    issuer: &str,
    to: &str,
) -> PlanStep {
    let (old_sub, old_iss) = old.split(issuer);
    let (new_sub, new_iss) = new.split(issuer);
    let mut detail = format!("sub: {old_sub} -> {new_sub}");
    if old_iss != new_iss {
        detail.push_str(&format!("\nissuer: {old_iss} -> {new_iss}"));
    } else {
        detail.push_str(&format!("\nissuer: {new_iss} (unchanged)"));
    }
    detail.push_str(&format!("\nhands the account to {to}"));
    PlanStep::new(
        "update",
        format!("oidc_user id={link_id} (user {who})"),
        detail,
    )
}

impl OidcConflictRepair {
    pub fn new(args: OidcConflictArgs) -> Self {
        OidcConflictRepair {
            args,
            targets: vec![],
            notes: vec![],
            issuer: None,
        }
    }

    /// The subject to relink `user` to: `--new-sub` checked against
    /// Keycloak when Keycloak is configured, else Keycloak's certain match.
    async fn choose_sub(
        &self,
        ctx: &Ctx,
        user: &HarborUser,
        identity: Option<&Identity>,
    ) -> Result<Option<ChosenSub>> {
        let name = clip(&user.username, NAME_IN_MESSAGE);
        let Some(given) = self.args.new_sub.as_deref() else {
            return Ok(match identity {
                Some(Identity::Certain { user: u, by }) => Some(ChosenSub {
                    sub: u.id.clone(),
                    keycloak_user: Some(u.clone()),
                    how: format!("matched by {}", by.describe()),
                }),
                _ => None,
            });
        };
        let given = given.trim();
        if given.is_empty() || given.chars().any(char::is_whitespace) || given.chars().count() > 255
        {
            return Err(refused(
                "--new-sub is empty, too long or holds white space; give the user's Keycloak id, e.g. --new-sub 3f2c6a1e-...",
            ));
        }
        let access = ctx.keycloak_access().await;
        let Some(kc) = &access.keycloak else {
            let why = access
                .missing
                .as_ref()
                .map_or("Keycloak is not configured", |m| m.why.as_str());
            // Keycloak named on the command line but unusable: the person
            // expects the check, so it is not silently skipped.
            if ctx.opts.keycloak_url.is_some() {
                return Err(refused(format!(
                    "--new-sub cannot be checked against Keycloak: {why}. Fix the --keycloak-* options, or \
                     leave them out to relink without the check"
                )));
            }
            return Ok(Some(ChosenSub {
                sub: given.to_string(),
                keycloak_user: None,
                how: format!("given with --new-sub; not checked against Keycloak ({why})"),
            }));
        };
        // Keycloak is configured: a subject it cannot confirm is refused,
        // and so is one it contradicts (an unreachable Keycloak fails here).
        let Some(owner) = kc.user_by_id(given).await? else {
            return Err(refused(format!(
                "Keycloak (realm {}) has no user with id {}; relinking {name} to it would lock them out. \
                 Check the id in Keycloak's admin console (Users, then the user's ID)",
                kc.realm(),
                clip(given, 64)
            )));
        };
        if let Some(Identity::Certain { user: certain, by }) = identity {
            if certain.id != owner.id {
                return Err(refused(format!(
                    "--new-sub contradicts Keycloak: it names {}, but Keycloak says {name} is {} (matched by \
                     {}). Nothing was changed. Drop --new-sub to relink to Keycloak's match, or fix the user \
                     in Keycloak first",
                    owner.describe(),
                    certain.describe(),
                    by.describe()
                )));
            }
        }
        Ok(Some(ChosenSub {
            sub: owner.id.clone(),
            how: "given with --new-sub and found in Keycloak".into(),
            keycloak_user: Some(owner),
        }))
    }

    async fn plan_one(&mut self, ctx: &Ctx, db: &RegistryDb, name: &str) -> Result<Vec<PlanStep>> {
        let shown = clip(name, NAME_IN_MESSAGE);
        let user = db.user_by_name(name).await?.ok_or_else(|| {
            refused(format!(
                "Harbor has no user named {shown:?}; check the spelling (usernames are exact; a deleted \
                 user is found by its renamed name, e.g. bob#7)"
            ))
        })?;
        if user.user_id == LOCAL_ADMIN_ID {
            return Err(refused(
                "the local admin account (user_id 1) is never changed by harbor-doctor",
            ));
        }
        let links = db.links_of_users(&[user.user_id]).await?;
        let relinking = matches!(self.args.strategy, None | Some(Strategy::Relink));
        let identity = match ctx.keycloak().await? {
            Some(kc) if relinking => {
                let claim = UsernameClaim::from_setting(
                    db.stored_config().await?.oidc_user_claim.as_deref(),
                );
                let users = kc
                    .users_matching(&user.username, user.email.as_deref())
                    .await?;
                Some(Directory::new(&users).identify(&claim, &user.username, user.email.as_deref()))
            }
            _ => None,
        };
        let chosen = if relinking {
            self.choose_sub(ctx, &user, identity.as_ref()).await?
        } else {
            None
        };
        let strategy = match (self.args.strategy, &chosen) {
            (Some(s), _) => s,
            (None, Some(_)) => Strategy::Relink,
            (None, None) => {
                let why = match &identity {
                    Some(Identity::Weak { candidates }) => format!(
                        "Keycloak has no certain match for them, only candidates: {}. Make sure which one is \
                         {shown}, then give --new-sub <ID>",
                        describe_candidates(candidates)
                    ),
                    Some(_) => "Keycloak has no user who could be them".to_string(),
                    None => "no --new-sub, and Keycloak is not configured".to_string(),
                };
                return Err(refused(format!(
                    "no new subject is known for {shown} ({why}), and a destructive repair is never the \
                     default. Give --new-sub <KEYCLOAK-ID> to relink, or name --strategy soft-delete or \
                     --strategy delete"
                )));
            }
        };
        match strategy {
            Strategy::Relink => {
                self.plan_relink(ctx, db, &user, links, chosen, identity)
                    .await
            }
            Strategy::SoftDelete | Strategy::Delete => {
                self.plan_delete(db, &user, links, strategy == Strategy::Delete)
                    .await
            }
        }
    }

    async fn plan_relink(
        &mut self,
        ctx: &Ctx,
        db: &RegistryDb,
        user: &HarborUser,
        links: Vec<OidcLink>,
        chosen: Option<ChosenSub>,
        identity: Option<Identity>,
    ) -> Result<Vec<PlanStep>> {
        let name = clip(&user.username, NAME_IN_MESSAGE);
        let Some(chosen) = chosen else {
            let why = match identity {
                Some(Identity::Weak { candidates }) => format!(
                    "Keycloak has no certain match, only candidates: {}. Make sure which one is {name}, then \
                     give --new-sub <ID>",
                    describe_candidates(&candidates)
                ),
                _ => "give --new-sub <KEYCLOAK-ID>, or the --keycloak-* options so the doctor can look it up"
                    .to_string(),
            };
            return Err(refused(format!("relink needs {name}'s new subject: {why}")));
        };
        if user.deleted {
            return Err(refused(format!(
                "{name} is a deleted user; relinking it would not let anyone log in"
            )));
        }
        let issuer = self.issuer(ctx, db).await?;
        let new = Subiss::new(&chosen.sub, &issuer.url)?;
        let link = match links.as_slice() {
            [] => {
                return Err(refused(format!(
                    "{name} has no OIDC link to relink; there is nothing for Harbor to match. If they are a \
                     local account, see `harbor-doctor runbook oidc-conflict`"
                )))
            }
            [one] => one.clone(),
            many => {
                return Err(refused(format!(
                    "{name} has {} OIDC links, so which to relink is ambiguous{}; remove the stale ones by \
                     hand first (runbook oidc-conflict)",
                    many.len(),
                    if many.iter().any(|l| l.subiss == new) {
                        " (one already matches the new subject)"
                    } else {
                        ""
                    }
                )))
            }
        };
        if link.subiss == new {
            self.notes.push(format!(
                "{name} is already linked to the current subject and issuer."
            ));
            return Ok(vec![]);
        }
        if let Some(holder) = db.link_holding(&new).await? {
            return Err(refused(format!(
                "the new subject is already held by OIDC link {} of user {}{}; repair that first (e.g. `{} \
                 --strategy soft-delete` if that user is gone)",
                holder.link_id,
                holder.username,
                if holder.user_deleted { " (a deleted user)" } else { "" },
                fix_command(&holder.username)
            )));
        }
        let to = match &chosen.keycloak_user {
            Some(u) => format!("{} ({})", u.describe(), chosen.how),
            None => format!("subject {} ({})", chosen.sub, chosen.how),
        };
        let step = relink_step(
            link.link_id,
            &user.username,
            &link.subiss,
            &new,
            &issuer.url,
            &to,
        );
        self.targets.push(Target {
            user_id: user.user_id,
            username: user.username.clone(),
            change: UserChange::Relink {
                link_id: link.link_id,
                old: link.subiss,
                new,
            },
        });
        Ok(vec![step])
    }

    async fn plan_delete(
        &mut self,
        db: &RegistryDb,
        user: &HarborUser,
        links: Vec<OidcLink>,
        hard: bool,
    ) -> Result<Vec<PlanStep>> {
        let name = clip(&user.username, NAME_IN_MESSAGE);
        if user.sysadmin {
            return Err(refused(format!(
                "{name} is a Harbor system administrator; harbor-doctor relinks administrators but never \
                 deletes them. Remove the admin flag in Harbor first if they really must go"
            )));
        }
        let members = db.membership_count(user.user_id).await? as usize;
        let mut steps = vec![];
        if members > 0 {
            steps.push(PlanStep::new(
                "delete",
                format!("project_member entity_id={} entity_type=u", user.user_id),
                format!("{members} project membership(s) of {name}"),
            ));
        }
        for l in &links {
            steps.push(PlanStep::new(
                "delete",
                format!("oidc_user id={}", l.link_id),
                format!("the OIDC link of {name} (and with it their CLI secret)"),
            ));
        }
        if hard {
            let owned = db.projects_owned_by(user.user_id).await?;
            if !owned.is_empty() {
                return Err(refused(format!(
                    "{name} owns project(s) {}; project.owner_id refers to the user with no cascade, so a hard \
                     delete would fail half-way. Use --strategy soft-delete (Harbor's own way, keeps the row) \
                     or transfer the projects first",
                    owned.join(", ")
                )));
            }
            steps.push(PlanStep::new(
                "delete",
                format!("harbor_user user_id={}", user.user_id),
                format!("user {name}"),
            ));
            self.targets.push(Target {
                user_id: user.user_id,
                username: user.username.clone(),
                change: UserChange::Delete {
                    memberships: members,
                    links: links.len(),
                },
            });
            return Ok(steps);
        }
        if !user.deleted {
            let suffix = format!("#{}", user.user_id);
            steps.push(PlanStep::new(
                "update",
                format!("harbor_user user_id={}", user.user_id),
                format!(
                    "username {name} -> {name}{suffix}; email {}; deleted -> true",
                    user.email
                        .as_ref()
                        .map(|e| format!("{e} -> {e}{suffix}"))
                        .unwrap_or_else(|| "stays empty".into())
                ),
            ));
        } else if steps.is_empty() {
            self.notes.push(format!(
                "{name} is already deleted and has nothing left over."
            ));
        }
        self.targets.push(Target {
            user_id: user.user_id,
            username: user.username.clone(),
            change: UserChange::SoftDelete {
                already_deleted: user.deleted,
                memberships: members,
                links: links.len(),
            },
        });
        Ok(steps)
    }

    async fn issuer(&mut self, ctx: &Ctx, db: &RegistryDb) -> Result<CurrentIssuer> {
        if self.issuer.is_none() {
            let settings = db.stored_config().await?;
            self.issuer = Some(current_issuer(ctx, &settings).await?);
        }
        Ok(self.issuer.clone().expect("set above"))
    }

    async fn plan_all(&mut self, ctx: &Ctx, db: &RegistryDb) -> Result<Vec<PlanStep>> {
        if self.args.strategy.is_some_and(|s| s != Strategy::Relink) {
            return Err(refused(
                "--all only relinks; delete users one at a time with --user NAME --strategy ...",
            ));
        }
        let access = ctx.keycloak_access().await;
        if access.keycloak.is_none() {
            return Err(refused(format!(
                "--all needs Keycloak to learn every user's current subject, and {}",
                access
                    .missing
                    .as_ref()
                    .map_or("Keycloak is not configured", |m| m.why.as_str())
            )));
        }
        let d = examine(ctx).await?;
        if let Some(why) = &d.keycloak_unexamined {
            return Err(refused(format!(
                "--all needs Keycloak's users, and they could not be read: {why}"
            )));
        }
        self.issuer = Some(d.issuer.clone());
        let mut steps = vec![];
        let mut claimed = std::collections::HashSet::new();
        for s in d.stale {
            let who = &s.link.username;
            let (user, by) = match s.identity {
                Identity::Certain { user, by } => (user, by),
                Identity::Weak { candidates } => {
                    self.notes.push(format!(
                        "Left alone: {who} (no certain Keycloak match; candidates: {}). Relink by hand with \
                         `{} --new-sub <ID>` once you know which is theirs.",
                        describe_candidates(&candidates),
                        fix_command(who)
                    ));
                    continue;
                }
                Identity::Unknown => {
                    self.notes.push(format!(
                        "Left alone: {who} (Keycloak has no such user; see `{}`).",
                        fix_command(who)
                    ));
                    continue;
                }
            };
            if s.link.user_id == LOCAL_ADMIN_ID {
                self.notes
                    .push("Left alone: the local admin account (never changed).".into());
                continue;
            }
            let new = match Subiss::new(&user.id, &d.issuer.url) {
                Ok(n) => n,
                Err(e) => {
                    self.notes.push(format!("Left alone: {who} ({e:#})."));
                    continue;
                }
            };
            if let Some(holder) = db.link_holding(&new).await? {
                self.notes.push(format!(
                    "Left alone: {who} (the new subject is held by OIDC link {} of user {}; repair that first).",
                    holder.link_id, holder.username
                ));
                continue;
            }
            if !claimed.insert(new.clone().to_string()) {
                self.notes.push(format!(
                    "Left alone: {who} (another user matched the same Keycloak id)."
                ));
                continue;
            }
            let to = format!("{} (matched by {})", user.describe(), by.describe());
            steps.push(relink_step(
                s.link.link_id,
                who,
                &s.link.subiss,
                &new,
                &d.issuer.url,
                &to,
            ));
            self.targets.push(Target {
                user_id: s.link.user_id,
                username: who.clone(),
                change: UserChange::Relink {
                    link_id: s.link.link_id,
                    old: s.link.subiss,
                    new,
                },
            });
        }
        Ok(steps)
    }
}

/// Whether the locked rows are still what the plan saw.
fn still_as_planned(t: &Target, locked: &LockedUser) -> bool {
    if locked.user.username != t.username {
        return false;
    }
    match &t.change {
        UserChange::Relink { link_id, old, .. } => {
            locked.link_subiss(*link_id) == Some(old.as_str())
        }
        UserChange::SoftDelete {
            already_deleted,
            memberships,
            links,
        } => {
            locked.user.deleted == *already_deleted
                && locked.memberships.len() == *memberships
                && locked.links.len() == *links
        }
        UserChange::Delete { memberships, links } => {
            !locked.user.deleted
                && locked.memberships.len() == *memberships
                && locked.links.len() == *links
        }
    }
}

/// The rows a repair changed, as they were and as they are now (read
/// inside the transaction, before COMMIT).
async fn row_changes(
    tx: &crate::clients::registry_db::RepairTx,
    locked: &[LockedUser],
) -> Result<Vec<RowChange>> {
    let spec = |name| tables::table(name).expect("a table of the list");
    let mut changes = vec![];
    for l in locked {
        let mut rows = vec![("harbor_user", i64::from(l.user.user_id), l.row.clone())];
        rows.extend(
            l.links
                .iter()
                .map(|(id, r)| ("oidc_user", i64::from(*id), r.clone())),
        );
        rows.extend(
            l.memberships
                .iter()
                .map(|(id, r)| ("project_member", i64::from(*id), r.clone())),
        );
        for (table, key, before) in rows {
            let after = tx.row(spec(table), key, false).await?;
            let change = RowChange {
                table: table.to_string(),
                key,
                before: Some(before),
                after,
            };
            if !change.changed_columns().is_empty() {
                changes.push(change);
            }
        }
    }
    Ok(changes)
}

impl Repair for OidcConflictRepair {
    fn id(&self) -> &'static str {
        REPAIR
    }

    fn subject(&self) -> String {
        match &self.args.user {
            Some(u) => u.clone(),
            None => "all".into(),
        }
    }

    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }

    async fn plan(&mut self, ctx: &Ctx) -> Result<Vec<PlanStep>> {
        let db = ctx.db().await?;
        match self.args.user.clone() {
            Some(name) => self.plan_one(ctx, db, &name).await,
            None => self.plan_all(ctx, db).await,
        }
    }

    async fn apply(&mut self, ctx: &Ctx, backups: &mut BackupSink) -> Result<()> {
        let db = ctx.db().await?;
        let source = crate::backup::Source::database(db)
            .await
            .map_err(|e| refused(format!("{e:#}; nothing was changed")))?;
        let tx = db.begin(ctx.lock_wait()).await?;
        // Lock in user_id order, the same order every repair uses.
        let mut order: Vec<&Target> = self.targets.iter().collect();
        order.sort_by_key(|t| t.user_id);
        let mut locked = vec![];
        for t in &order {
            let shown = clip(&t.username, NAME_IN_MESSAGE);
            let Some(l) = tx.lock_user(t.user_id).await? else {
                tx.rollback().await;
                return Err(refused(format!(
                    "user {shown} disappeared since the plan was made; nothing was changed"
                )));
            };
            // The plan was made without locks: check it still holds.
            if !still_as_planned(t, &l) {
                tx.rollback().await;
                return Err(refused(format!(
                    "user {shown} changed since the plan was made (links, memberships or the account \
                     itself); nothing was changed. Run the fix again to see a fresh plan"
                )));
            }
            if let UserChange::Delete { .. } = t.change {
                let owned = tx.projects_owned_by(t.user_id).await?;
                if !owned.is_empty() {
                    tx.rollback().await;
                    return Err(refused(format!(
                        "{shown} now owns project(s) {}; nothing was changed (use --strategy soft-delete)",
                        owned.join(", ")
                    )));
                }
            }
            if let UserChange::Relink { new, .. } = &t.change {
                if let Some((link, holder)) = tx.link_holding(new).await? {
                    tx.rollback().await;
                    return Err(refused(format!(
                        "the new subject for {shown} was taken by OIDC link {link} (user_id {holder}) since \
                         the plan was made; nothing was changed"
                    )));
                }
            }
            locked.push(l);
        }
        for (t, l) in order.iter().zip(&locked) {
            match &t.change {
                UserChange::Relink { link_id, old, new } => {
                    tx.relink(*link_id, old.as_str(), new).await?
                }
                UserChange::SoftDelete { .. } => tx.soft_delete_user(l).await?,
                UserChange::Delete { .. } => tx.hard_delete_user(l).await?,
            }
        }
        // The backup holds each row as it was and as the repair leaves it,
        // so restore can put back exactly what changed. It is on disk
        // before COMMIT: a change that commits always has its backup.
        let changes = row_changes(&tx, &locked).await?;
        let backup = Backup::new(
            REPAIR,
            &self.subject(),
            source,
            changes.into_iter().map(BackupItem::RegistryDb).collect(),
        );
        if let Err(e) = backups.write(&backup) {
            tx.rollback().await;
            return Err(e);
        }
        tx.commit().await
    }

    async fn verify(&mut self, ctx: &Ctx) -> Result<Verification> {
        let db = ctx.db().await?;
        let mut problems = vec![];
        // One read for every target, however many `--all` relinked.
        let ids: Vec<i32> = self.targets.iter().map(|t| t.user_id).collect();
        let links = db.links_of_users(&ids).await?;
        for t in &self.targets {
            match &t.change {
                UserChange::Relink { link_id, new, .. } => {
                    if !links
                        .iter()
                        .any(|l| l.link_id == *link_id && &l.subiss == new)
                    {
                        problems.push(format!(
                            "{}'s link does not hold the new subject",
                            t.username
                        ));
                    }
                }
                UserChange::SoftDelete { .. } => {
                    if links.iter().any(|l| l.user_id == t.user_id)
                        || db.membership_count(t.user_id).await? > 0
                    {
                        problems.push(format!("{} still has links or memberships", t.username));
                    }
                }
                UserChange::Delete { .. } => {
                    if db
                        .user_by_name(&t.username)
                        .await?
                        .is_some_and(|u| u.user_id == t.user_id)
                    {
                        problems.push(format!("{} is still there", t.username));
                    }
                }
            }
        }
        // The diagnosis must no longer name a repaired user.
        let again = diagnose(ctx).await?;
        for f in &again.findings {
            let uid = f.evidence.get("user_id").and_then(|v| v.as_i64());
            if self
                .targets
                .iter()
                .any(|t| Some(i64::from(t.user_id)) == uid)
            {
                problems.push(format!(
                    "diagnose still reports {}: {}",
                    f.subject, f.summary
                ));
            }
        }
        Ok(if problems.is_empty() {
            Verification::Verified
        } else {
            Verification::NotVerified(problems.join("; "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::identity::MatchedBy;
    use super::*;
    use std::collections::BTreeMap;

    const ISS: &str = "https://kc.example.com/realms/otomi";

    #[test]
    fn splits_sub_and_issuer() {
        let split = |v: &str| Subiss::stored(v.to_string()).split(ISS);
        assert_eq!(split(&format!("abc{ISS}")), ("abc".into(), ISS.into()));
        assert_eq!(
            split(&format!("abc{ISS}/")),
            ("abc".into(), format!("{ISS}/"))
        );
        assert_eq!(
            split("abchttps://old.example.com/realms/otomi"),
            ("abc".into(), "https://old.example.com/realms/otomi".into())
        );
        assert_eq!(split("plain"), ("plain".into(), String::new()));
        assert!(Subiss::new(&"x".repeat(250), ISS).is_err());
    }

    fn link(id: i32, username: &str, sub: &str, issuer: &str) -> OidcLink {
        OidcLink {
            link_id: id,
            user_id: id + 10,
            username: username.into(),
            email: Some(username.into()),
            user_deleted: false,
            sysadmin: false,
            subiss: Subiss::new(sub, issuer).unwrap(),
        }
    }

    fn kc(id: &str, username: &str, email: &str, verified: bool) -> KeycloakUser {
        KeycloakUser {
            id: id.into(),
            username: username.into(),
            email: Some(email.into()),
            email_verified: verified,
        }
    }

    #[test]
    fn stale_links_follow_keycloak_only_when_certain() {
        let users = vec![
            kc("alice-new", "alice", "alice@example.com", true),
            kc("mallory", "mallory", "alice@example.com", false),
            kc("bob-new", "bob", "bob@example.com", false),
            kc("carol", "carol", "carol@example.com", true),
        ];
        let dir = Directory::new(&users);
        let links = vec![
            link(1, "alice@example.com", "alice-old", ISS),
            link(2, "bob@example.com", "bob-old", ISS),
            link(3, "carol@example.com", "carol", ISS),
            link(4, "dave@example.com", "dave-old", ISS),
            link(
                5,
                "carol@example.com",
                "carol",
                "https://old.example.com/realms/otomi",
            ),
        ];
        let stale = stale_links(links, ISS, &UsernameClaim::Email, Some(&dir));
        let by_link: BTreeMap<i32, &Identity> = stale
            .iter()
            .map(|s| (s.link.link_id, &s.identity))
            .collect();
        // alice: the verified account wins over the look-alike.
        assert!(matches!(by_link[&1], Identity::Certain { user, .. } if user.id == "alice-new"));
        // bob: only an unverified email: weak.
        assert!(matches!(by_link[&2], Identity::Weak { .. }));
        // carol's sub is still a Keycloak user: her link works.
        assert!(!by_link.contains_key(&3));
        // dave left Keycloak and nobody could be him: nothing to relink.
        assert!(!by_link.contains_key(&4));
        // another issuer always fails at login.
        assert!(
            matches!(by_link[&5], Identity::Certain { user, by: MatchedBy::VerifiedEmail } if user.id == "carol")
        );
    }
}

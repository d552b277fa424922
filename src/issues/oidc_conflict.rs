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

use std::collections::BTreeMap;

use anyhow::Result;
use serde_json::json;

use crate::backup::{Backup, BackupItem};
use crate::cli::{OidcConflictArgs, Strategy};
use crate::clients::registry_db::{CommitError, HarborSettings, IdpIdentity, OidcLink, RegistryDb};
use crate::context::Ctx;
use crate::outcome::{incomplete, refused};
use crate::repair::{shell_quote, BackupSink, Repair, Verification};
use crate::report::{CheckOutcome, Finding, PlanStep, Severity};

pub const CHECK: &str = "oidc-users";
pub const RUNBOOK: &str = "oidc-conflict";
const REPAIR: &str = "oidc-conflict";
/// `oidc_user.subiss` is varchar(255).
const SUBISS_MAX: usize = 255;
/// The local admin account, which is never changed.
const LOCAL_ADMIN_ID: i32 = 1;

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

async fn current_issuer(ctx: &Ctx, settings: &HarborSettings) -> Result<CurrentIssuer> {
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

/// Splits a stored sub+issuer into its parts. Against the current issuer
/// the split is exact; otherwise the issuer is taken to start at the first
/// `http://` or `https://` (Keycloak's subs are UUIDs, which never hold one).
pub fn split_subiss(subiss: &str, issuer: &str) -> (String, String) {
    for candidate in [issuer.to_string(), format!("{issuer}/")] {
        if let Some(sub) = subiss.strip_suffix(&candidate) {
            return (sub.to_string(), candidate);
        }
    }
    let at = ["https://", "http://"]
        .iter()
        .filter_map(|p| subiss.find(p))
        .min();
    match at {
        Some(i) => (subiss[..i].to_string(), subiss[i..].to_string()),
        None => (subiss.to_string(), String::new()),
    }
}

/// A link that will make its user's next login fail.
#[derive(Debug, Clone)]
struct StaleLink {
    link: OidcLink,
    /// Keycloak's current identity for the user, when known.
    idp: Option<IdpIdentity>,
    matched_by: Option<String>,
}

/// Everything the diagnosis found, before it becomes findings.
struct Diagnosis {
    auth_mode: Option<String>,
    issuer: CurrentIssuer,
    keycloak_used: bool,
    stale: Vec<StaleLink>,
    leftover: Vec<OidcLink>,
    several: Vec<crate::clients::registry_db::MultiplyLinkedUser>,
    unlinked: Vec<crate::clients::registry_db::HarborUser>,
}

async fn examine(ctx: &Ctx) -> Result<Diagnosis> {
    let db = ctx.db().await?;
    let settings = db.harbor_settings().await?;
    let issuer = current_issuer(ctx, &settings).await?;
    let mut stale: BTreeMap<i32, StaleLink> = db
        .links_with_other_issuer(&issuer.url)
        .await?
        .into_iter()
        .map(|link| {
            (
                link.link_id,
                StaleLink {
                    link,
                    idp: None,
                    matched_by: None,
                },
            )
        })
        .collect();
    let keycloak = ctx.keycloak().await?;
    if let Some(kc) = keycloak {
        let users = kc.users().await?;
        for d in db.links_differing_from_idp(&issuer.url, users).await? {
            let entry = stale.entry(d.link.link_id).or_insert_with(|| StaleLink {
                link: d.link.clone(),
                idp: None,
                matched_by: None,
            });
            entry.idp = Some(d.idp);
            entry.matched_by = Some(d.matched_by);
        }
        // Links with another issuer whose user Keycloak still knows under
        // the same id only need the issuer fixed: fill in the identity.
        let missing: Vec<i32> = stale
            .values()
            .filter(|s| s.idp.is_none())
            .map(|s| s.link.link_id)
            .collect();
        if !missing.is_empty() {
            let by_name: BTreeMap<String, &IdpIdentity> = users
                .iter()
                .map(|u| (u.username.to_lowercase(), u))
                .collect();
            for id in missing {
                let s = stale.get_mut(&id).expect("present");
                if let Some(u) = by_name.get(&s.link.username.to_lowercase()) {
                    s.idp = Some((*u).clone());
                    s.matched_by = Some("username".into());
                }
            }
        }
    }
    let oidc_mode = settings.auth_mode.as_deref() == Some("oidc_auth");
    Ok(Diagnosis {
        auth_mode: settings.auth_mode.clone(),
        issuer,
        keycloak_used: keycloak.is_some(),
        stale: stale.into_values().collect(),
        leftover: db.links_of_deleted_users().await?,
        several: db.users_with_several_links().await?,
        unlinked: if oidc_mode {
            db.users_without_link().await?
        } else {
            vec![]
        },
    })
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
        "auth_mode: {}; issuer {} (from {}); Keycloak {}",
        d.auth_mode.as_deref().unwrap_or("unset"),
        d.issuer.url,
        d.issuer.source.describe(),
        if d.keycloak_used {
            "compared"
        } else {
            "not configured"
        }
    ));
    for s in &d.stale {
        let (stored_sub, stored_issuer) = split_subiss(&s.link.subiss, &d.issuer.url);
        let who = &s.link.username;
        let mut f = Finding::new(CHECK, Severity::Problem, format!("user {who}"), "", RUNBOOK)
            .evidence("stored_sub", stored_sub.clone())
            .evidence("stored_issuer", stored_issuer.clone())
            .evidence("issuer", d.issuer.url.clone())
            .evidence("issuer_source", d.issuer.source.describe())
            .evidence("user_id", s.link.user_id)
            .evidence("oidc_user_id", s.link.link_id);
        match &s.idp {
            Some(idp) => {
                f = f
                    .evidence("keycloak_sub", idp.id.clone())
                    .evidence("matched_by", s.matched_by.clone().unwrap_or_default())
                    .repair(fix_command(who));
                f.summary = if idp.id != stored_sub {
                    format!("{who}'s Keycloak id changed; their next login will fail with a 409 conflict")
                } else {
                    format!("{who}'s link names an old issuer; their next login will fail with a 409 conflict")
                };
            }
            None => {
                f.summary = format!(
                    "{who}'s link names another issuer ({stored_issuer}); their next login will fail with a \
                     409 conflict. Find their new Keycloak id and run `{} --new-sub <ID>`, or give the \
                     --keycloak-* options so the doctor can look it up",
                    fix_command(who)
                );
                if d.keycloak_used {
                    f.summary = format!(
                        "{who}'s link names another issuer ({stored_issuer}) and Keycloak has no user {who}; \
                         their next login will fail with a 409 conflict. If they left, remove them with `{} \
                         --strategy soft-delete`; else relink with --new-sub <ID>",
                        fix_command(who)
                    );
                }
            }
        }
        out.findings.push(f);
    }
    for l in &d.leftover {
        let (sub, iss) = split_subiss(&l.subiss, &d.issuer.url);
        out.findings.push(
            Finding::new(
                CHECK,
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
    Ok(out)
}

/// One user's planned change.
#[derive(Debug, Clone)]
enum UserChange {
    Relink {
        link_id: i32,
        old_subiss: String,
        new_subiss: String,
    },
    SoftDelete {
        already_deleted: bool,
    },
    Delete,
}

#[derive(Debug, Clone)]
struct Target {
    user_id: i32,
    username: String,
    change: UserChange,
}

/// `fix oidc-conflict`.
pub struct OidcConflictRepair {
    args: OidcConflictArgs,
    targets: Vec<Target>,
    notes: Vec<String>,
    issuer: Option<CurrentIssuer>,
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

    async fn plan_one(&mut self, ctx: &Ctx, db: &RegistryDb, name: &str) -> Result<Vec<PlanStep>> {
        let user = db.user_by_name(name).await?.ok_or_else(|| {
            refused(format!(
                "Harbor has no user named {name:?}; check the spelling (usernames are exact; a deleted \
                 user is found by its renamed name, e.g. bob#7)"
            ))
        })?;
        if user.user_id == LOCAL_ADMIN_ID {
            return Err(refused(
                "the local admin account (user_id 1) is never changed by harbor-doctor",
            ));
        }
        let links = db.links_of_users(&[user.user_id]).await?;
        let new_sub = match self.args.new_sub.as_deref() {
            Some(s) => {
                let s = s.trim();
                if s.is_empty() || s.chars().any(char::is_whitespace) {
                    return Err(refused(
                        "--new-sub is empty or holds white space; give the user's Keycloak id, e.g. --new-sub 3f2c6a1e-...",
                    ));
                }
                Some(s.to_string())
            }
            None if self.args.strategy.is_none()
                || self.args.strategy == Some(Strategy::Relink) =>
            {
                match ctx.keycloak().await? {
                    Some(kc) => kc
                        .find_user(&user.username, user.email.as_deref())
                        .await?
                        .map(|u| u.id),
                    None => None,
                }
            }
            None => None,
        };
        let strategy = match (self.args.strategy, &new_sub) {
            (Some(s), _) => s,
            (None, Some(_)) => Strategy::Relink,
            (None, None) => {
                return Err(refused(format!(
                    "no new subject is known for {name} (no --new-sub, and Keycloak {}), and a destructive \
                     repair is never the default. Give --new-sub <KEYCLOAK-ID> to relink, or name \
                     --strategy soft-delete or --strategy delete",
                    if ctx.keycloak().await?.is_some() { "has no such user" } else { "is not configured" }
                )))
            }
        };
        let target = |change| Target {
            user_id: user.user_id,
            username: user.username.clone(),
            change,
        };
        match strategy {
            Strategy::Relink => {
                let Some(new_sub) = new_sub else {
                    return Err(refused(format!(
                        "relink needs {name}'s new subject: give --new-sub <KEYCLOAK-ID>, or the --keycloak-* \
                         options so the doctor can look it up"
                    )));
                };
                if user.deleted {
                    return Err(refused(format!(
                        "{name} is a deleted user; relinking it would not let anyone log in"
                    )));
                }
                let issuer = self.issuer(ctx, db).await?;
                let new_subiss = format!("{new_sub}{}", issuer.url);
                if new_subiss.chars().count() > SUBISS_MAX {
                    return Err(refused(format!(
                        "the new subject plus the issuer is {} characters, but oidc_user.subiss holds at most \
                         {SUBISS_MAX}; check --new-sub and the issuer ({})",
                        new_subiss.chars().count(),
                        issuer.url
                    )));
                }
                let link = match links.as_slice() {
                    [] => {
                        return Err(refused(format!(
                            "{name} has no OIDC link to relink; there is nothing for Harbor to match. If they \
                             are a local account, see `harbor-doctor runbook oidc-conflict`"
                        )))
                    }
                    [one] => one.clone(),
                    many => {
                        if many.iter().any(|l| l.subiss == new_subiss) {
                            return Err(refused(format!(
                                "{name} has {} OIDC links and one already matches the new subject; remove the \
                                 others by hand (runbook oidc-conflict)",
                                many.len()
                            )));
                        }
                        return Err(refused(format!(
                            "{name} has {} OIDC links, so which to relink is ambiguous; remove the stale ones \
                             by hand first (runbook oidc-conflict)",
                            many.len()
                        )));
                    }
                };
                if link.subiss == new_subiss {
                    self.notes.push(format!(
                        "{name} is already linked to the current subject and issuer."
                    ));
                    return Ok(vec![]);
                }
                if let Some(holder) = db.link_holding(&new_subiss).await? {
                    return Err(refused(format!(
                        "the new subject is already held by OIDC link {} of user {}{}; repair that first \
                         (e.g. `{} --strategy soft-delete` if that user is gone)",
                        holder.link_id,
                        holder.username,
                        if holder.user_deleted { " (a deleted user)" } else { "" },
                        fix_command(&holder.username)
                    )));
                }
                let step = PlanStep::new(
                    "update",
                    format!("oidc_user id={} (user {name})", link.link_id),
                    format!("subiss: {}\n    -> {new_subiss}", link.subiss),
                );
                self.targets.push(target(UserChange::Relink {
                    link_id: link.link_id,
                    old_subiss: link.subiss,
                    new_subiss,
                }));
                Ok(vec![step])
            }
            Strategy::SoftDelete | Strategy::Delete => {
                if user.sysadmin {
                    return Err(refused(format!(
                        "{name} is a Harbor system administrator; harbor-doctor relinks administrators but \
                         never deletes them. Remove the admin flag in Harbor first if they really must go"
                    )));
                }
                let members = db.membership_count(user.user_id).await?;
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
                        format!("subiss {}", l.subiss),
                    ));
                }
                if strategy == Strategy::Delete {
                    let owned = db.projects_owned_by(user.user_id).await?;
                    if !owned.is_empty() {
                        return Err(refused(format!(
                            "{name} owns project(s) {}; project.owner_id refers to the user with no cascade, so a \
                             hard delete would fail half-way. Use --strategy soft-delete (Harbor's own way, keeps the \
                             row) or transfer the projects first",
                            owned.join(", ")
                        )));
                    }
                    steps.push(PlanStep::new(
                        "delete",
                        format!("harbor_user user_id={}", user.user_id),
                        format!("user {name}"),
                    ));
                    self.targets.push(target(UserChange::Delete));
                } else {
                    if !user.deleted {
                        let suffix = format!("#{}", user.user_id);
                        steps.push(PlanStep::new(
                            "update",
                            format!("harbor_user user_id={}", user.user_id),
                            format!(
                                "username {name} -> {}{suffix}; email {} ; deleted -> true",
                                name,
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
                    self.targets.push(target(UserChange::SoftDelete {
                        already_deleted: user.deleted,
                    }));
                }
                Ok(steps)
            }
        }
    }

    async fn issuer(&mut self, ctx: &Ctx, db: &RegistryDb) -> Result<CurrentIssuer> {
        if self.issuer.is_none() {
            let settings = db.harbor_settings().await?;
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
        if ctx.keycloak().await?.is_none() {
            return Err(refused(
                "--all needs Keycloak to learn every user's current subject: give --keycloak-url, \
                 --keycloak-username and --keycloak-password (or the KEYCLOAK_* variables)",
            ));
        }
        let d = examine(ctx).await?;
        self.issuer = Some(d.issuer.clone());
        let mut steps = vec![];
        let mut claimed = std::collections::HashSet::new();
        for s in d.stale {
            let who = &s.link.username;
            let Some(idp) = s.idp else {
                self.notes.push(format!(
                    "Left alone: {who} (Keycloak has no such user; see `{}`).",
                    fix_command(who)
                ));
                continue;
            };
            if s.link.user_id == LOCAL_ADMIN_ID {
                self.notes
                    .push("Left alone: the local admin account (never changed).".into());
                continue;
            }
            let new_subiss = format!("{}{}", idp.id, d.issuer.url);
            if new_subiss.chars().count() > SUBISS_MAX {
                self.notes.push(format!(
                    "Left alone: {who} (new sub+issuer longer than {SUBISS_MAX} characters)."
                ));
                continue;
            }
            if let Some(holder) = db.link_holding(&new_subiss).await? {
                self.notes.push(format!(
                    "Left alone: {who} (the new subject is held by OIDC link {} of user {}; repair that first).",
                    holder.link_id, holder.username
                ));
                continue;
            }
            if !claimed.insert(new_subiss.clone()) {
                self.notes.push(format!(
                    "Left alone: {who} (another user matched the same Keycloak id)."
                ));
                continue;
            }
            steps.push(PlanStep::new(
                "update",
                format!("oidc_user id={} (user {who})", s.link.link_id),
                format!("subiss: {}\n    -> {new_subiss}", s.link.subiss),
            ));
            self.targets.push(Target {
                user_id: s.link.user_id,
                username: who.clone(),
                change: UserChange::Relink {
                    link_id: s.link.link_id,
                    old_subiss: s.link.subiss,
                    new_subiss,
                },
            });
        }
        Ok(steps)
    }
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
        let tx = db.begin(ctx.lock_wait()).await?;
        // Lock in user_id order, the same order every repair uses.
        let mut order: Vec<&Target> = self.targets.iter().collect();
        order.sort_by_key(|t| t.user_id);
        let mut images = vec![];
        for t in &order {
            let Some((user, rows)) = tx.lock_user(t.user_id).await? else {
                tx.rollback().await;
                return Err(refused(format!(
                    "user {} disappeared since the plan was made; nothing was changed",
                    t.username
                )));
            };
            // The plan was made without locks: check it still holds.
            let changed_since = match &t.change {
                UserChange::Relink {
                    link_id,
                    old_subiss,
                    ..
                } => !rows.iter().any(|r| {
                    r.table == "oidc_user"
                        && r.key == i64::from(*link_id)
                        && r.row.get("subiss").and_then(|v| v.as_str()) == Some(old_subiss.as_str())
                }),
                UserChange::SoftDelete { already_deleted } => user.deleted != *already_deleted,
                UserChange::Delete => user.deleted,
            };
            if changed_since || user.username != t.username {
                tx.rollback().await;
                return Err(refused(format!(
                    "user {} changed since the plan was made; nothing was changed. Run the fix again to see a fresh plan",
                    t.username
                )));
            }
            if let UserChange::Delete = t.change {
                let owned = tx.projects_owned_by(t.user_id).await?;
                if !owned.is_empty() {
                    tx.rollback().await;
                    return Err(refused(format!(
                        "{} now owns project(s) {}; nothing was changed (use --strategy soft-delete)",
                        t.username,
                        owned.join(", ")
                    )));
                }
            }
            if let UserChange::Relink { new_subiss, .. } = &t.change {
                if let Some((link, holder)) = tx.link_holding(new_subiss).await? {
                    tx.rollback().await;
                    return Err(refused(format!(
                        "the new subject for {} was taken by OIDC link {link} (user_id {holder}) since the plan was made; nothing was changed",
                        t.username
                    )));
                }
            }
            images.extend(rows);
        }
        let backup = Backup::new(
            REPAIR,
            &self.subject(),
            db.describe(),
            images.into_iter().map(BackupItem::RegistryDb).collect(),
        );
        if let Err(e) = backups.write(&backup) {
            tx.rollback().await;
            return Err(e);
        }
        for t in &order {
            match &t.change {
                UserChange::Relink {
                    link_id,
                    new_subiss,
                    ..
                } => tx.relink(*link_id, new_subiss).await?,
                UserChange::SoftDelete { already_deleted } => {
                    tx.soft_delete_user(t.user_id, *already_deleted).await?
                }
                UserChange::Delete => tx.hard_delete_user(t.user_id).await?,
            }
        }
        match tx.commit().await {
            Ok(()) => Ok(()),
            Err(CommitError::RolledBack(msg)) => Err(refused(format!(
                "the registry database refused to commit ({msg}) and rolled back; nothing was changed"
            ))),
            Err(CommitError::OutcomeUnknown(msg)) => Err(incomplete(format!(
                "the connection to the registry database broke during COMMIT ({msg}), so whether the change \
                 was applied is unknown. Run `harbor-doctor diagnose oidc-users` to see the state; the backup \
                 above holds the rows as they were (`harbor-doctor restore <file>` puts them back)"
            ))),
        }
    }

    async fn verify(&mut self, ctx: &Ctx) -> Result<Verification> {
        let db = ctx.db().await?;
        let mut problems = vec![];
        // One read for every target, however many `--all` relinked.
        let ids: Vec<i32> = self.targets.iter().map(|t| t.user_id).collect();
        let links = db.links_of_users(&ids).await?;
        for t in &self.targets {
            match &t.change {
                UserChange::Relink {
                    link_id,
                    new_subiss,
                    ..
                } => {
                    if !links
                        .iter()
                        .any(|l| l.link_id == *link_id && &l.subiss == new_subiss)
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
                UserChange::Delete => {
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
    use super::split_subiss;

    #[test]
    fn splits_sub_and_issuer() {
        let iss = "https://kc.example.com/realms/otomi";
        assert_eq!(
            split_subiss(&format!("abc{iss}"), iss),
            ("abc".into(), iss.into())
        );
        assert_eq!(
            split_subiss(&format!("abc{iss}/"), iss),
            ("abc".into(), format!("{iss}/"))
        );
        assert_eq!(
            split_subiss("abchttps://old.example.com/realms/otomi", iss),
            ("abc".into(), "https://old.example.com/realms/otomi".into())
        );
        assert_eq!(split_subiss("plain", iss), ("plain".into(), String::new()));
    }
}

//! The runbooks, embedded: the human version of each known-issue module,
//! for when the doctor cannot run.

/// (id, one-line summary, text).
pub const RUNBOOKS: &[(&str, &str, &str)] = &[
    (
        "connectivity",
        "Harbor, its database or Keycloak unreachable, or credentials refused; check connectivity",
        include_str!("../runbooks/connectivity.md"),
    ),
    (
        "provisioning",
        "teams whose project, robots, pull/push Secrets or ServiceAccount drifted; check teams",
        include_str!("../runbooks/provisioning.md"),
    ),
    (
        "oidc-conflict",
        "users who cannot log in after Keycloak was redeployed (409 conflict); check oidc-users",
        include_str!("../runbooks/oidc-conflict.md"),
    ),
    (
        "cli-login",
        "docker login with a CLI secret fails unless the user just used the web UI",
        include_str!("../runbooks/cli-login.md"),
    ),
    (
        "multi-attach",
        "a Harbor pod stuck in ContainerCreating on a Multi-Attach error after a rollout",
        include_str!("../runbooks/multi-attach.md"),
    ),
    (
        "registry-strategy",
        "Deployments with ReadWriteOnce volumes that roll with RollingUpdate instead of Recreate",
        include_str!("../runbooks/registry-strategy.md"),
    ),
];

/// Check ids whose runbook has another name.
const ALIASES: &[(&str, &str)] = &[("oidc-users", "oidc-conflict"), ("teams", "provisioning")];

pub fn find(id: &str) -> Option<&'static str> {
    let id = ALIASES
        .iter()
        .find(|(alias, _)| *alias == id)
        .map(|(_, real)| *real)
        .unwrap_or(id);
    RUNBOOKS
        .iter()
        .find(|(rid, _, _)| *rid == id)
        .map(|(_, _, text)| *text)
}

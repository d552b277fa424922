//! Bearer-token authentication and RBAC-like authorization.
//!
//! Each token belongs to a user with a list of rules shaped like RBAC
//! PolicyRules; a rule limited to namespaces stands for a RoleBinding, an
//! unlimited one for a ClusterRoleBinding. Discovery is open to every
//! authenticated user, as the `system:discovery` role makes it on a real
//! cluster.

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// One permission: verbs on resources of API groups, optionally only for
/// some object names and only in some namespaces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyRule {
    pub verbs: Vec<String>,
    /// "" is the core group; "*" any group.
    pub api_groups: Vec<String>,
    /// Plural resource names; `pods/portforward` for a subresource,
    /// `pods/*` and `*/status` as RBAC allows.
    pub resources: Vec<String>,
    /// When not empty, only these object names (never list or create).
    pub resource_names: Vec<String>,
    /// When not empty, the rule holds only in these namespaces and never
    /// for cluster-scoped resources.
    pub namespaces: Vec<String>,
}

fn strings(xs: &[&str]) -> Vec<String> {
    xs.iter().map(|s| s.to_string()).collect()
}

impl PolicyRule {
    pub fn new(verbs: &[&str], api_groups: &[&str], resources: &[&str]) -> Self {
        Self {
            verbs: strings(verbs),
            api_groups: strings(api_groups),
            resources: strings(resources),
            ..Self::default()
        }
    }

    /// Everything, everywhere: cluster-admin.
    pub fn admin() -> Self {
        Self::new(&["*"], &["*"], &["*"])
    }

    /// Limits the rule to namespaces, as a RoleBinding would.
    pub fn in_namespaces(mut self, namespaces: &[&str]) -> Self {
        self.namespaces = strings(namespaces);
        self
    }

    /// Limits the rule to named objects.
    pub fn named(mut self, names: &[&str]) -> Self {
        self.resource_names = strings(names);
        self
    }

    /// The rules of a ClusterRole or Role manifest (YAML or JSON; in a
    /// multi-document file, the role called `role_name`, or the only one).
    pub fn from_role_yaml(yaml: &str, role_name: Option<&str>) -> Result<Vec<PolicyRule>> {
        use serde::Deserialize;
        let mut found = Vec::new();
        for doc in serde_yaml::Deserializer::from_str(yaml) {
            let v = Value::deserialize(doc).context("parsing a role manifest")?;
            let kind = v["kind"].as_str().unwrap_or_default();
            if kind != "ClusterRole" && kind != "Role" {
                continue;
            }
            if let Some(want) = role_name {
                if v["metadata"]["name"].as_str() != Some(want) {
                    continue;
                }
            }
            found.push(v);
        }
        if found.len() != 1 {
            bail!(
                "expected exactly one Role or ClusterRole{} in the manifest, found {}",
                role_name.map(|n| format!(" named {n}")).unwrap_or_default(),
                found.len()
            );
        }
        let list = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(found[0]["rules"]
            .as_array()
            .map(|rules| {
                rules
                    .iter()
                    .map(|r| PolicyRule {
                        verbs: list(&r["verbs"]),
                        api_groups: list(&r["apiGroups"]),
                        resources: list(&r["resources"]),
                        resource_names: list(&r["resourceNames"]),
                        namespaces: Vec::new(),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Whether this rule allows the request.
    pub fn allows(&self, req: &AccessRequest<'_>) -> bool {
        let any = |xs: &[String], x: &str| xs.iter().any(|s| s == "*" || s == x);
        if !any(&self.verbs, req.verb) || !any(&self.api_groups, req.group) {
            return false;
        }
        let resource_ok = self.resources.iter().any(|r| {
            if r == "*" {
                return true;
            }
            match req.subresource {
                None => r == req.resource,
                Some(sub) => {
                    let (rr, rs) = r.split_once('/').unwrap_or((r, ""));
                    (rr == req.resource || rr == "*") && (rs == sub || rs == "*")
                }
            }
        });
        if !resource_ok {
            return false;
        }
        if !self.resource_names.is_empty()
            && !req
                .name
                .is_some_and(|n| self.resource_names.iter().any(|s| s == n))
        {
            return false;
        }
        if !self.namespaces.is_empty()
            && !req
                .namespace
                .is_some_and(|ns| self.namespaces.iter().any(|s| s == ns))
        {
            return false;
        }
        true
    }
}

/// What a request asks to do, in RBAC's terms.
#[derive(Debug, Clone, Copy)]
pub struct AccessRequest<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub subresource: Option<&'a str>,
    pub name: Option<&'a str>,
    pub namespace: Option<&'a str>,
}

/// A user known by a bearer token.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: String,
    pub rules: Vec<PolicyRule>,
}

impl Principal {
    pub fn can(&self, req: &AccessRequest<'_>) -> bool {
        self.rules.iter().any(|r| r.allows(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_like_rbac() {
        let r = PolicyRule::new(&["get", "list"], &[""], &["pods", "pods/portforward"])
            .in_namespaces(&["harbor"]);
        let req = |verb, sub, ns| AccessRequest {
            verb,
            group: "",
            resource: "pods",
            subresource: sub,
            name: Some("p"),
            namespace: ns,
        };
        assert!(r.allows(&req("get", None, Some("harbor"))));
        assert!(r.allows(&req("get", Some("portforward"), Some("harbor"))));
        assert!(!r.allows(&req("get", Some("log"), Some("harbor"))));
        assert!(!r.allows(&req("delete", None, Some("harbor"))));
        assert!(!r.allows(&req("get", None, Some("other"))));
        assert!(!r.allows(&req("get", None, None)));
    }

    #[test]
    fn parses_cluster_role() {
        let yaml = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: r}\nrules:\n- apiGroups: [apps]\n  resources: [deployments]\n  verbs: [get, patch]\n";
        let rules = PolicyRule::from_role_yaml(yaml, None).unwrap();
        assert_eq!(
            rules,
            vec![PolicyRule::new(
                &["get", "patch"],
                &["apps"],
                &["deployments"]
            )]
        );
    }
}

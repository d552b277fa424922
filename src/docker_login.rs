//! `docker-login --team ID [--robot push|pull|builds] [--print]`: log the
//! docker CLI in with a team's robot account, the lasting workaround for CLI
//! secrets that stop working (runbook cli-login).
//!
//! The robot's credentials come from the team's `harbor-pushsecret` (or
//! `harbor-pullsecret`, or the builds robot's Opaque
//! `harbor-pushsecret-builds` with its `config.json` key) in namespace
//! `team-<id>`, read with the user's own
//! Kubernetes credentials. They are tried once against Harbor's registry
//! token service (a rejected login locks the name for a while, so never
//! twice), then stored where the docker CLI looks for them (see
//! `clients::docker_config`). `--print` prints a command line that fetches
//! the password itself, so the password never appears in what is printed.

use std::io::Write;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cli::DockerLoginArgs;
use crate::clients::docker_config::{self, CredentialStore, DockerConfig};
use crate::clients::harbor::{Harbor, HarborSettings, Secret, TokenCheck};
use crate::context::Ctx;
use crate::issues::teams::model::{docker_auths, AuthEntry, RobotKind, TeamId};
use crate::outcome::{refused, ExitCode};
use crate::repair::shell_quote;

/// The team's namespace; refuses ids that cannot name one (the same rule
/// as `provision --team`).
pub fn team_namespace(team: &str) -> Result<String> {
    TeamId::parse(team).map(|t| t.name()).map_err(refused)
}

/// A robot's registry credentials, as read from a team's Secret.
#[derive(Debug, Clone)]
pub struct RobotLogin {
    /// The registry host (`host[:port]`), as docker names it.
    pub host: String,
    pub username: String,
    pub password: Secret,
}

/// The registry host docker uses for an `auths` key, which may be written as
/// a URL (`https://harbor.example.com/v2/`).
pub fn registry_host(key: &str) -> String {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    rest.split('/').next().unwrap_or(rest).to_string()
}

/// The robot's credentials from the docker config under `key` in its
/// Secret. With several registries in it, `prefer_host` (Harbor's host,
/// when known) picks one. Messages name the Secret, never its contents.
pub fn robot_login_from(
    data: &[u8],
    key: &str,
    secret: &str,
    prefer_host: Option<&str>,
) -> Result<RobotLogin> {
    let auths = docker_auths(data).map_err(|_| {
        refused(format!(
            "{secret} does not hold a docker config ({key} is not {{\"auths\": {{...}}}}); run \
             `harbor-doctor provision` for the team to write it again"
        ))
    })?;
    let mut entries: Vec<(String, AuthEntry)> = auths
        .into_iter()
        .map(|(k, v)| (registry_host(&k), v))
        .collect();
    let index = match (entries.len(), prefer_host) {
        (0, _) => {
            return Err(refused(format!(
                "{secret} names no registry (its auths are empty)"
            )))
        }
        (1, _) => 0,
        (_, Some(host)) if entries.iter().any(|(h, _)| h == host) => {
            entries.iter().position(|(h, _)| h == host).unwrap_or(0)
        }
        _ => {
            let hosts: Vec<&str> = entries.iter().map(|(h, _)| h.as_str()).collect();
            return Err(refused(format!(
                "{secret} holds credentials for several registries ({}); give --harbor-url to say which one \
                 is Harbor",
                hosts.join(", ")
            )));
        }
    };
    let (host, entry) = entries.swap_remove(index);
    let Some((username, password)) = entry.credentials() else {
        return Err(refused(format!(
            "{secret} has no username and password for {host}; run `harbor-doctor provision` for \
             the team to write it again"
        )));
    };
    Ok(RobotLogin {
        host,
        username,
        password: Secret::new(password),
    })
}

/// The kubectl options that reach the same cluster the doctor used.
pub struct KubectlTarget<'a> {
    pub kubeconfig: Option<&'a str>,
    pub context: Option<&'a str>,
}

/// A shell command line that logs docker in with the robot: kubectl reads
/// the Secret's `key`, jq takes the password out, docker reads it on stdin.
/// The password is not in it.
pub fn print_command(
    target: &KubectlTarget<'_>,
    namespace: &str,
    secret: &str,
    key: &str,
    host: &str,
    username: &str,
) -> String {
    let mut kubectl = vec!["kubectl".to_string()];
    if let Some(k) = target.kubeconfig {
        kubectl.push(format!("--kubeconfig {}", shell_quote(k)));
    }
    if let Some(c) = target.context {
        kubectl.push(format!("--context {}", shell_quote(c)));
    }
    // JSONPath needs the dots inside a key escaped.
    kubectl.push(format!(
        "-n {} get secret {} -o jsonpath='{{.data.{}}}'",
        shell_quote(namespace),
        shell_quote(secret),
        key.replace('.', "\\.")
    ));
    // The password, or the part of `auth` after the first colon.
    let jq = format!(
        "jq -r --arg host {} '.auths | to_entries | map(select(.key | sub(\"^https?://\"; \"\") | \
         sub(\"/.*$\"; \"\") == $host)) | .[0].value | .password // (.auth | @base64d | sub(\"^[^:]*:\"; \"\"))'",
        shell_quote(host)
    );
    format!(
        "{} | base64 -d | {jq} | docker login {} --username {} --password-stdin",
        kubectl.join(" "),
        shell_quote(host),
        shell_quote(username)
    )
}

/// What `docker-login -o json` prints.
#[derive(Serialize)]
struct LoginReport<'a> {
    registry: &'a str,
    username: &'a str,
    /// `docker-credential-<name>`, or the config file's path.
    stored_in: String,
    dry_run: bool,
}

/// `docker-login`.
pub async fn run(ctx: &Ctx, args: &DockerLoginArgs) -> Result<ExitCode> {
    let namespace = team_namespace(&args.team)?;
    let name = args.robot.secret_name();
    let key = args.robot.secret_key();
    let shown = format!("Secret {namespace}/{name}");
    // A docker config the CLI could not read either is refused before
    // anything else happens; --print leaves it alone.
    let config = if args.print {
        None
    } else {
        Some(DockerConfig::load(&docker_config::config_path()?)?)
    };
    let login = read_robot_login(ctx, &namespace, args.robot, &shown, &args.team).await?;

    let Some(config) = config else {
        let command = print_command(
            &KubectlTarget {
                kubeconfig: ctx.opts.kubeconfig.as_deref().and_then(|p| p.to_str()),
                context: ctx.opts.context.as_deref(),
            },
            &namespace,
            name,
            key,
            &login.host,
            &login.username,
        );
        if ctx.out.json() {
            ctx.out
                .print_json(&serde_json::json!({ "command": command }));
        } else {
            ctx.out.info(
                "Run this to log docker in with the robot (it needs kubectl, base64 and jq; the password \
                 is read from the Secret, never printed):",
            );
            writeln!(crate::pipe::stdout(), "{command}")?;
        }
        return Ok(ExitCode::Ok);
    };

    let store = config.store_for(&login.host);
    let helper = match &store {
        CredentialStore::Helper { name, chosen_by } => {
            let program = docker_config::helper_program(name);
            Some(docker_config::find_helper(name).ok_or_else(|| {
                refused(format!(
                    "the docker config {} keeps the credentials for {} in the credential helper {name:?} ({}), but \
                     the program {program} is not on PATH; nothing was stored. Install it, or run `harbor-doctor \
                     docker-login --team {} --print` and run the command it prints",
                    config.path().display(),
                    login.host,
                    chosen_by.key(),
                    shell_quote(&args.team)
                ))
            })?)
        }
        CredentialStore::File => None,
    };

    check_token(ctx, &login, &shown, &args.team).await?;

    let stored_in = match (&store, &helper) {
        (CredentialStore::Helper { name, .. }, _) => docker_config::helper_program(name),
        _ => config.path().display().to_string(),
    };
    if ctx.opts.dry_run {
        ctx.out.info(format!(
            "Dry run: Harbor accepts {}'s credentials; they would be stored for {} in {stored_in}. Nothing \
             was changed.",
            login.username, login.host
        ));
    } else {
        match &helper {
            Some(program) => {
                docker_config::store_with_helper(
                    program,
                    &login.host,
                    &login.username,
                    login.password.expose(),
                    ctx.timeout(),
                )
                .await?
            }
            None => config.write_auth(&login.host, &login.username, login.password.expose())?,
        }
        ctx.out.info(format!(
            "Logged in to {} as {} (the {} robot of team {}); the credentials are in {stored_in}.",
            login.host,
            login.username,
            args.robot.suffix(),
            args.team
        ));
    }
    if ctx.out.json() {
        ctx.out.print_json(&LoginReport {
            registry: &login.host,
            username: &login.username,
            stored_in,
            dry_run: ctx.opts.dry_run,
        });
    }
    Ok(ExitCode::Ok)
}

/// The robot's credentials from the team's Secret, read with the user's own
/// Kubernetes credentials.
async fn read_robot_login(
    ctx: &Ctx,
    namespace: &str,
    kind: RobotKind,
    shown: &str,
    team: &str,
) -> Result<RobotLogin> {
    let (name, key) = (kind.secret_name(), kind.secret_key());
    let kube = ctx.kube().await?;
    let secret: Option<k8s_openapi::api::core::v1::Secret> = kube
        .get_in(namespace, name)
        .await
        .with_context(|| {
            format!(
                "docker-login reads {shown} with your own Kubernetes credentials, which need permission to \
                 get secrets in namespace {namespace}"
            )
        })?;
    let Some(secret) = secret else {
        return Err(refused(format!(
            "there is no {shown}: team {team} is not provisioned, or its robot Secrets were removed. \
             `harbor-doctor provision --team {}` creates them (with Harbor admin rights)",
            shell_quote(team)
        )));
    };
    let data = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .ok_or_else(|| {
            refused(format!(
                "{shown} has no {key} key; `harbor-doctor provision --team {}` writes it again",
                shell_quote(team)
            ))
        })?;
    let harbor_host = ctx
        .opts
        .harbor_url
        .as_deref()
        .and_then(docker_config::host_of_url);
    robot_login_from(&data.0, key, shown, harbor_host.as_deref())
}

/// Tries the credentials once against Harbor's registry token service,
/// which is what `docker login` does.
async fn check_token(ctx: &Ctx, login: &RobotLogin, shown: &str, team: &str) -> Result<()> {
    let url = docker_config::registry_url(&login.host, ctx.opts.harbor_url.as_deref());
    let registry = Harbor::new(HarborSettings {
        url,
        username: login.username.clone(),
        password: None,
        ca_cert: ctx.opts.ca_cert.clone(),
        timeout: ctx.timeout(),
    })?;
    match registry
        .registry_token(&login.username, &login.password, None)
        .await?
    {
        TokenCheck::Accepted => Ok(()),
        TokenCheck::Rejected => Err(refused(format!(
            "Harbor rejected the credentials in {shown} (robot {}): the robot's secret no longer matches the \
             Secret, or the robot was disabled or deleted. Nothing was stored. `harbor-doctor provision --team \
             {}` repairs the robot and the Secret together",
            login.username,
            shell_quote(team)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use serde_json::json;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn names_secrets_and_namespaces() {
        assert_eq!(team_namespace("demo").unwrap(), "team-demo");
        // The ids `provision` refuses are refused here too (a--b, -a).
        for bad in [
            "",
            "Demo",
            "a/b",
            "x-",
            "a b",
            "a--b",
            "-a",
            &"x".repeat(59),
        ] {
            assert!(team_namespace(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reads_otomis_secret() {
        let data = json!({"auths": {"harbor.example.com": {
            "username": "otomi-team-demo-push", "password": "Pw1secret", "auth": b64("otomi-team-demo-push:Pw1secret")
        }}})
        .to_string();
        let login = robot_login_from(data.as_bytes(), ".dockerconfigjson", "s", None).unwrap();
        assert_eq!(login.host, "harbor.example.com");
        assert_eq!(login.username, "otomi-team-demo-push");
        assert_eq!(login.password.expose(), "Pw1secret");
    }

    #[test]
    fn falls_back_to_auth_and_normalises_the_host() {
        let data =
            json!({"auths": {"https://harbor.example.com:8443/v2/": {"auth": b64("robot$x:a:b")}}})
                .to_string();
        let login = robot_login_from(data.as_bytes(), ".dockerconfigjson", "s", None).unwrap();
        assert_eq!(login.host, "harbor.example.com:8443");
        assert_eq!(login.username, "robot$x");
        assert_eq!(
            login.password.expose(),
            "a:b",
            "only the first colon separates"
        );
    }

    #[test]
    fn picks_harbor_among_several_registries_or_refuses() {
        let data = json!({"auths": {
            "a.example.com": {"username": "u1", "password": "p1"},
            "b.example.com": {"username": "u2", "password": "p2"},
        }})
        .to_string();
        let login = robot_login_from(
            data.as_bytes(),
            ".dockerconfigjson",
            "s",
            Some("b.example.com"),
        )
        .unwrap();
        assert_eq!(login.username, "u2");
        let err = robot_login_from(data.as_bytes(), ".dockerconfigjson", "s", None).unwrap_err();
        assert!(format!("{err:#}").contains("a.example.com, b.example.com"));
    }

    #[test]
    fn refuses_broken_secrets_without_showing_them() {
        for data in [
            "not json SECRETVALUE".to_string(),
            json!({"auths": {}}).to_string(),
            json!({"auths": {"h": {"username": "u"}}}).to_string(),
            json!({"auths": {"h": {"auth": b64("SECRETVALUE")}}}).to_string(),
            json!({"auths": "SECRETVALUE"}).to_string(),
        ] {
            let err = robot_login_from(
                data.as_bytes(),
                ".dockerconfigjson",
                "team-x/harbor-pushsecret",
                None,
            )
            .unwrap_err();
            let msg = format!("{err:#}");
            assert!(msg.contains("team-x/harbor-pushsecret"), "{msg}");
            assert!(!msg.contains("SECRETVALUE"), "{msg}");
        }
    }

    #[test]
    fn the_printed_command_quotes_everything_and_holds_no_password() {
        let cmd = print_command(
            &KubectlTarget {
                kubeconfig: Some("/home/me/my config"),
                context: Some("prod"),
            },
            "team-demo",
            "harbor-pushsecret",
            ".dockerconfigjson",
            "harbor.example.com",
            "robot$team-demo-push",
        );
        assert!(cmd.starts_with(
            "kubectl --kubeconfig '/home/me/my config' --context prod -n team-demo get secret \
             harbor-pushsecret -o jsonpath='{.data.\\.dockerconfigjson}' | base64 -d"
        ));
        assert!(cmd.ends_with(
            "| docker login harbor.example.com --username 'robot$team-demo-push' --password-stdin"
        ));
        // The builds Secret's key, dot escaped for JSONPath.
        let cmd = print_command(
            &KubectlTarget {
                kubeconfig: None,
                context: None,
            },
            "team-demo",
            "harbor-pushsecret-builds",
            "config.json",
            "harbor.example.com",
            "otomi-team-demo-builds",
        );
        assert!(
            cmd.contains("get secret harbor-pushsecret-builds -o jsonpath='{.data.config\\.json}'"),
            "{cmd}"
        );
    }
}

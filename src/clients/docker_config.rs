//! The docker CLI's configuration file (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`) and its credential helpers.
//!
//! harbor-doctor logs the docker CLI in the way the CLI itself decides where
//! credentials go, so that `docker push` finds them where it looks:
//! - when `credHelpers` has an entry for the registry host, that helper
//!   (`docker-credential-<name>`) keeps them; an empty entry means the file;
//! - else when `credsStore` is set, that helper keeps them;
//! - else they go into `auths` as `{"auth": base64(user:password)}`.
//!
//! A helper receives `{"ServerURL","Username","Secret"}` as JSON on the stdin
//! of its `store` command; `auths` is then left alone.
//!
//! The file belongs to the user and to other tools, so writing `auths` is a
//! splice into the file's text: one range is replaced or one member inserted,
//! and every other byte (key order, unknown keys, formatting) stays as it
//! was. The result is written to a temporary file beside it, fsynced, and
//! renamed over it with mode 0600. A file that is not valid JSON, or whose
//! `auths`, `credHelpers` or `credsStore` has the wrong type (the docker CLI
//! would not load it either), is refused and left untouched.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Result;
use base64::Engine;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::clients::files;
use crate::outcome::refused;

/// Where a registry host's credentials are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialStore {
    /// The credential helper program `docker-credential-<name>`.
    Helper {
        name: String,
        chosen_by: HelperSource,
    },
    /// The config file's `auths`.
    File,
}

/// Which key of the config chose a helper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelperSource {
    /// `credHelpers` names a helper for this host.
    CredHelpers,
    /// `credsStore`, the helper for every host without its own.
    CredsStore,
}

impl HelperSource {
    pub fn key(self) -> &'static str {
        match self {
            HelperSource::CredHelpers => "credHelpers",
            HelperSource::CredsStore => "credsStore",
        }
    }
}

/// The docker config file as read, with the keys that decide where
/// credentials go.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    path: PathBuf,
    /// The file's text; None when there is no file yet.
    text: Option<String>,
    cred_helpers: Map<String, Value>,
    creds_store: Option<String>,
}

/// The config file the docker CLI reads: `$DOCKER_CONFIG/config.json`, else
/// `$HOME/.docker/config.json`.
pub fn config_path() -> Result<PathBuf> {
    locate(std::env::var_os("DOCKER_CONFIG"), std::env::var_os("HOME"))
}

fn locate(docker_config: Option<OsString>, home: Option<OsString>) -> Result<PathBuf> {
    if let Some(dir) = docker_config.filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("config.json"));
    }
    match home.filter(|h| !h.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".docker").join("config.json")),
        None => Err(refused(
            "cannot find the docker config: neither DOCKER_CONFIG nor HOME is set",
        )),
    }
}

impl DockerConfig {
    /// Reads the config at `path`. A missing file is an empty config, as for
    /// the docker CLI; an unreadable or invalid one is refused.
    pub fn load(path: &Path) -> Result<DockerConfig> {
        let text = match files::read_regular_file_if_exists(path, files::DOCKER_CONFIG_CAP) {
            Ok(Some(bytes)) => Some(String::from_utf8(bytes).map_err(|_| {
                invalid(path, "it is not UTF-8 text, so it is not JSON".to_string())
            })?),
            Ok(None) => None,
            Err(e) => return Err(unreadable(&e)),
        };
        let mut config = DockerConfig {
            path: path.to_path_buf(),
            text: None,
            cred_helpers: Map::new(),
            creds_store: None,
        };
        let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
            return Ok(config);
        };
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| invalid(path, format!("it is not valid JSON ({e})")))?;
        let Value::Object(top) = value else {
            return Err(invalid(path, "it is not a JSON object".into()));
        };
        match top.get("auths") {
            None | Some(Value::Null) => {}
            Some(Value::Object(auths)) => {
                if let Some((host, _)) = auths.iter().find(|(_, v)| !v.is_object()) {
                    return Err(invalid(path, format!("auths[{host:?}] is not an object")));
                }
            }
            Some(_) => return Err(invalid(path, "`auths` is not an object".into())),
        }
        match top.get("credHelpers") {
            None | Some(Value::Null) => {}
            Some(Value::Object(helpers)) => {
                if let Some((host, _)) = helpers.iter().find(|(_, v)| !v.is_string()) {
                    return Err(invalid(
                        path,
                        format!("credHelpers[{host:?}] is not a string"),
                    ));
                }
                config.cred_helpers = helpers.clone();
            }
            Some(_) => return Err(invalid(path, "`credHelpers` is not an object".into())),
        }
        match top.get("credsStore") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => config.creds_store = Some(s.clone()),
            Some(_) => return Err(invalid(path, "`credsStore` is not a string".into())),
        }
        config.text = Some(text);
        Ok(config)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the docker CLI keeps `host`'s credentials (docker/cli's
    /// `getConfiguredCredentialStore`).
    pub fn store_for(&self, host: &str) -> CredentialStore {
        if let Some(name) = self.cred_helpers.get(host).and_then(Value::as_str) {
            if name.is_empty() {
                return CredentialStore::File;
            }
            return CredentialStore::Helper {
                name: name.to_string(),
                chosen_by: HelperSource::CredHelpers,
            };
        }
        match self.creds_store.as_deref() {
            Some(name) if !name.is_empty() => CredentialStore::Helper {
                name: name.to_string(),
                chosen_by: HelperSource::CredsStore,
            },
            _ => CredentialStore::File,
        }
    }

    /// The file's text with `auths[host]` set to `{"auth": base64(user:password)}`
    /// and every other byte as it was.
    pub fn text_with_auth(&self, host: &str, username: &str, password: &str) -> Result<String> {
        let auth =
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        let new_text = match &self.text {
            None => splice::fresh_config(host, &auth),
            Some(text) => splice::set_auth(text, host, &auth),
        };
        self.check_only_auth_changed(&new_text, host, &auth)?;
        Ok(new_text)
    }

    /// A safety net under the splice: parsed, the new text must differ from
    /// the old in `auths[host]` alone.
    fn check_only_auth_changed(&self, new_text: &str, host: &str, auth: &str) -> Result<()> {
        let parse = |t: &str| serde_json::from_str::<Map<String, Value>>(t).ok();
        let mut old = match &self.text {
            None => Map::new(),
            Some(t) => parse(t).unwrap_or_default(),
        };
        let Some(mut new) = parse(new_text) else {
            return Err(self.splice_failed());
        };
        let mut old_auths = match old.remove("auths") {
            Some(Value::Object(a)) => a,
            _ => Map::new(),
        };
        let Some(Value::Object(mut new_auths)) = new.remove("auths") else {
            return Err(self.splice_failed());
        };
        let entry = new_auths.remove(host);
        old_auths.remove(host);
        if old != new || old_auths != new_auths || entry != Some(json!({ "auth": auth })) {
            return Err(self.splice_failed());
        }
        Ok(())
    }

    fn splice_failed(&self) -> anyhow::Error {
        refused(format!(
            "harbor-doctor could not edit the docker config {} without changing other entries (a bug); \
             it was left untouched. Use --print instead",
            self.path.display()
        ))
    }

    /// Writes `auths[host]`, atomically and with mode 0600. Refuses, leaving
    /// the file as it is, when another program changed it since it was read.
    pub fn write_auth(&self, host: &str, username: &str, password: &str) -> Result<()> {
        let text = self.text_with_auth(host, username, password)?;
        write_atomically(&self.path, &text, self.text.as_deref())
    }
}

fn unreadable(e: &files::FileError) -> anyhow::Error {
    refused(format!(
        "cannot use the docker config: {e}. Nothing was changed; `harbor-doctor docker-login --print` \
         prints a command that logs in without harbor-doctor reading it"
    ))
}

fn invalid(path: &Path, what: String) -> anyhow::Error {
    refused(format!(
        "the docker config {} is not a valid docker config: {what}. It was left untouched; fix it or move \
         it aside and run again, or use --print",
        path.display()
    ))
}

/// Replaces the file at `path` with `text`: a temporary file in the same
/// directory, fsynced, renamed over the original, the directory fsynced. A
/// symlinked config is written where the link points, as docker does.
fn write_atomically(path: &Path, text: &str, expected: Option<&str>) -> Result<()> {
    let target = match std::fs::canonicalize(path) {
        Ok(real) => real,
        Err(_) => path.to_path_buf(),
    };
    let dir = target
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let cannot = |e: std::io::Error| {
        refused(format!(
            "cannot write the docker config {}: {e}; it was left as it was",
            target.display()
        ))
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(cannot)?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config.json".into());
    let tmp = dir.join(format!(
        ".{name}.harbor-doctor-{}-{:08x}.tmp",
        std::process::id(),
        rand::random::<u32>()
    ));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(cannot)?;
        // The mode given to open is reduced by the umask; 0600 is what is wanted.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(cannot)?;
        file.write_all(text.as_bytes()).map_err(cannot)?;
        file.sync_all().map_err(cannot)?;
        drop(file);
        let now = match files::read_regular_file_if_exists(&target, files::DOCKER_CONFIG_CAP) {
            Ok(Some(bytes)) => Some(String::from_utf8_lossy(&bytes).into_owned()),
            Ok(None) => None,
            Err(e) => return Err(unreadable(&e)),
        }
        .filter(|t| !t.trim().is_empty());
        let expected = expected.filter(|t| !t.trim().is_empty());
        if now.as_deref() != expected {
            return Err(refused(format!(
                "the docker config {} was changed by another program while harbor-doctor was logging in; \
                 it was left as that program wrote it. Run docker-login again",
                target.display()
            )));
        }
        std::fs::rename(&tmp, &target).map_err(cannot)?;
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(cannot)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `host[:port]` of a URL, as docker names registries.
pub fn host_of_url(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url.trim()).ok()?;
    let host = parsed.host_str()?;
    Some(match parsed.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    })
}

/// Where the docker CLI talks to registry `host`: `https://host`, unless
/// the Harbor URL the user gave names the same host (it may say `http://`
/// explicitly, for a registry served without TLS).
pub fn registry_url(host: &str, harbor_url: Option<&str>) -> String {
    match harbor_url {
        Some(url) if host_of_url(url).as_deref() == Some(host) => {
            url.trim().trim_end_matches('/').to_string()
        }
        _ => format!("https://{host}"),
    }
}

/// The program a credential helper name stands for.
pub fn helper_program(name: &str) -> String {
    format!("docker-credential-{name}")
}

/// The helper program on PATH, when it is there.
pub fn find_helper(name: &str) -> Option<PathBuf> {
    find_in_path(&helper_program(name), std::env::var_os("PATH"))
}

fn find_in_path(program: &str, path_var: Option<OsString>) -> Option<PathBuf> {
    // A helper name is a program name, never a path.
    if program.contains('/') {
        return None;
    }
    std::env::split_paths(&path_var?)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(program))
        .find(|p| {
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// Each of a helper's stdout and stderr is kept up to this many bytes. The
/// rest is read and dropped, so a helper that writes without end neither
/// grows the doctor nor blocks on a full pipe (it then meets the timeout).
const HELPER_OUTPUT_CAP: usize = 1 << 20;

/// How many characters of a helper's output a message shows: enough for
/// any error a helper means to print, not a screenful of whatever it dumped.
const HELPER_OUTPUT_SHOWN: usize = 300;

/// Hands credentials to a helper program's `store` command, as the docker
/// CLI does. The helper runs in its own process group, bounded by
/// `timeout`: past it, the helper and every process it started are killed.
/// Whatever the helper prints is shown only with every form of the secret
/// cut out of it, or not at all (see `scrub`).
pub async fn store_with_helper(
    program: &Path,
    server_url: &str,
    username: &str,
    secret: &str,
    timeout: Duration,
) -> Result<()> {
    let shown = program.display();
    let payload = serde_json::to_vec(&json!({
        "ServerURL": server_url,
        "Username": username,
        "Secret": secret,
    }))?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut child = tokio::process::Command::new(program)
        .arg("store")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so that what it starts (a prompt, an agent that
        // keeps our pipes open) can be found and killed with it.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| refused(format!("cannot run the credential helper {shown}: {e}")))?;
    // Declared after `child`, so dropped before it: a cancelled run kills
    // the group while the unreaped leader still holds the group's id.
    let mut group = ProcessGroup(child.id().map(|pid| pid as libc::pid_t));
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut status = None;
    let mut io_done = false;
    {
        // Writing and both reads run together: a helper that prints before
        // it reads its input cannot deadlock with us.
        let io = async {
            let feed = async move {
                // A helper that exits without reading its input shows up in
                // its exit status; a broken pipe here says nothing more.
                let _ = stdin.write_all(&payload).await;
            };
            tokio::join!(
                feed,
                read_capped(stdout, &mut out),
                read_capped(stderr, &mut err)
            );
        };
        tokio::pin!(io);
        let expired = tokio::time::sleep_until(deadline);
        tokio::pin!(expired);
        while status.is_none() || !io_done {
            tokio::select! {
                s = child.wait(), if status.is_none() => status = Some(s),
                _ = &mut io, if !io_done => io_done = true,
                _ = &mut expired => break,
            }
        }
    }
    if status.is_none() || !io_done {
        // Past the deadline the helper, or something it started that still
        // holds its pipes, is running: the group's id is still in use by
        // it, so it names no one else.
        group.kill();
    }
    let finished = status.is_some();
    let status = match status {
        Some(s) => s,
        None => child.wait().await,
    };
    group.0 = None;
    let status = status.map_err(|e| {
        refused(format!(
            "the credential helper {shown} failed to run: {e}; whether it stored the credentials is unknown"
        ))
    })?;
    if !finished {
        return Err(refused(format!(
            "the credential helper {shown} did not finish within {} s (it may be waiting for a keychain \
             prompt or an unlocked keyring); it and the processes it started were stopped, and whether it \
             stored the credentials is unknown. Unlock the keychain and run docker-login again, or raise \
             --timeout",
            timeout.as_secs()
        )));
    }
    if !status.success() {
        let code = status
            .code()
            .map(|c| format!("exit {c}"))
            .unwrap_or_else(|| "killed by a signal".into());
        return Err(refused(format!(
            "the credential helper {shown} refused to store the credentials ({code}){}",
            scrub::helper_said(&out, &err, secret)
        )));
    }
    Ok(())
}

/// A helper's process group, killed when dropped while armed.
struct ProcessGroup(Option<libc::pid_t>);

impl ProcessGroup {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            // SIGKILL: a helper stuck on a prompt may ignore SIGTERM, and
            // nothing it could clean up is ours. ESRCH (all gone) is fine.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads `from` to its end, keeping the first [`HELPER_OUTPUT_CAP`] bytes.
async fn read_capped(mut from: impl tokio::io::AsyncRead + Unpin, into: &mut Vec<u8>) {
    let mut chunk = [0u8; 8192];
    loop {
        match from.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let room = HELPER_OUTPUT_CAP.saturating_sub(into.len());
                into.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
    }
}

/// A helper received the secret on its stdin, so whatever it prints may
/// hold it: as it is, JSON-escaped, base64 (standard or URL-safe, padded or
/// not, of the secret alone or of the whole input at any alignment),
/// percent-encoded or hex. Each of those forms is cut out; when a form
/// still shows through (wrapped across lines, split by the cut), or the
/// secret is too short to recognise reliably, the output is not shown.
mod scrub {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    use base64::Engine;

    use super::HELPER_OUTPUT_SHOWN;

    /// Shorter secrets cannot be told from ordinary text: any output is
    /// withheld. Harbor's robot secrets are 32 characters.
    const MIN_SCRUBBABLE: usize = 8;

    const MARK: &str = "<secret>";

    /// Every string the secret may appear as, longest first.
    pub(super) fn forms(secret: &str) -> Vec<String> {
        let b = secret.as_bytes();
        let mut forms = vec![secret.to_string()];
        let json = serde_json::to_string(secret).unwrap_or_default();
        forms.push(json.trim_matches('"').to_string());
        for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
            forms.push(engine.encode(b));
            // Inside the base64 of a longer text (the helper's whole
            // input), the secret starts at one of three offsets in a 3-byte
            // group; the characters of the groups wholly inside it are the
            // same whatever surrounds it. At most two bytes at each end
            // stay encoded together with their neighbours.
            for skip in 0..3 {
                let whole = b.len().saturating_sub(skip) / 3 * 3;
                if whole > 0 {
                    forms.push(engine.encode(&b[skip..skip + whole]));
                }
            }
        }
        for upper in [true, false] {
            let hex = |byte: u8| {
                if upper {
                    format!("{byte:02X}")
                } else {
                    format!("{byte:02x}")
                }
            };
            // Encoders differ in the punctuation they leave alone: RFC
            // 3986's unreserved set, HTML forms' (with `+` for a space),
            // JavaScript's encodeURIComponent, or none at all.
            for (keep, plus) in [
                ("-._~", false),
                ("-._~", true),
                ("*-._", true),
                ("*-._", false),
                ("-_.!~*'()", false),
                ("", false),
            ] {
                forms.push(
                    b.iter()
                        .map(|&c| match c {
                            b' ' if plus => "+".to_string(),
                            c if c.is_ascii_alphanumeric() && !keep.is_empty()
                                || keep.as_bytes().contains(&c) =>
                            {
                                (c as char).to_string()
                            }
                            c => format!("%{}", hex(c)),
                        })
                        .collect(),
                );
            }
            forms.push(b.iter().map(|&c| hex(c)).collect());
        }
        forms.retain(|f| !f.is_empty());
        forms.sort();
        forms.dedup();
        // Longest first, so a form is cut whole before a shorter one inside it.
        forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
        forms
    }

    /// `text` with every form of `secret` replaced, or None when the secret
    /// may still be in it.
    pub(super) fn scrub(text: &str, secret: &str) -> Option<String> {
        if secret.is_empty() {
            return Some(text.to_string());
        }
        if secret.len() < MIN_SCRUBBABLE {
            return if text.trim().is_empty() {
                Some(String::new())
            } else {
                None
            };
        }
        let forms = forms(secret);
        let mut out = text.to_string();
        for f in &forms {
            out = out.replace(f.as_str(), MARK);
        }
        // What is left, read the ways a reader could: without line breaks
        // (base64 wrapped at 76 columns) and percent-decoded.
        let squeezed: String = out.chars().filter(|c| !c.is_whitespace()).collect();
        let decoded = percent_decode(&squeezed.replace('+', " "));
        let views = [&out, &squeezed, &decoded];
        if views
            .iter()
            .any(|v| forms.iter().any(|f| v.contains(f.as_str())))
        {
            return None;
        }
        Some(out)
    }

    fn percent_decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if b[i] == b'%' && i + 2 < b.len() {
                if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
            }
            out.push(b[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// One line for a message: control characters (a terminal escape) made
    /// harmless, runs of white space made one space, cut at
    /// [`HELPER_OUTPUT_SHOWN`] characters.
    pub(super) fn one_line(text: &str) -> String {
        let flat: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect::<String>()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let total = flat.chars().count();
        if total <= HELPER_OUTPUT_SHOWN {
            return flat;
        }
        let cut: String = flat.chars().take(HELPER_OUTPUT_SHOWN).collect();
        format!("{cut}… ({} more characters)", total - HELPER_OUTPUT_SHOWN)
    }

    /// What a message says about a failed helper's output: ": <output>", a
    /// note that it was withheld, or nothing.
    pub(super) fn helper_said(stdout: &[u8], stderr: &[u8], secret: &str) -> String {
        let text = [stdout, stderr]
            .iter()
            .map(|b| String::from_utf8_lossy(b).trim().to_string())
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" / ");
        if text.is_empty() {
            return String::new();
        }
        match scrub(&text, secret) {
            Some(clean) => format!(": {}", one_line(&clean)),
            None => {
                "; its output is not shown, because the secret it was given may be in it in a form \
                     that cannot be cut out reliably"
                    .to_string()
            }
        }
    }
}

/// Edits of a valid JSON text that touch one range and keep every other
/// byte. The text has already been parsed by serde_json, so the scanner
/// below only needs to find where things are, not to validate.
mod splice {
    /// One `"key": value` member of an object, by byte offsets.
    struct Member {
        key: String,
        key_start: usize,
        key_end: usize,
        value_start: usize,
        value_end: usize,
    }

    struct Object {
        open: usize,
        close: usize,
        members: Vec<Member>,
    }

    fn skip_ws(b: &[u8], mut i: usize) -> usize {
        while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
            i += 1;
        }
        i
    }

    /// `i` is at an opening quote; returns the offset after the closing one.
    fn string_end(b: &[u8], mut i: usize) -> usize {
        i += 1;
        while i < b.len() {
            match b[i] {
                b'\\' => i += 2,
                b'"' => return i + 1,
                _ => i += 1,
            }
        }
        i
    }

    fn value_end(b: &[u8], mut i: usize) -> usize {
        match b[i] {
            b'"' => string_end(b, i),
            b'{' | b'[' => {
                let mut depth = 0usize;
                while i < b.len() {
                    match b[i] {
                        b'"' => {
                            i = string_end(b, i);
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                return i + 1;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                i
            }
            _ => {
                while i < b.len()
                    && !matches!(b[i], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                {
                    i += 1;
                }
                i
            }
        }
    }

    fn object_at(t: &str, open: usize) -> Object {
        let b = t.as_bytes();
        let mut members = vec![];
        let mut i = skip_ws(b, open + 1);
        if b[i] == b'}' {
            return Object {
                open,
                close: i,
                members,
            };
        }
        loop {
            let key_start = i;
            let key_end = string_end(b, i);
            let key = serde_json::from_str::<String>(&t[key_start..key_end]).unwrap_or_default();
            i = skip_ws(b, key_end);
            // b[i] is the colon.
            let value_start = skip_ws(b, i + 1);
            let value_end = value_end(b, value_start);
            members.push(Member {
                key,
                key_start,
                key_end,
                value_start,
                value_end,
            });
            i = skip_ws(b, value_end);
            if b[i] == b',' {
                i = skip_ws(b, i + 1);
                continue;
            }
            return Object {
                open,
                close: i,
                members,
            };
        }
    }

    impl Object {
        /// The member a JSON reader keeps for `key`: the last of duplicates.
        fn get(&self, key: &str) -> Option<&Member> {
            self.members.iter().rev().find(|m| m.key == key)
        }
    }

    /// How the file is laid out, so inserted text looks like its neighbours.
    struct Style {
        /// One level of indentation, or None for a file on one line.
        indent: Option<String>,
        /// What separates a key from its value, e.g. `": "` without the quote.
        colon: String,
    }

    impl Style {
        fn docker() -> Style {
            Style {
                indent: Some("\t".into()),
                colon: ": ".into(),
            }
        }

        fn of(t: &str, top: &Object) -> Style {
            let Some(first) = top.members.first() else {
                return Style::docker();
            };
            let lead = &t[top.open + 1..first.key_start];
            let colon = t[first.key_end..first.value_start].to_string();
            let indent = lead.rfind('\n').map(|nl| {
                let unit = &lead[nl + 1..];
                if unit.is_empty() {
                    "\t".to_string()
                } else {
                    unit.to_string()
                }
            });
            Style { indent, colon }
        }

        fn nl(&self, depth: usize) -> String {
            match &self.indent {
                Some(unit) => format!("\n{}", unit.repeat(depth)),
                None => String::new(),
            }
        }

        fn member(&self, key: &str, value: &str) -> String {
            format!("{}{}{value}", json_string(key), self.colon)
        }

        /// An object holding one member, whose own members sit at `depth`.
        fn object(&self, depth: usize, key: &str, value: &str) -> String {
            format!(
                "{{{}{}{}}}",
                self.nl(depth),
                self.member(key, value),
                self.nl(depth - 1)
            )
        }

        /// The value of `auths[host]`, itself at depth 2.
        fn entry(&self, auth: &str) -> String {
            self.object(3, "auth", &json_string(auth))
        }
    }

    fn json_string(s: &str) -> String {
        serde_json::to_string(s).expect("a string always encodes")
    }

    fn replace(t: &str, start: usize, end: usize, with: &str) -> String {
        format!("{}{with}{}", &t[..start], &t[end..])
    }

    /// Adds `key: value` as the last member of `obj`, whose members sit at
    /// `depth`.
    fn insert(
        t: &str,
        obj: &Object,
        depth: usize,
        style: &Style,
        key: &str,
        value: &str,
    ) -> String {
        match obj.members.last() {
            Some(last) => {
                // Lay the new member out like the one before it.
                let b = t.as_bytes();
                let mut lead_start = last.key_start;
                while lead_start > 0 && matches!(b[lead_start - 1], b' ' | b'\t' | b'\n' | b'\r') {
                    lead_start -= 1;
                }
                let lead = &t[lead_start..last.key_start];
                let at = last.value_end;
                replace(t, at, at, &format!(",{lead}{}", style.member(key, value)))
            }
            None => replace(
                t,
                obj.open + 1,
                obj.close,
                &format!(
                    "{}{}{}",
                    style.nl(depth),
                    style.member(key, value),
                    style.nl(depth - 1)
                ),
            ),
        }
    }

    /// A whole config for a file that does not exist yet, laid out as the
    /// docker CLI writes it.
    pub fn fresh_config(host: &str, auth: &str) -> String {
        let style = Style::docker();
        let auths = style.object(2, host, &style.entry(auth));
        style.object(1, "auths", &auths)
    }

    /// `t` (a valid JSON object) with `auths[host]` set to `{"auth": auth}`.
    pub fn set_auth(t: &str, host: &str, auth: &str) -> String {
        let top = object_at(t, skip_ws(t.as_bytes(), 0));
        let style = Style::of(t, &top);
        let entry = style.entry(auth);
        match top.get("auths") {
            Some(m) if t.as_bytes()[m.value_start] == b'{' => {
                let auths = object_at(t, m.value_start);
                match auths.get(host) {
                    Some(existing) => replace(t, existing.value_start, existing.value_end, &entry),
                    None => insert(t, &auths, 2, &style, host, &entry),
                }
            }
            // `"auths": null`
            Some(m) => replace(
                t,
                m.value_start,
                m.value_end,
                &style.object(2, host, &entry),
            ),
            None => insert(t, &top, 1, &style, "auths", &style.object(2, host, &entry)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUTH: &str = "dXNlcjpwdw=="; // base64("user:pw")

    /// Every byte of `old` survives in `new` around one inserted or replaced range.
    fn one_splice(old: &str, new: &str) -> (usize, usize) {
        let prefix = old
            .bytes()
            .zip(new.bytes())
            .take_while(|(a, b)| a == b)
            .count();
        let suffix = old
            .bytes()
            .rev()
            .zip(new.bytes().rev())
            .take_while(|(a, b)| a == b)
            .count()
            .min(old.len() - prefix);
        (prefix, old.len() - suffix)
    }

    fn parsed(t: &str) -> Value {
        serde_json::from_str(t).unwrap()
    }

    fn config(text: &str) -> (tempfile::TempDir, DockerConfig) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, text).unwrap();
        let c = DockerConfig::load(&path).unwrap();
        (dir, c)
    }

    #[test]
    fn finds_the_config_like_docker() {
        assert_eq!(
            locate(Some("/d".into()), Some("/h".into())).unwrap(),
            PathBuf::from("/d/config.json")
        );
        assert_eq!(
            locate(Some("".into()), Some("/h".into())).unwrap(),
            PathBuf::from("/h/.docker/config.json")
        );
        assert!(locate(None, None).is_err());
    }

    #[test]
    fn chooses_the_store_like_docker() {
        let (_d, c) = config(
            r#"{"credsStore":"desktop","credHelpers":{"gcr.io":"gcloud","plain.example.com":""}}"#,
        );
        assert_eq!(
            c.store_for("gcr.io"),
            CredentialStore::Helper {
                name: "gcloud".into(),
                chosen_by: HelperSource::CredHelpers
            }
        );
        assert_eq!(
            c.store_for("harbor.example.com"),
            CredentialStore::Helper {
                name: "desktop".into(),
                chosen_by: HelperSource::CredsStore
            }
        );
        // An empty credHelpers entry means the file, even with a credsStore.
        assert_eq!(c.store_for("plain.example.com"), CredentialStore::File);
        let (_d, c) = config(r#"{"credHelpers":{"gcr.io":"gcloud"},"credsStore":""}"#);
        assert_eq!(c.store_for("harbor.example.com"), CredentialStore::File);
    }

    #[test]
    fn adds_a_host_keeping_every_other_byte() {
        let old = "{\n  \"auths\": {\n    \"quay.io\": {\n      \"auth\": \"cXVheTp4\"\n    }\n  },\n  \"credHelpers\": {\"gcr.io\": \"gcloud\"},\n  \"zz-unknown\": [1, 2.50, {\"\\u00e9\": null}],\n  \"aa\": true\n}\n";
        let (_d, c) = config(old);
        let new = c
            .text_with_auth("harbor.example.com", "user", "pw")
            .unwrap();
        let (start, end) = one_splice(old, &new);
        assert_eq!(start, end, "only an insertion:\n{new}");
        assert_eq!(
            &new[start..new.len() - (old.len() - end)],
            ",\n    \"harbor.example.com\": {\n      \"auth\": \"dXNlcjpwdw==\"\n    }"
        );
        let v = parsed(&new);
        assert_eq!(v["auths"]["harbor.example.com"]["auth"], AUTH);
        assert_eq!(v["auths"]["quay.io"]["auth"], "cXVheTp4");
    }

    #[test]
    fn replaces_only_the_hosts_entry() {
        let old = r#"{"auths":{"harbor.example.com":{"auth":"b2xkOm9sZA==","identitytoken":"x"},"b.io":{}},"other":1}"#;
        let (_d, c) = config(old);
        let new = c
            .text_with_auth("harbor.example.com", "user", "pw")
            .unwrap();
        assert_eq!(
            new,
            r#"{"auths":{"harbor.example.com":{"auth":"dXNlcjpwdw=="},"b.io":{}},"other":1}"#
        );
    }

    #[test]
    fn adds_auths_when_there_is_none() {
        let old = "{\n\t\"credsStore\": \"\",\n\t\"psFormat\": \"table {{.ID}}\"\n}";
        let (_d, c) = config(old);
        let new = c.text_with_auth("h:5000", "user", "pw").unwrap();
        let (start, end) = one_splice(old, &new);
        assert_eq!(start, end);
        assert_eq!(
            new,
            "{\n\t\"credsStore\": \"\",\n\t\"psFormat\": \"table {{.ID}}\",\n\t\"auths\": {\n\t\t\"h:5000\": {\n\t\t\t\"auth\": \"dXNlcjpwdw==\"\n\t\t}\n\t}\n}"
        );
    }

    #[test]
    fn fills_empty_and_null_auths_and_empty_files() {
        for (old, want) in [
            (
                "{}",
                "{\n\t\"auths\": {\n\t\t\"h\": {\n\t\t\t\"auth\": \"dXNlcjpwdw==\"\n\t\t}\n\t}\n}",
            ),
            (
                r#"{"auths": {}}"#,
                r#"{"auths": {"h": {"auth": "dXNlcjpwdw=="}}}"#,
            ),
            (
                r#"{"auths":null,"x":"}"}"#,
                r#"{"auths":{"h":{"auth":"dXNlcjpwdw=="}},"x":"}"}"#,
            ),
        ] {
            let (_d, c) = config(old);
            assert_eq!(
                c.text_with_auth("h", "user", "pw").unwrap(),
                want,
                "from {old}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let c = DockerConfig::load(&dir.path().join("missing.json")).unwrap();
        assert_eq!(
            c.text_with_auth("h", "user", "pw").unwrap(),
            "{\n\t\"auths\": {\n\t\t\"h\": {\n\t\t\t\"auth\": \"dXNlcjpwdw==\"\n\t\t}\n\t}\n}"
        );
    }

    #[test]
    fn keys_are_compared_decoded_and_the_last_duplicate_wins() {
        // "h\u0061rbor" is "harbor"; the second "auths" is the one JSON readers keep.
        let old = r#"{"auths":{"a":{}},"auths":{"h\u0061rbor":{"auth":"old"}}}"#;
        let (_d, c) = config(old);
        let new = c.text_with_auth("harbor", "user", "pw").unwrap();
        assert_eq!(
            new,
            r#"{"auths":{"a":{}},"auths":{"h\u0061rbor":{"auth":"dXNlcjpwdw=="}}}"#
        );
    }

    #[test]
    fn writes_atomically_with_mode_0600() {
        let old = "{\"x\": 1}\n";
        let (dir, c) = config(old);
        let path = dir.path().join("config.json");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        c.write_auth("h", "user", "pw").unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            new,
            "{\"x\": 1,\"auths\": {\"h\": {\"auth\": \"dXNlcjpwdw==\"}}}\n"
        );
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name() != "config.json")
            .collect();
        assert!(leftovers.is_empty(), "no temporary file is left behind");
    }

    #[test]
    fn creates_the_directory_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/.docker/config.json");
        DockerConfig::load(&path)
            .unwrap()
            .write_auth("h", "user", "pw")
            .unwrap();
        assert_eq!(
            parsed(&std::fs::read_to_string(&path).unwrap())["auths"]["h"]["auth"],
            AUTH
        );
        assert_eq!(
            std::fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
    }

    #[test]
    fn writes_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("dotfiles-config.json");
        std::fs::write(&real, "{}").unwrap();
        let link = dir.path().join("config.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        DockerConfig::load(&link)
            .unwrap()
            .write_auth("h", "user", "pw")
            .unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(
            parsed(&std::fs::read_to_string(&real).unwrap())["auths"]["h"]["auth"],
            AUTH
        );
    }

    #[test]
    fn refuses_a_file_changed_since_it_was_read() {
        let (dir, c) = config("{}");
        let path = dir.path().join("config.json");
        std::fs::write(&path, "{\"changed\": true}").unwrap();
        let err = c.write_auth("h", "user", "pw").unwrap_err();
        assert!(format!("{err:#}").contains("changed by another program"));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"changed\": true}"
        );
    }

    #[test]
    fn refuses_invalid_configs() {
        for (text, says) in [
            ("{\"auths\": {", "not valid JSON"),
            ("[]", "not a JSON object"),
            ("{\"auths\": []}", "`auths` is not an object"),
            (
                "{\"auths\": {\"h\": \"x\"}}",
                "auths[\"h\"] is not an object",
            ),
            (
                "{\"credHelpers\": {\"h\": 1}}",
                "credHelpers[\"h\"] is not a string",
            ),
            ("{\"credsStore\": true}", "`credsStore` is not a string"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("config.json");
            std::fs::write(&path, text).unwrap();
            let err = DockerConfig::load(&path).unwrap_err();
            assert_eq!(
                crate::outcome::exit_code_of(&err),
                crate::outcome::ExitCode::CannotRun
            );
            assert!(format!("{err:#}").contains(says), "{text}: {err:#}");
        }
    }

    #[test]
    fn talks_to_registries_like_docker() {
        assert_eq!(
            host_of_url("http://127.0.0.1:8080/").as_deref(),
            Some("127.0.0.1:8080")
        );
        assert_eq!(
            registry_url("127.0.0.1:8080", Some("http://127.0.0.1:8080/")),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            registry_url("harbor.example.com", Some("http://other.example.com")),
            "https://harbor.example.com"
        );
        assert_eq!(registry_url("h:5000", None), "https://h:5000");
    }

    #[test]
    fn finds_helpers_on_path() {
        let dir = tempfile::tempdir().unwrap();
        let helper = dir.path().join("docker-credential-fake");
        std::fs::write(&helper, "#!/bin/sh\n").unwrap();
        let path_var: OsString = format!("/nonexistent:{}", dir.path().display()).into();
        assert_eq!(
            find_in_path("docker-credential-fake", Some(path_var.clone())),
            None,
            "not executable yet"
        );
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            find_in_path("docker-credential-fake", Some(path_var.clone())),
            Some(helper)
        );
        assert_eq!(find_in_path("docker-credential-../x", Some(path_var)), None);
    }

    fn script(dir: &Path, body: &str) -> PathBuf {
        let p = dir.join("docker-credential-test");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[tokio::test]
    async fn hands_credentials_to_the_helper() {
        let dir = tempfile::tempdir().unwrap();
        let got = dir.path().join("got");
        let helper = script(
            dir.path(),
            &format!("echo \"$1\" > '{0}.arg'; cat > '{0}'", got.display()),
        );
        store_with_helper(
            &helper,
            "harbor.example.com",
            "robot$x",
            "s3cret",
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("got.arg")).unwrap(),
            "store\n"
        );
        assert_eq!(
            parsed(&std::fs::read_to_string(&got).unwrap()),
            json!({"ServerURL": "harbor.example.com", "Username": "robot$x", "Secret": "s3cret"})
        );
    }

    #[tokio::test]
    async fn a_failing_helper_is_reported_without_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let helper = script(
            dir.path(),
            "cat; echo 'keychain locked' >&2; printf '\\033[2J' >&2; exit 4",
        );
        let err = store_with_helper(&helper, "h", "u", "s3cret-pw", Duration::from_secs(10))
            .await
            .unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("exit 4") && msg.contains("keychain locked"),
            "{msg}"
        );
        assert!(msg.contains("<secret>") && !msg.contains("s3cret"), "{msg}");
        assert!(!msg.contains('\x1b'), "no terminal escapes: {msg:?}");
    }

    /// Decoders that take any run of base64: a slice out of a longer encoding
    /// has no padding and may end in stray bits.
    fn lenient_base64() -> [base64::engine::GeneralPurpose; 2] {
        use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
        let config = GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true);
        [
            GeneralPurpose::new(&base64::alphabet::STANDARD, config),
            GeneralPurpose::new(&base64::alphabet::URL_SAFE, config),
        ]
    }

    /// Every way the tests below look for the secret: as it is, and
    /// decoded from every run of base64 or percent-encoding in the text.
    fn shows(text: &str, secret: &str) -> bool {
        let squeezed: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        if text.contains(secret)
            || squeezed.contains(secret)
            || squeezed.to_lowercase().contains(&hex::encode(secret))
        {
            return true;
        }
        let decoded_percent = {
            let mut out = Vec::new();
            let b = squeezed.as_bytes();
            let mut i = 0;
            while i < b.len() {
                match (
                    b[i],
                    std::str::from_utf8(&b[(i + 1).min(b.len())..(i + 3).min(b.len())]),
                ) {
                    (b'%', Ok(h)) if h.len() == 2 && u8::from_str_radix(h, 16).is_ok() => {
                        out.push(u8::from_str_radix(h, 16).unwrap());
                        i += 3;
                    }
                    (b'+', _) => {
                        out.push(b' ');
                        i += 1;
                    }
                    (c, _) => {
                        out.push(c);
                        i += 1;
                    }
                }
            }
            String::from_utf8_lossy(&out).into_owned()
        };
        if decoded_percent.contains(secret) {
            return true;
        }
        let runs = squeezed.split(|c: char| !(c.is_ascii_alphanumeric() || "+/-_".contains(c)));
        runs.into_iter().any(|run| {
            (0..4).any(|skip| {
                let run = run.get(skip..).unwrap_or("");
                let run = &run[..run.len() - usize::from(run.len() % 4 == 1)];
                lenient_base64().iter().any(|e| {
                    e.decode(run)
                        .map(|d| String::from_utf8_lossy(&d).contains(secret))
                        .unwrap_or(false)
                })
            })
        })
    }

    #[test]
    fn scrubs_every_encoding_of_the_secret() {
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        let secret = "Rob0t+Secret/7f3e91~x y";
        // The helper's whole input, at each alignment of the secret in it.
        for pad in ["", "a", "ab"] {
            let input = serde_json::to_string(&json!({
                "ServerURL": format!("h{pad}"), "Username": "u", "Secret": secret
            }))
            .unwrap();
            let pct_all: String = input.bytes().map(|b| format!("%{b:02X}")).collect();
            for said in [
                input.clone(),
                STANDARD.encode(&input),
                URL_SAFE_NO_PAD.encode(&input),
                STANDARD.encode(secret),
                format!(
                    "error: {}",
                    url::form_urlencoded::byte_serialize(input.as_bytes()).collect::<String>()
                ),
                pct_all.to_lowercase(),
                pct_all,
                hex::encode(&input),
            ] {
                assert!(shows(&said, secret), "the check finds {said}");
                let clean = scrub::scrub(&format!("failed: {said} (code 7)"), secret)
                    .unwrap_or_else(|| panic!("{said} can be cut out"));
                assert!(!shows(&clean, secret), "{said} -> {clean}");
                assert!(
                    clean.contains("<secret>") && clean.contains("(code 7)"),
                    "{clean}"
                );
            }
        }
        // base64 wrapped at 76 columns splits the secret's form: not shown.
        let input = format!("{{\"Secret\":\"{secret}\",\"ServerURL\":\"harbor.example.com\"}}");
        let wrapped: Vec<String> = STANDARD
            .encode(&input)
            .as_bytes()
            .chunks(24)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        assert_eq!(scrub::scrub(&wrapped.join("\n"), secret), None);
        // Nothing of a short secret can be cut out reliably.
        assert_eq!(scrub::scrub("locked", "short"), None);
        assert_eq!(scrub::scrub("", "short").as_deref(), Some(""));
        assert_eq!(
            scrub::scrub("keychain locked", secret).as_deref(),
            Some("keychain locked")
        );
    }

    #[test]
    fn long_output_is_cut() {
        let said = scrub::helper_said("x".repeat(10_000).as_bytes(), b"", "a-long-secret");
        assert!(said.len() < 400, "{said}");
        assert!(said.contains("9700 more characters"), "{said}");
    }

    #[tokio::test]
    async fn endless_output_is_bounded_and_stopped_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let helper = script(dir.path(), "yes 'noise' & yes 'more noise' >&2");
        let err = store_with_helper(
            &helper,
            "h",
            "u",
            "a-long-secret",
            Duration::from_millis(500),
        )
        .await
        .unwrap_err();
        assert!(format!("{err:#}").contains("did not finish"), "{err:#}");
    }

    #[tokio::test]
    async fn a_hanging_helper_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let helper = script(dir.path(), "exec sleep 30");
        let err = store_with_helper(&helper, "h", "u", "s", Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("did not finish"));
    }
}

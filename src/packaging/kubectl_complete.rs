//! `kubectl_complete-harbor_doctor`: the completions kubectl asks a plugin
//! for.
//!
//! kubectl (1.26 and later) completes `kubectl harbor-doctor ...` by running
//! the executable `kubectl_complete-harbor_doctor` from PATH with the words
//! typed after the plugin's name, the last one being the word to complete
//! (empty for a new word). It reads Cobra's `__complete` answer on stdout:
//! one candidate a line, optionally `candidate<TAB>description`, then a last
//! line `:<directive>` saying what the shell should do besides offering
//! them. It wants exit code 0, or it ignores the output.
//!
//! The candidates come from the same clap definition as the shell scripts
//! (see [`super::completion_command`]): subcommands, the values of
//! positionals and options that have a fixed set, and option names. Nothing
//! here talks to a cluster: completion must be instant and work offline.

use clap::{Arg, ArgAction, Command, ValueHint};

/// Cobra's ShellCompDirective bits (spf13/cobra, completions.go), which
/// kubectl passes on to the shell. The default (0) lets the shell complete
/// file names when no candidate fits.
pub const DIRECTIVE_DEFAULT: u32 = 0;
/// No file names: the candidates are all there is.
pub const DIRECTIVE_NO_FILE_COMP: u32 = 1 << 2;
/// Only directory names.
pub const DIRECTIVE_FILTER_DIRS: u32 = 1 << 4;

/// What to offer for the last of `words`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completions {
    /// Each candidate with its one-line description, when it has one.
    pub candidates: Vec<(String, Option<String>)>,
    pub directive: u32,
}

impl Completions {
    /// The answer in Cobra's protocol, as kubectl reads it.
    pub fn to_protocol(&self) -> String {
        let mut out = String::new();
        for (candidate, description) in &self.candidates {
            out.push_str(candidate);
            if let Some(description) = description {
                out.push('\t');
                out.push_str(description);
            }
            out.push('\n');
        }
        out.push_str(&format!(":{}\n", self.directive));
        out
    }
}

/// The completions for `words`, the words after the program's name; the
/// last is the one being completed (an empty last word: a new one).
pub fn complete(words: &[String]) -> Completions {
    let mut root = super::completion_command();
    // Propagates the global options to every subcommand and adds --help.
    root.build();
    let (current, typed) = match words.split_last() {
        Some((current, typed)) => (current.as_str(), typed),
        None => ("", &[][..]),
    };
    let state = walk(&root, typed);
    if let Some(option) = state.pending_value {
        return values_of(option, current, "", &state.given);
    }
    if state.after_double_dash {
        // `lab -- COMMAND ...`: a command of the user's own.
        return Completions {
            candidates: Vec::new(),
            directive: DIRECTIVE_DEFAULT,
        };
    }
    let cmd = state.cmd;
    if let Some(name_value) = current.strip_prefix("--") {
        if let Some((name, value)) = name_value.split_once('=') {
            return match find_long(cmd, name).filter(|a| takes_value(a)) {
                Some(option) => values_of(option, value, &format!("--{name}="), &state.given),
                None => nothing(),
            };
        }
    }
    if current.starts_with('-') {
        return Completions {
            candidates: option_names(cmd, current),
            directive: DIRECTIVE_NO_FILE_COMP,
        };
    }
    let mut candidates = Vec::new();
    if state.positionals == 0 {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let about = sub.get_about().map(|a| first_line(&a.to_string()));
            for name in std::iter::once(sub.get_name()).chain(sub.get_visible_aliases()) {
                if name.starts_with(current) {
                    candidates.push((name.to_string(), about.clone()));
                }
            }
        }
    }
    match positional_at(cmd, state.positionals) {
        Some(positional) => {
            let values = values_of(positional, current, "", &state.given);
            candidates.extend(values.candidates);
            Completions {
                candidates,
                directive: values.directive,
            }
        }
        None => Completions {
            candidates,
            directive: DIRECTIVE_NO_FILE_COMP,
        },
    }
}

/// Where the words typed so far lead.
struct Walk<'a> {
    /// The (sub)command they name.
    cmd: &'a Command,
    /// How many positional words were given to it.
    positionals: usize,
    /// The option whose value the next word is.
    pending_value: Option<&'a Arg>,
    /// After `--`: everything is positional.
    after_double_dash: bool,
    /// The words given to `cmd`, so a value already chosen is not offered
    /// again for a repeatable argument.
    given: Vec<&'a str>,
}

fn walk<'a>(root: &'a Command, typed: &'a [String]) -> Walk<'a> {
    let mut state = Walk {
        cmd: root,
        positionals: 0,
        pending_value: None,
        after_double_dash: false,
        given: Vec::new(),
    };
    for word in typed {
        let word = word.as_str();
        if state.pending_value.take().is_some() || state.after_double_dash {
            continue;
        }
        if word == "--" {
            state.after_double_dash = true;
            continue;
        }
        if let Some(long) = word.strip_prefix("--") {
            let (name, inline_value) = match long.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (long, None),
            };
            if let Some(option) = find_long(state.cmd, name) {
                if takes_value(option) && inline_value.is_none() {
                    state.pending_value = Some(option);
                }
            }
            continue;
        }
        if let Some(shorts) = word.strip_prefix('-').filter(|s| !s.is_empty()) {
            // A cluster such as `-vq`, or `-nharbor` / `-n harbor`.
            for (at, short) in shorts.char_indices() {
                if let Some(option) = find_short(state.cmd, short).filter(|a| takes_value(a)) {
                    if at + short.len_utf8() == shorts.len() {
                        state.pending_value = Some(option);
                    }
                    break;
                }
            }
            continue;
        }
        if state.positionals == 0 {
            if let Some(sub) = state
                .cmd
                .get_subcommands()
                .find(|s| s.get_name() == word || s.get_all_aliases().any(|a| a == word))
            {
                state.cmd = sub;
                state.given.clear();
                continue;
            }
        }
        state.positionals += 1;
        state.given.push(word);
    }
    state
}

fn takes_value(arg: &Arg) -> bool {
    arg.get_action().takes_values()
}

fn find_long<'a>(cmd: &'a Command, name: &str) -> Option<&'a Arg> {
    cmd.get_arguments().find(|a| {
        a.get_long() == Some(name) || a.get_all_aliases().is_some_and(|all| all.contains(&name))
    })
}

fn find_short(cmd: &Command, short: char) -> Option<&Arg> {
    cmd.get_arguments().find(|a| {
        a.get_short() == Some(short)
            || a.get_all_short_aliases()
                .is_some_and(|all| all.contains(&short))
    })
}

/// The positional that the word after `index` positional words fills; a
/// positional taking several values goes on filling.
fn positional_at(cmd: &Command, index: usize) -> Option<&Arg> {
    for (at, positional) in cmd.get_positionals().enumerate() {
        let many = matches!(positional.get_action(), ArgAction::Append)
            || positional
                .get_num_args()
                .is_some_and(|n| n.max_values() > 1);
        if many || index == at {
            return Some(positional);
        }
    }
    None
}

/// `--name` and `-s` of every visible option of `cmd` that start with `prefix`.
fn option_names(cmd: &Command, prefix: &str) -> Vec<(String, Option<String>)> {
    let mut names = Vec::new();
    for arg in cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set() && !a.is_positional())
    {
        let help = arg.get_help().map(|h| first_line(&h.to_string()));
        let longs = arg
            .get_long_and_visible_aliases()
            .unwrap_or_default()
            .into_iter()
            .map(|l| format!("--{l}"));
        let shorts = arg
            .get_short_and_visible_aliases()
            .unwrap_or_default()
            .into_iter()
            .map(|s| format!("-{s}"));
        for name in longs.chain(shorts) {
            if name.starts_with(prefix) {
                names.push((name, help.clone()));
            }
        }
    }
    names
}

/// The values `arg` can take that start with `prefix`, each written after
/// `lead` (`--output=` for `--output=js<TAB>`).
fn values_of(arg: &Arg, prefix: &str, lead: &str, given: &[&str]) -> Completions {
    let repeatable = matches!(arg.get_action(), ArgAction::Append);
    let values = arg.get_possible_values();
    if values.is_empty() {
        let directive = match arg.get_value_hint() {
            ValueHint::AnyPath | ValueHint::FilePath | ValueHint::ExecutablePath => {
                DIRECTIVE_DEFAULT
            }
            ValueHint::DirPath => DIRECTIVE_FILTER_DIRS,
            // A name, URL, number: nothing to offer, and file names would mislead.
            _ => DIRECTIVE_NO_FILE_COMP,
        };
        return Completions {
            candidates: Vec::new(),
            directive,
        };
    }
    let candidates = values
        .iter()
        .filter(|v| !v.is_hide_set())
        .filter(|v| v.get_name().starts_with(prefix))
        .filter(|v| !(repeatable && given.contains(&v.get_name())))
        .map(|v| {
            (
                format!("{lead}{}", v.get_name()),
                v.get_help().map(|h| first_line(&h.to_string())),
            )
        })
        .collect();
    Completions {
        candidates,
        directive: DIRECTIVE_NO_FILE_COMP,
    }
}

fn nothing() -> Completions {
    Completions {
        candidates: Vec::new(),
        directive: DIRECTIVE_NO_FILE_COMP,
    }
}

/// Descriptions are one line: the protocol is line-based.
fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        let mut words: Vec<String> = line.split(' ').map(str::to_string).collect();
        if line.is_empty() {
            words = vec![String::new()];
        }
        words
    }

    fn names(line: &str) -> Vec<String> {
        complete(&words(line))
            .candidates
            .into_iter()
            .map(|(name, _)| name)
            .collect()
    }

    #[test]
    fn a_new_word_at_the_top_offers_the_visible_subcommands() {
        let got = names("");
        for sub in ["diagnose", "fix", "provision", "runbook", "completions"] {
            assert!(got.contains(&sub.to_string()), "{sub}: {got:?}");
        }
        assert_eq!(complete(&words("")).directive, DIRECTIVE_NO_FILE_COMP);
        assert_eq!(names("di"), ["diagnose"]);
        assert_eq!(names("do"), ["docker-login"]);
    }

    #[test]
    fn check_ids_after_diagnose_and_not_the_ones_given() {
        let got = names("diagnose ");
        assert!(got.contains(&"oidc-users".to_string()), "{got:?}");
        assert!(!got.contains(&"fix".to_string()), "{got:?}");
        let got = names("diagnose oidc-users ");
        assert!(!got.contains(&"oidc-users".to_string()), "{got:?}");
        assert!(got.contains(&"teams".to_string()), "{got:?}");
        assert_eq!(names("diagnose mu"), ["multi-attach"]);
    }

    #[test]
    fn fix_offers_its_repairs_and_aliases_but_not_hidden_checks() {
        let got = names("fix ");
        for name in ["oidc-conflict", "oidc-users", "multi-attach", "teams"] {
            assert!(got.contains(&name.to_string()), "{name}: {got:?}");
        }
        assert!(!got.contains(&"connectivity".to_string()), "{got:?}");
        assert_eq!(
            names("fix oidc-conflict --strategy "),
            ["relink", "soft-delete", "delete"]
        );
        assert!(names("fix oidc-users --").contains(&"--new-sub".to_string()));
    }

    #[test]
    fn option_values_in_every_spelling() {
        assert_eq!(names("diagnose --output "), ["table", "json", "prometheus"]);
        assert_eq!(names("diagnose -o j"), ["json"]);
        assert_eq!(names("-o "), ["table", "json", "prometheus"]);
        assert_eq!(names("diagnose --output=p"), ["--output=prometheus"]);
        assert_eq!(names("diagnose --fail-on "), ["warning", "problem"]);
        // Global options before the subcommand take their values.
        assert_eq!(
            names("--harbor-namespace harbor diagnose --fail-on p"),
            ["problem"],
            "--harbor-namespace took harbor"
        );
        assert!(names("--harbor-namespace=harbor -vq di").contains(&"diagnose".to_string()));
        assert!(names("--timeout 9 di").contains(&"diagnose".to_string()));
        // An option's value is not a positional: teams is still offered.
        assert!(names("diagnose --user teams ").contains(&"teams".to_string()));
        // A free-text value: nothing, and no file names either.
        let user = complete(&words("fix oidc-users --user "));
        assert!(user.candidates.is_empty());
        assert_eq!(user.directive, DIRECTIVE_NO_FILE_COMP);
        // A path: the shell's file names.
        assert_eq!(
            complete(&words("restore ")).directive,
            DIRECTIVE_DEFAULT,
            "restore takes a backup file"
        );
        assert_eq!(
            complete(&words("--backup-dir ")).directive,
            DIRECTIVE_DEFAULT
        );
    }

    #[test]
    fn runbook_ids_after_runbook() {
        let got = names("runbook ");
        let ids: Vec<String> = crate::runbooks::all().map(|r| r.id.to_string()).collect();
        assert_eq!(got, ids);
    }

    #[test]
    fn the_protocol_is_candidates_then_the_directive() {
        let out = complete(&words("diagnose --fail-on ")).to_protocol();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(lines[0].starts_with("warning"), "{out}");
        assert_eq!(lines[2], ":4");
        let out = complete(&words("fix oidc-users --user ")).to_protocol();
        assert_eq!(out, ":4\n");
    }
}

//! `harbor-doctor lab`: a simulated broken installation to practise on.
//!
//! It starts the simulated Kubernetes, Harbor and Keycloak servers and a
//! throwaway PostgreSQL with every known issue planted
//! (`harbor_doctor_sim::lab`), then either
//! - prints its environment as `export NAME=value` lines on stdout (and
//!   writes them to a 0600 file whose path goes to stderr) and stays up
//!   until SIGINT or SIGTERM, or
//! - with `lab -- COMMAND ARGS...`, runs the command in that environment
//!   with harbor-doctor on PATH, stops, and exits with the command's code.
//!
//! Either way it stops cleanly: PostgreSQL gets its fast shutdown and the
//! lab's temporary directory is removed.
//!
//! The simulators are linked only with the crate's `lab` feature (on by
//! default), so a doctor for production can be built without any of them
//! (`--no-default-features`). Its `lab` subcommand is the same on the
//! command line (help and completions do not depend on the build) and
//! refuses with exit 3.

#[cfg(feature = "lab")]
mod running;

use anyhow::Result;

use crate::cli::LabArgs;
use crate::context::Ctx;
use crate::outcome::{refused, ExitCode};

/// Runs `lab`. In command mode this does not return: the process exits with
/// the command's own code, which can be any number, after the lab stopped.
pub async fn run(ctx: &Ctx, args: &LabArgs) -> Result<ExitCode> {
    #[cfg(feature = "lab")]
    {
        running::run(ctx, args).await
    }
    #[cfg(not(feature = "lab"))]
    {
        let _ = (ctx, args);
        Err(built_without_lab())
    }
}

/// What `lab` answers in a doctor built without the simulators. Compiled in
/// every build so the default test suite checks its wording and exit code.
pub fn built_without_lab() -> anyhow::Error {
    refused(
        "this harbor-doctor was built without the lab (cargo's --no-default-features), so it \
         has no simulated installation to start; nothing was started. To practise on the lab, \
         build harbor-doctor with its default features (`cargo build --release`)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::exit_code_of;

    #[test]
    fn without_the_lab_the_refusal_is_exit_3_and_says_how_to_get_it() {
        let err = built_without_lab();
        assert_eq!(exit_code_of(&err), ExitCode::CannotRun);
        let text = format!("{err:#}");
        for part in [
            "built without the lab",
            "--no-default-features",
            "nothing was started",
            "default features",
        ] {
            assert!(text.contains(part), "{text:?} lacks {part:?}");
        }
    }

    /// The build CI makes with `--no-default-features`: `lab` still parses,
    /// with and without a command, and refuses before running anything.
    #[cfg(not(feature = "lab"))]
    #[tokio::test]
    async fn lab_parses_and_refuses_in_a_build_without_the_lab() {
        use clap::Parser;
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran");
        let touch = format!("touch '{}'", marker.display());
        for argv in [
            vec!["harbor-doctor", "lab"],
            vec!["harbor-doctor", "lab", "--", "sh", "-c", &touch],
        ] {
            let cli = crate::cli::Cli::try_parse_from(&argv)
                .unwrap_or_else(|e| panic!("{argv:?} does not parse: {e}"));
            let err = crate::app::run(cli)
                .await
                .expect_err("a doctor without the lab refuses `lab`");
            assert_eq!(exit_code_of(&err), ExitCode::CannotRun, "{argv:?}");
            assert_eq!(err.to_string(), built_without_lab().to_string());
            assert!(!marker.exists(), "{argv:?} ran the command");
        }
    }
}

//! harbor-doctor's entry point: parse, dispatch, map the outcome to an exit
//! code. Everything else lives in the library (src/lib.rs).

use harbor_doctor::cli::Unparsed;
use harbor_doctor::outcome::{exit_code_of, ExitCode};
use harbor_doctor::{app, packaging};

fn main() {
    // As kubectl_complete-harbor_doctor: kubectl asking for completions.
    if let Some(code) = packaging::run_as_completer() {
        std::process::exit(code);
    }
    // Also as the kubectl plugin (kubectl-harbor_doctor): see packaging.
    let cli = match packaging::parse_args() {
        Ok(cli) => cli,
        Err(Unparsed::Clap(e)) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() {
                ExitCode::Usage.code()
            } else {
                0
            });
        }
        Err(Unparsed::MissingCommand(help)) => {
            if harbor_doctor::render::colour_on_stderr() {
                harbor_doctor::errln!("{}", help.ansi());
            } else {
                harbor_doctor::errln!("{help}");
            }
            std::process::exit(ExitCode::Usage.code());
        }
    };
    app::init_logging(cli.global.verbose, cli.global.quiet);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            harbor_doctor::errln!("error: cannot start the async runtime: {e}");
            std::process::exit(ExitCode::CannotRun.code());
        }
    };
    let code = match runtime.block_on(app::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            harbor_doctor::errln!("error: {e:#}");
            exit_code_of(&e)
        }
    };
    std::process::exit(code.code());
}

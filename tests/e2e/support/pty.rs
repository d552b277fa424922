//! The doctor run in a pseudo-terminal, as a person at a terminal runs it:
//! for prompts, spinners and colour, which only appear on a terminal.

use std::process::Command;
use std::time::Duration;

use expectrl::{Eof, Session};

/// Runs `cmd` in a pseudo-terminal, waits for each question in turn and
/// types its reply, then waits for the end. Returns the exit code and all
/// the terminal showed (stdout and stderr both, and the replies as echoed).
pub fn in_terminal(cmd: Command, answers: &[(&str, &str)]) -> (i32, String) {
    let mut s = Session::spawn(cmd).expect("spawning the doctor in a pseudo-terminal");
    s.set_expect_timeout(Some(Duration::from_secs(60)));
    let mut shown = String::new();
    for (question, reply) in answers {
        let asked = s
            .expect(*question)
            .unwrap_or_else(|e| panic!("the doctor did not ask {question:?}: {e}\n{shown}"));
        shown.push_str(&String::from_utf8_lossy(asked.before()));
        // A prompt switches the terminal out of echo mode to read the
        // answer, and that switch may discard input typed before it
        // (TCSAFLUSH): wait for it, bounded, so a loaded machine cannot
        // swallow the reply.
        for _ in 0..500 {
            if !s.get_process().get_echo().unwrap_or(false) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        s.send_line(reply).unwrap();
    }
    // Longer than any --timeout a test gives: a doctor that is slow (the
    // contract stage runs Harbor through Prism) still ends on its own bound.
    s.set_expect_timeout(Some(Duration::from_secs(150)));
    let rest = s
        .expect(Eof)
        .unwrap_or_else(|e| panic!("the doctor did not finish: {e}\n{shown}"));
    shown.push_str(&String::from_utf8_lossy(rest.before()));
    for m in rest.matches() {
        shown.push_str(&String::from_utf8_lossy(m));
    }
    let code = match s.get_process_mut().wait().unwrap() {
        expectrl::WaitStatus::Exited(_, code) => code,
        other => panic!("the doctor did not exit normally: {other:?}"),
    };
    (code, shown)
}

//! The doctor run in a pseudo-terminal, as a person at a terminal runs it:
//! for prompts, spinners and colour, which only appear on a terminal.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use expectrl::{Eof, Session};
use harbor_doctor_sim::postgres::PgServer;

/// One pseudo-terminal session at a time. Sessions time the replies they
/// type against the doctor's terminal modes, which a busy machine delays:
/// taking turns keeps the pty tests from loading the machine against
/// each other.
static ONE_TERMINAL: Mutex<()> = Mutex::new(());

/// [`in_terminal`] in a terminal `cols` columns wide.
pub fn in_terminal_of_width(mut cmd: Command, cols: u16) -> (i32, String) {
    unsafe {
        cmd.pre_exec(move || {
            let size = libc::winsize {
                ws_row: 50,
                ws_col: cols,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            if libc::ioctl(0, libc::TIOCSWINSZ, &size) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    in_terminal(cmd, &[])
}

/// Runs `cmd` in a pseudo-terminal, waits for each question in turn and
/// types its reply, then waits for the end. Returns the exit code and all
/// the terminal showed (stdout and stderr both).
pub fn in_terminal(mut cmd: Command, answers: &[(&str, &str)]) -> (i32, String) {
    // The pty crate opens the pipe on which it learns that the doctor
    // started without close-on-exec, so a process another test spawns
    // meanwhile inherits it, and the spawn here waits until that process
    // ends: for the shared PostgreSQL, never. Start that first (once per
    // run; nothing to do when it runs already).
    PgServer::shared();
    // A failed session must not fail every later one.
    let _turn = ONE_TERMINAL.lock().unwrap_or_else(|e| e.into_inner());
    // The pty crate turns echo off; on, as a person's terminal is, a
    // hidden prompt is seen turning it off, and a reply typed where the
    // doctor does not hide it would show.
    unsafe {
        cmd.pre_exec(|| {
            let mut mode: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut mode) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            mode.c_lflag |= libc::ECHO;
            if libc::tcsetattr(0, libc::TCSANOW, &mode) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut s = Session::spawn(cmd).expect("spawning the doctor in a pseudo-terminal");
    s.set_expect_timeout(Some(Duration::from_secs(60)));
    let mut shown = String::new();
    for (question, reply) in answers {
        let asked = s
            .expect(*question)
            .unwrap_or_else(|e| panic!("the doctor did not ask {question:?}: {e}\n{shown}"));
        shown.push_str(&String::from_utf8_lossy(asked.before()));
        for m in asked.matches() {
            shown.push_str(&String::from_utf8_lossy(m));
        }
        // The doctor reads an answer with echo off (a hidden prompt, or
        // a key at a time), and a hidden prompt switches to it discarding
        // input typed before (TCSAFLUSH): type only once it has, so a
        // loaded machine cannot swallow the reply. Bounded, so that a
        // prompt that never hides shows as the reply echoed.
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

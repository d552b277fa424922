//! Writing to stdout and stderr when the reader may have gone away.
//!
//! `harbor-doctor diagnose | head -1` closes the pipe after one line. Rust's
//! `println!` panics on the resulting EPIPE, which would turn a report into
//! a crash (exit 101) and could stop a repair half-way. Everything the
//! doctor prints goes through these writers instead: once a reader is gone,
//! further output to it is dropped, and the program goes on to end with the
//! exit code it would have had.

use std::io::Write;

/// A writer that treats a closed pipe as "nobody is listening".
pub struct Quiet<W: Write>(pub W);

impl<W: Write> Write for Quiet<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.0.write(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(buf.len()),
            other => other,
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.0.flush() {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => other,
        }
    }
}

pub fn stdout() -> Quiet<std::io::StdoutLock<'static>> {
    Quiet(std::io::stdout().lock())
}

/// One line on stdout; never panics.
pub fn out_line(s: &str) {
    let _ = writeln!(stdout(), "{s}");
}

/// One line on stderr; never panics.
pub fn err_line(s: &str) {
    let _ = writeln!(Quiet(std::io::stderr().lock()), "{s}");
}

/// `println!` that never panics (see the module).
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::pipe::out_line(&format!($($arg)*))
    };
}

/// `eprintln!` that never panics (see the module).
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::pipe::err_line(&format!($($arg)*))
    };
}

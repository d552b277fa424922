//! Writes harbor-doctor's manual pages, generated from its CLI definition,
//! into the directory given (default `target/man`):
//!
//!     cargo run --example man -- target/man
//!     man -l target/man/harbor-doctor.1
//!
//! A packaging step: install the pages under `share/man/man1`.

fn main() -> std::io::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "target/man".into());
    for page in harbor_doctor::packaging::man_pages(&dir)? {
        println!("{}", page.display());
    }
    Ok(())
}

//! Text about the command itself: shell completion scripts and the manual page, both
//! generated from the clap definition so they never drift from the flags.

use clap::CommandFactory;

use crate::cli::Cli;
use crate::error::{Error, Outcome, Result};

/// `autolabel completions SHELL`
pub fn completions(shell: clap_complete::Shell) -> Result<Outcome> {
    // Into a buffer first: the generator panics on a write error (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "autolabel", &mut script);
    print(&script);
    Ok(Outcome::Complete)
}

/// `autolabel man`: the roff page on stdout.
pub fn man_page() -> Result<Outcome> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .map_err(|e| Error::io("cannot render the manual page", e))?;
    print(&page);
    Ok(Outcome::Complete)
}

/// Through `outln!`, like every report: a reader that went away ends the command quietly.
fn print(text: &[u8]) {
    crate::outln!("{}", String::from_utf8_lossy(text).trim_end_matches('\n'));
}

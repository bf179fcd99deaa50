//! `autolabel state prune|vacuum`: keeping the state file small, and saying what was done.

use crate::cli::StateCommand;
use crate::error::{Error, Outcome, Result};
use crate::store::{State, StateLocation};

/// `autolabel state prune|vacuum`: prints what it did on stdout.
pub fn run(cmd: StateCommand) -> Result<Outcome> {
    let file = match &cmd {
        StateCommand::Prune(a) => &a.file,
        StateCommand::Vacuum(a) => a,
    };
    let path = StateLocation::resolve(file.state.as_deref(), &file.redis_prefix)?;
    if let StateLocation::File(p) = &path {
        if !p.exists() {
            return Err(Error::Usage(format!(
                "--state {}: no such state file",
                p.display()
            )));
        }
    }
    let state = State::open_at(&path)?;
    match cmd {
        StateCommand::Prune(a) => {
            let pruned = state.prune(a.keep_days, std::time::SystemTime::now())?;
            if a.keep_days == 0 {
                crate::outln!("{}: --keep-days 0 keeps everything; nothing removed", path);
            } else {
                crate::outln!("{}: {pruned}", path);
            }
        }
        StateCommand::Vacuum(_) if matches!(path, StateLocation::Redis(_)) => {
            // Redis frees memory as keys go; there is no file to compact.
            crate::outln!("{path}: Redis frees space by itself; nothing to compact");
        }
        StateCommand::Vacuum(_) => {
            let c = state.vacuum()?;
            crate::outln!(
                "{}: {} bytes before, {} after ({} freed)",
                path,
                c.before,
                c.after,
                c.before.saturating_sub(c.after)
            );
        }
    }
    Ok(Outcome::Complete)
}

//! One module a subcommand, each its command's flow from the parsed arguments to an
//! outcome, as a short sequence of phases; the work itself is done by the modules below.

pub mod dashboard;
pub mod docs;
pub mod eval;
pub mod keys;
pub mod label;
pub mod state;
pub mod test_keys;
pub mod tune;
pub mod usage;

use crate::cli::ViewArgs;
use crate::error::{Error, Result};
use crate::store::{State, StateLocation};

/// The state a command that looks at it (`usage`, `keys`, `dashboard`) opens: a state
/// file named with `--state` on the command line must exist, unless `--create` says to
/// start one, so that a mistyped path is an error and not a new empty state shown as if
/// nothing had happened. (`AUTOLABEL_STATE` is shared with the runs that create the
/// file: a report started with the first runs of a cron set-up waits for it as before.)
pub fn open_existing(location: &StateLocation, view: &ViewArgs) -> Result<State> {
    if let (StateLocation::File(path), true, false) = (location, view.state_typed(), view.create) {
        if !path.exists() {
            return Err(Error::Usage(format!(
                "--state {}: no such state file; check the path (runs write it), or pass --create to start an empty one",
                path.display()
            )));
        }
    }
    State::open_at(location)
}

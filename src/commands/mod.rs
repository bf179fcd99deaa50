//! One module a subcommand, each its command's flow from the parsed arguments to an
//! outcome, as a short sequence of phases; the work itself is done by the modules below.

pub mod dashboard;
pub mod docs;
pub mod eval;
pub mod keys;
pub mod label;
pub mod state;
pub mod test_keys;
pub mod usage;

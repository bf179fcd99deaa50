//! `--overwrite` replaces only on success: the new output is written to
//! `<output>.autolabel-new` beside it, and renamed over the output (one atomic step) only
//! once it holds every row. Until then the old output stays byte for byte as it was,
//! whatever ends the run (a signal, kill -9, a failure); the same command goes on with the
//! replacement where it stopped.

use std::collections::BTreeSet;
use std::path::Path;

use super::resume::{self, Existing};
use crate::csvio::{InputInfo, OutputLayout};
use crate::error::{Error, Result};
use crate::store::State;

/// The suffix of an `--overwrite`'s replacement file, next to the output.
pub const NEW_SUFFIX: &str = ".autolabel-new";

/// How the state knows the replacement's fallback rows, apart from the output's (which
/// stay the output's until the replacement takes its place).
pub fn id(output_id: &str) -> String {
    format!("{output_id}{NEW_SUFFIX}")
}

/// What an earlier `--overwrite` left at `new`: a replacement of this input to go on
/// with, or nothing usable (then it is removed, and this run starts a new one). A link or
/// anything else planted at the name is refused, naming it.
pub fn existing_replacement(
    new: &Path,
    info: &InputInfo,
    layout: &OutputLayout,
) -> Result<Existing> {
    match std::fs::symlink_metadata(new) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Existing::Fresh),
        Err(e) => return Err(Error::io(format!("{}: cannot read", new.display()), e)),
        Ok(m) if !m.is_file() => {
            let planted = std::io::Error::other("not a regular file");
            return Err(crate::safefs::refused(new, "cannot open", planted));
        }
        Ok(_) => {}
    }
    match resume::check_existing_output(new, info, layout) {
        Ok(existing) => Ok(existing),
        // Another input's or other options' replacement (or a damaged one): --overwrite
        // says to start anew, and the file is ours.
        Err(_) => {
            std::fs::remove_file(new)
                .map_err(|e| Error::io(format!("{}: cannot remove", new.display()), e))?;
            Ok(Existing::Fresh)
        }
    }
}

/// Renames the complete replacement `new` over the output's real file, makes the rename
/// durable, and moves the replacement's fallback rows in the state to the output's name.
pub fn replace(new: &Path, real: &Path, new_id: &str, out_id: &str, state: &State) -> Result<()> {
    std::fs::rename(new, real)
        .map_err(|e| Error::io(format!("{}: cannot replace", real.display()), e))?;
    crate::safefs::sync_dir(real);
    let rows = state.fallback_rows(new_id)?;
    state.set_fallback_rows(out_id, &rows)?;
    state.set_fallback_rows(new_id, &BTreeSet::new())
}

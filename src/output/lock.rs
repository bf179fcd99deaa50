//! The output's lock: one run at a time writes an output file.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::sibling;
use crate::error::{Error, Result};

/// An exclusive lock on `<output>.lock`, released when the process ends, however it ends.
///
/// The file is removed when the run ends, while the lock is still held. A second run may
/// have opened the file just before that: it then locks a file that no longer has a name,
/// while a third run creates and locks a new one. So a taker checks, once it holds the
/// lock, that the path still names the file it locked, and starts over if not.
pub struct OutputLock {
    path: PathBuf,
    _file: File,
}

/// How often a taker starts over because the file it locked had just been removed. Each
/// retry means another run released the lock in the meantime, so a few are plenty.
const LOCK_ATTEMPTS: u32 = 100;

impl OutputLock {
    pub fn take(output: &Path) -> Result<OutputLock> {
        let path = sibling(output, ".lock");
        for _ in 0..LOCK_ATTEMPTS {
            // Not through a link planted at the lock's name (it would lock, and on
            // release remove, whatever it points to).
            let file = crate::safefs::no_follow()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|e| {
                    crate::safefs::refused(
                        &path,
                        "cannot create the lock file (the output's directory must be writable)",
                        e,
                    )
                })?;
            if let Some(lock) = Self::lock_if_current(file, &path, output)? {
                return Ok(lock);
            }
        }
        Err(Error::Runtime(format!(
            "{}: could not take the lock (it kept being replaced); try again",
            path.display()
        )))
    }

    /// Locks `file` (opened at `path`); `None` if `path` no longer names that file.
    fn lock_if_current(file: File, path: &Path, output: &Path) -> Result<Option<OutputLock>> {
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Runtime(format!(
                    "another autolabel run is writing {} (it holds {}); wait for it to finish",
                    output.display(),
                    path.display()
                )))
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::io(format!("{}: cannot lock", path.display()), e))
            }
        }
        let locked = file
            .metadata()
            .map_err(|e| Error::io(format!("{}: cannot lock", path.display()), e))?;
        let current = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("{}: cannot lock", path.display()), e)),
        };
        Ok(same_file(&locked, &current).then(|| OutputLock {
            path: path.to_path_buf(),
            _file: file,
        }))
    }
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}

#[cfg(not(unix))]
fn same_file(_: &std::fs::Metadata, _: &std::fs::Metadata) -> bool {
    // Windows refuses to delete an open file, so a locked file keeps its name.
    true
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Runs before `_file` closes: the file goes away while still locked, and a taker
        // that locks it afterwards sees that its name is gone (see `lock_if_current`).
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_file_removed_under_a_taker_is_not_a_lock() {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("out.csv");
        let lock_path = sibling(&output, ".lock");
        let first = OutputLock::take(&output).unwrap();
        // A second run opens the lock file and is about to lock it...
        let opened_early = std::fs::OpenOptions::new()
            .write(true)
            .open(&lock_path)
            .unwrap();
        // ...when the first run ends and a third starts.
        drop(first);
        let third = OutputLock::take(&output).unwrap();
        // The second run's lock on the removed file must not count.
        assert!(
            OutputLock::lock_if_current(opened_early, &lock_path, &output)
                .unwrap()
                .is_none(),
            "locked a file that no longer has a name"
        );
        // And a taker that comes now is refused while the third run holds the lock.
        let err = OutputLock::take(&output).err().expect("must be refused");
        assert!(err.to_string().contains("another autolabel run"), "{err}");
        drop(third);
        assert!(!lock_path.exists(), "the lock file is removed at the end");
        drop(OutputLock::take(&output).unwrap());
    }
}

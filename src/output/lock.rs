//! The output's lock: one run at a time writes an output file, whatever name each run
//! gives it. The lock file sits beside the output's real file (every symlink resolved),
//! and the output file itself is locked too, which two hard links of it share.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

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
    /// The output file itself, locked: from the start when it exists, else once this
    /// run has created it.
    output: OnceLock<File>,
}

/// How often a taker starts over because the file it locked had just been removed. Each
/// retry means another run released the lock in the meantime, so a few are plenty.
const LOCK_ATTEMPTS: u32 = 100;

impl OutputLock {
    /// Locks `output` (as the user named it), whose real file is `real`.
    pub fn take(output: &Path, real: &Path) -> Result<OutputLock> {
        let lock = Self::take_file(output, real)?;
        lock.lock_output(output, real)?;
        // Who holds it, for a run that is refused (best effort: the lock is what counts).
        let _ = lock._file.set_len(0).and_then(|_| {
            writeln!(
                &lock._file,
                "pid {} --output {}",
                std::process::id(),
                output.display()
            )
        });
        Ok(lock)
    }

    /// Takes `<real>.lock`.
    fn take_file(output: &Path, real: &Path) -> Result<OutputLock> {
        let path = sibling(real, ".lock");
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
                    "another autolabel run{} is writing {} (it holds {}); wait for it to finish",
                    holder(path),
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
            output: OnceLock::new(),
        }))
    }

    /// Locks the output file itself, if there is one and it is not locked yet: a run that
    /// names it by a hard link (so another lock file) finds it locked.
    pub fn lock_output(&self, output: &Path, real: &Path) -> Result<()> {
        if self.output.get().is_none() {
            if let Some(file) = lock_output_file(output, real)? {
                let _ = self.output.set(file);
            }
        }
        Ok(())
    }
}

/// Locks the output file itself, if there is one. Opened for reading only, never
/// through a link.
fn lock_output_file(output: &Path, real: &Path) -> Result<Option<File>> {
    let file = match crate::safefs::no_follow().read(true).open(real) {
        Ok(f) if f.metadata().is_ok_and(|m| m.is_file()) => f,
        // No output yet (nothing can be another name of it), or not a file (refused later).
        _ => return Ok(None),
    };
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Runtime(format!(
            "another autolabel run{} is writing {} under another name (a hard link to it); \
             wait for it to finish",
            inode_holder(&file),
            output.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(Error::io(format!("{}: cannot lock", output.display()), e))
        }
    }
}

/// " (pid N, --output NAME)" from a held lock file; empty when it cannot be read.
fn holder(lock: &Path) -> String {
    let mut text = String::new();
    let read = crate::safefs::no_follow()
        .read(true)
        .open(lock)
        .and_then(|f| f.take(512).read_to_string(&mut text));
    match read {
        Ok(_) if text.starts_with("pid ") => format!(" ({})", text.trim()),
        _ => String::new(),
    }
}

/// " (pid N)" of the process that holds a lock on `file`, from /proc/locks (Linux);
/// empty elsewhere or when it is not found.
fn inode_holder(file: &File) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let (Ok(meta), Ok(locks)) = (file.metadata(), std::fs::read_to_string("/proc/locks"))
        else {
            return String::new();
        };
        // "1: FLOCK  ADVISORY  WRITE 4242 08:01:1234567 0 EOF"
        let ino = format!(":{}", meta.ino());
        for line in locks.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(1) == Some(&"FLOCK") && fields.get(5).is_some_and(|f| f.ends_with(&ino)) {
                if let Some(pid) = fields
                    .get(4)
                    .filter(|p| **p != std::process::id().to_string())
                {
                    return format!(" (pid {pid})");
                }
            }
        }
    }
    let _ = file;
    String::new()
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
        let first = OutputLock::take(&output, &output).unwrap();
        // A second run opens the lock file and is about to lock it...
        let opened_early = std::fs::OpenOptions::new()
            .write(true)
            .open(&lock_path)
            .unwrap();
        // ...when the first run ends and a third starts.
        drop(first);
        let third = OutputLock::take(&output, &output).unwrap();
        // The second run's lock on the removed file must not count.
        assert!(
            OutputLock::lock_if_current(opened_early, &lock_path, &output)
                .unwrap()
                .is_none(),
            "locked a file that no longer has a name"
        );
        // And a taker that comes now is refused while the third run holds the lock.
        let err = OutputLock::take(&output, &output)
            .err()
            .expect("must be refused");
        assert!(err.to_string().contains("another autolabel run"), "{err}");
        drop(third);
        assert!(!lock_path.exists(), "the lock file is removed at the end");
        drop(OutputLock::take(&output, &output).unwrap());
    }
}

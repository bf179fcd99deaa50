//! How the tool touches files it did not make: small files are read up to a cap, files it
//! writes are never the input (by device and inode, whatever the names), and files it
//! creates beside the output are opened without following a link planted at their name.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The most read of a small file the user names (the env file, a prompt file): far more
/// than any real one, little enough to hold. `/dev/zero` would otherwise fill the memory.
pub const SMALL_FILE_MAX: u64 = 1 << 20;

/// Reads `path` up to [`SMALL_FILE_MAX`] bytes; `Ok(None)` when it is larger.
pub fn read_small(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    File::open(path)?
        .take(SMALL_FILE_MAX + 1)
        .read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= SMALL_FILE_MAX).then_some(bytes))
}

/// Why a small file was refused: "over 1 MiB".
pub fn too_large() -> String {
    format!(
        "is over {} MiB: too large for this file (is it the right one?)",
        SMALL_FILE_MAX >> 20
    )
}

/// Refuses to write `written` (named by `flag`) when it is the input file: the same path,
/// or another name for the same file (a hard link, a bind mount, a symlink), which the
/// device and inode tell. A file that does not exist yet is not the input.
pub fn refuse_input(input: &Path, written: &Path, flag: &str) -> Result<()> {
    let (Ok(a), Ok(b)) = (std::fs::metadata(input), std::fs::metadata(written)) else {
        return Ok(());
    };
    if same_file(&a, &b) {
        return Err(Error::Usage(format!(
            "{flag} {} is the input file {} (the same file under another name); choose another path",
            written.display(),
            input.display()
        )));
    }
    Ok(())
}

/// Whether two metadata are of one file.
#[cfg(unix)]
pub fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}

#[cfg(not(unix))]
pub fn same_file(_: &std::fs::Metadata, _: &std::fs::Metadata) -> bool {
    false
}

/// Options that never follow a symlink at the file's own name (`O_NOFOLLOW`).
pub fn no_follow() -> OpenOptions {
    let mut o = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    }
    o
}

/// Creates `path`, which must not exist (`O_EXCL`: not even as a symlink).
pub fn create_new(path: &Path) -> Result<File> {
    no_follow()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| refused(path, "cannot create", e))
}

/// Creates `path` anew (`O_EXCL`, `O_NOFOLLOW`): a file of this tool's that an earlier run
/// left there (a regular file) is removed first; a link or anything else is refused,
/// naming it.
pub fn create_anew(path: &Path) -> Result<File> {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file()) {
        std::fs::remove_file(path).map_err(|e| refused(path, "cannot remove", e))?;
    }
    create_new(path)
}

/// Writes a whole file that replaces `path` only once it is complete: `write` fills a
/// new file beside it (created with `O_EXCL`, `O_NOFOLLOW`), which is synced and renamed
/// over `path` in one atomic step. On any failure `path` is as it was and the new file
/// is removed. For files written at once (a review file, a report).
pub fn write_replacing(path: &Path, write: impl FnOnce(&mut File) -> io::Result<()>) -> Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".autolabel-{}.tmp", std::process::id()));
    let temp = path.with_file_name(name);
    let mut file = create_anew(&temp)?;
    let written = write(&mut file)
        .and_then(|_| file.sync_all())
        .and_then(|_| std::fs::rename(&temp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(Error::io(format!("{}: cannot write", path.display()), e));
    }
    sync_dir(path);
    Ok(())
}

/// Makes a rename or a new name of `path` durable (its directory's entry). Best effort:
/// some file systems cannot sync a directory, and the data itself is synced already.
pub fn sync_dir(path: &Path) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// The file `path` names, every symbolic link resolved (also a dangling one at its end,
/// which names a file still to be made): two names of one output lock one lock file,
/// and the files beside the output sit beside the file itself.
pub fn real_path(path: &Path) -> PathBuf {
    let mut p = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    // As the kernel does: at most 40 links in a row.
    for _ in 0..40 {
        match std::fs::read_link(&p) {
            Ok(to) => p = p.parent().map_or(to.clone(), |dir| dir.join(&to)),
            Err(_) => break,
        }
    }
    match (p.parent(), p.file_name()) {
        (Some(dir), Some(name)) => std::fs::canonicalize(dir)
            .map(|d| d.join(name))
            .unwrap_or(p),
        _ => p,
    }
}

/// Opens `path` (a file this tool made) for writing without following a link there.
pub fn open_own(path: &Path, options: &mut OpenOptions) -> Result<File> {
    options
        .open(path)
        .map_err(|e| refused(path, "cannot open", e))
}

/// The error for a failed open: a planted symlink (or any non-file) says so by name.
pub fn refused(path: &Path, what: &str, e: io::Error) -> Error {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Error::Usage(format!(
            "{}: is a symbolic link where autolabel keeps its own file; it is not followed. \
             Remove it if you did not put it there",
            path.display()
        )),
        Ok(m) if !m.is_file() => Error::Usage(format!(
            "{}: is not a regular file where autolabel keeps its own file; remove it",
            path.display()
        )),
        _ => Error::io(format!("{}: {what}", path.display()), e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hard_link_is_the_input_and_a_planted_link_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.csv");
        std::fs::write(&input, "text\na\n").unwrap();
        let linked = dir.path().join("out.csv");
        std::fs::hard_link(&input, &linked).unwrap();
        let err = refuse_input(&input, &linked, "--output").unwrap_err();
        assert!(err.to_string().contains("in.csv"), "{err}");
        assert!(refuse_input(&input, &dir.path().join("new.csv"), "--output").is_ok());
        let planted = dir.path().join("tmp");
        std::os::unix::fs::symlink(&input, &planted).unwrap();
        let err = create_new(&planted).unwrap_err().to_string();
        assert!(
            err.contains("symbolic link") && err.contains("tmp"),
            "{err}"
        );
        let err = open_own(&planted, no_follow().write(true))
            .unwrap_err()
            .to_string();
        assert!(err.contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read(&input).unwrap(), b"text\na\n");
    }

    #[test]
    fn a_file_written_replacing_is_all_or_nothing_and_links_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("review.csv");
        std::fs::write(&p, "old").unwrap();
        let failed = write_replacing(&p, |f| {
            use std::io::Write;
            f.write_all(b"half")?;
            Err(io::Error::other("disk full"))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"old", "untouched on failure");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp left"
        );
        write_replacing(&p, |f| std::io::Write::write_all(f, b"new")).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        // Two names of one file resolve to one real path, a dangling link to its target.
        let link = dir.path().join("link.csv");
        std::os::unix::fs::symlink("review.csv", &link).unwrap();
        assert_eq!(real_path(&link), real_path(&p));
        let dangling = dir.path().join("later.csv");
        std::os::unix::fs::symlink("sub/../not-yet.csv", &dangling).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let real = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(real_path(&dangling), real.join("not-yet.csv"));
    }

    #[test]
    fn a_small_file_is_read_up_to_its_cap() {
        assert!(read_small(Path::new("/dev/zero")).unwrap().is_none());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, "A=1\n").unwrap();
        assert_eq!(read_small(&p).unwrap().unwrap(), b"A=1\n");
    }
}

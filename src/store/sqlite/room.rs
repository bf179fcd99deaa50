//! A write that found no room (a full disk, a quota, the file size limit) says so, naming
//! the file and the space left, instead of calling the file unusable: nothing is wrong
//! with it, and moving it away would lose the state.

use std::path::Path;

use rusqlite::Connection;

/// Whether `e` (from a call on `conn`) failed for want of room: SQLite's "database or
/// disk is full", or an I/O error whose system error is ENOSPC, EDQUOT or EFBIG.
pub(super) fn no_room(conn: &Connection, e: &rusqlite::Error) -> bool {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DiskFull) => true,
        Some(rusqlite::ErrorCode::SystemIoFailure) => {
            // SAFETY: the handle is valid for as long as `conn` is borrowed; the call only
            // reads the connection's last system error.
            let errno = unsafe { rusqlite::ffi::sqlite3_system_errno(conn.handle()) };
            [libc::ENOSPC, libc::EDQUOT, libc::EFBIG].contains(&errno)
        }
        _ => false,
    }
}

/// "disk full: no room to write it (N free on its file system; …)".
pub(super) fn message(path: &Path, e: &rusqlite::Error) -> String {
    let free = free_bytes(path).map_or("free space unknown".to_string(), |b| {
        format!("{} free on its file system", human(b))
    });
    format!("disk full: no room to write it ({free}; or a file size limit, ulimit -f: {e})")
}

/// Bytes an unprivileged writer may still use on the file system holding `path`.
fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string and `s` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    Some(s.f_bavail as u64 * s.f_frsize as u64)
}

/// 1536 -> "1.5 KiB".
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let (mut v, mut u) = (bytes as f64, 0);
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human(0), "0 bytes");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(3 << 30), "3.0 GiB");
        assert!(free_bytes(Path::new("/tmp/x")).is_some());
    }
}

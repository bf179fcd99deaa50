//! The state in one SQLite file: every run on one machine. WAL mode and short
//! transactions let several runs share the file. [`schema`] owns the tables and the
//! connections; each other file here does one job on them, and [`quota`] is the quota
//! store on a connection of its own.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::Connection;

use crate::error::{Error, Result};
use schema::{is_busy, SetupError};

mod cache;
mod events;
mod health;
mod key_control;
mod ledger;
mod quota;
mod room;
mod runs;
mod schema;
#[cfg(test)]
mod tests;
mod upkeep;

pub use quota::SqliteQuotas;

pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<SqliteStore> {
        let fail = |message: String| Error::State {
            place: path.display().to_string(),
            message,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| fail(format!("cannot create its directory: {e}")).caused_by(e))?;
        }
        // Runs started together (cron) may set up a new file at the same moment; SQLite
        // answers BUSY at once there (no busy handler while switching to WAL), so retry.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match schema::setup(path) {
                Ok(conn) => {
                    return Ok(SqliteStore {
                        conn: Mutex::new(conn),
                        path: path.to_path_buf(),
                    })
                }
                Err(SetupError::Sqlite(e)) if is_busy(&e) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20 + fastrand::u64(0..80)));
                }
                Err(SetupError::Sqlite(e)) if is_busy(&e) => {
                    return Err(fail(format!(
                        "is locked by another process for over 30 s ({e}); wait for it or pass --state with another path"
                    )).caused_by(e))
                }
                Err(SetupError::Sqlite(e)) => {
                    return Err(fail(format!(
                        "is not a usable state file ({e}); move it away (a new one is created) or pass --state with another path"
                    )).caused_by(e))
                }
                Err(SetupError::NoRoom(e)) => {
                    let why = room::message(path, &e);
                    return Err(fail(format!(
                        "{why}; the file itself is fine: free some space and run again"
                    ))
                    .caused_by(e));
                }
                Err(SetupError::Newer(version)) => {
                    return Err(fail(format!(
                        "was written by a newer autolabel (schema {version}); upgrade, or pass --state with another path"
                    )))
                }
            }
        }
    }

    pub fn in_memory() -> SqliteStore {
        SqliteStore {
            conn: Mutex::new(schema::in_memory()),
            path: PathBuf::from(":memory:"),
        }
    }

    /// The error of a failed write on `conn`: a full disk says so, naming the space left.
    fn write_err(&self, conn: &Connection, e: rusqlite::Error) -> Error {
        if !room::no_room(conn, &e) {
            return self.err(e);
        }
        Error::State {
            place: self.path.display().to_string(),
            message: room::message(&self.path, &e),
        }
        .caused_by(e)
    }

    fn err(&self, e: rusqlite::Error) -> Error {
        Error::State {
            place: self.path.display().to_string(),
            message: e.to_string(),
        }
        .caused_by(e)
    }

    /// The connection; a panic elsewhere while it was held leaves nothing half-written
    /// (transactions roll back), so a poisoned lock is taken over.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

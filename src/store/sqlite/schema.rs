//! The state file's schema: the one place that knows its tables and how an older file
//! is brought up to date, and that opens connections to it. The schema only ever grows
//! (tables and columns added when missing), so every older state file keeps opening.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

/// 2: the `meta` table (when the state was last pruned).
pub(super) const SCHEMA_VERSION: i64 = 2;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS usage (
    day TEXT NOT NULL, provider TEXT NOT NULL, fingerprint TEXT NOT NULL, masked TEXT NOT NULL,
    model TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0, successes INTEGER NOT NULL DEFAULT 0,
    rate_limit INTEGER NOT NULL DEFAULT 0, quota INTEGER NOT NULL DEFAULT 0, auth INTEGER NOT NULL DEFAULT 0,
    server INTEGER NOT NULL DEFAULT 0, timeout INTEGER NOT NULL DEFAULT 0, network INTEGER NOT NULL DEFAULT 0,
    unparsable INTEGER NOT NULL DEFAULT 0, rejected INTEGER NOT NULL DEFAULT 0,
    tokens_in INTEGER NOT NULL DEFAULT 0, tokens_out INTEGER NOT NULL DEFAULT 0, cost REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (day, provider, fingerprint, model)
);
CREATE TABLE IF NOT EXISTS key_health (
    provider TEXT NOT NULL, fingerprint TEXT NOT NULL, masked TEXT NOT NULL,
    status TEXT NOT NULL, until INTEGER, reason TEXT NOT NULL, updated INTEGER NOT NULL,
    PRIMARY KEY (provider, fingerprint)
);
CREATE TABLE IF NOT EXISTS rotations (
    id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, provider TEXT NOT NULL,
    from_key TEXT NOT NULL, to_key TEXT NOT NULL, reason TEXT NOT NULL, mode TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cache (k BLOB PRIMARY KEY, label TEXT NOT NULL, created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS fallback_rows (output TEXT NOT NULL, row INTEGER NOT NULL, PRIMARY KEY (output, row));
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
";

/// Added after schema 1 shipped; created on every open, so older files gain it too.
const LEARNED_LIMITS: &str = "
CREATE TABLE IF NOT EXISTS learned_limits (
    provider TEXT NOT NULL, model TEXT NOT NULL, fingerprint TEXT NOT NULL, dim TEXT NOT NULL,
    value INTEGER NOT NULL, source TEXT NOT NULL, updated INTEGER NOT NULL,
    PRIMARY KEY (provider, model, fingerprint, dim)
);
";

/// Added with the learning of shared organizations (issue 21); created on every open.
const ORG_MEMBERS: &str = "
CREATE TABLE IF NOT EXISTS org_members (
    provider TEXT NOT NULL, fingerprint TEXT NOT NULL, org TEXT NOT NULL,
    updated INTEGER NOT NULL, PRIMARY KEY (provider, fingerprint)
);
";

/// Models found to wrap their labels in prose (issue 23): the extra reply tokens a row
/// their first tries get; created on every open.
const REPLY_EXTRA: &str = "
CREATE TABLE IF NOT EXISTS reply_extra (
    provider TEXT NOT NULL, model TEXT NOT NULL, extra INTEGER NOT NULL,
    updated INTEGER NOT NULL, PRIMARY KEY (provider, model)
);
";

/// Columns added to existing tables after the first schema, as (table, column, definition).
/// Added only when missing, so every older state file keeps working and opening twice
/// changes nothing.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("usage", "rows", "INTEGER NOT NULL DEFAULT 0"),
    ("usage", "cut", "INTEGER NOT NULL DEFAULT 0"),
    ("runs", "votes", "INTEGER NOT NULL DEFAULT 1"),
    ("runs", "voted", "INTEGER NOT NULL DEFAULT 0"),
    ("runs", "unanimous", "INTEGER NOT NULL DEFAULT 0"),
    ("runs", "review", "INTEGER NOT NULL DEFAULT 0"),
    ("runs", "priority", "TEXT NOT NULL DEFAULT 'normal'"),
];

/// Adds the columns of `ADDED_COLUMNS` that a state file lacks. The check and the change
/// happen in one write transaction, so two runs opening an old file at once cannot both
/// try to add the same column.
fn add_missing_columns(conn: &Connection) -> rusqlite::Result<()> {
    let has = |table: &str, column: &str| -> rusqlite::Result<bool> {
        let mut stmt = conn.prepare(&format!("PRAGMA table_info({table})"))?;
        let names = stmt.query_map([], |r| r.get::<_, String>(1))?;
        for name in names {
            if name? == column {
                return Ok(true);
            }
        }
        Ok(false)
    };
    let mut missing = false;
    for (table, column, _) in ADDED_COLUMNS {
        missing |= !has(table, column)?;
    }
    if !missing {
        return Ok(());
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        for (table, column, definition) in ADDED_COLUMNS {
            if !has(table, column)? {
                conn.execute_batch(&format!(
                    "ALTER TABLE {table} ADD COLUMN {column} {definition}"
                ))?;
            }
        }
        Ok(())
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Key overrides and activity (`keys` commands).
const KEY_CONTROL: &str = "
CREATE TABLE IF NOT EXISTS key_overrides (
    provider TEXT NOT NULL, fingerprint TEXT NOT NULL, masked TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0, disabled_until INTEGER, reason TEXT NOT NULL DEFAULT '',
    reset_seq INTEGER NOT NULL DEFAULT 0, reset_what TEXT NOT NULL DEFAULT '',
    day_base_date TEXT, day_base_requests INTEGER NOT NULL DEFAULT 0, day_base_tokens INTEGER NOT NULL DEFAULT 0,
    month_base_date TEXT, month_base_requests INTEGER NOT NULL DEFAULT 0, month_base_tokens INTEGER NOT NULL DEFAULT 0,
    updated INTEGER NOT NULL,
    PRIMARY KEY (provider, fingerprint)
);
CREATE TABLE IF NOT EXISTS key_activity (
    provider TEXT NOT NULL, fingerprint TEXT NOT NULL,
    last_used INTEGER, last_error TEXT, last_error_at INTEGER,
    PRIMARY KEY (provider, fingerprint)
);
";

/// The runs registry.
const RUNS: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, input TEXT NOT NULL,
    output TEXT NOT NULL, providers TEXT NOT NULL, rows_done INTEGER NOT NULL DEFAULT 0,
    rows_total INTEGER NOT NULL DEFAULT 0, rate REAL NOT NULL DEFAULT 0, key_in_use TEXT NOT NULL DEFAULT '',
    started INTEGER NOT NULL, heartbeat INTEGER NOT NULL, finished INTEGER
);
";

/// The action and error logs (issue 24): JSON entries by kind and time.
const EVENTS: &str = "
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, ts INTEGER NOT NULL, body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_kind ON events (kind, ts);
";

/// Each organization's quota state (see [`super::quota`]). Created by the quota store's
/// connection, as it always was.
const QUOTA_STATE: &str = "CREATE TABLE IF NOT EXISTS quota_state (
    org TEXT PRIMARY KEY, state TEXT NOT NULL, updated INTEGER NOT NULL
)";

pub(super) enum SetupError {
    Sqlite(rusqlite::Error),
    Newer(i64),
    /// A write found no room (a full disk): the file itself is fine.
    NoRoom(rusqlite::Error),
}

impl From<rusqlite::Error> for SetupError {
    fn from(e: rusqlite::Error) -> Self {
        SetupError::Sqlite(e)
    }
}

pub(super) fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// A connection to the file in WAL mode that waits up to `busy` for another run's lock.
/// Without a sync on every commit: no fsync per request. A killed process loses nothing
/// committed; only a power loss can lose the last writes.
fn connect(path: &Path, busy: Duration) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    configure(&conn, busy)?;
    Ok(conn)
}

fn configure(conn: &Connection, busy: Duration) -> rusqlite::Result<()> {
    conn.busy_timeout(busy)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")
}

/// The state store's connection, the file brought up to this version's schema.
pub(super) fn setup(path: &Path) -> Result<Connection, SetupError> {
    let conn = Connection::open(path)?;
    match configure(&conn, Duration::from_secs(30))
        .map_err(SetupError::from)
        .and_then(|_| bring_up(&conn))
    {
        Ok(()) => Ok(conn),
        Err(SetupError::Sqlite(e)) if super::room::no_room(&conn, &e) => Err(SetupError::NoRoom(e)),
        Err(e) => Err(e),
    }
}

/// Brings the file up to this version's schema.
fn bring_up(conn: &Connection) -> Result<(), SetupError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(SetupError::Newer(version));
    }
    if version < SCHEMA_VERSION {
        conn.execute_batch(SCHEMA)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    }
    add_later_tables(conn)?;
    Ok(())
}

/// Everything added after schema 1 shipped, on every open, so older files gain it too.
fn add_later_tables(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(LEARNED_LIMITS)?;
    conn.execute_batch(ORG_MEMBERS)?;
    conn.execute_batch(REPLY_EXTRA)?;
    conn.execute_batch(KEY_CONTROL)?;
    conn.execute_batch(RUNS)?;
    conn.execute_batch(EVENTS)?;
    // Last: the tables it adds columns to exist by now.
    add_missing_columns(conn)
}

/// A state in memory with the whole schema (tests).
pub(super) fn in_memory() -> Connection {
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch(SCHEMA).unwrap();
    add_later_tables(&conn).unwrap();
    conn
}

/// The quota store's connection of its own. Many runs may decide at once; each
/// transaction holds the lock for microseconds.
pub(super) fn quota_connection(path: &Path) -> rusqlite::Result<Connection> {
    let conn = connect(path, Duration::from_secs(10))?;
    conn.execute_batch(QUOTA_STATE)?;
    Ok(conn)
}

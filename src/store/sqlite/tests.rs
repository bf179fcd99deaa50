//! What only the state file does: the shared behaviour is in `store::suite`.

use rusqlite::{params, Connection};

use super::schema::{SCHEMA, SCHEMA_VERSION};
use super::SqliteStore;
use crate::store::suite::day_of;
use crate::store::{KeyHistory, LabelCache, Ledger, Pruned, Upkeep, UsageDelta, UsageEntry};
use crate::timeutil;

#[test]
fn a_state_file_from_before_the_rows_column_gets_it_and_keeps_its_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("state.sqlite3");
    {
        // The ledger as the first schema wrote it: no `rows` column.
        let conn = Connection::open(&p).unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        let has_rows: i64 = conn
            .query_row(
                "SELECT count(*) FROM pragma_table_info('usage') WHERE name = 'rows'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(has_rows, 0, "the first schema has no rows column");
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .unwrap();
        conn.execute(
            "INSERT INTO usage (day, provider, fingerprint, masked, model, requests, successes, tokens_in)
             VALUES ('2026-01-02', 'groq', 'fp1', 'gsk_…1234', 'm', 3, 3, 120)",
            [],
        )
        .unwrap();
    }
    let columns = |s: &SqliteStore| -> Vec<String> {
        let conn = s.conn();
        let mut stmt = conn.prepare("PRAGMA table_info(usage)").unwrap();
        let names = stmt.query_map([], |r| r.get::<_, String>(1)).unwrap();
        names.map(|n| n.unwrap()).collect()
    };
    let s = SqliteStore::open(&p).unwrap();
    assert_eq!(columns(&s).iter().filter(|c| *c == "rows").count(), 1);
    let old = s.usage_since("groq", &day_of("2026-01-01")).unwrap();
    assert_eq!((old[0].usage.requests, old[0].usage.rows), (3, 0));
    let d = UsageDelta {
        requests: 1,
        successes: 1,
        tokens_in: 40,
        rows: 20,
        ..Default::default()
    };
    let row = UsageEntry {
        fingerprint: "fp1".to_string(),
        masked: "gsk_…1234".to_string(),
        model: "m".to_string(),
        day: day_of("2026-01-02"),
        usage: d,
    };
    s.add_usage("groq", &[row]).unwrap();
    drop(s);
    // Opening again adds nothing twice and keeps what was counted.
    let s = SqliteStore::open(&p).unwrap();
    assert_eq!(columns(&s).iter().filter(|c| *c == "rows").count(), 1);
    let now = s.usage_since("groq", &day_of("2026-01-01")).unwrap();
    assert_eq!(
        (
            now[0].usage.requests,
            now[0].usage.rows,
            now[0].usage.tokens_in
        ),
        (4, 20, 160)
    );
}

#[test]
fn prune_removes_cache_entries_by_when_they_were_written() {
    let s = SqliteStore::in_memory();
    let now = timeutil::from_unix(1_780_000_000); // 2026-05-28T20:26:40Z
    let days_ago = |d: i64| timeutil::unix_secs(now) - d * 86_400;
    {
        let conn = s.conn();
        for (k, age) in [(1u8, 100), (2, 31), (3, 29), (4, 0)] {
            conn.execute(
                "INSERT INTO cache (k, label, created) VALUES (?1, 'positif', ?2)",
                params![vec![k], days_ago(age)],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO rotations (ts, provider, from_key, to_key, reason, mode) VALUES (?1, 'groq', 'a', 'b', 'r', 'auto')",
                params![days_ago(age)],
            )
            .unwrap();
        }
    }
    let usage_on = |day: &str| UsageEntry {
        fingerprint: "fp".to_string(),
        masked: "m".to_string(),
        model: "model".to_string(),
        day: day_of(day),
        usage: UsageDelta {
            requests: 1,
            ..Default::default()
        },
    };
    s.add_usage(
        "groq",
        &[
            usage_on("2026-04-27"),
            usage_on("2026-04-28"),
            usage_on("2026-05-28"),
        ],
    )
    .unwrap();
    assert_eq!(s.prune(0, now).unwrap().total(), 0, "0 keeps everything");
    let pruned = s.prune(30, now).unwrap();
    assert_eq!(
        pruned,
        Pruned {
            cache: 2,
            rotations: 2,
            usage: 1,
            kept_from: day_of("2026-04-28")
        }
    );
    assert!(s.cache_get(&[2]).unwrap().is_none());
    assert!(s.cache_get(&[3]).unwrap().is_some());
    assert_eq!(
        s.usage_since("groq", &day_of("2000-01-01")).unwrap().len(),
        2
    );
    assert_eq!(
        s.rotations("groq", timeutil::from_unix(0), 10)
            .unwrap()
            .len(),
        2
    );
    // Once a day: the second call the same day does nothing, a new setting does.
    assert!(s.prune_if_due(30, now).unwrap().is_some());
    assert!(s.prune_if_due(30, now).unwrap().is_none());
    assert!(s.prune_if_due(1, now).unwrap().is_some());
    assert_eq!(
        s.usage_since("groq", &day_of("2000-01-01")).unwrap().len(),
        1,
        "today stays"
    );
}

#[test]
fn corrupt_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("state.sqlite3");
    std::fs::write(
        &p,
        b"this is not a database, just some bytes that fill a page................",
    )
    .unwrap();
    let err = SqliteStore::open(&p).err().expect("must fail").to_string();
    assert!(err.contains("move it away"), "{err}");
}

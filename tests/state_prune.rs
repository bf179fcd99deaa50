//! The state does not grow without bound: old cache entries, rotations and usage rows
//! are pruned when a run starts (`--keep-days`), and by `autolabel state prune`;
//! `autolabel state vacuum` gives the space back.

mod common;

use std::collections::HashSet;
use std::path::Path;

use common::*;
use rusqlite::{params, Connection};

const DAY: i64 = 86_400;

fn count(db: &Path, table: &str) -> i64 {
    let conn = Connection::open(db).unwrap();
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

/// Moves every cache entry, rotation and usage row of the state `days` days back.
fn age_everything(db: &Path, days: i64) {
    let conn = Connection::open(db).unwrap();
    conn.execute(
        "UPDATE cache SET created = created - ?1",
        params![days * DAY],
    )
    .unwrap();
    conn.execute("UPDATE rotations SET ts = ts - ?1", params![days * DAY])
        .unwrap();
    conn.execute(
        "UPDATE usage SET day = date(day, ?1)",
        params![format!("-{days} days")],
    )
    .unwrap();
}

#[test]
fn a_run_prunes_entries_older_than_keep_days_once_a_day() {
    let (fake, sb, texts, input, output) = setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 8);
    let r1 = run(&mut sb.label(&fake, &input, &output, &[]));
    assert_eq!(code(&r1), 0, "{}", stderr(&r1));
    assert_eq!(count(&sb.state(), "cache"), 8);
    age_everything(&sb.state(), 100);

    // --keep-days 120 keeps the 100-day-old cache: a new output is answered from it.
    let out2 = sb.path("out2.csv");
    let r2 = run(&mut sb.label(&fake, &input, &out2, &["--keep-days", "120"]));
    assert_eq!(code(&r2), 0, "{}", stderr(&r2));
    assert_eq!(fake.requests().len(), 8, "all cached");
    assert_labeled(&out2, &texts);

    // The default (90) prunes it: every text is asked again.
    let out3 = sb.path("out3.csv");
    let r3 = run(&mut sb.label(&fake, &input, &out3, &[]));
    assert_eq!(code(&r3), 0, "{}", stderr(&r3));
    assert_eq!(fake.requests().len(), 16, "the old cache is gone");
    assert_labeled(&out3, &texts);
    let err = stderr(&r3);
    assert!(
        err.contains("removed 8 cache entries, 0 rotations and 1 usage row from before")
            && err.contains("--keep-days 90"),
        "{err}"
    );
    assert_eq!(count(&sb.state(), "cache"), 8, "the new entries are kept");

    // Once a day: entries aged again are not pruned by a second run the same day.
    age_everything(&sb.state(), 100);
    let out4 = sb.path("out4.csv");
    let r4 = run(&mut sb.label(&fake, &input, &out4, &[]));
    assert_eq!(code(&r4), 0, "{}", stderr(&r4));
    assert_eq!(fake.requests().len(), 16, "answered from the (old) cache");
    assert!(!stderr(&r4).contains("removed"), "{}", stderr(&r4));
}

#[test]
fn state_prune_and_vacuum_say_what_they_did() {
    let (fake, sb, texts, input, output) = setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 5);
    let r = run(&mut sb.label(&fake, &input, &output, &[]));
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    // Plenty of old cache entries and a rotation, to see the file shrink.
    {
        let conn = Connection::open(sb.state()).unwrap();
        let old = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
            - 40 * DAY;
        let tx = conn.unchecked_transaction().unwrap();
        for i in 0..20_000u32 {
            tx.execute(
                "INSERT INTO cache (k, label, created) VALUES (?1, 'netral', ?2)",
                params![
                    format!("old-entry-{i:08}-padding-padding").into_bytes(),
                    old
                ],
            )
            .unwrap();
        }
        tx.execute(
            "INSERT INTO rotations (ts, provider, from_key, to_key, reason, mode) VALUES (?1, 'groq', 'a', 'b', 'r', 'auto')",
            params![old],
        )
        .unwrap();
        tx.commit().unwrap();
    }
    let prune = |days: &str| {
        let out = run(sb.cmd().args(["state", "prune", "--keep-days", days]));
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        stdout(&out)
    };
    let said = prune("60");
    assert!(
        said.contains("removed 0 cache entries, 0 rotations and 0 usage rows"),
        "{said}"
    );
    let said = prune("30");
    assert!(
        said.contains("removed 20000 cache entries, 1 rotation and 0 usage rows from before")
            && said.contains("state.sqlite3"),
        "{said}"
    );
    assert_eq!(count(&sb.state(), "cache"), 5, "this run's entries stay");

    let out = run(sb.cmd().args(["state", "vacuum"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let said = stdout(&out);
    let numbers: Vec<u64> = said
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    let (before, after) = (numbers[numbers.len() - 3], numbers[numbers.len() - 2]);
    assert!(after < before / 2, "{said}");
    assert_eq!(
        std::fs::metadata(sb.state()).unwrap().len(),
        after,
        "{said}"
    );

    // The state is still whole: usage reads it, and the cache still answers.
    let usage = run(sb.cmd().args(["usage", "--json"]));
    assert_eq!(code(&usage), 0, "{}", stderr(&usage));
    let again = sb.path("again.csv");
    let r = run(&mut sb.label(&fake, &input, &again, &[]));
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    assert_eq!(fake.requests().len(), 5);
    assert_labeled(&again, &texts);
    let asked: HashSet<_> = fake.requests().iter().map(|r| r.texts[0].clone()).collect();
    assert_eq!(asked.len(), 5);
}

#[test]
fn state_commands_refuse_a_missing_state_file() {
    let sb = Sandbox::new();
    let out = run(sb.cmd().args(["state", "vacuum"]));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no such state file"),
        "{}",
        stderr(&out)
    );
    assert!(!sb.state().exists(), "nothing created");
}

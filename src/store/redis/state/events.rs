//! The action and error logs on the Redis server: a list per log, newest first, each
//! entry its time and JSON text (`<unix seconds> <json>`), trimmed to the newest
//! [`EVENTS_KEPT`] and pruned by time like the rotation log.

use std::time::SystemTime;

use super::RedisStore;
use crate::error::Result;
use crate::store::events::{EventKind, EventLog};
use crate::timeutil;

/// Entries each log keeps; older ones are dropped as new ones come.
pub const EVENTS_KEPT: i64 = 10_000;

/// An entry's time and text.
fn split(entry: &str) -> Option<(i64, &str)> {
    let (ts, body) = entry.split_once(' ')?;
    Some((ts.parse().ok()?, body))
}

impl RedisStore {
    fn events_key(&self, kind: EventKind) -> String {
        self.key(&format!("events:{}", kind.as_str()))
    }

    /// Removes entries from before `cutoff` (Unix seconds) from both logs.
    pub(super) fn prune_events(&self, cutoff: i64) -> Result<()> {
        for kind in EventKind::ALL {
            // Newest first: the old entries are a tail; one this version cannot read goes too.
            self.trim_old_tail(&self.events_key(kind), |e| {
                split(e).is_none_or(|(ts, _)| ts < cutoff)
            })?;
        }
        Ok(())
    }
}

impl EventLog for RedisStore {
    fn log_events(&self, kind: EventKind, ts: SystemTime, entries: &[String]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let ts = timeutil::unix_secs(ts);
        let list = self.events_key(kind);
        let mut p = redis::pipe();
        p.atomic();
        for body in entries {
            p.cmd("LPUSH")
                .arg(&list)
                .arg(format!("{ts} {body}"))
                .ignore();
        }
        p.cmd("LTRIM")
            .arg(&list)
            .arg(0)
            .arg(EVENTS_KEPT - 1)
            .ignore();
        self.run(|c| p.query(c))
    }

    fn events(&self, kind: EventKind, since: SystemTime, limit: u32) -> Result<Vec<String>> {
        let list = self.events_key(kind);
        self.newest_since(&list, timeutil::unix_secs(since), limit, |e| {
            split(e).map(|(ts, body)| (ts, body.to_string()))
        })
    }
}

//! The state on a Redis server, for runs on several machines. Every key starts with the
//! prefix (`--redis-prefix`, `P` below); `P schema` marks the keys as autolabel's (see
//! [`super::link`]). The layout:
//!
//! | key | type | holds |
//! |-----|------|-------|
//! | `P usage:{day}:{provider}:{fp}:{model}` | hash | one ledger row: `day`, `provider`, `fingerprint`, `model`, `masked`, and the counters (`requests`, `successes`, one per error class, `tokens_in`, `tokens_out`, `rows`, `cut`: HINCRBY; `cost`: HINCRBYFLOAT) |
//! | `P usage-days` | set | the days that have ledger rows |
//! | `P usage-day:{day}` | set | that day's ledger keys (without the prefix) |
//! | `P health:{provider}` | hash | fingerprint → JSON `{masked, status, until, reason, updated}` |
//! | `P learned:{provider}:{model}` | hash | `{fp}:{dim}` → JSON `{value, source, updated}` |
//! | `P orgs:{provider}` | hash | fingerprint → the organization the key was found in |
//! | `P reply-extra:{provider}` | hash | model → extra reply tokens a row its first tries get (it wraps labels in prose) |
//! | `P rotations:{provider}` | list | newest first, JSON `{ts, from, to, reason, mode}`, capped at [`ROTATIONS_KEPT`] |
//! | `P rotation-providers` | set | providers that have a rotation log (for `prune`) |
//! | `P cache:{hex of the SHA-256}` | string | a label; expires after `--keep-days` (none with 0) |
//! | `P fallback:{output id}` | set | rows of that output that got the fallback label |
//! | `P pruned` | string | the day and setting of the last `prune_if_due` |
//! | `P rotate-requests:{provider}` | string | count of `keys rotate` requests (INCR) |
//! | `P override:{provider}:{fp}` | hash | a key's overrides (`masked`, `disabled`, `disabled_until`, `reason`, `reset_seq`, `reset_what`, `day_base_*`, `month_base_*`, `updated`) |
//! | `P override-keys:{provider}` | set | fingerprints with overrides |
//! | `P activity:{provider}:{fp}` | hash | `last_used`, `last_error`, `last_error_at` |
//! | `P activity-keys:{provider}` | set | fingerprints with activity |
//! | `P run:{id}` | hash | one run of the registry; expires [`RUN_TTL`] after its last heartbeat |
//! | `P runs` | sorted set | run ids by last heartbeat (Unix seconds) |
//!
//! Times are Unix seconds. Only fingerprints and masked keys are ever written, never a
//! key. Writes that belong together go in one MULTI/EXEC; what the server returns is
//! read defensively: an entry this version cannot read is skipped, never a panic.

use std::collections::HashMap;
use std::sync::atomic::AtomicU32;
use std::time::SystemTime;

use redis::{Connection, RedisResult};

use super::link::RedisLink;
use crate::error::Result;
use crate::store::{RedisTarget, StateLocation};
use crate::timeutil;

mod cache;
mod events;
mod health;
mod key_control;
mod ledger;
mod runs;
#[cfg(test)]
mod tests;
mod upkeep;

pub use health::ROTATIONS_KEPT;
pub use runs::RUN_TTL;

pub struct RedisStore {
    link: RedisLink,
    /// For messages: the URL with any password masked.
    location: StateLocation,
    /// Cache entries written from now on expire after this many days (0: never).
    cache_days: AtomicU32,
}

/// A hash as read back: field → value.
type Fields = HashMap<String, String>;

fn int(f: &Fields, name: &str) -> i64 {
    f.get(name).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

fn count(f: &Fields, name: &str) -> u64 {
    int(f, name).max(0) as u64
}

fn text(f: &Fields, name: &str) -> String {
    f.get(name).cloned().unwrap_or_default()
}

/// An optional time: absent, empty or unreadable is none.
fn time(f: &Fields, name: &str) -> Option<SystemTime> {
    f.get(name)
        .and_then(|v| v.trim().parse::<i64>().ok())
        .map(timeutil::from_unix)
}

/// A count as Redis integers take it (they are signed 64-bit).
fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn now_secs() -> i64 {
    timeutil::unix_secs(SystemTime::now())
}

impl RedisStore {
    /// Connects to the server `target` names; `location` is the same place, for messages.
    pub fn open(location: &StateLocation, target: &RedisTarget) -> Result<RedisStore> {
        let link = RedisLink::open(target).map_err(|m| location.error(m))?;
        Ok(RedisStore {
            link,
            location: location.clone(),
            cache_days: AtomicU32::new(0),
        })
    }

    /// Runs `f` on the server; an outage or a refusal becomes a state error.
    fn run<T>(&self, f: impl FnOnce(&mut Connection) -> RedisResult<T>) -> Result<T> {
        self.link
            .run(f)
            .map_err(|e| self.location.error(e.to_string()))
    }

    /// Removes the old tail of a newest-first log (`LPUSH`ed): the entries from the end
    /// for which `is_old` holds. Trimmed counted from the end, so entries pushed meanwhile
    /// stay. Returns how many went.
    fn trim_old_tail(&self, list: &str, is_old: impl Fn(&str) -> bool) -> Result<u64> {
        let all: Vec<String> =
            self.run(|c| redis::cmd("LRANGE").arg(list).arg(0).arg(-1).query(c))?;
        let old = all.iter().rev().take_while(|e| is_old(e)).count() as i64;
        if old > 0 {
            self.run(|c| {
                redis::cmd("LTRIM")
                    .arg(list)
                    .arg(0)
                    .arg(-(old + 1))
                    .query::<()>(c)
            })?;
        }
        Ok(old as u64)
    }

    /// The entries of a newest-first log (`LPUSH`ed) from `since` (Unix seconds) on, at
    /// most `limit`, read a page at a time: `decode` gives an entry's time and value (an
    /// entry it cannot read is passed over), and the first older entry ends the reading.
    fn newest_since<T>(
        &self,
        list: &str,
        since: i64,
        limit: u32,
        decode: impl Fn(&str) -> Option<(i64, T)>,
    ) -> Result<Vec<T>> {
        const PAGE: i64 = 200;
        let mut out = Vec::new();
        let mut start = 0i64;
        while out.len() < limit as usize {
            let page: Vec<String> = self.run(|c| {
                redis::cmd("LRANGE")
                    .arg(list)
                    .arg(start)
                    .arg(start + PAGE - 1)
                    .query(c)
            })?;
            for (ts, entry) in page.iter().filter_map(|e| decode(e)) {
                if ts < since {
                    // Newest first: the rest is older still.
                    return Ok(out);
                }
                out.push(entry);
                if out.len() >= limit as usize {
                    return Ok(out);
                }
            }
            if (page.len() as i64) < PAGE {
                break;
            }
            start += PAGE;
        }
        Ok(out)
    }

    fn key(&self, suffix: &str) -> String {
        self.link.key(suffix)
    }
}

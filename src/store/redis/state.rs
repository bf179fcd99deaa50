//! The state on a Redis server, for runs on several machines. Every key starts with the
//! prefix (`--redis-prefix`, `P` below); `P schema` marks the keys as autolabel's (see
//! [`super::link`]). The layout:
//!
//! | key | type | holds |
//! |-----|------|-------|
//! | `P usage:{day}:{provider}:{fp}:{model}` | hash | one ledger row: `day`, `provider`, `fingerprint`, `model`, `masked`, and the counters (`requests`, `successes`, one per error class, `tokens_in`, `tokens_out`, `rows`: HINCRBY; `cost`: HINCRBYFLOAT) |
//! | `P usage-days` | set | the days that have ledger rows |
//! | `P usage-day:{day}` | set | that day's ledger keys (without the prefix) |
//! | `P health:{provider}` | hash | fingerprint → JSON `{masked, status, until, reason, updated}` |
//! | `P learned:{provider}:{model}` | hash | `{fp}:{dim}` → JSON `{value, source, updated}` |
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

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::SystemTime;

use redis::{Connection, RedisResult};
use serde::{Deserialize, Serialize};

use super::link::RedisLink;
use crate::error::Result;
use crate::limits::Dim;
use crate::store::RedisTarget;
use crate::store::{
    prune_cutoff, prune_mark, Compacted, History, KeyStatus, LearnedLimit, Pruned, Rotation,
    StateLocation, StoredHealth, UsageDelta, UsageEntry, UsageRow,
};
use crate::timeutil;

mod key_control;
mod runs;
#[cfg(test)]
mod tests;

pub use runs::RUN_TTL;

/// Entries the rotation log of a provider keeps; older ones are dropped as new ones come.
pub const ROTATIONS_KEPT: i64 = 10_000;

/// The ledger's error counters, in `ErrorClass::ALL`'s order (the SQLite columns' names).
const ERROR_FIELDS: [&str; 8] = [
    "rate_limit",
    "quota",
    "auth",
    "server",
    "timeout",
    "network",
    "unparsable",
    "rejected",
];

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

#[derive(Serialize, Deserialize)]
struct HealthJson {
    masked: String,
    status: String,
    until: Option<i64>,
    reason: String,
    updated: i64,
}

#[derive(Serialize, Deserialize)]
struct LearnedJson {
    value: u64,
    source: String,
    updated: i64,
}

#[derive(Serialize, Deserialize)]
struct RotationJson {
    ts: i64,
    from: String,
    to: String,
    reason: String,
    mode: String,
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

    fn key(&self, suffix: &str) -> String {
        self.link.key(suffix)
    }

    /// The ledger hashes of `days`, as read.
    fn ledger_of_days(&self, days: &[String]) -> Result<Vec<Fields>> {
        if days.is_empty() {
            return Ok(Vec::new());
        }
        let mut p = redis::pipe();
        for day in days {
            p.cmd("SMEMBERS").arg(self.key(&format!("usage-day:{day}")));
        }
        let per_day: Vec<Vec<String>> = self.run(|c| p.query(c))?;
        let keys: Vec<String> = per_day.into_iter().flatten().collect();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut p = redis::pipe();
        for k in &keys {
            p.cmd("HGETALL").arg(self.key(k));
        }
        self.run(|c| p.query(c))
    }

    /// The days that have ledger rows, oldest first.
    fn ledger_days(&self) -> Result<Vec<String>> {
        let mut days: Vec<String> =
            self.run(|c| redis::cmd("SMEMBERS").arg(self.key("usage-days")).query(c))?;
        days.sort();
        Ok(days)
    }

    fn prune_usage(&self, kept_from: &str) -> Result<u64> {
        let mut removed = 0;
        for day in self.ledger_days()? {
            if day.as_str() >= kept_from {
                continue;
            }
            let index = self.key(&format!("usage-day:{day}"));
            let rows: Vec<String> = self.run(|c| redis::cmd("SMEMBERS").arg(&index).query(c))?;
            let mut p = redis::pipe();
            p.atomic();
            for r in &rows {
                p.cmd("DEL").arg(self.key(r));
            }
            p.cmd("DEL").arg(&index).ignore();
            p.cmd("SREM").arg(self.key("usage-days")).arg(&day).ignore();
            let deleted: Vec<u64> = self.run(|c| p.query(c))?;
            removed += deleted.iter().sum::<u64>();
        }
        Ok(removed)
    }

    fn prune_rotations(&self, cutoff: i64) -> Result<u64> {
        let providers: Vec<String> = self.run(|c| {
            redis::cmd("SMEMBERS")
                .arg(self.key("rotation-providers"))
                .query(c)
        })?;
        let mut removed = 0;
        for provider in providers {
            let list = self.key(&format!("rotations:{provider}"));
            let all: Vec<String> =
                self.run(|c| redis::cmd("LRANGE").arg(&list).arg(0).arg(-1).query(c))?;
            // Newest first: the old entries are a tail. One this version cannot read goes
            // with them.
            let old = all
                .iter()
                .rev()
                .take_while(|e| {
                    serde_json::from_str::<RotationJson>(e).map_or(true, |r| r.ts < cutoff)
                })
                .count() as i64;
            if old > 0 {
                // Counted from the end, so entries pushed meanwhile stay.
                self.run(|c| {
                    redis::cmd("LTRIM")
                        .arg(&list)
                        .arg(0)
                        .arg(-(old + 1))
                        .query::<()>(c)
                })?;
                removed += old as u64;
            }
        }
        Ok(removed)
    }
}

impl History for RedisStore {
    fn add_usage(&self, provider: &str, rows: &[UsageEntry]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut p = redis::pipe();
        p.atomic();
        for (fp, masked, model, day, d) in rows {
            let suffix = format!("usage:{day}:{provider}:{fp}:{model}");
            let k = self.key(&suffix);
            p.cmd("HSET")
                .arg(&k)
                .arg("day")
                .arg(day)
                .arg("provider")
                .arg(provider)
                .arg("fingerprint")
                .arg(fp)
                .arg("model")
                .arg(model)
                .ignore();
            // The first masked form stays, as in the SQLite ledger.
            p.cmd("HSETNX").arg(&k).arg("masked").arg(masked).ignore();
            let counters = [
                ("requests", d.requests),
                ("successes", d.successes),
                ("tokens_in", d.tokens_in),
                ("tokens_out", d.tokens_out),
                ("rows", d.rows),
            ]
            .into_iter()
            .chain(ERROR_FIELDS.into_iter().zip(d.errors));
            for (field, n) in counters {
                if n > 0 {
                    p.cmd("HINCRBY").arg(&k).arg(field).arg(signed(n)).ignore();
                }
            }
            if d.cost != 0.0 && d.cost.is_finite() {
                p.cmd("HINCRBYFLOAT")
                    .arg(&k)
                    .arg("cost")
                    .arg(d.cost)
                    .ignore();
            }
            p.cmd("SADD")
                .arg(self.key(&format!("usage-day:{day}")))
                .arg(&suffix)
                .ignore();
            p.cmd("SADD").arg(self.key("usage-days")).arg(day).ignore();
        }
        self.run(|c| p.query(c))
    }

    fn usage_since(&self, provider: &str, since_day: &str) -> Result<Vec<UsageRow>> {
        let days: Vec<String> = self
            .ledger_days()?
            .into_iter()
            .filter(|d| d.as_str() >= since_day)
            .collect();
        let mut out = Vec::new();
        for f in self.ledger_of_days(&days)? {
            if f.get("provider").map(String::as_str) != Some(provider) {
                continue;
            }
            let (Some(day), Some(fingerprint), Some(model)) =
                (f.get("day"), f.get("fingerprint"), f.get("model"))
            else {
                continue;
            };
            if day.as_str() < since_day {
                continue;
            }
            let mut errors = [0u64; 8];
            for (e, name) in errors.iter_mut().zip(ERROR_FIELDS) {
                *e = count(&f, name);
            }
            out.push(UsageRow {
                day: day.clone(),
                fingerprint: fingerprint.clone(),
                masked: text(&f, "masked"),
                model: model.clone(),
                usage: UsageDelta {
                    requests: count(&f, "requests"),
                    successes: count(&f, "successes"),
                    errors,
                    tokens_in: count(&f, "tokens_in"),
                    tokens_out: count(&f, "tokens_out"),
                    cost: f
                        .get("cost")
                        .and_then(|v| v.parse::<f64>().ok())
                        .filter(|v| v.is_finite())
                        .unwrap_or(0.0),
                    rows: count(&f, "rows"),
                },
            });
        }
        out.sort_by(|a, b| {
            (&a.day, &a.fingerprint, &a.model).cmp(&(&b.day, &b.fingerprint, &b.model))
        });
        Ok(out)
    }

    fn save_health(&self, provider: &str, h: &StoredHealth) -> Result<()> {
        let json = serde_json::to_string(&HealthJson {
            masked: h.masked.clone(),
            status: h.status.as_str().to_string(),
            until: h.until.map(timeutil::unix_secs),
            reason: h.reason.clone(),
            updated: now_secs(),
        })
        .map_err(|e| self.location.error(e.to_string()))?;
        self.run(|c| {
            redis::cmd("HSET")
                .arg(self.key(&format!("health:{provider}")))
                .arg(&h.fingerprint)
                .arg(json)
                .query::<()>(c)
        })
    }

    fn load_health(&self, provider: &str) -> Result<Vec<StoredHealth>> {
        let all: Fields = self.run(|c| {
            redis::cmd("HGETALL")
                .arg(self.key(&format!("health:{provider}")))
                .query(c)
        })?;
        let mut out: Vec<StoredHealth> = all
            .into_iter()
            .filter_map(|(fingerprint, v)| {
                let h: HealthJson = serde_json::from_str(&v).ok()?;
                Some(StoredHealth {
                    fingerprint,
                    masked: h.masked,
                    status: KeyStatus::parse(&h.status)?,
                    until: h.until.map(timeutil::from_unix),
                    reason: h.reason,
                })
            })
            .collect();
        out.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
        Ok(out)
    }

    fn save_learned_limit(
        &self,
        provider: &str,
        model: &str,
        fingerprint: &str,
        limit: (Dim, u64),
        source: &str,
    ) -> Result<()> {
        let json = serde_json::to_string(&LearnedJson {
            value: limit.1.min(i64::MAX as u64),
            source: source.to_string(),
            updated: now_secs(),
        })
        .map_err(|e| self.location.error(e.to_string()))?;
        self.run(|c| {
            redis::cmd("HSET")
                .arg(self.key(&format!("learned:{provider}:{model}")))
                .arg(format!("{fingerprint}:{}", limit.0.as_str()))
                .arg(json)
                .query::<()>(c)
        })
    }

    fn learned_limits(&self, provider: &str, model: &str) -> Result<Vec<LearnedLimit>> {
        let all: Fields = self.run(|c| {
            redis::cmd("HGETALL")
                .arg(self.key(&format!("learned:{provider}:{model}")))
                .query(c)
        })?;
        Ok(all
            .into_iter()
            .filter_map(|(field, v)| {
                let (fingerprint, dim) = field.rsplit_once(':')?;
                let l: LearnedJson = serde_json::from_str(&v).ok()?;
                Some(LearnedLimit {
                    fingerprint: fingerprint.to_string(),
                    dim: Dim::parse(dim)?,
                    value: l.value,
                    source: l.source,
                    updated: l.updated,
                })
            })
            .collect())
    }

    fn log_rotation(
        &self,
        provider: &str,
        from: &str,
        to: &str,
        reason: &str,
        mode: &str,
    ) -> Result<()> {
        let json = serde_json::to_string(&RotationJson {
            ts: now_secs(),
            from: from.to_string(),
            to: to.to_string(),
            reason: reason.to_string(),
            mode: mode.to_string(),
        })
        .map_err(|e| self.location.error(e.to_string()))?;
        let list = self.key(&format!("rotations:{provider}"));
        let mut p = redis::pipe();
        p.atomic()
            .cmd("LPUSH")
            .arg(&list)
            .arg(json)
            .ignore()
            .cmd("LTRIM")
            .arg(&list)
            .arg(0)
            .arg(ROTATIONS_KEPT - 1)
            .ignore()
            .cmd("SADD")
            .arg(self.key("rotation-providers"))
            .arg(provider)
            .ignore();
        self.run(|c| p.query(c))
    }

    fn rotations(&self, provider: &str, since: SystemTime, limit: u32) -> Result<Vec<Rotation>> {
        const PAGE: i64 = 200;
        let since = timeutil::unix_secs(since);
        let list = self.key(&format!("rotations:{provider}"));
        let mut out = Vec::new();
        let mut start = 0i64;
        while out.len() < limit as usize {
            let page: Vec<String> = self.run(|c| {
                redis::cmd("LRANGE")
                    .arg(&list)
                    .arg(start)
                    .arg(start + PAGE - 1)
                    .query(c)
            })?;
            let mut older = false;
            for e in &page {
                let Ok(r) = serde_json::from_str::<RotationJson>(e) else {
                    continue;
                };
                if r.ts < since {
                    // Newest first: the rest is older still.
                    older = true;
                    break;
                }
                out.push(Rotation {
                    ts: timeutil::from_unix(r.ts),
                    from: r.from,
                    to: r.to,
                    reason: r.reason,
                    mode: r.mode,
                });
                if out.len() >= limit as usize {
                    break;
                }
            }
            if older || (page.len() as i64) < PAGE {
                break;
            }
            start += PAGE;
        }
        Ok(out)
    }

    fn cache_get(&self, key: &[u8]) -> Result<Option<String>> {
        self.run(|c| {
            redis::cmd("GET")
                .arg(self.key(&format!("cache:{}", crate::hex::hex(key))))
                .query(c)
        })
    }

    fn cache_put_many(&self, entries: &[(Vec<u8>, String)]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let days = self.cache_days.load(Ordering::Relaxed);
        let mut p = redis::pipe();
        for (k, label) in entries {
            let cmd = p
                .cmd("SET")
                .arg(self.key(&format!("cache:{}", crate::hex::hex(k))))
                .arg(label);
            if days > 0 {
                cmd.arg("EX").arg(u64::from(days) * 86_400);
            }
            cmd.ignore();
        }
        self.run(|c| p.query(c))
    }

    fn keep_cache_days(&self, keep_days: u32) {
        self.cache_days.store(keep_days, Ordering::Relaxed);
    }

    fn add_fallback_rows(&self, output: &str, rows: &[u64]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        self.run(|c| {
            redis::cmd("SADD")
                .arg(self.key(&format!("fallback:{output}")))
                .arg(rows)
                .query::<()>(c)
        })
    }

    fn fallback_rows(&self, output: &str) -> Result<BTreeSet<u64>> {
        let rows: Vec<String> = self.run(|c| {
            redis::cmd("SMEMBERS")
                .arg(self.key(&format!("fallback:{output}")))
                .query(c)
        })?;
        Ok(rows.iter().filter_map(|r| r.parse().ok()).collect())
    }

    fn set_fallback_rows(&self, output: &str, rows: &BTreeSet<u64>) -> Result<()> {
        let k = self.key(&format!("fallback:{output}"));
        let mut p = redis::pipe();
        p.atomic().cmd("DEL").arg(&k).ignore();
        if !rows.is_empty() {
            let rows: Vec<u64> = rows.iter().copied().collect();
            p.cmd("SADD").arg(&k).arg(rows).ignore();
        }
        self.run(|c| p.query(c))
    }

    /// Cache entries are not counted: they expire by themselves.
    fn prune(&self, keep_days: u32, now: SystemTime) -> Result<Pruned> {
        let (kept_from, cutoff) = prune_cutoff(keep_days, now);
        if keep_days == 0 {
            return Ok(Pruned {
                cache: 0,
                rotations: 0,
                usage: 0,
                kept_from,
            });
        }
        let usage = self.prune_usage(&kept_from)?;
        let rotations = self.prune_rotations(cutoff)?;
        self.prune_runs(cutoff)?;
        Ok(Pruned {
            cache: 0,
            rotations,
            usage,
            kept_from,
        })
    }

    fn prune_if_due(&self, keep_days: u32, now: SystemTime) -> Result<Option<Pruned>> {
        if keep_days == 0 {
            return Ok(None);
        }
        let mark = prune_mark(keep_days, now);
        let last: Option<String> =
            self.run(|c| redis::cmd("GET").arg(self.key("pruned")).query(c))?;
        if last.as_deref() == Some(mark.as_str()) {
            return Ok(None);
        }
        let pruned = self.prune(keep_days, now)?;
        self.run(|c| {
            redis::cmd("SET")
                .arg(self.key("pruned"))
                .arg(&mark)
                .query::<()>(c)
        })?;
        Ok(Some(pruned))
    }

    /// Redis gives freed memory back by itself: there is nothing to compact.
    fn vacuum(&self) -> Result<Compacted> {
        Ok(Compacted {
            before: 0,
            after: 0,
        })
    }
}

//! The usage ledger on the Redis server.

use super::{count, signed, text, Fields, RedisStore};
use crate::error::Result;
use crate::store::{KeyId, Ledger, UsageDelta, UsageEntry, UsageRow};
use crate::timeutil::Day;

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

impl RedisStore {
    /// The ledger hashes of `days`, as read.
    pub(super) fn ledger_of_days(&self, days: &[String]) -> Result<Vec<Fields>> {
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
    pub(super) fn ledger_days(&self) -> Result<Vec<String>> {
        let mut days: Vec<String> =
            self.run(|c| redis::cmd("SMEMBERS").arg(self.key("usage-days")).query(c))?;
        days.sort();
        Ok(days)
    }

    pub(super) fn prune_usage(&self, kept_from: &Day) -> Result<u64> {
        let mut removed = 0;
        for day in self.ledger_days()? {
            if day.as_str() >= kept_from.as_str() {
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
}

impl Ledger for RedisStore {
    fn add_usage(&self, provider: &str, rows: &[UsageEntry]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut p = redis::pipe();
        p.atomic();
        for UsageEntry {
            fingerprint: fp,
            masked,
            model,
            day,
            usage: d,
        } in rows
        {
            let id = KeyId {
                provider,
                fingerprint: fp,
            };
            let suffix = format!("usage:{day}:{id}:{model}");
            let k = self.key(&suffix);
            p.cmd("HSET")
                .arg(&k)
                .arg("day")
                .arg(day.as_str())
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
                ("cut", d.cut),
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
            p.cmd("SADD")
                .arg(self.key("usage-days"))
                .arg(day.as_str())
                .ignore();
        }
        self.run(|c| p.query(c))
    }

    fn usage_since(&self, provider: &str, since_day: &Day) -> Result<Vec<UsageRow>> {
        let days: Vec<String> = self
            .ledger_days()?
            .into_iter()
            .filter(|d| d.as_str() >= since_day.as_str())
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
            if day.as_str() < since_day.as_str() {
                continue;
            }
            let mut errors = [0u64; 8];
            for (e, name) in errors.iter_mut().zip(ERROR_FIELDS) {
                *e = count(&f, name);
            }
            out.push(UsageRow {
                day: Day::stored(day.clone()),
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
                    cut: count(&f, "cut"),
                },
            });
        }
        out.sort_by(|a, b| {
            (&a.day, &a.fingerprint, &a.model).cmp(&(&b.day, &b.fingerprint, &b.model))
        });
        Ok(out)
    }
}

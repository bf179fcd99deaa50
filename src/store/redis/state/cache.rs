//! The label cache and the fallback rows on the Redis server.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use super::RedisStore;
use crate::error::Result;
use crate::store::LabelCache;

impl LabelCache for RedisStore {
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
}

//! Key health, stated limits and the rotation log on the Redis server.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::{now_secs, Fields, RedisStore};
use crate::error::Result;
use crate::limits::Dim;
use crate::store::{KeyHistory, LearnedLimit, Rotation, StoredHealth};
use crate::timeutil;

/// Entries the rotation log of a provider keeps; older ones are dropped as new ones come.
pub const ROTATIONS_KEPT: i64 = 10_000;

#[derive(Serialize, Deserialize)]
pub(super) struct HealthJson {
    pub(super) masked: String,
    pub(super) status: String,
    pub(super) until: Option<i64>,
    pub(super) reason: String,
    pub(super) updated: i64,
}

#[derive(Serialize, Deserialize)]
pub(super) struct LearnedJson {
    pub(super) value: u64,
    pub(super) source: String,
    pub(super) updated: i64,
}

#[derive(Serialize, Deserialize)]
pub(super) struct RotationJson {
    pub(super) ts: i64,
    pub(super) from: String,
    pub(super) to: String,
    pub(super) reason: String,
    pub(super) mode: String,
}

impl RedisStore {
    pub(super) fn prune_rotations(&self, cutoff: i64) -> Result<u64> {
        let providers: Vec<String> = self.run(|c| {
            redis::cmd("SMEMBERS")
                .arg(self.key("rotation-providers"))
                .query(c)
        })?;
        let mut removed = 0;
        for provider in providers {
            let list = self.key(&format!("rotations:{provider}"));
            // Newest first: the old entries are a tail. One this version cannot read goes
            // with them.
            removed += self.trim_old_tail(&list, |e| {
                serde_json::from_str::<RotationJson>(e).map_or(true, |r| r.ts < cutoff)
            })?;
        }
        Ok(removed)
    }
}

impl KeyHistory for RedisStore {
    fn save_health(&self, provider: &str, h: &StoredHealth) -> Result<()> {
        let json = serde_json::to_string(&HealthJson {
            masked: h.masked.clone(),
            status: h.status.as_str().to_string(),
            until: h.until.map(timeutil::unix_secs),
            reason: h.reason.to_string(),
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
                StoredHealth::decode(fingerprint, h.masked, &h.status, h.until, &h.reason)
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

    fn save_org_member(&self, provider: &str, fingerprint: &str, org: &str) -> Result<()> {
        self.run(|c| {
            redis::cmd("HSET")
                .arg(self.key(&format!("orgs:{provider}")))
                .arg(fingerprint)
                .arg(org)
                .query::<()>(c)
        })
    }

    fn org_members(&self, provider: &str) -> Result<Vec<(String, String)>> {
        let all: Fields = self.run(|c| {
            redis::cmd("HGETALL")
                .arg(self.key(&format!("orgs:{provider}")))
                .query(c)
        })?;
        let mut out: Vec<(String, String)> = all.into_iter().collect();
        out.sort();
        Ok(out)
    }

    fn save_reply_extra(&self, provider: &str, model: &str, extra: u32) -> Result<()> {
        self.run(|c| {
            redis::cmd("HSET")
                .arg(self.key(&format!("reply-extra:{provider}")))
                .arg(model)
                .arg(extra)
                .query::<()>(c)
        })
    }

    fn reply_extra(&self, provider: &str, model: &str) -> Result<Option<u32>> {
        let v: Option<String> = self.run(|c| {
            redis::cmd("HGET")
                .arg(self.key(&format!("reply-extra:{provider}")))
                .arg(model)
                .query(c)
        })?;
        // A value this version cannot read is as if none were kept.
        Ok(v.and_then(|v| v.parse().ok()))
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
        let list = self.key(&format!("rotations:{provider}"));
        self.newest_since(&list, timeutil::unix_secs(since), limit, |e| {
            let r = serde_json::from_str::<RotationJson>(e).ok()?;
            let rotation = Rotation {
                ts: timeutil::from_unix(r.ts),
                from: r.from,
                to: r.to,
                reason: r.reason,
                mode: r.mode,
            };
            Some((r.ts, rotation))
        })
    }
}

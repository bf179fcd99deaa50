//! Key overrides and activity on Redis: a hash per key, and a set per provider naming
//! the keys that have one.

use std::time::SystemTime;

use super::health::HealthJson;
use super::{count, int, now_secs, signed, text, time, Fields, RedisStore};
use crate::error::Result;
use crate::store::key_control::statuses_reset;
use crate::store::{Base, KeyActivity, KeyControl, KeyId, KeyOverride, KeyStatus};
use crate::timeutil::{self, Day};

impl RedisStore {
    fn override_key(&self, provider: &str, fingerprint: &str) -> String {
        let id = KeyId {
            provider,
            fingerprint,
        };
        self.key(&format!("override:{id}"))
    }

    fn activity_key(&self, provider: &str, fingerprint: &str) -> String {
        let id = KeyId {
            provider,
            fingerprint,
        };
        self.key(&format!("activity:{id}"))
    }

    /// The fingerprints a per-provider index set names, and their hashes.
    fn indexed(&self, index: &str, each: impl Fn(&str) -> String) -> Result<Vec<(String, Fields)>> {
        let fps: Vec<String> =
            self.run(|c| redis::cmd("SMEMBERS").arg(self.key(index)).query(c))?;
        if fps.is_empty() {
            return Ok(Vec::new());
        }
        let mut p = redis::pipe();
        for fp in &fps {
            p.cmd("HGETALL").arg(each(fp));
        }
        let all: Vec<Fields> = self.run(|c| p.query(c))?;
        let mut out: Vec<_> = fps
            .into_iter()
            .zip(all)
            .filter(|(_, f)| !f.is_empty())
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

fn base(f: &Fields, period: &str) -> Base {
    Base {
        date: f
            .get(&format!("{period}_base_date"))
            .filter(|d| !d.is_empty())
            .cloned()
            .map(Day::stored),
        requests: count(f, &format!("{period}_base_requests")),
        tokens: count(f, &format!("{period}_base_tokens")),
    }
}

impl KeyControl for RedisStore {
    fn key_overrides(&self, provider: &str) -> Result<Vec<KeyOverride>> {
        let rows = self.indexed(&format!("override-keys:{provider}"), |fp| {
            self.override_key(provider, fp)
        })?;
        Ok(rows
            .into_iter()
            .map(|(fingerprint, f)| KeyOverride {
                fingerprint,
                disabled: int(&f, "disabled") != 0,
                disabled_until: time(&f, "disabled_until"),
                reason: text(&f, "reason"),
                reset_seq: int(&f, "reset_seq"),
                reset_what: text(&f, "reset_what"),
                day_base: base(&f, "day"),
                month_base: base(&f, "month"),
            })
            .collect())
    }

    fn set_key_disabled(
        &self,
        provider: &str,
        fingerprint: &str,
        masked: &str,
        disabled: bool,
        until: Option<SystemTime>,
        reason: &str,
    ) -> Result<()> {
        let k = self.override_key(provider, fingerprint);
        let mut p = redis::pipe();
        p.atomic()
            .cmd("HSET")
            .arg(&k)
            .arg("masked")
            .arg(masked)
            .arg("disabled")
            .arg(i64::from(disabled))
            .arg("reason")
            .arg(reason)
            .arg("updated")
            .arg(now_secs())
            .ignore();
        match until {
            Some(u) => p
                .cmd("HSET")
                .arg(&k)
                .arg("disabled_until")
                .arg(timeutil::unix_secs(u)),
            None => p.cmd("HDEL").arg(&k).arg("disabled_until"),
        }
        .ignore();
        p.cmd("SADD")
            .arg(self.key(&format!("override-keys:{provider}")))
            .arg(fingerprint)
            .ignore();
        self.run(|c| p.query(c))
    }

    fn reset_key(
        &self,
        provider: &str,
        fingerprint: &str,
        masked: &str,
        what: &str,
        day: (&Day, (u64, u64)),
        month: (&Day, (u64, u64)),
    ) -> Result<()> {
        let k = self.override_key(provider, fingerprint);
        let health = self.key(&format!("health:{provider}"));
        let index = self.key(&format!("override-keys:{provider}"));
        let reset = statuses_reset(what);
        self.run(|c| {
            // Watched: a run that saves new health for the key meanwhile makes this try
            // again, so only the health the reset is about is removed.
            redis::transaction(c, &[&health], |c, p| {
                let current: Option<String> =
                    redis::cmd("HGET").arg(&health).arg(fingerprint).query(c)?;
                let status = current
                    .and_then(|v| serde_json::from_str::<HealthJson>(&v).ok())
                    .and_then(|h| KeyStatus::parse(&h.status));
                p.cmd("HSET")
                    .arg(&k)
                    .arg("masked")
                    .arg(masked)
                    .arg("reset_what")
                    .arg(what)
                    .arg("updated")
                    .arg(now_secs())
                    .ignore();
                p.cmd("HINCRBY").arg(&k).arg("reset_seq").arg(1).ignore();
                for (period, (date, (requests, tokens)), applies) in [
                    ("day", day, matches!(what, "day" | "all")),
                    ("month", month, matches!(what, "month" | "all")),
                ] {
                    if applies {
                        p.cmd("HSET")
                            .arg(&k)
                            .arg(format!("{period}_base_date"))
                            .arg(date.as_str())
                            .arg(format!("{period}_base_requests"))
                            .arg(signed(requests))
                            .arg(format!("{period}_base_tokens"))
                            .arg(signed(tokens))
                            .ignore();
                    }
                }
                p.cmd("SADD").arg(&index).arg(fingerprint).ignore();
                if status.is_some_and(|s| reset.contains(&s)) {
                    p.cmd("HDEL").arg(&health).arg(fingerprint).ignore();
                }
                p.query::<Option<()>>(c)
            })
        })
    }

    fn request_rotation(&self, provider: &str) -> Result<i64> {
        self.run(|c| {
            redis::cmd("INCR")
                .arg(self.key(&format!("rotate-requests:{provider}")))
                .query(c)
        })
    }

    fn rotation_requests(&self, provider: &str) -> Result<i64> {
        let v: Option<String> = self.run(|c| {
            redis::cmd("GET")
                .arg(self.key(&format!("rotate-requests:{provider}")))
                .query(c)
        })?;
        Ok(v.and_then(|v| v.parse().ok()).unwrap_or(0))
    }

    fn touch_keys(
        &self,
        provider: &str,
        used: &[(String, Option<&'static str>)],
        at: SystemTime,
    ) -> Result<()> {
        if used.is_empty() {
            return Ok(());
        }
        let at = timeutil::unix_secs(at);
        let mut p = redis::pipe();
        p.atomic();
        for (fp, error) in used {
            let k = self.activity_key(provider, fp);
            let cmd = p.cmd("HSET").arg(&k).arg("last_used").arg(at);
            // A use without an error keeps the key's last error.
            if let Some(e) = error {
                cmd.arg("last_error").arg(*e).arg("last_error_at").arg(at);
            }
            cmd.ignore();
            p.cmd("SADD")
                .arg(self.key(&format!("activity-keys:{provider}")))
                .arg(fp)
                .ignore();
        }
        self.run(|c| p.query(c))
    }

    fn key_activity(&self, provider: &str) -> Result<Vec<KeyActivity>> {
        let rows = self.indexed(&format!("activity-keys:{provider}"), |fp| {
            self.activity_key(provider, fp)
        })?;
        Ok(rows
            .into_iter()
            .map(|(fingerprint, f)| KeyActivity {
                fingerprint,
                last_used: time(&f, "last_used"),
                last_error: f.get("last_error").filter(|e| !e.is_empty()).cloned(),
            })
            .collect())
    }
}

//! The runs registry on Redis: a hash per run, and a sorted set of run ids by last
//! heartbeat. A run's hash expires [`RUN_TTL`] after its last heartbeat, so runs that
//! died without a word leave by themselves; ids whose hash is gone are dropped from the
//! set when the registry is read.

use std::time::{Duration, SystemTime};

use super::{int, now_secs, signed, text, Fields, RedisStore};
use crate::error::Result;
use crate::store::runs::{finite_rate, RunQuality, StoredRun};
use crate::store::{Beat, RunInfo, RunRegistry};
use crate::timeutil;

/// How long the registry remembers a run after its last heartbeat.
pub const RUN_TTL: Duration = Duration::from_secs(7 * 86_400);

/// A heartbeat (and, when ARGV[7] is not empty, the end) of a run that is still
/// registered: a run whose entry expired or was pruned is not brought back half-filled.
const BEAT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'rows_done', ARGV[1], 'rows_total', ARGV[2], 'rate', ARGV[3],
    'key_in_use', ARGV[4], 'heartbeat', ARGV[5])
if ARGV[7] ~= '' then redis.call('HSET', KEYS[1], 'finished', ARGV[7]) end
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[8])
return 1
";

impl RedisStore {
    fn run_key(&self, id: &str) -> String {
        self.key(&format!("run:{id}"))
    }

    fn beat(&self, id: &str, beat: &Beat, finished: bool) -> Result<()> {
        let now = now_secs();
        let script = redis::Script::new(BEAT);
        let mut call = script.key(self.run_key(id));
        call.key(self.key("runs"))
            .arg(signed(beat.rows_done))
            .arg(signed(beat.rows_total))
            .arg(finite_rate(beat.rate))
            .arg(beat.key_in_use)
            .arg(now)
            .arg(RUN_TTL.as_secs());
        let end = if finished {
            now.to_string()
        } else {
            String::new()
        };
        call.arg(end).arg(id);
        self.run(|c| call.invoke::<i64>(c)).map(|_| ())
    }

    /// Removes ended runs that last beat before `cutoff`, and silent ones a day older.
    pub(super) fn prune_runs(&self, cutoff: i64) -> Result<()> {
        let old: Vec<String> = self.run(|c| {
            redis::cmd("ZRANGEBYSCORE")
                .arg(self.key("runs"))
                .arg("-inf")
                .arg(format!("({cutoff}"))
                .query(c)
        })?;
        for id in old {
            let f: Fields = self.run(|c| redis::cmd("HGETALL").arg(self.run_key(&id)).query(c))?;
            let ended = f.get("finished").is_some_and(|v| !v.is_empty());
            if f.is_empty() || ended || int(&f, "heartbeat") < cutoff - 86_400 {
                let mut p = redis::pipe();
                p.atomic()
                    .cmd("DEL")
                    .arg(self.run_key(&id))
                    .ignore()
                    .cmd("ZREM")
                    .arg(self.key("runs"))
                    .arg(&id)
                    .ignore();
                self.run(|c| p.query::<()>(c))?;
            }
        }
        Ok(())
    }
}

fn stored_run(id: String, f: &Fields) -> StoredRun {
    StoredRun {
        id,
        host: text(f, "host"),
        pid: int(f, "pid"),
        input: text(f, "input"),
        output: text(f, "output"),
        providers: text(f, "providers"),
        rows_done: int(f, "rows_done"),
        rows_total: int(f, "rows_total"),
        rate: f.get("rate").and_then(|r| r.parse().ok()).unwrap_or(0.0),
        key_in_use: text(f, "key_in_use"),
        priority: f
            .get("priority")
            .cloned()
            .unwrap_or_else(|| "normal".into()),
        started: int(f, "started"),
        heartbeat: int(f, "heartbeat"),
        finished: f.get("finished").and_then(|v| v.parse().ok()),
        quality: RunQuality::new(
            f.get("votes").and_then(|v| v.parse().ok()).unwrap_or(1),
            int(f, "voted") as u64,
            int(f, "unanimous") as u64,
            int(f, "review") as u64,
        ),
    }
}

impl RunRegistry for RedisStore {
    fn run_started(
        &self,
        id: &str,
        host: &str,
        input: &str,
        output: &str,
        providers: &str,
        rows_total: u64,
    ) -> Result<()> {
        let k = self.run_key(id);
        let now = now_secs();
        let mut p = redis::pipe();
        p.atomic()
            .cmd("DEL")
            .arg(&k)
            .ignore()
            .cmd("HSET")
            .arg(&k)
            .arg("host")
            .arg(host)
            .arg("pid")
            .arg(std::process::id())
            .arg("input")
            .arg(input)
            .arg("output")
            .arg(output)
            .arg("providers")
            .arg(providers)
            .arg("rows_done")
            .arg(0)
            .arg("rows_total")
            .arg(signed(rows_total))
            .arg("rate")
            .arg(0.0)
            .arg("key_in_use")
            .arg("")
            .arg("started")
            .arg(now)
            .arg("heartbeat")
            .arg(now)
            .ignore()
            .cmd("EXPIRE")
            .arg(&k)
            .arg(RUN_TTL.as_secs())
            .ignore()
            .cmd("ZADD")
            .arg(self.key("runs"))
            .arg(now)
            .arg(id)
            .ignore();
        self.run(|c| p.query(c))
    }

    fn run_priority(&self, id: &str, priority: &str) -> Result<()> {
        let k = self.run_key(id);
        self.run(|c| {
            redis::cmd("HSET")
                .arg(&k)
                .arg("priority")
                .arg(priority)
                .query::<()>(c)
        })
    }

    fn run_heartbeat(&self, id: &str, beat: &Beat) -> Result<()> {
        self.beat(id, beat, false)
    }

    fn run_finished(&self, id: &str, beat: &Beat) -> Result<()> {
        self.beat(id, beat, true)
    }

    fn run_quality(&self, id: &str, q: &RunQuality) -> Result<()> {
        // Only on a run still registered (its hash exists): never a half-filled entry.
        const SET: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'votes', ARGV[1], 'voted', ARGV[2], 'unanimous', ARGV[3], 'review', ARGV[4])
return 1
";
        let script = redis::Script::new(SET);
        let mut call = script.key(self.run_key(id));
        call.arg(q.votes)
            .arg(signed(q.voted))
            .arg(signed(q.unanimous))
            .arg(signed(q.review));
        self.run(|c| call.invoke::<i64>(c)).map(|_| ())
    }

    fn runs(&self, limit: u32) -> Result<Vec<RunInfo>> {
        let now = SystemTime::now();
        let runs = self.key("runs");
        // Ids of runs whose entries expired.
        let forgotten = timeutil::unix_secs(now) - RUN_TTL.as_secs() as i64;
        self.run(|c| {
            redis::cmd("ZREMRANGEBYSCORE")
                .arg(&runs)
                .arg("-inf")
                .arg(format!("({forgotten}"))
                .query::<()>(c)
        })?;
        let mut out = Vec::new();
        let mut start = 0i64;
        let page = i64::from(limit.max(1));
        while out.len() < limit as usize {
            let ids: Vec<String> = self.run(|c| {
                redis::cmd("ZREVRANGE")
                    .arg(&runs)
                    .arg(start)
                    .arg(start + page - 1)
                    .query(c)
            })?;
            if ids.is_empty() {
                break;
            }
            let mut p = redis::pipe();
            for id in &ids {
                p.cmd("HGETALL").arg(self.run_key(id));
            }
            let all: Vec<Fields> = self.run(|c| p.query(c))?;
            let mut gone = Vec::new();
            for (id, f) in ids.iter().zip(all) {
                if f.is_empty() {
                    gone.push(id.clone());
                } else if out.len() < limit as usize {
                    out.push(stored_run(id.clone(), &f).view(now));
                }
            }
            if !gone.is_empty() {
                // Their entries expired: forget the ids too (the page shifts by as many).
                self.run(|c| redis::cmd("ZREM").arg(&runs).arg(&gone).query::<()>(c))?;
                start -= gone.len() as i64;
            }
            start += page;
        }
        Ok(out)
    }
}

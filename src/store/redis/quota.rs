//! The quota store on a Redis server, shared by runs on several machines.
//!
//! Each operation is one run of `quota.lua` (EVALSHA, loaded on first use): every limit
//! of an organization is checked and charged atomically in one round trip, on the
//! server's clock (`TIME`), so machines whose clocks disagree still share one schedule.
//! An organization's state is one hash, `<prefix>quota:<org>`, that expires a day after
//! its last write: a server restarted empty starts over from the limits and the ledger's
//! count of today, like a state file that never saw the organization.
//!
//! The decision code is `QuotaState::apply`'s, ported; what depends only on the limits
//! (GCRA intervals, the token burst, the lease size) is worked out here by the same Rust
//! code ([`Ask::plan`]) and passed in, so that the two cannot drift apart.

use std::time::{Duration, SystemTime};

use redis::Script;

use super::link::{LinkError, RedisLink};
use crate::limits::Dim;
use crate::pacing::quota::{self, Ask, Decision, Nanos, Plan, QuotaOp, MAX_LEASE, ROOM_FOR_LEASES};
use crate::store::{Applied, QuotaStore, RedisTarget, StoreError};
use crate::timeutil::{self, DayStart};

/// Numbers beyond this are not exact in Lua (doubles); no real limit or count gets near.
const LUA_CAP: u64 = 1 << 52;

pub struct RedisQuotas {
    link: RedisLink,
    script: Script,
}

/// A count or limit as the script reads it.
fn num(n: u64) -> i64 {
    n.min(LUA_CAP) as i64
}

/// A duration in nanoseconds as the script reads it.
fn nanos_arg(d: Duration) -> i64 {
    num(quota::span_nanos(d) as u64)
}

fn limit_arg(l: Option<u64>) -> i64 {
    l.map_or(-1, num)
}

/// Candidate ends of the provider's day around this machine's `wall`, in seconds: the
/// script picks the first after the server's now (Lua has no time zones). The start of
/// today covers a server clock behind ours across midnight, the day after tomorrow's
/// start one far ahead.
fn day_ends(day: DayStart, wall: SystemTime) -> [i64; 3] {
    let next = day.next_start(wall);
    [day.start_of_day(wall), next, day.next_start(next)].map(timeutil::unix_secs)
}

/// The window a provider's count is about: hour, day or tokens of the day.
fn window(dim: Dim) -> &'static str {
    match dim {
        Dim::Rph => "h",
        Dim::Rpd => "d",
        Dim::Tpd => "t",
        _ => "",
    }
}

/// The script's arguments after now and the day ends: the operation's name and numbers,
/// and the plan of a decision (to read the reply).
fn op_args(op: &QuotaOp) -> (&'static str, Option<DayStart>, Vec<String>, Option<Plan>) {
    let list = |v: &[i64]| v.iter().map(i64::to_string).collect::<Vec<_>>();
    match *op {
        QuotaOp::Decide { ask, seed_today } => {
            let Ask { day, .. } = ask;
            let p = ask.plan();
            let (burst, tpm_t) = p.tpm.unwrap_or((0, 0));
            let args = list(&[
                num(p.lease),
                num(p.tokens),
                p.rpm.unwrap_or(0),
                num(burst),
                tpm_t,
                limit_arg(p.rph),
                limit_arg(p.rpd),
                limit_arg(p.tpd),
                num(seed_today.0),
                num(seed_today.1),
                quota::TIMER_SLACK,
                num(ROOM_FOR_LEASES),
                p.level,
                p.share,
                quota::CLAIM_GRACE,
            ]);
            ("decide", Some(day), args, Some(p))
        }
        QuotaOp::Refund { count, tokens } => {
            ("refund", None, list(&[num(count), num(tokens)]), None)
        }
        QuotaOp::Ease { rpm, tpm } => ("ease", None, list(&[rpm as i64, tpm as i64]), None),
        QuotaOp::SyncDay { day, count, reset } | QuotaOp::RestateDay { day, count, reset } => {
            let name = if matches!(op, QuotaOp::SyncDay { .. }) {
                "sync"
            } else {
                "restate"
            };
            let (dim, limit, remaining) = count;
            let mut args = vec![window(dim).to_string()];
            args.extend(list(&[
                num(limit.saturating_sub(remaining)),
                reset.map_or(-1, nanos_arg),
            ]));
            (name, Some(day), args, None)
        }
        QuotaOp::Block { span } => ("block", None, list(&[nanos_arg(span)]), None),
    }
}

/// The script's reply: the server's now, and the decision in nanoseconds from it.
fn read_reply(reply: &[i64], plan: Option<Plan>) -> Result<Applied, StoreError> {
    let bad = || {
        StoreError(format!(
            "Redis: unexpected reply from the quota script: {reply:?}"
        ))
    };
    let &[secs, ns, kind, a, b] = reply else {
        return Err(bad());
    };
    let now = secs
        .checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(ns))
        .ok_or_else(bad)?;
    let at = |delta: i64| now.checked_add(delta).ok_or_else(bad);
    let decision = match (kind, plan) {
        (0, None) => None,
        (1, Some(plan)) if (1..=MAX_LEASE as i64).contains(&a) && b >= 0 => Some(Decision::Lease {
            count: a as u64,
            first: at(b)?,
            interval: plan.rpm.unwrap_or(0),
        }),
        (2, Some(_)) if a > 0 => Some(Decision::Wait(Duration::from_nanos(a as u64))),
        (3, Some(_)) => Some(Decision::Full {
            until: quota::system_time(at(a)?),
        }),
        _ => return Err(bad()),
    };
    Ok(Applied { decision, now })
}

impl RedisQuotas {
    /// Connects (see [`RedisLink::open`]: a server that cannot be used now is an error).
    pub fn open(target: &RedisTarget) -> Result<RedisQuotas, LinkError> {
        Ok(RedisQuotas {
            link: RedisLink::open(target)?,
            script: Script::new(include_str!("quota.lua")),
        })
    }

    /// `op` at the server's now, or at `now` (tests compare stores at the same moments).
    pub fn apply_at(
        &self,
        org: &str,
        op: &QuotaOp,
        now: Option<Nanos>,
    ) -> Result<Applied, StoreError> {
        let (name, day, args, plan) = op_args(op);
        let (now_s, now_ns) = match now {
            Some(n) => (n.div_euclid(1_000_000_000), n.rem_euclid(1_000_000_000)),
            None => (-1, 0),
        };
        let ends = match day {
            Some(day) => day_ends(day, now.map_or_else(SystemTime::now, quota::system_time)),
            None => [0; 3],
        };
        let key = self.link.key(&format!("quota:{org}"));
        let reply: Vec<i64> = self
            .link
            .run(|conn| {
                let mut call = self.script.key(&key);
                call.arg(name).arg(now_s).arg(now_ns).arg(&ends[..]);
                for a in &args {
                    call.arg(a);
                }
                call.invoke(conn)
            })
            .map_err(|e| StoreError(e.to_string()))?;
        read_reply(&reply, plan)
    }
}

impl QuotaStore for RedisQuotas {
    fn apply(&self, org: &str, op: &QuotaOp) -> Result<Applied, StoreError> {
        self.apply_at(org, op, None)
    }

    fn remote(&self) -> bool {
        true
    }

    fn down_since(&self) -> Option<std::time::Instant> {
        self.link.down_since()
    }
}

#[cfg(test)]
mod tests;

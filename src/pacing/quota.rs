//! One organization's use of its limits, as every run sharing the state sees it, and the
//! one decision made on it: may a request go now, and how many more after it.
//!
//! The state is small and plain (a few instants and counts, in nanoseconds since the Unix
//! epoch) so that a store can keep it in a row or a hash and decide in one short
//! transaction. Per-minute limits are GCRA (one theoretical arrival time each); hour and
//! day limits are counts in calendar windows that end at the provider's reset.
//!
//! A grant may be a lease of several consecutive slots of the schedule (at most a quarter
//! second's worth): at high rates that saves a store round trip per request, and slots a
//! killed process leaves behind simply pass unused, so runs together never exceed a limit.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::limits::{Dim, Limits};
use crate::timeutil::DayStart;

mod rank;
pub use rank::{Priority, Rank, CLAIM_GRACE};

/// Requests reach the provider a few milliseconds apart from when they were sent, so a
/// schedule exactly at the limit puts one request too many into some 60 s window.
/// Pacing 1.5 % under the limit absorbs that jitter.
pub const WINDOW_MARGIN: f64 = 1.015;

/// Nanoseconds since the Unix epoch.
pub type Nanos = i64;

/// A leased block of slots covers at most this much of the schedule.
const LEASE_SPAN: Nanos = 250_000_000;
/// Below this rate (slots further apart than this) every slot is its own grant: the
/// store is asked at most a few hundred times a second, and no slot is taken that the
/// run may not be ready to use.
const LEASE_BELOW_INTERVAL: Nanos = 5_000_000;
/// The most slots one grant hands out.
pub const MAX_LEASE: u64 = 256;
/// tokio's timers fire on whole milliseconds, so a sleep until the exact moment ends up
/// to a millisecond late, and at 100 requests a second that alone would cost 10 % of the
/// rate. A slot up to this early counts as due: the schedule advances from the slot, not
/// from now, so over any window the rate stays exact.
pub const TIMER_SLACK: Nanos = 1_000_000;

pub fn nanos(t: SystemTime) -> Nanos {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_nanos().min(i64::MAX as u128) as i64,
        Err(e) => -(e.duration().as_nanos().min(i64::MAX as u128) as i64),
    }
}

pub fn system_time(n: Nanos) -> SystemTime {
    if n >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_nanos(n as u64)
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_nanos(n.unsigned_abs())
    }
}

fn span(n: Nanos) -> Duration {
    Duration::from_nanos(n.max(0) as u64)
}

/// A count in a calendar window that ends at `end`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowCount {
    pub end: Nanos,
    pub used: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum WindowKind {
    Hour,
    Day(DayStart),
}

impl WindowKind {
    fn end_after(self, now: Nanos) -> Nanos {
        match self {
            WindowKind::Hour => {
                let secs = now.div_euclid(1_000_000_000);
                (secs.div_euclid(3600) + 1) * 3600 * 1_000_000_000
            }
            WindowKind::Day(day) => nanos(day.next_start(system_time(now))),
        }
    }
}

impl WindowCount {
    /// A new window once the current one has ended (at the provider's reset).
    fn roll(&mut self, kind: WindowKind, now: Nanos) {
        if now >= self.end {
            self.end = kind.end_after(now);
            self.used = 0;
        }
    }
}

/// What one organization has used. `Default` is a fresh organization.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QuotaState {
    /// GCRA arrival time of the request-per-minute limit (0: never used).
    pub rpm_tat: Nanos,
    /// GCRA arrival time of the token-per-minute limit.
    pub tpm_tat: Nanos,
    pub hour: WindowCount,
    pub day: WindowCount,
    pub tokens_day: WindowCount,
    /// Until when no request may go (a cooldown, or headers saying nothing is left).
    pub blocked_until: Nanos,
    /// Until when a waiting run of high (normal) priority claims the next slots (see
    /// `rank`; states written before priorities have none).
    #[serde(default)]
    pub claim_high: Nanos,
    #[serde(default)]
    pub claim_normal: Nanos,
    /// The slot a normal (low) run under a higher claim counts its share from: its next
    /// is owed one share step later (see `rank`).
    #[serde(default)]
    pub share_normal: Nanos,
    #[serde(default)]
    pub share_low: Nanos,
}

/// What a run asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ask {
    /// The limits in force for the organization.
    pub limits: Limits,
    /// Estimated tokens of the request (and of each leased one).
    pub tokens: u64,
    pub day: DayStart,
    /// The most slots this run can use soon (1 = no lease).
    pub lease: u64,
    /// How it ranks against other runs on the organization.
    pub rank: Rank,
}

/// The answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// `count` slots: the first at `first`, then one every `interval`.
    Lease {
        count: u64,
        first: Nanos,
        interval: Nanos,
    },
    /// Not before this long.
    Wait(Duration),
    /// An hour or day count is full until then.
    Full { until: SystemTime },
}

/// The GCRA interval of `n` units a minute, 1.5 % under the limit.
fn interval(n: u64) -> Nanos {
    ((60e9 * WINDOW_MARGIN / n.max(1) as f64).round() as Nanos).max(1)
}

/// The token limiter's shape: a tenth of the minute at once, the rest spread.
fn token_shape(tpm: u64) -> (u64, Nanos) {
    let burst = (tpm / 10).max(1);
    (burst, interval(tpm.saturating_sub(burst).max(1)))
}

/// Below this much room left in an hour or day count, every grant is a single slot.
pub const ROOM_FOR_LEASES: u64 = MAX_LEASE * 4;

/// What a decision needs from an ask, worked out once from the limits alone: the same
/// numbers feed [`QuotaState::decide`] and the Redis script, so both pace alike.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    /// Tokens of each request (at least 1).
    pub tokens: u64,
    /// GCRA interval of the request-per-minute limit.
    pub rpm: Option<Nanos>,
    /// Token burst and GCRA interval per token of the token-per-minute limit.
    pub tpm: Option<(u64, Nanos)>,
    /// Hour, day and token-day limits.
    pub rph: Option<u64>,
    pub rpd: Option<u64>,
    pub tpd: Option<u64>,
    /// Slots in a grant when the hour and day counts have room: a quarter second of the
    /// request rate, what the token burst allows at once, and what the run can use.
    pub lease: u64,
    /// The run's priority (0 low, 1 normal, 2 high), and the time between the slots it
    /// is owed under a higher claim (0: no minute schedule, ranks do not matter).
    pub level: i64,
    pub share: Nanos,
}

impl Ask {
    pub fn plan(&self) -> Plan {
        let l = self.limits;
        let tokens = self.tokens.max(1);
        let rpm = l.rpm.map(interval);
        let tpm = l.tpm.map(token_shape);
        let mut lease = self.lease.clamp(1, MAX_LEASE);
        if let Some(t) = rpm {
            lease = if t >= LEASE_BELOW_INTERVAL {
                1
            } else {
                lease.min((LEASE_SPAN / t).max(1) as u64)
            };
        }
        if let Some((burst, _)) = tpm {
            lease = lease.min((burst / tokens).max(1));
        }
        // One request's place in the schedule: its request slot or its tokens' time.
        let slot = rpm
            .unwrap_or(0)
            .max(tpm.map_or(0, |(b, t)| (tokens.min(b) as Nanos).saturating_mul(t)));
        Plan {
            tokens,
            rpm,
            tpm,
            rph: l.rph,
            rpd: l.rpd,
            tpd: l.tpd,
            lease,
            level: self.rank.priority.level(),
            share: self.rank.share_step(slot),
        }
    }
}

/// One change to an organization's shared state, as a store applies it atomically.
/// Times are durations from the store's own now: with a shared server, its clock rules,
/// not this machine's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum QuotaOp {
    /// May a request go now (see [`QuotaState::decide`])? `seed_today`: what the ledger
    /// says was used today (requests, tokens), for a store that has never seen the org.
    Decide { ask: Ask, seed_today: (u64, u64) },
    /// Leased slots and tokens never used go back to the hour and day counts.
    Refund { count: u64, tokens: u64 },
    /// Minute limits were raised: their schedules restart from now.
    Ease { rpm: bool, tpm: bool },
    /// The provider's count of the day, as a floor; its reset ends the window.
    SyncDay {
        day: DayStart,
        count: DayCount,
        reset: Option<Duration>,
    },
    /// The provider's count of the day, taken as the truth.
    RestateDay {
        day: DayStart,
        count: DayCount,
        reset: Option<Duration>,
    },
    /// No request for this long.
    Block { span: Duration },
}

/// A provider's count: the dimension, its limit and what is left.
pub type DayCount = (Dim, u64, u64);

/// A duration in nanoseconds, as far as time in a store goes.
pub fn span_nanos(d: Duration) -> Nanos {
    d.as_nanos().min(i64::MAX as u128) as Nanos
}

impl QuotaState {
    fn windows(&mut self, day: DayStart) -> [(&mut WindowCount, WindowKind, Dim); 3] {
        [
            (&mut self.hour, WindowKind::Hour, Dim::Rph),
            (&mut self.day, WindowKind::Day(day), Dim::Rpd),
            (&mut self.tokens_day, WindowKind::Day(day), Dim::Tpd),
        ]
    }

    /// Applies `op` at `now` (the store's time); `fresh`: the store had never seen the
    /// organization. Returns the decision of a `Decide`.
    pub fn apply(&mut self, op: &QuotaOp, now: Nanos, fresh: bool) -> Option<Decision> {
        let after = |d: Option<Duration>| d.map(|d| now.saturating_add(span_nanos(d)));
        match *op {
            QuotaOp::Decide { ask, seed_today } => {
                if fresh {
                    self.seed_today(ask.day, now, seed_today);
                }
                return Some(self.decide(&ask, now));
            }
            QuotaOp::Refund { count, tokens } => self.refund(count, tokens),
            QuotaOp::Ease { rpm, tpm } => self.ease(now, rpm, tpm),
            QuotaOp::SyncDay { day, count, reset } => self.sync_day(day, now, count, after(reset)),
            QuotaOp::RestateDay { day, count, reset } => {
                self.restate_day(day, now, count, after(reset))
            }
            QuotaOp::Block { span } => self.block(now.saturating_add(span_nanos(span))),
        }
        None
    }

    /// Starts today's counts from what the usage ledger recorded (a state that had never
    /// seen this organization).
    pub fn seed_today(&mut self, day: DayStart, now: Nanos, (requests, tokens): (u64, u64)) {
        for (w, kind, dim) in self.windows(day) {
            w.roll(kind, now);
            match dim {
                Dim::Rpd => w.used = w.used.max(requests),
                Dim::Tpd => w.used = w.used.max(tokens),
                _ => {}
            }
        }
    }

    /// May a request go at `now`? If so, charges it (and the rest of a lease) to every limit.
    pub fn decide(&mut self, ask: &Ask, now: Nanos) -> Decision {
        let plan = ask.plan();
        let tokens = plan.tokens;
        // Hour and day counts first: a full window is a long wait.
        let room = match self.room(&plan, ask.day, now) {
            Ok(room) => room,
            Err(until) => {
                return Decision::Full {
                    until: system_time(until),
                }
            }
        };
        let mut wait: Nanos = self.blocked_until - now;
        if plan.rpm.is_some() {
            wait = wait.max(self.rpm_tat - now);
        }
        if let Some((burst, t)) = plan.tpm {
            let cost = tokens.min(burst) as Nanos;
            let allowed_at = self.tpm_tat.max(now) + cost * t - burst as Nanos * t;
            wait = wait.max(allowed_at - now);
        }
        // A higher priority waiting for slots: this run gets one only when owed its share,
        // and then the next slot is its own even ahead (see `rank`).
        let above = (plan.share > 0)
            .then(|| self.claimed_above(plan.level, now))
            .flatten();
        let owed = above.is_some() && self.owed_from(plan.level, plan.share) <= now;
        if wait > TIMER_SLACK && !(owed && self.blocked_until <= now) {
            if plan.share > 0 {
                self.claim(plan.level, now + wait + CLAIM_GRACE);
            }
            // Woken up to a millisecond late, the caller is then on time.
            return Decision::Wait(span(wait - TIMER_SLACK));
        }
        if let (Some(until), false) = (above, owed) {
            let back = self.owed_from(plan.level, plan.share).min(until);
            self.claim(plan.level, back + CLAIM_GRACE);
            return Decision::Wait(span(back - now).max(span(TIMER_SLACK)));
        }
        let at = now + wait.max(0);
        // One slot at a time close to an hour or day limit, or under a higher claim.
        let count = if room < ROOM_FOR_LEASES || above.is_some() {
            1
        } else {
            plan.lease
        };
        if above.is_some() {
            self.owe_next(plan.level, at, plan.share);
        }
        let first = self.rpm_tat.max(at);
        let step = plan.rpm.unwrap_or(0);
        if plan.rpm.is_some() {
            self.rpm_tat = first + step * count as Nanos;
        }
        if let Some((burst, t)) = plan.tpm {
            let charged = (tokens.min(burst) * count) as Nanos;
            self.tpm_tat = self.tpm_tat.max(at) + charged * t;
        }
        for (w, _, dim) in self.windows(ask.day) {
            let cost = if dim == Dim::Tpd { tokens } else { 1 };
            w.used = w.used.saturating_add(cost * count);
        }
        Decision::Lease {
            count,
            first,
            interval: step,
        }
    }

    /// How many more requests the hour and day counts have room for, or when the first
    /// full one ends.
    fn room(&mut self, plan: &Plan, day: DayStart, now: Nanos) -> Result<u64, Nanos> {
        let mut room = u64::MAX;
        let mut full_until: Option<Nanos> = None;
        let limits = [plan.rph, plan.rpd, plan.tpd];
        for ((w, kind, dim), limit) in self.windows(day).into_iter().zip(limits) {
            let Some(limit) = limit else { continue };
            w.roll(kind, now);
            let cost = if dim == Dim::Tpd { plan.tokens } else { 1 };
            if w.used.saturating_add(cost) > limit {
                full_until = full_until.max(Some(w.end));
            } else {
                room = room.min((limit - w.used) / cost);
            }
        }
        full_until.map_or(Ok(room), Err)
    }

    /// The provider's own count of the day: ours never stays below it, and the window
    /// ends when the provider says it resets (`end`), when its limit is the one in force.
    pub fn sync_day(
        &mut self,
        day: DayStart,
        now: Nanos,
        (dim, limit, remaining): (Dim, u64, u64),
        end: Option<Nanos>,
    ) {
        for (w, kind, d) in self.windows(day) {
            if d != dim {
                continue;
            }
            w.roll(kind, now);
            w.used = w.used.max(limit.saturating_sub(remaining));
            if let Some(end) = end {
                w.end = end;
            }
        }
    }

    /// The provider's count of the day as it is now, taken as the truth (a check made
    /// when no run is using the key: `test-keys --chat`), with its reset as the end.
    pub fn restate_day(
        &mut self,
        day: DayStart,
        now: Nanos,
        (dim, limit, remaining): (Dim, u64, u64),
        end: Option<Nanos>,
    ) {
        for (w, kind, d) in self.windows(day) {
            if d == dim {
                w.roll(kind, now);
                w.used = limit.saturating_sub(remaining);
                if let Some(end) = end {
                    w.end = end;
                }
            }
        }
    }

    /// Gives back `count` leased slots and `tokens` leased tokens that were never used:
    /// hour and day counts only (a minute schedule's slots have passed, or will be spaced
    /// past anyway).
    pub fn refund(&mut self, count: u64, tokens: u64) {
        self.hour.used = self.hour.used.saturating_sub(count);
        self.day.used = self.day.used.saturating_sub(count);
        self.tokens_day.used = self.tokens_day.used.saturating_sub(tokens);
    }

    /// A minute limit was raised: the schedule charged at the old pace starts over from
    /// `now` (the old, slower pace would otherwise hold the next requests back).
    pub fn ease(&mut self, now: Nanos, rpm: bool, tpm: bool) {
        if rpm {
            self.rpm_tat = self.rpm_tat.min(now);
        }
        if tpm {
            self.tpm_tat = self.tpm_tat.min(now);
        }
    }

    /// No request before `until` (never shortens a longer block).
    pub fn block(&mut self, until: Nanos) {
        self.blocked_until = self.blocked_until.max(until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeutil;

    const T0: Nanos = 1_796_083_140 * 1_000_000_000; // 2026-11-30T23:59:00Z

    fn ask(limits: Limits, tokens: u64, lease: u64) -> Ask {
        Ask {
            limits,
            tokens,
            day: DayStart::UtcMidnight,
            lease,
            rank: Rank::default(),
        }
    }

    #[test]
    fn one_request_a_slot_evenly_spaced() {
        let mut s = QuotaState::default();
        let a = ask(
            Limits {
                rpm: Some(60),
                ..Limits::default()
            },
            10,
            1,
        );
        assert!(matches!(s.decide(&a, T0), Decision::Lease { count: 1, .. }));
        match s.decide(&a, T0) {
            Decision::Wait(w) => assert_eq!(w.as_millis(), 1014),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            s.decide(&a, T0 + 1_015_000_000),
            Decision::Lease { .. }
        ));
    }

    #[test]
    fn leases_cover_a_quarter_second_and_shrink_near_a_day_limit() {
        let mut s = QuotaState::default();
        let fast = Limits {
            rpm: Some(60_000),
            ..Limits::default()
        };
        match s.decide(&ask(fast, 10, 1000), T0) {
            Decision::Lease {
                count, interval, ..
            } => {
                assert_eq!(interval, 1_015_000);
                assert_eq!(count, 246);
            }
            other => panic!("{other:?}"),
        }
        let tight = Limits {
            rpd: Some(100),
            ..Limits::default()
        };
        let mut s = QuotaState::default();
        for _ in 0..100 {
            assert!(matches!(
                s.decide(&ask(tight, 10, 1000), T0),
                Decision::Lease { count: 1, .. }
            ));
        }
        match s.decide(&ask(tight, 10, 1000), T0) {
            Decision::Full { until } => {
                assert_eq!(timeutil::rfc3339(until), "2026-12-01T00:00:00Z")
            }
            other => panic!("{other:?}"),
        }
        // The next day has room again.
        assert!(matches!(
            s.decide(&ask(tight, 10, 1), T0 + 61_000_000_000),
            Decision::Lease { .. }
        ));
    }

    #[test]
    fn tokens_bind_without_spending_request_slots() {
        let mut s = QuotaState::default();
        let l = Limits {
            rpm: Some(6000),
            tpm: Some(1000),
            ..Limits::default()
        };
        // Burst 100 tokens, then 900 a minute.
        assert!(matches!(
            s.decide(&ask(l, 100, 1), T0),
            Decision::Lease { .. }
        ));
        let rpm_tat = s.rpm_tat;
        match s.decide(&ask(l, 100, 1), T0) {
            Decision::Wait(w) => assert!(w.as_secs_f64() > 6.0, "{w:?}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.rpm_tat, rpm_tat, "a refusal charges nothing");
    }

    #[test]
    fn blocks_syncs_and_seeds() {
        let mut s = QuotaState::default();
        let l = Limits {
            rpd: Some(10),
            ..Limits::default()
        };
        s.seed_today(DayStart::UtcMidnight, T0, (4, 0));
        s.sync_day(DayStart::UtcMidnight, T0, (Dim::Rpd, 10, 3), None);
        assert_eq!(s.day.used, 7);
        s.block(T0 + 5_000_000_000);
        s.block(T0 + 1_000_000_000);
        match s.decide(&ask(l, 1, 1), T0) {
            Decision::Wait(w) => assert_eq!(w, Duration::from_millis(4999)),
            other => panic!("{other:?}"),
        }
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<QuotaState>(&json).unwrap(), s);
    }
}

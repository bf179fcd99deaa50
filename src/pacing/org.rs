//! One organization at run time: its limits in force (and where they came from), and the
//! slots this run holds on the organization's shared schedule.
//!
//! The counting itself (GCRA for minute limits, calendar windows for hour and day) lives
//! in the quota store (`quota`, `store`), where every run using the same keys sees it.
//! This side asks the store for a slot (or a short lease of slots at high rates), spends
//! them on time, and tells the store what replies and 429s said.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::minute_rate::MinuteRate;
use super::quota::{self, Nanos, QuotaOp, Rank};
use crate::limits::{Dim, LimitChange, LimitSet, Limits, Source};
use crate::store::{OrgId, QuotaStore};
use crate::timeutil::DayStart;
use ask::Pending;
pub use lane::nap;
use lane::Lane;

mod ask;
mod lane;

/// Why an organization cannot take a request now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Wait {
    /// A minute limit or a short block: ready after this long.
    For(Duration),
    /// An hour or day count is full until this moment.
    Until(SystemTime),
}

/// How late a slot of a lease may still be used.
const LATE_SLOT_GRACE: Duration = Duration::from_millis(250);
/// The provider's day count is written to the store at most this often (and whenever
/// it says nothing is left).
const DAY_SYNC_EVERY: Duration = Duration::from_secs(5);

/// Slots granted by the store: `left` of them, the next due at `next`.
#[derive(Debug, Clone, Copy)]
struct Lease {
    next: Instant,
    interval: Duration,
    left: u64,
    /// Tokens charged for the slots and not yet spent: requests of any size draw on it.
    tokens_left: u64,
}

pub struct Org {
    pub limits: LimitSet,
    /// `limits.enforced()`, kept so the hot path does not recompute it.
    values: Limits,
    id: OrgId,
    day: DayStart,
    store: Lane,
    /// What the ledger says was used today, for a store that has never seen this org.
    used_today: (u64, u64),
    /// Slots this run may use soon (its concurrency).
    lease_want: u64,
    lease: Option<Lease>,
    /// How this run ranks against others on the organization.
    pub rank: Rank,
    /// An ask for slots the store has not answered yet (a store on its own thread).
    pending: Option<Pending>,
    /// Until when reply headers say this organization has nothing left.
    pub blocked_until: Option<Instant>,
    last_day_sync: Option<Instant>,
    /// Grants in the last minute, to learn a lower real limit from a 429: coalesced into
    /// 100 ms buckets (start, count), so memory stays O(600) whatever the request rate.
    recent: VecDeque<(Instant, u64)>,
    /// The last store error, logged once until the store answers again.
    pub store_error: Option<String>,
    /// Since when every ask for a grant failed (`None`: the store last answered).
    pub store_failing_since: Option<Instant>,
    /// The minute rate learned from 429s that give no wait, and the hold after one.
    minute: MinuteRate,
}

/// This machine's instant of a store time, given the store's now when it answered and
/// ours (the store's clock may be another machine's).
fn local(at: Nanos, store_now: Nanos, now: Instant) -> Instant {
    let ahead = at.saturating_sub(store_now);
    if ahead > 0 {
        now + Duration::from_nanos(ahead as u64)
    } else {
        now
    }
}

/// This machine's calendar time of a store time (a window's end).
fn local_wall(at: SystemTime, store_now: Nanos, wall: SystemTime) -> SystemTime {
    let ahead = quota::nanos(at).saturating_sub(store_now);
    let moved = if ahead >= 0 {
        wall.checked_add(Duration::from_nanos(ahead as u64))
    } else {
        wall.checked_sub(Duration::from_nanos(ahead.unsigned_abs()))
    };
    moved.unwrap_or(wall)
}

impl Org {
    pub fn new(
        limits: LimitSet,
        id: OrgId,
        day: DayStart,
        store: &Arc<dyn QuotaStore>,
        used_today: (u64, u64),
        lease_want: u64,
    ) -> Org {
        Org {
            values: limits.enforced(),
            limits,
            id,
            day,
            store: Lane::new(store.clone()),
            used_today,
            lease_want,
            lease: None,
            rank: Rank::default(),
            pending: None,
            blocked_until: None,
            last_day_sync: None,
            recent: VecDeque::new(),
            store_error: None,
            store_failing_since: None,
            minute: MinuteRate::new(Instant::now()),
        }
    }

    /// No limit at all in force: nothing to share, so no grant to ask the store for.
    fn unlimited(&self) -> bool {
        self.values == Limits::default()
    }

    pub fn values(&self) -> Limits {
        self.values
    }

    /// The provider stated limits (or a lower one was observed): the next slots follow
    /// them. Returns the changes with the free-tier defaults they made drop
    /// (`yield_defaults`, once every limit of the reply is in).
    ///
    /// A statement may change what is enforced without changing a value in force (an
    /// assumed day limit stated as it was assumed is enforced from then on), so the
    /// enforced values are recomputed whatever `changes` holds.
    pub fn restate(&mut self, mut changes: Vec<LimitChange>) -> Vec<LimitChange> {
        changes.extend(self.limits.yield_defaults());
        let before = self.values;
        self.values = self.capped();
        if self.values == before {
            return changes;
        }
        // Leased slots were spaced and counted for the old limit.
        self.give_back_lease();
        if let Some(p) = &mut self.pending {
            p.stale = true;
        }
        // A higher minute limit: what was charged at the old, slower pace (the assumed
        // free tier before the first reply, say) must not hold the next request back.
        let raised = |d: Dim| match (before.get(d), self.values.get(d)) {
            (Some(old), new) => new.is_none_or(|n| n > old),
            (None, _) => false,
        };
        let (rpm, tpm) = (raised(Dim::Rpm), raised(Dim::Tpm));
        if rpm || tpm {
            self.tell_store(QuotaOp::Ease { rpm, tpm });
        }
        changes
    }

    /// The enforced limits, the minute's requests capped by what 429s without a wait
    /// taught.
    fn capped(&self) -> Limits {
        let mut values = self.limits.enforced();
        if let Some(cap) = self.minute.cap() {
            values.rpm = Some(values.rpm.map_or(cap, |r| r.min(cap)));
        }
        values
    }

    /// A 429 that gives no wait: the organization is at its limit for the current minute.
    /// Nothing goes until the oldest request of the last minute has left the window (with
    /// too few requests to tell, for `short_hold`), then one probe. Returns the hold and
    /// the learned minute rate if it fell.
    pub fn silent_429(
        &mut self,
        now: Instant,
        short_hold: Duration,
    ) -> (Duration, Vec<LimitChange>) {
        let served = self.served_last_minute(now);
        let window_left = self.recent.front().map_or(Duration::ZERO, |(t, _)| {
            (*t + Duration::from_secs(60)).saturating_duration_since(now)
        });
        let hold = if served >= 5 { window_left } else { short_hold };
        let (was, ceiling) = (self.values.rpm, self.limits.enforced().rpm);
        let learned = self.minute.silent_429(now, served, ceiling, hold);
        let changes = self.learned(learned, was);
        (self.minute.held_for(now), changes)
    }

    /// Any other answer from the organization: a probe that came back ends the hold, and a
    /// clean minute raises the learned minute rate.
    pub fn answered(&mut self, now: Instant) -> Vec<LimitChange> {
        let (was, ceiling) = (self.values.rpm, self.limits.enforced().rpm);
        let learned = self.minute.answered(now, ceiling);
        self.learned(learned, was)
    }

    fn learned(&mut self, learned: Option<u64>, was: Option<u64>) -> Vec<LimitChange> {
        let Some(rate) = learned else {
            return Vec::new();
        };
        let mut changes = self.restate(Vec::new());
        changes.push(LimitChange {
            dim: Dim::Rpm,
            value: Some(rate),
            source: Source::Learned,
            was: format!(
                "rpm = {}",
                was.map_or("none".to_string(), |v| v.to_string())
            ),
        });
        changes
    }

    /// Its keys moved to another organization (they were found to share it): the slots
    /// it holds go back.
    pub fn retire(&mut self) {
        self.give_back_lease();
    }

    /// Returns the slots of the lease this run will not use to the hour and day counts.
    fn give_back_lease(&mut self) {
        let Some(l) = self.lease.take() else { return };
        // Slots that lapsed went back already, but their tokens stayed with the lease.
        if l.left == 0 && l.tokens_left == 0 {
            return;
        }
        self.tell_store(QuotaOp::Refund {
            count: l.left,
            tokens: l.tokens_left,
        });
    }

    /// Whether a request of `tokens` may go now; asks the store for a slot when this run
    /// holds none. The slot is spent by `take`.
    pub fn check(&mut self, now: Instant, wall: SystemTime, tokens: u64) -> Result<(), Wait> {
        if let Some(until) = self.blocked_until.filter(|u| *u > now) {
            return Err(Wait::For(until - now));
        }
        self.minute.gate(now).map_err(Wait::For)?;
        if let Some(l) = &mut self.lease {
            // Slots left unused for a while lapse, so that a run that falls behind does
            // not catch up in a burst. (Within a quarter second a late slot is still
            // used: at rates high enough for a lease, slots are microseconds apart.)
            let grace = l.interval.max(LATE_SLOT_GRACE);
            let mut lapsed = 0;
            while l.left > 0 && l.next + grace < now {
                l.next += l.interval;
                l.left -= 1;
                lapsed += 1;
            }
            if lapsed > 0 {
                // The slots go back to the hour and day counts; their tokens stay with
                // the lease for the slots left.
                self.tell_store(QuotaOp::Refund {
                    count: lapsed,
                    tokens: 0,
                });
            }
            if self
                .lease
                .is_some_and(|l| l.left == 0 || tokens > l.tokens_left)
            {
                self.give_back_lease();
            }
        }
        if self.lease.is_none() {
            if self.unlimited() {
                return Ok(());
            }
            self.lease = Some(self.ask_store(now, wall, tokens)?);
        }
        let l = self.lease.as_ref().expect("set above");
        let slack = Duration::from_nanos(quota::TIMER_SLACK as u64);
        if l.next <= now + slack {
            Ok(())
        } else {
            Err(Wait::For(l.next - now - slack))
        }
    }

    /// Spends the slot `check` found due.
    pub fn take(&mut self, now: Instant, tokens: u64) {
        self.minute.granted(now);
        if let Some(l) = &mut self.lease {
            l.left = l.left.saturating_sub(1);
            l.tokens_left = l.tokens_left.saturating_sub(tokens);
            l.next += l.interval;
        }
        match self.recent.back_mut() {
            Some((t, n)) if now.saturating_duration_since(*t) < Duration::from_millis(100) => {
                *n += 1
            }
            _ => self.recent.push_back((now, 1)),
        }
        self.served_last_minute(now);
    }

    /// Gives back a slot spent by `take` whose request never reached the provider (no
    /// connection could be made): to the hour and day counts every run shares, and to
    /// this run's count of the last minute.
    pub fn unspend(&mut self, tokens: u64) {
        if let Some((_, n)) = self.recent.back_mut() {
            *n = n.saturating_sub(1);
        }
        if self.unlimited() {
            return;
        }
        self.tell_store(QuotaOp::Refund { count: 1, tokens });
    }

    /// The provider's own count of the day (limit − remaining), when its headers count
    /// per day, and its reset when its limit is the one in force: written to the store
    /// (every few seconds, and whenever nothing is left), since other runs and tools may
    /// use the same keys.
    pub fn sync_day(
        &mut self,
        now: Instant,
        (dim, limit, remaining): (Dim, u64, u64),
        reset: Option<Duration>,
    ) {
        if !matches!(dim, Dim::Rpd | Dim::Tpd) {
            return;
        }
        let due = self
            .last_day_sync
            .is_none_or(|t| now.saturating_duration_since(t) >= DAY_SYNC_EVERY);
        if (remaining > 0 && !due) || self.unlimited() {
            return;
        }
        self.last_day_sync = Some(now);
        let reset = reset.filter(|_| self.values.get(dim) == Some(limit));
        self.tell_store(QuotaOp::SyncDay {
            day: self.day,
            count: (dim, limit, remaining),
            reset,
        });
    }

    /// No request before `until`, for this run and every other one sharing the org.
    pub fn block(&mut self, now: Instant, until: Instant) {
        self.blocked_until = self.blocked_until.max(Some(until));
        if self.unlimited() {
            return;
        }
        self.tell_store(QuotaOp::Block {
            span: until.saturating_duration_since(now),
        });
    }

    /// Changes the organization's shared state; a failure is kept for the log (the
    /// store answers again or the next grant waits for it).
    fn tell_store(&mut self, op: QuotaOp) {
        if let Some(answer) = self.store.tell(self.id.as_str(), op) {
            self.store_answered(answer, None);
        }
    }

    /// Drops grants older than a minute and returns how many are left.
    pub fn served_last_minute(&mut self, now: Instant) -> u64 {
        while self
            .recent
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > Duration::from_secs(60))
        {
            self.recent.pop_front();
        }
        self.recent.iter().map(|(_, n)| n).sum()
    }
}

impl Drop for Org {
    /// A run that ends gives back what it leased and did not use; one that is killed
    /// does not, which only ever leaves capacity unused.
    fn drop(&mut self) {
        self.give_back_lease();
    }
}

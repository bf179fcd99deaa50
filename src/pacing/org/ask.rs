//! Asking the quota store for slots, and what its answers do to the organization: a
//! lease, a wait, a full window, or the start of an outage.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::lane::{Asked, Ticket};
use super::{local, local_wall, Lease, Org, Wait};
use crate::pacing::quota::{Ask, Decision, QuotaOp};
use crate::store::{Applied, StoreError};

/// A store that cannot be reached is asked again after this long; no request goes
/// without a slot meanwhile.
const STORE_RETRY: Duration = Duration::from_millis(250);
/// An ask whose answer has not come is looked at again after this long at the latest
/// (the dispatcher is woken when it comes).
const ANSWER_WAIT: Duration = Duration::from_millis(100);
/// An ask for slots sent to the store and not answered yet.
pub(super) struct Pending {
    ticket: Ticket,
    asked_at: Instant,
    tokens: u64,
    /// The limits changed since: the slots it brings are given back, not used.
    pub(super) stale: bool,
}

impl Org {
    /// Slots from the store: asked for now, or the answer to the ask sent before.
    pub(super) fn ask_store(
        &mut self,
        now: Instant,
        wall: SystemTime,
        tokens: u64,
    ) -> Result<Lease, Wait> {
        let pending = match self.pending.take() {
            Some(p) => p,
            None => {
                let op = QuotaOp::Decide {
                    ask: Ask {
                        limits: self.values,
                        tokens,
                        day: self.day,
                        lease: self.lease_want,
                        rank: self.rank,
                    },
                    seed_today: self.used_today,
                };
                match self.store.ask(self.id.as_str(), op) {
                    Asked::Now(answer) => return self.answered_ask(answer, now, now, wall, tokens),
                    Asked::Later(ticket) => Pending {
                        ticket,
                        asked_at: now,
                        tokens,
                        stale: false,
                    },
                }
            }
        };
        let Some(answer) = pending.ticket.take() else {
            self.pending = Some(pending);
            return Err(Wait::For(ANSWER_WAIT));
        };
        if pending.stale {
            // Slots spaced for limits no longer in force go back; ask again.
            if let Ok(Applied {
                decision: Some(Decision::Lease { count, .. }),
                ..
            }) = answer
            {
                self.tell_store(QuotaOp::Refund {
                    count,
                    tokens: count.saturating_mul(pending.tokens),
                });
            }
            return Err(Wait::For(Duration::ZERO));
        }
        self.answered_ask(answer, pending.asked_at, now, wall, pending.tokens)
    }

    /// The store's answer to an ask made at `asked_at` for requests of `tokens`.
    fn answered_ask(
        &mut self,
        answer: Result<Applied, StoreError>,
        asked_at: Instant,
        now: Instant,
        wall: SystemTime,
        tokens: u64,
    ) -> Result<Lease, Wait> {
        let Some(applied) = self.store_answered(answer, Some(asked_at)) else {
            return Err(Wait::For(STORE_RETRY));
        };
        match applied.decision {
            Some(Decision::Lease {
                count,
                first,
                interval,
            }) => Ok(Lease {
                next: local(first, applied.now, now),
                interval: Duration::from_nanos(interval.max(0) as u64),
                left: count,
                tokens_left: count.saturating_mul(tokens),
            }),
            // Runs waiting for the same slot would all wake on the same timer tick, and
            // the same one would win it every time; a jitter of up to 1 % of the slot
            // spacing (at most 5 ms, a few timer ticks) makes the winner a fair draw.
            Some(Decision::Wait(w)) => {
                let spacing_us = self.values.rpm.map_or(0, |n| 60_000_000 / n.max(1));
                let jitter_us = (spacing_us / 100).min(5_000);
                Err(Wait::For(
                    w + Duration::from_micros(fastrand::u64(0..=jitter_us)),
                ))
            }
            Some(Decision::Full { until }) => {
                Err(Wait::Until(local_wall(until, applied.now, wall)))
            }
            None => Err(Wait::For(STORE_RETRY)),
        }
    }

    /// Keeps track of since when the store has been failing. Only asks for a grant
    /// (`asked_at`) start the outage's clock: they are what waits, and they are retried
    /// while it lasts, so its end is seen. The clock starts at the first call that failed
    /// (a store on its own thread may have failed other calls before this ask).
    pub(super) fn store_answered(
        &mut self,
        answer: Result<Applied, StoreError>,
        asked_at: Option<Instant>,
    ) -> Option<Applied> {
        match answer {
            Ok(applied) => {
                self.store_error = None;
                self.store_failing_since = None;
                Some(applied)
            }
            Err(e) => {
                self.store_error = Some(e.to_string());
                if let Some(asked) = asked_at {
                    let first = self.store.failing_since().map(Instant::from_std);
                    let since = first.map_or(asked, |f| f.min(asked));
                    self.store_failing_since.get_or_insert(since);
                }
                None
            }
        }
    }
}

//! Whether the provider can be reached at all, run-wide.
//!
//! A request that fails before any HTTP status (DNS, connection refused, TLS) never
//! reached a provider: it says nothing about the row, the key or the quota, so it is not
//! a row's retry and never leads to a fallback label. A few of them in a row with no
//! reply in between mean the network (or the base URL) is down: the run stops with one
//! message, or, with `--on-exhausted wait`, waits with a growing back-off until a
//! connection can be made again. Time is passed in, so the rules are unit-tested.

use std::time::Duration;

use tokio::time::Instant;

/// Connection failures in a row, with no reply in between, that end the run (or start
/// the wait): one is a blip, three a second or more apart is an outage.
pub const UNREACHED_IN_A_ROW: u32 = 3;

/// The longest wait between two attempts to reconnect (`--on-exhausted wait`).
const LONGEST_WAIT: Duration = Duration::from_secs(300);

/// What the caller does after a connection failure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Next {
    /// Try again after the back-off of this many failures in a row (not a row's retry).
    Retry(u32),
    /// The provider cannot be reached: stop the run.
    GiveUp,
    /// Wait until `until`, then try again. `first`: this call started the wait (the one
    /// to log it); others that fail meanwhile join it silently.
    Wait { until: Instant, first: bool },
}

/// The run's connection failures since the last reply.
#[derive(Debug, Default)]
pub struct Reach {
    in_a_row: u32,
    /// Waits since the last reply, for the back-off.
    waits: u32,
    wait_until: Option<Instant>,
}

impl Reach {
    /// A reply came back (any HTTP status): the provider is reachable.
    pub fn reached(&mut self) {
        *self = Reach::default();
    }

    /// A request could not connect, at `now`. `base`: the first back-off; `wait`:
    /// `--on-exhausted wait` is in force.
    pub fn unreached(&mut self, now: Instant, base: Duration, wait: bool) -> Next {
        self.in_a_row = self.in_a_row.saturating_add(1);
        if self.in_a_row < UNREACHED_IN_A_ROW {
            return Next::Retry(self.in_a_row);
        }
        if !wait {
            return Next::GiveUp;
        }
        if let Some(until) = self.wait_until.filter(|u| *u > now) {
            return Next::Wait {
                until,
                first: false,
            };
        }
        let doubling = 2f64.powi(self.waits.min(16) as i32);
        self.waits = self.waits.saturating_add(1);
        let span = base.mul_f64(doubling).min(LONGEST_WAIT);
        let until = now + span;
        self.wait_until = Some(until);
        Next::Wait { until, first: true }
    }

    /// Whether a wait is under way at `now` (requests hold off until it ends).
    pub fn waiting_until(&self, now: Instant) -> Option<Instant> {
        self.wait_until.filter(|u| *u > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_secs(1);

    #[test]
    fn three_failures_in_a_row_give_up_and_a_reply_resets_the_count() {
        let now = Instant::now();
        let mut r = Reach::default();
        assert_eq!(r.unreached(now, BASE, false), Next::Retry(1));
        assert_eq!(r.unreached(now, BASE, false), Next::Retry(2));
        r.reached();
        assert_eq!(r.unreached(now, BASE, false), Next::Retry(1));
        assert_eq!(r.unreached(now, BASE, false), Next::Retry(2));
        assert_eq!(r.unreached(now, BASE, false), Next::GiveUp);
        assert_eq!(r.unreached(now, BASE, false), Next::GiveUp);
    }

    #[test]
    fn waiting_backs_off_and_failures_during_a_wait_join_it() {
        let t0 = Instant::now();
        let mut r = Reach::default();
        r.unreached(t0, BASE, true);
        r.unreached(t0, BASE, true);
        let first = r.unreached(t0, BASE, true);
        assert_eq!(
            first,
            Next::Wait {
                until: t0 + BASE,
                first: true
            }
        );
        // Another row failing meanwhile joins the same wait, unlogged.
        let joined = r.unreached(t0 + Duration::from_millis(10), BASE, true);
        assert_eq!(
            joined,
            Next::Wait {
                until: t0 + BASE,
                first: false
            }
        );
        assert_eq!(r.waiting_until(t0), Some(t0 + BASE));
        // After it, the next wait is twice as long, up to the longest.
        let t1 = t0 + BASE;
        assert_eq!(
            r.unreached(t1, BASE, true),
            Next::Wait {
                until: t1 + 2 * BASE,
                first: true
            }
        );
        let mut t = t1;
        for _ in 0..20 {
            t += LONGEST_WAIT;
            if let Next::Wait { until, .. } = r.unreached(t, BASE, true) {
                assert!(until - t <= LONGEST_WAIT);
            }
        }
        r.reached();
        assert_eq!(r.waiting_until(t), None);
        assert_eq!(r.unreached(t, BASE, true), Next::Retry(1));
    }
}

//! The generic cell rate algorithm (GCRA) for per-minute limits.
//!
//! Its whole state is one instant, the theoretical arrival time (TAT), so a request can be
//! checked against several limits before any of them is charged, and the same state can
//! later live in a shared store. A limit of `n` per minute with a burst of `b` admits `b`
//! units at once and then one unit every `60 s / n`: requests are spread evenly instead of
//! bunched at a window's edge, where providers count strictly.

use std::time::Duration;

use tokio::time::Instant;

/// Requests reach the provider a few milliseconds apart from when they were sent, so a
/// schedule exactly at the limit puts one request too many into some 60 s window.
/// Pacing 1.5 % under the limit absorbs that jitter.
pub const WINDOW_MARGIN: f64 = 1.015;

/// tokio's timers fire on whole milliseconds, so a sleep until the exact moment ends up
/// to a millisecond late, and at 100 requests a second that alone costs 10 % of the rate.
/// A request up to this early is let through: the arrival time then advances from the
/// scheduled moment, not from now, so over any window the rate stays exact.
const TIMER_SLACK: Duration = Duration::from_millis(1);

#[derive(Debug, Clone)]
pub struct Gcra {
    /// Time one unit takes to come back.
    interval: Duration,
    /// Units that may go at once.
    burst: u64,
    tat: Option<Instant>,
}

impl Gcra {
    /// `n` units per minute (at least 1), `burst` at once (at least 1).
    pub fn per_minute(n: u64, burst: u64) -> Gcra {
        let mut g = Gcra {
            interval: Duration::ZERO,
            burst: 1,
            tat: None,
        };
        g.set_rate(n, burst);
        g
    }

    /// A new rate, keeping what was already charged (no burst on a change).
    pub fn set_rate(&mut self, n: u64, burst: u64) {
        // Far beyond any real limit the interval would round to zero: a nanosecond is
        // no limit at all.
        self.interval = Duration::from_secs_f64(60.0 * WINDOW_MARGIN / n.max(1) as f64)
            .max(Duration::from_nanos(1));
        self.burst = burst.clamp(1, u32::MAX as u64);
    }

    /// The most units one request is charged: a larger request waits for a full burst.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    fn span(&self, units: u64) -> Duration {
        let nanos = self.interval.as_nanos() * units.clamp(1, self.burst) as u128;
        Duration::from_nanos(nanos.min(u64::MAX as u128) as u64)
    }

    /// Zero if `units` may go at `now`, else how long until they may.
    pub fn wait(&self, now: Instant, units: u64) -> Duration {
        let Some(tat) = self.tat else {
            return Duration::ZERO;
        };
        // Allowed once tat + cost - burst span <= now.
        let allowed_at = tat.max(now) + self.span(units);
        let allowed_at = allowed_at.checked_sub(self.span(self.burst)).unwrap_or(now);
        allowed_at
            .saturating_duration_since(now)
            .saturating_sub(TIMER_SLACK)
    }

    /// Charges `units` at `now` (after `wait` said zero).
    pub fn take(&mut self, now: Instant, units: u64) {
        let base = self.tat.map_or(now, |t| t.max(now));
        self.tat = Some(base + self.span(units));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn spaces_requests_evenly_after_the_burst() {
        let now = Instant::now();
        let mut g = Gcra::per_minute(60, 1);
        assert_eq!(g.wait(now, 1), Duration::ZERO);
        g.take(now, 1);
        let step = g.wait(now, 1);
        // One interval, less the timer slack.
        assert!(step > Duration::from_millis(1000) && step < Duration::from_millis(1020));
        let mut tokens = Gcra::per_minute(900, 100);
        // 100 at once, then one every 60/900 s.
        tokens.take(now, 60);
        assert_eq!(tokens.wait(now, 40), Duration::ZERO);
        tokens.take(now, 40);
        let w = tokens.wait(now, 9).as_secs_f64();
        let exact = 9.0 * 60.0 * WINDOW_MARGIN / 900.0 - TIMER_SLACK.as_secs_f64();
        assert!((w - exact).abs() < 1e-6, "{w}");
        // More than a burst is charged as a full burst.
        assert_eq!(
            tokens.wait(now + Duration::from_secs(60), 1_000_000),
            Duration::ZERO
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_rate_keeps_what_was_charged() {
        let now = Instant::now();
        let mut g = Gcra::per_minute(6000, 1);
        g.take(now, 1);
        g.set_rate(6, 1);
        // The charge of the old rate stays; the next one is spaced at the new rate.
        assert!(g.wait(now, 1) < Duration::from_millis(20));
        g.take(now + Duration::from_millis(20), 1);
        assert!(g.wait(now + Duration::from_millis(20), 1) > Duration::from_secs(9));
    }
}

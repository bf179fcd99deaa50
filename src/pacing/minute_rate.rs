//! Finding and holding a per-minute request limit nobody states.
//!
//! A rate-limiting proxy answers 429 with no wait, no window and no headers. Backing off
//! by doubling idles for minutes while the window has long reopened; pacing on as before
//! draws 429 after 429. Instead the organization is taken to be at its limit for the
//! current minute: nothing goes until the oldest request of the last minute has left the
//! window, then one probe, and only when it passes does the paced rate resume. The rate is
//! learned the way TCP finds a link's capacity: each silent 429 cuts it by a tenth of what
//! the last minute served (multiplicative decrease), each clean minute adds 2 % (additive
//! increase), so an unknown limit is found and then held with few 429s. The learned rate
//! never exceeds a stated or user-set limit: it only ever caps the limit in force.

use std::time::Duration;

use tokio::time::Instant;

/// A clean minute: this long without a silent 429 raises the learned rate.
const CLEAN_MINUTE: Duration = Duration::from_secs(60);
/// Fewer requests in the last minute than this say nothing about the limit.
const MIN_EVIDENCE: u64 = 5;
/// What is left of the rate after a silent 429, in tenths.
const DECREASE_TENTHS: u64 = 9;
/// The raise after a clean minute: 1/50 of the rate (at least one request).
const INCREASE_DIVISOR: u64 = 50;
/// The longest: a minute window has passed by then, whatever its alignment.
const LONGEST_HOLD: Duration = Duration::from_secs(60);
/// How often a waiting request looks whether the probe has come back.
const PROBE_POLL: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Sending at the paced rate.
    Pacing,
    /// At the limit for the current minute: nothing before `until`, then one probe.
    Held { until: Instant },
    /// The probe is out: nothing else goes until it is answered.
    Probing,
}

/// One organization's learned minute rate and where it stands after a silent 429.
#[derive(Debug, Clone)]
pub struct MinuteRate {
    /// Requests a minute learned from silent 429s; `None` until the first one.
    cap: Option<u64>,
    phase: Phase,
    /// Since when no silent 429 came (or the rate last rose).
    clean_since: Instant,
}

impl MinuteRate {
    pub fn new(now: Instant) -> MinuteRate {
        MinuteRate {
            cap: None,
            phase: Phase::Pacing,
            clean_since: now,
        }
    }

    /// The learned requests a minute, if a silent 429 taught one.
    pub fn cap(&self) -> Option<u64> {
        self.cap
    }

    /// Whether a request may go now, else how long until one may look again.
    pub fn gate(&self, now: Instant) -> Result<(), Duration> {
        match self.phase {
            Phase::Pacing => Ok(()),
            Phase::Held { until } if until > now => Err(until - now),
            Phase::Held { .. } => Ok(()),
            Phase::Probing => Err(PROBE_POLL),
        }
    }

    /// A request went: the first after a hold is the probe.
    pub fn granted(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Held { until } if until <= now) {
            self.phase = Phase::Probing;
        }
    }

    /// How long the organization is held from now (zero when it is not).
    pub fn held_for(&self, now: Instant) -> Duration {
        match self.phase {
            Phase::Held { until } => until.saturating_duration_since(now),
            _ => Duration::ZERO,
        }
    }

    /// A 429 that names no wait. `served` requests went in the last minute; nothing goes
    /// for `hold` (the rest of the minute window, at most a minute), then one probe;
    /// `ceiling` is the limit in force without the learned rate. Returns the new learned
    /// rate when it changed.
    ///
    /// Once per episode: 429s to requests sent before the hold are the same news, and a
    /// failed probe only holds again (the rate was cut when the episode began).
    pub fn silent_429(
        &mut self,
        now: Instant,
        served: u64,
        ceiling: Option<u64>,
        hold: Duration,
    ) -> Option<u64> {
        let hold = Phase::Held {
            until: now + hold.min(LONGEST_HOLD),
        };
        self.clean_since = now;
        match self.phase {
            Phase::Held { .. } => None,
            Phase::Probing => {
                self.phase = hold;
                None
            }
            Phase::Pacing => {
                self.phase = hold;
                let seen = (served >= MIN_EVIDENCE).then_some(served);
                let base = [seen, self.cap, ceiling].into_iter().flatten().min()?;
                let cut = (base * DECREASE_TENTHS / 10).max(1);
                (self.cap != Some(cut)).then(|| {
                    self.cap = Some(cut);
                    cut
                })
            }
        }
    }

    /// Any other answer from the organization: a probe that passed (or failed for another
    /// reason) ends the hold; after a clean minute the learned rate rises, never above
    /// `ceiling`. Returns the new learned rate when it rose.
    pub fn answered(&mut self, now: Instant, ceiling: Option<u64>) -> Option<u64> {
        match self.phase {
            Phase::Probing => {
                self.phase = Phase::Pacing;
                None
            }
            Phase::Held { .. } => None,
            Phase::Pacing => {
                let cap = self.cap?;
                if now.saturating_duration_since(self.clean_since) < CLEAN_MINUTE {
                    return None;
                }
                self.clean_since = now;
                let raised =
                    (cap + (cap / INCREASE_DIVISOR).max(1)).min(ceiling.unwrap_or(u64::MAX));
                (raised > cap).then(|| {
                    self.cap = Some(raised);
                    raised
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn a_silent_429_holds_for_the_window_then_lets_one_probe_through() {
        let t0 = Instant::now();
        let mut m = MinuteRate::new(t0);
        assert_eq!(m.gate(t0), Ok(()));
        // 120 went in the first 7 s; the oldest leaves the window in 53 s.
        assert_eq!(m.silent_429(t0, 120, Some(300), 53 * SEC), Some(108));
        assert_eq!(m.gate(t0 + 10 * SEC), Err(43 * SEC));
        // Requests sent before the hold come back 429 too: no second cut.
        assert_eq!(m.silent_429(t0 + SEC, 121, Some(300), 52 * SEC), None);
        assert_eq!(m.cap(), Some(108));
        let t = t0 + 53 * SEC;
        assert_eq!(m.gate(t), Ok(()));
        m.granted(t);
        assert_eq!(m.gate(t), Err(PROBE_POLL), "only one probe");
        assert_eq!(m.answered(t + SEC, Some(300)), None);
        assert_eq!(m.gate(t + SEC), Ok(()), "paced again");
    }

    #[test]
    fn a_failed_probe_holds_again_without_a_second_cut() {
        let t0 = Instant::now();
        let mut m = MinuteRate::new(t0);
        m.silent_429(t0, 100, None, 2 * SEC);
        m.granted(t0 + 2 * SEC);
        assert_eq!(m.silent_429(t0 + 3 * SEC, 100, None, 5 * SEC), None);
        assert_eq!(m.cap(), Some(90));
        assert_eq!(m.held_for(t0 + 3 * SEC), 5 * SEC);
        // The hold never exceeds a minute.
        m.granted(t0 + 8 * SEC);
        m.silent_429(t0 + 8 * SEC, 100, None, 3600 * SEC);
        assert_eq!(m.held_for(t0 + 8 * SEC), 60 * SEC);
    }

    #[test]
    fn clean_minutes_raise_the_rate_slowly_up_to_the_ceiling() {
        let t0 = Instant::now();
        let mut m = MinuteRate::new(t0);
        assert_eq!(
            m.answered(t0 + 120 * SEC, Some(200)),
            None,
            "nothing learned yet"
        );
        m.silent_429(t0, 100, Some(200), Duration::ZERO);
        m.granted(t0 + SEC);
        m.answered(t0 + SEC, Some(200));
        assert_eq!(
            m.answered(t0 + 30 * SEC, Some(200)),
            None,
            "not a minute yet"
        );
        assert_eq!(m.answered(t0 + 61 * SEC, Some(200)), Some(91));
        assert_eq!(m.answered(t0 + 62 * SEC, Some(200)), None);
        assert_eq!(m.answered(t0 + 122 * SEC, Some(92)), Some(92));
        assert_eq!(
            m.answered(t0 + 190 * SEC, Some(92)),
            None,
            "never above the ceiling"
        );
    }

    #[test]
    fn the_cut_starts_from_the_lowest_of_served_learned_and_ceiling() {
        let t0 = Instant::now();
        let mut m = MinuteRate::new(t0);
        // Three requests say nothing; the ceiling is the base.
        assert_eq!(m.silent_429(t0, 3, Some(60), SEC), Some(54));
        m.granted(t0 + SEC);
        m.answered(t0 + SEC, Some(60));
        assert_eq!(m.silent_429(t0 + 2 * SEC, 400, Some(60), SEC), Some(48));
        // Nothing known at all: hold, but learn no rate.
        let mut m = MinuteRate::new(t0);
        assert_eq!(m.silent_429(t0, 2, None, SEC), None);
        assert_eq!(m.cap(), None);
        assert!(m.gate(t0).is_err());
    }

    /// An unknown limit of 120 a minute, sliding window, found and held with few 429s:
    /// a minute-by-minute simulation of pacing at the learned rate.
    #[test]
    fn an_unknown_limit_is_held_with_at_most_two_percent_429s() {
        let t0 = Instant::now();
        let mut m = MinuteRate::new(t0);
        let (limit, mut sent, mut refused) = (120u64, 0u64, 0u64);
        m.silent_429(t0, limit, Some(300), Duration::ZERO);
        m.granted(t0);
        m.answered(t0, Some(300));
        for minute in 1..=60u64 {
            let rate = m.cap().unwrap();
            let now = t0 + Duration::from_secs(minute * 60);
            sent += rate.min(limit);
            if rate > limit {
                refused += 1;
                m.silent_429(now, limit, Some(300), Duration::ZERO);
                m.granted(now);
            }
            m.answered(now + SEC, Some(300));
        }
        let share = refused as f64 / sent as f64;
        assert!(share <= 0.02, "{refused}/{sent}");
        assert!(sent as f64 >= 0.9 * 60.0 * limit as f64, "{sent}");
    }
}

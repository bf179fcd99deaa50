//! Run priorities on a shared organization (`--priority`, `--min-share`).
//!
//! A run that waits for the organization's next slot leaves a claim in the shared state
//! (until a little after it will be back): while a run of a higher priority claims, a
//! lower one gets a slot only when it is owed its minimum share, one slot every
//! `slot / min_share` of the schedule, and then the next slot is reserved for it even if
//! it lies ahead, so it never starves and no slot is lost to the ranking. The step is
//! that of the limits the run knows when it asks (they change when its first reply
//! states them). With no higher claim, every run takes what is free, as without
//! priorities. The schedule itself (the GCRA of the minute limits) is the same for every
//! priority: runs together stay under the limits whatever their ranks.

use serde::{Deserialize, Serialize};

use super::{Nanos, QuotaState};

/// A claim lasts this long past the moment its run said it would be back: more than the
/// dispatcher's longest nap and a lease's span, so a run that keeps waiting keeps it.
pub const CLAIM_GRACE: Nanos = 500_000_000;
/// A share step as far as a store's times go (~52 days: never, in practice).
pub const NEVER: Nanos = 1 << 52;

/// How urgent a run's requests are against other runs on the same keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
        }
    }

    /// As the stores' scripts take it: 0 low, 1 normal, 2 high.
    pub fn level(self) -> i64 {
        self as i64
    }

    pub fn parse(s: &str) -> Option<Priority> {
        match s.trim().to_ascii_lowercase().as_str() {
            "low" => Some(Priority::Low),
            "normal" => Some(Priority::Normal),
            "high" => Some(Priority::High),
            _ => None,
        }
    }
}

/// A run's rank: its priority, and the least share of the slots it takes while higher
/// priorities want them all (a fraction, 0 to 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rank {
    pub priority: Priority,
    pub min_share: f64,
}

impl Default for Rank {
    fn default() -> Rank {
        Rank {
            priority: Priority::Normal,
            min_share: 0.05,
        }
    }
}

impl Rank {
    /// Time between the slots a lower run is owed, for slots `slot` apart (0: the limits
    /// have no minute schedule, and ranks do not matter).
    pub fn share_step(&self, slot: Nanos) -> Nanos {
        if slot <= 0 {
            return 0;
        }
        if self.min_share <= 0.0 || !self.min_share.is_finite() {
            return NEVER;
        }
        ((slot as f64 / self.min_share.min(1.0)).round() as Nanos).clamp(1, NEVER)
    }
}

impl QuotaState {
    /// The latest claim of a priority above `level` that still holds at `now`.
    pub(super) fn claimed_above(&self, level: i64, now: Nanos) -> Option<Nanos> {
        let mut latest = None;
        if level < 2 && self.claim_high > now {
            latest = Some(self.claim_high);
        }
        if level < 1 && self.claim_normal > now {
            latest = latest.max(Some(self.claim_normal));
        }
        latest
    }

    /// A run of `level` waits for slots until `until` (low claims nothing: nothing ranks
    /// below it).
    pub(super) fn claim(&mut self, level: i64, until: Nanos) {
        match level {
            2 => self.claim_high = self.claim_high.max(until),
            1 => self.claim_normal = self.claim_normal.max(until),
            _ => {}
        }
    }

    /// From when a run of `level` is owed a slot, for share steps of `step` (those of the
    /// limits it asks with now).
    pub(super) fn owed_from(&self, level: i64, step: Nanos) -> Nanos {
        match level {
            1 => self.share_normal.saturating_add(step),
            0 => self.share_low.saturating_add(step),
            _ => Nanos::MIN,
        }
    }

    /// A run of `level` took a slot at `at` while ranked below a claim: its next is owed
    /// a step after the one it was owed, so that coming late (a nap, a slot ahead) does
    /// not shrink its share; lateness of more than a step is not made up.
    ///
    /// What is kept is the slot the next step counts from, not the moment it ends: the
    /// step is the one of the limits in force when the run asks again. Before a run's
    /// first reply its limits are assumed (Groq's free tier says 6,000 tokens a minute:
    /// a request takes ~0.7 s of the schedule, a 5 % step ~14 s), and an end worked out
    /// then would hold it back ~14 s although the stated limits make the step ~2 s.
    pub(super) fn owe_next(&mut self, level: i64, at: Nanos, step: Nanos) {
        let next = |from: Nanos| from.saturating_add(step).max(at.saturating_sub(step));
        match level {
            1 => self.share_normal = next(self.share_normal),
            0 => self.share_low = next(self.share_low),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Ask, Decision};
    use super::*;
    use crate::limits::Limits;
    use crate::timeutil::DayStart;

    const T0: Nanos = 1_796_083_140 * 1_000_000_000;
    const SEC: Nanos = 1_000_000_000;

    fn ask(priority: Priority) -> Ask {
        Ask {
            limits: Limits {
                rpm: Some(600),
                ..Limits::default()
            },
            tokens: 10,
            day: DayStart::UtcMidnight,
            lease: 4,
            rank: Rank {
                priority,
                min_share: 0.05,
            },
        }
    }

    /// Runs `(priority, from, to)` that always want more than the limit allows, asking
    /// again at once after each slot and when told to: the slots each got in `span` (no
    /// two of all of them closer than the schedule allows).
    fn contend(runs: &[(Priority, Nanos, Nanos)], span: Nanos) -> Vec<u64> {
        let mut s = QuotaState::default();
        let mut next: Vec<Nanos> = runs.iter().map(|r| T0 + r.1).collect();
        let mut got = vec![0; runs.len()];
        let mut slots = Vec::new();
        // Real runs wake a little late, each by its own chance.
        let mut rng = fastrand::Rng::with_seed(7);
        loop {
            let (i, &now) = next.iter().enumerate().min_by_key(|(_, t)| **t).unwrap();
            if now >= T0 + span {
                break;
            }
            if now >= T0.saturating_add(runs[i].2) {
                next[i] = Nanos::MAX;
                continue;
            }
            match s.decide(&ask(runs[i].0), now) {
                Decision::Lease {
                    count,
                    first,
                    interval,
                } => {
                    got[i] += count;
                    slots.extend((0..count as i64).map(|k| first + k * interval));
                    next[i] = now + 1000;
                }
                Decision::Wait(w) => next[i] = now + w.as_nanos() as Nanos + rng.i64(0..2_000_000),
                Decision::Full { .. } => unreachable!(),
            }
        }
        slots.sort();
        let spacing = 60 * SEC / 600;
        assert!(
            slots.windows(2).all(|w| w[1] - w[0] >= spacing),
            "over the limit"
        );
        got
    }

    #[test]
    fn a_high_run_takes_most_slots_and_a_low_one_still_gets_its_share() {
        let got = contend(
            &[
                (Priority::High, 0, Nanos::MAX),
                (Priority::Low, 0, Nanos::MAX),
            ],
            120 * SEC,
        );
        let total = (got[0] + got[1]) as f64;
        // 600 a minute, 1.5 % under: 1182 slots in two minutes, all used.
        assert!(total >= 1170.0, "{got:?}");
        let low = got[1] as f64 / total;
        assert!((0.045..0.07).contains(&low), "low got {low} of {got:?}");
    }

    #[test]
    fn equal_priorities_share_and_a_lower_run_takes_what_is_left() {
        let got = contend(
            &[
                (Priority::Normal, 0, Nanos::MAX),
                (Priority::Normal, 0, Nanos::MAX),
            ],
            60 * SEC,
        );
        assert!(got[0].abs_diff(got[1]) < got[0] / 5, "{got:?}");
        // The high run stops after 20 s: the low one gets the rest from then on.
        let got = contend(
            &[
                (Priority::High, 0, 20 * SEC),
                (Priority::Low, 0, Nanos::MAX),
            ],
            60 * SEC,
        );
        assert!(got[1] >= 380, "{got:?}");
        assert!(got[0] + got[1] >= 585, "{got:?}");
    }

    #[test]
    fn normal_ranks_between_high_and_low() {
        let got = contend(
            &[
                (Priority::High, 0, Nanos::MAX),
                (Priority::Normal, 0, Nanos::MAX),
                (Priority::Low, 0, Nanos::MAX),
            ],
            120 * SEC,
        );
        assert!(got[0] > got[1] && got[1] >= got[2] && got[2] > 0, "{got:?}");
    }
}

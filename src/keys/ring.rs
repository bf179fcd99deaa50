//! Key health during a run: which keys can serve, which are cooling down, exhausted for
//! the day, or invalid, and the summary line logged whenever that changes.
//!
//! Organization-wide limits live in `pacing`; this module only knows single keys, except
//! that a limit hit by one key of an organization is applied to all its keys.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::ApiKey;
use crate::provider::classify::CallError;
use crate::timeutil::DayStart;

/// A per-minute 429 that gives no wait: the key cools for the back-off base, doubling
/// with each such 429 in a row, up to a minute (a minute window is over by then).
const LONGEST_UNHINTED_COOLDOWN: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq)]
pub enum Health {
    Available,
    /// Per-minute limit hit: serves again at `until`.
    Cooling {
        until: Instant,
    },
    /// Daily quota (or billing) used up: serves again at `until` (kept across runs).
    Exhausted {
        until: SystemTime,
    },
    /// 401/403: kept across runs until `test-keys` passes.
    Invalid,
}

impl Health {
    pub fn name(&self) -> &'static str {
        match self {
            Health::Available => "available",
            Health::Cooling { .. } => "cooling",
            Health::Exhausted { .. } => "exhausted",
            Health::Invalid => "invalid",
        }
    }
}

#[derive(Debug)]
pub struct KeySlot {
    pub key: ApiKey,
    /// Index into the pacer's organizations.
    pub org: usize,
    pub health: Health,
    /// From the last reply's headers (per day on Groq, per minute on OpenAI).
    pub remaining_requests: Option<u64>,
    /// Per-minute 429s in a row that gave no wait.
    unhinted_429s: u32,
}

/// A change worth persisting and logging.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthChange {
    pub key: usize,
    pub from: &'static str,
    pub to: Health,
    pub reason: String,
}

#[derive(Debug)]
pub struct KeyRing {
    pub slots: Vec<KeySlot>,
    /// The key most recently handed out.
    pub current: Option<usize>,
    next_rr: usize,
    /// When a quota without a stated reset comes back.
    day: DayStart,
    /// The first cooldown after a 429 that gives no wait (`--backoff`).
    unhinted_base: Duration,
}

impl KeyRing {
    pub fn new(keys: Vec<ApiKey>, orgs: &[usize]) -> KeyRing {
        let slots = keys
            .into_iter()
            .zip(orgs)
            .map(|(key, &org)| KeySlot {
                key,
                org,
                health: Health::Available,
                remaining_requests: None,
                unhinted_429s: 0,
            })
            .collect();
        KeyRing {
            slots,
            current: None,
            next_rr: 0,
            day: DayStart::UtcMidnight,
            unhinted_base: Duration::from_secs(1),
        }
    }

    /// The provider's day (for quotas without a stated reset) and the first cooldown
    /// after a 429 that gives no wait.
    pub fn with_rules(mut self, day: DayStart, unhinted_base: Duration) -> KeyRing {
        self.day = day;
        self.unhinted_base = unhinted_base;
        self
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Health restored from the state store at start-up.
    pub fn restore(&mut self, key: usize, health: Health) {
        self.slots[key].health = health;
    }

    /// Turns expired cooldowns and quota resets back into `Available`.
    pub fn refresh(&mut self, now: Instant, wall: SystemTime) -> Vec<HealthChange> {
        let mut changes = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let back = match slot.health {
                Health::Cooling { until } => until <= now,
                Health::Exhausted { until } => until <= wall,
                _ => false,
            };
            if back {
                changes.push(HealthChange {
                    key: i,
                    from: slot.health.name(),
                    to: Health::Available,
                    reason: "reset".into(),
                });
                slot.health = Health::Available;
            }
        }
        changes
    }

    /// Keys that can be asked now or after a short cooldown: those with more requests
    /// left (as their last reply said) first, then in round-robin order starting after
    /// the last key handed out.
    pub fn candidates(&self) -> Vec<usize> {
        let n = self.slots.len();
        let mut keys: Vec<usize> = (0..n)
            .map(|i| (self.next_rr + i) % n)
            .filter(|&i| {
                matches!(
                    self.slots[i].health,
                    Health::Available | Health::Cooling { .. }
                )
            })
            .collect();
        // Stable: keys that report the same (or nothing) keep the round-robin order.
        keys.sort_by_key(|&i| {
            std::cmp::Reverse(self.slots[i].remaining_requests.unwrap_or(u64::MAX))
        });
        keys
    }

    /// The earliest moment an exhausted key comes back, when no key is usable at all.
    pub fn earliest_reset(&self) -> Option<SystemTime> {
        self.slots
            .iter()
            .filter_map(|s| match s.health {
                Health::Exhausted { until } => Some(until),
                _ => None,
            })
            .min()
    }

    pub fn granted(&mut self, key: usize) {
        self.current = Some(key);
        self.next_rr = (key + 1) % self.slots.len();
    }

    /// A success un-fails the key (and nothing else changes).
    pub fn succeeded(&mut self, key: usize, remaining_requests: Option<u64>) -> Vec<HealthChange> {
        let slot = &mut self.slots[key];
        slot.unhinted_429s = 0;
        if remaining_requests.is_some() {
            slot.remaining_requests = remaining_requests;
        }
        if slot.health == Health::Available {
            return Vec::new();
        }
        let from = slot.health.name();
        slot.health = Health::Available;
        vec![HealthChange {
            key,
            from,
            to: Health::Available,
            reason: "succeeded".into(),
        }]
    }

    /// Applies a failure to the key (or its whole organization, for shared limits).
    pub fn failed(
        &mut self,
        key: usize,
        err: &CallError,
        now: Instant,
        wall: SystemTime,
    ) -> Vec<HealthChange> {
        let org = self.slots[key].org;
        let (to, whole_org) = match err {
            CallError::RateLimited { retry_after, .. } => {
                let wait = match retry_after {
                    Some(r) => *r,
                    None => {
                        let slot = &mut self.slots[key];
                        slot.unhinted_429s = slot.unhinted_429s.saturating_add(1);
                        let doubling = 2u32.pow(slot.unhinted_429s.min(16) - 1);
                        self.unhinted_base
                            .saturating_mul(doubling)
                            .min(LONGEST_UNHINTED_COOLDOWN)
                    }
                };
                (Health::Cooling { until: now + wait }, true)
            }
            CallError::QuotaExhausted { reset, .. } => (
                Health::Exhausted {
                    until: reset
                        .and_then(|r| wall.checked_add(r))
                        .unwrap_or_else(|| self.day.next_start(wall)),
                },
                true,
            ),
            CallError::InvalidKey { .. } => (Health::Invalid, false),
            _ => return Vec::new(),
        };
        let reason = err.describe();
        let mut changes = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let affected = i == key || (whole_org && slot.org == org);
            if !affected || slot.health == Health::Invalid {
                continue;
            }
            // Never shorten a longer sentence: an exhausted key stays exhausted.
            let keep = matches!(
                (&slot.health, &to),
                (Health::Exhausted { .. }, Health::Cooling { .. })
            );
            if keep || slot.health == to {
                continue;
            }
            changes.push(HealthChange {
                key: i,
                from: slot.health.name(),
                to: to.clone(),
                reason: reason.clone(),
            });
            slot.health = to.clone();
        }
        changes
    }

    /// `key status: current #2 gsk_…a1b2 · available 2 · cooling 1 · exhausted 0 · invalid 0 · 2/3 available`
    pub fn summary(&self) -> String {
        let count = |name: &str| {
            self.slots
                .iter()
                .filter(|s| s.health.name() == name)
                .count()
        };
        let available = count("available");
        let current = self
            .current
            .map(|i| self.slots[i].key.label())
            .unwrap_or_else(|| "none".into());
        format!(
            "key status: current {current} · available {available} · cooling {} · exhausted {} · invalid {} · {available}/{} available",
            count("cooling"),
            count("exhausted"),
            count("invalid"),
            self.slots.len()
        )
    }

    /// How long until the soonest cooling key is back (for the dispatcher's sleep).
    pub fn cooling_wait(&self, key: usize, now: Instant) -> Duration {
        match self.slots[key].health {
            Health::Cooling { until } => until.saturating_duration_since(now),
            _ => Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(orgs: &[usize]) -> KeyRing {
        let keys = (0..orgs.len())
            .map(|i| ApiKey::new(i + 1, format!("gsk_TESTFAKEKEY_{i:04}")))
            .collect();
        KeyRing::new(keys, orgs)
    }

    #[tokio::test(start_paused = true)]
    async fn unhinted_429s_cool_for_a_doubling_backoff_up_to_a_minute() {
        let mut r = ring(&[0]).with_rules(DayStart::UtcMidnight, Duration::from_millis(500));
        let err = CallError::RateLimited {
            retry_after: None,
            dim: None,
            limit: None,
        };
        let now = Instant::now();
        let mut waits = Vec::new();
        for _ in 0..10 {
            r.failed(0, &err, now, SystemTime::now());
            waits.push(r.cooling_wait(0, now).as_millis());
            r.refresh(now + Duration::from_secs(61), SystemTime::now());
        }
        assert_eq!(waits[..5], [500, 1000, 2000, 4000, 8000]);
        assert_eq!(waits[9], 60_000);
        // A success starts the doubling again.
        r.succeeded(0, None);
        r.failed(0, &err, now, SystemTime::now());
        assert_eq!(r.cooling_wait(0, now).as_millis(), 500);
    }

    #[test]
    fn a_quota_without_a_reset_lasts_until_the_providers_next_day() {
        let mut r = ring(&[0]).with_rules(DayStart::PacificMidnight, Duration::from_secs(1));
        let wall = crate::timeutil::from_unix(1_796_014_800); // 2026-11-30T05:00Z
        let err = CallError::QuotaExhausted {
            reset: None,
            what: "daily quota".into(),
            dim: None,
            limit: None,
        };
        r.failed(0, &err, Instant::now(), wall);
        let until = r.earliest_reset().unwrap();
        assert_eq!(crate::timeutil::rfc3339(until), "2026-11-30T08:00:00Z");
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limit_cools_the_whole_org_and_success_unfails() {
        let mut r = ring(&[0, 0, 1]);
        let now = Instant::now();
        let err = CallError::RateLimited {
            retry_after: Some(Duration::from_secs(5)),
            dim: None,
            limit: None,
        };
        let changes = r.failed(0, &err, now, SystemTime::now());
        assert_eq!(changes.len(), 2);
        assert_eq!(r.slots[2].health, Health::Available);
        assert!(r.summary().contains("cooling 2"));
        assert!(r.summary().ends_with("1/3 available"));
        assert!(
            r.refresh(now + Duration::from_secs(6), SystemTime::now())
                .len()
                == 2
        );
        r.failed(
            1,
            &CallError::InvalidKey { status: 401 },
            now,
            SystemTime::now(),
        );
        assert_eq!(r.candidates(), vec![0, 2]);
        assert_eq!(r.succeeded(1, None).len(), 1);
        assert_eq!(r.slots[1].health, Health::Available);
        // More requests left goes first; equal counts keep round robin.
        r.succeeded(2, Some(500));
        r.succeeded(0, Some(100));
        r.succeeded(1, Some(500));
        r.granted(0);
        assert_eq!(r.candidates(), vec![1, 2, 0]);
    }

    #[tokio::test(start_paused = true)]
    async fn exhausted_keys_report_their_reset() {
        let mut r = ring(&[0, 1]);
        let wall = SystemTime::now();
        let err = CallError::QuotaExhausted {
            reset: Some(Duration::from_secs(60)),
            what: "RPD".into(),
            dim: None,
            limit: None,
        };
        r.failed(0, &err, Instant::now(), wall);
        r.failed(
            1,
            &CallError::InvalidKey { status: 401 },
            Instant::now(),
            wall,
        );
        assert!(r.candidates().is_empty());
        assert_eq!(r.earliest_reset(), Some(wall + Duration::from_secs(60)));
        // A later per-minute limit does not shorten the daily exhaustion.
        let cool = CallError::RateLimited {
            retry_after: Some(Duration::from_secs(1)),
            dim: None,
            limit: None,
        };
        assert!(r.failed(0, &cool, Instant::now(), wall).is_empty());
    }
}

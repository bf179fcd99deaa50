//! Key health during a run: which keys can serve, which are cooling down, exhausted for
//! the day, or invalid, and the summary line logged whenever that changes.
//!
//! Organization-wide limits live in `pacing`; this module only knows single keys, except
//! that a limit hit by one key of an organization is applied to all its keys. The order
//! in which keys are tried is decided here: priority, then the share of the key's own
//! quotas left, then round robin.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::health::{Health, HealthChange};
use super::quota::{KeyQuota, QuotaWait};
use super::ApiKey;
use crate::provider::classify::CallError;
use crate::store::{HealthReason, StoredHealth};
use crate::timeutil::DayStart;

/// A per-minute 429 that gives no wait: the key cools for the back-off base, doubling
/// with each such 429 in a row, up to a minute (a minute window is over by then).
const LONGEST_UNHINTED_COOLDOWN: Duration = Duration::from_secs(60);

/// `--rotate-below` when not given: rotate a key out with under 5 % of a quota left.
pub const DEFAULT_ROTATE_BELOW_PCT: f64 = 5.0;

#[derive(Debug)]
pub struct KeySlot {
    /// Shared with the dispatcher, which hands it out without taking the ring's lock.
    pub key: Arc<ApiKey>,
    /// Index into the pacer's organizations.
    pub org: usize,
    pub health: Health,
    /// From the last reply's headers (per day on Groq, per minute on OpenAI).
    pub remaining_requests: Option<u64>,
    /// Per-minute 429s in a row that gave no wait.
    unhinted_429s: u32,
    /// Higher is tried first (from the env file; 0 when unset).
    pub priority: i64,
    /// The key's own quotas and what is counted against them.
    pub quota: KeyQuota,
    /// Its provider's day, when it differs from the ring's (a pool of providers).
    day: Option<DayStart>,
    /// The end of a cooldown `keys rotate` asked for: a reply to a request sent before
    /// does not end it.
    stepped_aside_until: Option<Instant>,
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
    /// A key whose tightest daily or monthly quota has less than this share (percent)
    /// left is rotated out until the quota's period ends (`--rotate-below`).
    rotate_below_pct: f64,
}

impl KeyRing {
    pub fn new(keys: Vec<ApiKey>, orgs: &[usize]) -> KeyRing {
        let slots = keys
            .into_iter()
            .zip(orgs)
            .map(|(key, &org)| KeySlot {
                priority: key.settings.priority,
                quota: KeyQuota::new(key.settings.quotas, 1),
                key: Arc::new(key),
                org,
                health: Health::Available,
                remaining_requests: None,
                unhinted_429s: 0,
                day: None,
                stepped_aside_until: None,
            })
            .collect();
        KeyRing {
            slots,
            current: None,
            next_rr: 0,
            day: DayStart::UtcMidnight,
            unhinted_base: Duration::from_secs(1),
            rotate_below_pct: DEFAULT_ROTATE_BELOW_PCT,
        }
    }

    /// The day monthly key quotas start again (1–28) and the share left below which a
    /// key is rotated out (`--rotate-below`, percent).
    pub fn with_quota_rules(mut self, reset_day: u32, rotate_below_pct: f64) -> KeyRing {
        for slot in &mut self.slots {
            slot.quota = KeyQuota::new(slot.key.settings.quotas, reset_day);
        }
        self.rotate_below_pct = rotate_below_pct;
        self
    }

    /// The provider's day (for quotas without a stated reset) and the first cooldown
    /// after a 429 that gives no wait.
    pub fn with_rules(mut self, day: DayStart, unhinted_base: Duration) -> KeyRing {
        self.day = day;
        self.unhinted_base = unhinted_base;
        self
    }

    /// The rules of `key`'s own provider, in a pool whose providers differ: when its day
    /// starts (Gemini's at Pacific midnight) and the day its monthly key quotas restart.
    pub fn set_provider_rules(&mut self, key: usize, day: DayStart, quota_reset_day: u32) {
        let slot = &mut self.slots[key];
        slot.day = Some(day);
        slot.quota = KeyQuota::new(slot.key.settings.quotas, quota_reset_day);
    }

    /// The first cooldown after a 429 that gives no wait (`--backoff`).
    pub fn unhinted_base(&self) -> Duration {
        self.unhinted_base
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

    /// Takes over what other runs sharing the state found about keys this run still
    /// counts as available: exhausted, invalid or cooling. (A key this run has seen fail
    /// keeps its own, fresher, state.)
    pub fn adopt(
        &mut self,
        stored: &[StoredHealth],
        now: Instant,
        wall: SystemTime,
    ) -> Vec<HealthChange> {
        let mut changes = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if slot.health != Health::Available {
                continue;
            }
            // A key rotated out for its own quota is each run's own call (from the ledger).
            let found = stored
                .iter()
                .filter(|h| !matches!(h.reason, HealthReason::QuotaLow(_)))
                .find(|h| h.fingerprint == slot.key.fingerprint)
                .and_then(|h| Health::from_stored(h, now, wall).map(|to| (to, &h.reason)));
            if let Some((to, reason)) = found {
                changes.push(HealthChange {
                    key: i,
                    from: slot.health.name(),
                    to: to.clone(),
                    reason: HealthReason::SeenByAnotherRun(Box::new(reason.clone())),
                });
                slot.health = to;
            }
        }
        changes
    }

    /// Turns expired cooldowns and quota resets back into `Available`.
    pub fn refresh(&mut self, now: Instant, wall: SystemTime) -> Vec<HealthChange> {
        let mut changes = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let back = match slot.health {
                Health::Cooling { until } => until <= now,
                Health::Exhausted { until } => until <= wall,
                Health::Disabled { until: Some(until) } => until <= wall,
                _ => false,
            };
            if back {
                changes.push(HealthChange {
                    key: i,
                    from: slot.health.name(),
                    to: Health::Available,
                    reason: HealthReason::Reset,
                });
                slot.health = Health::Available;
            }
        }
        changes
    }

    /// Keys that can be asked now or after a short cooldown: the highest priority first;
    /// within a priority, the most left of the key's own quotas (to the thousandth), then
    /// more requests left (as the last reply said), then in round-robin order starting
    /// after the last key handed out.
    pub fn candidates(&self) -> Vec<usize> {
        let n = self.slots.len();
        let mut keys: Vec<usize> = (0..n)
            .map(|i| (self.next_rr + i) % n)
            .filter(|&i| {
                matches!(
                    self.slots[i].health,
                    Health::Available | Health::Cooling { .. } | Health::Suspect { .. }
                )
            })
            .collect();
        // Stable: keys that report the same (or nothing) keep the round-robin order.
        keys.sort_by_key(|&i| {
            let s = &self.slots[i];
            std::cmp::Reverse((
                s.priority,
                s.quota.left_permille(),
                s.remaining_requests.unwrap_or(u64::MAX),
            ))
        });
        keys
    }

    /// Whether a request of about `tokens` tokens fits the key's own quotas now.
    pub fn quota_check(
        &mut self,
        key: usize,
        now: Instant,
        wall: SystemTime,
        tokens: u64,
    ) -> Result<(), QuotaWait> {
        self.slots[key].quota.check(now, wall, tokens)
    }

    /// Counts a granted request against the key's own quotas.
    pub fn charge(&mut self, key: usize, now: Instant, wall: SystemTime, tokens: u64) {
        self.slots[key].quota.take(now, wall, tokens);
    }

    /// Takes back a `charge` whose request never reached the provider.
    pub fn uncharge(&mut self, key: usize, tokens: u64) {
        self.slots[key].quota.give_back(tokens);
    }

    /// Rotates out every usable key whose tightest daily or monthly quota has less than
    /// `--rotate-below` left: it is exhausted until that quota's period ends, so that it
    /// never runs dry mid-request (and the next key takes over at once).
    pub fn sweep_quotas(&mut self, wall: SystemTime) -> Vec<HealthChange> {
        let mut changes = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if !matches!(slot.health, Health::Available | Health::Cooling { .. }) {
                continue;
            }
            slot.quota.roll(wall);
            let Some(u) = slot.quota.tightest() else {
                continue;
            };
            let left_pct = u.left() * 100.0;
            if left_pct > 0.0 && left_pct >= self.rotate_below_pct {
                continue;
            }
            let until = slot.quota.period_end(u.dim.period(), wall);
            let to = Health::Exhausted { until };
            changes.push(HealthChange {
                key: i,
                from: slot.health.name(),
                to: to.clone(),
                reason: HealthReason::QuotaLow(format!(
                    "{} {} of {} used, {left_pct:.1} % left (--rotate-below {} %)",
                    u.dim, u.used, u.limit, self.rotate_below_pct
                )),
            });
            slot.health = to;
        }
        changes
    }

    /// `autolabel keys disable`: out of service until `until` (or enabled again).
    pub fn disable(
        &mut self,
        key: usize,
        until: Option<SystemTime>,
        reason: &str,
    ) -> Option<HealthChange> {
        let to = Health::Disabled { until };
        self.set_health(
            key,
            to,
            HealthReason::Manual(format!("disabled ({reason})")),
        )
    }

    /// `autolabel keys enable` (or reset): back in service, whatever kept it out.
    pub fn enable(&mut self, key: usize, reason: &str) -> Option<HealthChange> {
        self.set_health(
            key,
            Health::Available,
            HealthReason::Manual(reason.to_string()),
        )
    }

    /// `autolabel keys rotate`: the key in use steps aside for a cooldown.
    pub fn step_aside(
        &mut self,
        key: usize,
        now: Instant,
        cooldown: Duration,
    ) -> Option<HealthChange> {
        if self.slots[key].health != Health::Available {
            return None;
        }
        let until = now + cooldown;
        self.slots[key].stepped_aside_until = Some(until);
        let to = Health::Cooling { until };
        let why = HealthReason::Manual("autolabel keys rotate".into());
        self.set_health(key, to, why)
    }

    /// Sets `key`'s health (a suspicion and its outcome); the change, if any.
    pub fn set_health(
        &mut self,
        key: usize,
        to: Health,
        reason: HealthReason,
    ) -> Option<HealthChange> {
        let slot = &mut self.slots[key];
        if slot.health == to {
            return None;
        }
        let change = HealthChange {
            key,
            from: slot.health.name(),
            to: to.clone(),
            reason,
        };
        slot.health = to;
        Some(change)
    }

    /// The earliest moment an exhausted key comes back, when no key is usable at all.
    pub fn earliest_reset(&self) -> Option<SystemTime> {
        self.slots
            .iter()
            .filter_map(|s| match s.health {
                Health::Exhausted { until } => Some(until),
                Health::Disabled { until } => until,
                _ => None,
            })
            .min()
    }

    pub fn granted(&mut self, key: usize) {
        self.current = Some(key);
        self.next_rr = (key + 1) % self.slots.len();
    }

    /// A success un-fails the key (and nothing else changes), unless it was disabled.
    pub fn succeeded(&mut self, key: usize, remaining_requests: Option<u64>) -> Vec<HealthChange> {
        let slot = &mut self.slots[key];
        slot.unhinted_429s = 0;
        if remaining_requests.is_some() {
            slot.remaining_requests = remaining_requests;
        }
        // A reply to a request sent before a disable or a rotation does not undo it.
        let stepped_aside = matches!(slot.health, Health::Cooling { until } if Some(until) == slot.stepped_aside_until);
        if stepped_aside || matches!(slot.health, Health::Available | Health::Disabled { .. }) {
            return Vec::new();
        }
        let from = slot.health.name();
        slot.health = Health::Available;
        vec![HealthChange {
            key,
            from,
            to: Health::Available,
            reason: HealthReason::Succeeded,
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
                    until: reset.and_then(|r| wall.checked_add(r)).unwrap_or_else(|| {
                        self.slots[key].day.unwrap_or(self.day).next_start(wall)
                    }),
                },
                true,
            ),
            CallError::InvalidKey { .. } => (Health::Invalid, false),
            _ => return Vec::new(),
        };
        let reason = HealthReason::Provider(err.describe());
        let mut changes = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let affected = i == key || (whole_org && slot.org == org);
            let out = matches!(slot.health, Health::Invalid | Health::Disabled { .. });
            if !affected || out {
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
    /// (with `· disabled N` when some key is disabled)
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
        let disabled = match count("disabled") {
            0 => String::new(),
            n => format!(" · disabled {n}"),
        };
        let disabled = match count("suspect") {
            0 => disabled,
            n => format!(" · suspect {n}{disabled}"),
        };
        format!(
            "key status: current {current} · available {available} · cooling {} · exhausted {} · invalid {}{disabled} · {available}/{} available",
            count("cooling"),
            count("exhausted"),
            count("invalid"),
            self.slots.len()
        )
    }

    /// How long until the soonest cooling key is back (for the dispatcher's sleep).
    pub fn cooling_wait(&self, key: usize, now: Instant) -> Duration {
        match self.slots[key].health {
            Health::Cooling { until } | Health::Suspect { until } => {
                until.saturating_duration_since(now)
            }
            _ => Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::health::{rotation_class, QUOTA_LOW};
    use crate::store::KeyStatus;

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
        // In a pool, each key follows its own provider's day.
        let mut r = ring(&[0, 1]).with_rules(DayStart::UtcMidnight, Duration::from_secs(1));
        r.set_provider_rules(1, DayStart::PacificMidnight, 1);
        r.failed(0, &err, Instant::now(), wall);
        r.failed(1, &err, Instant::now(), wall);
        let until = |k: usize| match r.slots[k].health {
            Health::Exhausted { until } => crate::timeutil::rfc3339(until),
            ref h => panic!("{h:?}"),
        };
        assert_eq!(until(0), "2026-12-01T00:00:00Z");
        assert_eq!(until(1), "2026-11-30T08:00:00Z");
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
    async fn priority_then_quota_left_then_round_robin() {
        use crate::keys::settings::{KeySettings, QuotaDim};
        let settings = |priority: i64, daily: Option<u64>| {
            let mut s = KeySettings {
                priority,
                ..KeySettings::default()
            };
            s.quotas.set(QuotaDim::DailyRequests, daily);
            s
        };
        let keys = [(0, None), (5, Some(100)), (5, Some(100)), (5, None)]
            .into_iter()
            .enumerate()
            .map(|(i, (p, q))| {
                ApiKey::new(i + 1, format!("gsk_TESTFAKEKEY_{i:04}")).with_settings(settings(p, q))
            })
            .collect();
        let mut r = KeyRing::new(keys, &[0, 1, 2, 3]);
        let (now, wall) = (Instant::now(), SystemTime::now());
        // Equal priority and all quota left: round robin among the priority-5 keys.
        assert_eq!(r.candidates(), vec![1, 2, 3, 0]);
        r.charge(1, now, wall, 10);
        r.granted(1);
        // Key 2 has used a request of its 100: the others of priority 5 have more left.
        assert_eq!(r.candidates(), vec![2, 3, 1, 0]);
        r.granted(2);
        assert_eq!(r.candidates(), vec![3, 2, 1, 0]);
        // Below --rotate-below (5 %) a key is rotated out until the end of the UTC day.
        for _ in 0..96 {
            r.charge(2, now, wall, 10);
        }
        let out = r.sweep_quotas(wall);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].key, 2);
        assert!(out[0]
            .reason
            .to_string()
            .starts_with("quota low: daily requests 96 of 100"));
        assert_eq!(rotation_class(&out[0]), (QUOTA_LOW, "auto"));
        assert_eq!(r.candidates(), vec![3, 1, 0]);
        // A disabled key is out until enabled.
        r.disable(3, None, "leaked");
        assert_eq!(r.candidates(), vec![1, 0]);
        r.enable(3, "enabled");
        assert_eq!(r.candidates(), vec![3, 1, 0]);
    }

    #[tokio::test(start_paused = true)]
    async fn what_another_run_found_is_adopted_for_available_keys_only() {
        let mut r = ring(&[0, 1, 2]);
        let wall = SystemTime::now();
        let now = Instant::now();
        let stored = |i: usize, status: KeyStatus, until: Option<SystemTime>| StoredHealth {
            fingerprint: r.slots[i].key.fingerprint.clone(),
            masked: String::new(),
            status,
            until,
            reason: HealthReason::from_stored("RPD"),
        };
        let rows = vec![
            stored(
                0,
                KeyStatus::Exhausted,
                Some(wall + Duration::from_secs(600)),
            ),
            stored(1, KeyStatus::Exhausted, Some(wall - Duration::from_secs(1))),
            stored(2, KeyStatus::Invalid, None),
        ];
        r.failed(2, &CallError::InvalidKey { status: 403 }, now, wall);
        let changes = r.adopt(&rows, now, wall);
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].key, 0);
        assert!(changes[0]
            .reason
            .to_string()
            .starts_with("seen by another run"));
        assert_eq!(r.slots[0].health.name(), "exhausted");
        assert_eq!(
            r.slots[1].health,
            Health::Available,
            "an expired record is no news"
        );
        assert!(r.adopt(&rows, now, wall).is_empty(), "adopted once");
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

//! When the next request may go, and on which key.
//!
//! Two layers: one global spacing (`--delay`) for all requests, and per-organization
//! limits (requests per minute/hour/day, estimated tokens per minute/day). Minute limits
//! use governor with a burst of one request, so requests are spread evenly instead of
//! bunched at a window's edge (providers count strict windows). Hour and day limits are
//! counted in fixed windows: spreading a daily quota evenly would throttle the first hours
//! for nothing. Reply headers and 429s feed back into the same state.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use governor::clock::Clock;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::keys::ring::{HealthChange, KeyRing};
use crate::provider::classify::{CallError, RateHeaders};
use crate::provider::defaults::Limits;
use crate::timeutil;

/// A reset further away than this is a daily quota, not a minute window.
const LONG_RESET: Duration = Duration::from_secs(120);

/// A fixed counting window (an hour, a UTC day).
#[derive(Debug)]
struct Window {
    start: SystemTime,
    length: Duration,
    used: u64,
}

impl Window {
    fn new(start: SystemTime, length: Duration, used: u64) -> Window {
        Window {
            start,
            length,
            used,
        }
    }

    fn roll(&mut self, wall: SystemTime) {
        if wall >= self.start + self.length {
            self.start = wall;
            self.used = 0;
        }
    }

    fn end(&self) -> SystemTime {
        self.start + self.length
    }
}

struct Org {
    rpm: Option<DefaultDirectRateLimiter>,
    /// The requests-per-minute currently enforced (lowered when the provider says less).
    rpm_effective: Option<u64>,
    tpm: Option<DefaultDirectRateLimiter>,
    /// The largest token amount one check may ask for (governor's burst).
    tpm_burst: u64,
    hour: Option<(u64, Window)>,
    day: Option<(u64, Window)>,
    tokens_day: Option<(u64, Window)>,
    /// Until when reply headers say this organization has nothing left.
    blocked_until: Option<Instant>,
    /// Grants in the last minute, to learn a lower real limit from a 429: coalesced into
    /// 100 ms buckets (start, count), so memory stays O(600) whatever the request rate.
    recent: VecDeque<(Instant, u64)>,
}

/// Requests reach the provider a few milliseconds apart from when they were sent, so a
/// schedule exactly at the limit puts one request too many into some 60 s window. Pacing
/// 1.5 % under the limit absorbs that jitter.
const WINDOW_MARGIN: f64 = 1.015;

fn per_minute(n: u64, burst: u64) -> DefaultDirectRateLimiter {
    // Far beyond any real limit the period would round to zero: a microsecond is no limit.
    let period = Duration::from_secs_f64(60.0 * WINDOW_MARGIN / n.max(1) as f64)
        .max(Duration::from_micros(1));
    let quota = Quota::with_period(period)
        .expect("positive period")
        .allow_burst(NonZeroU32::new(burst.clamp(1, u32::MAX as u64) as u32).unwrap());
    RateLimiter::direct(quota)
}

impl Org {
    fn new(limits: &Limits, wall: SystemTime, used_today: (u64, u64)) -> Org {
        let day_start = timeutil::from_unix(timeutil::unix_secs(wall).div_euclid(86_400) * 86_400);
        let day = Duration::from_secs(86_400);
        // A token burst of a tenth of the minute lets single large requests through
        // while keeping any 60 s window under the limit (rate is lowered by the burst).
        let tpm_burst = limits.tpm.map(|t| (t / 10).max(1)).unwrap_or(0);
        Org {
            rpm: limits.rpm.map(|n| per_minute(n, 1)),
            rpm_effective: limits.rpm,
            tpm: limits
                .tpm
                .map(|t| per_minute(t.saturating_sub(tpm_burst).max(1), tpm_burst)),
            tpm_burst,
            hour: limits
                .rph
                .map(|n| (n, Window::new(wall, Duration::from_secs(3600), 0))),
            day: limits
                .rpd
                .map(|n| (n, Window::new(day_start, day, used_today.0))),
            tokens_day: limits
                .tpd
                .map(|n| (n, Window::new(day_start, day, used_today.1))),
            blocked_until: None,
            recent: VecDeque::new(),
        }
    }

    /// When this organization's window counters allow one more request, if not now.
    fn window_wait(&mut self, wall: SystemTime, tokens: u64) -> Option<SystemTime> {
        let mut until: Option<SystemTime> = None;
        for (limit, w, cost) in [
            (self.hour.as_mut(), 1),
            (self.day.as_mut(), 1),
            (self.tokens_day.as_mut(), tokens),
        ]
        .into_iter()
        .filter_map(|(lw, cost)| lw.map(|(l, w)| (*l, w, cost)))
        {
            w.roll(wall);
            if w.used + cost > limit {
                until = until.max(Some(w.end()));
            }
        }
        until
    }

    /// Tries to take one request of `tokens` from the minute limiters. On refusal, how long to wait.
    fn take(&mut self, tokens: u64) -> Result<(), Duration> {
        if let Some(rpm) = &self.rpm {
            if let Err(nu) = rpm.check() {
                return Err(nu.wait_time_from(rpm.clock().now()));
            }
        }
        if let Some(tpm) = &self.tpm {
            let ask = NonZeroU32::new(tokens.clamp(1, self.tpm_burst.max(1)) as u32).unwrap();
            match tpm.check_n(ask) {
                Ok(Ok(())) => {}
                Ok(Err(nu)) => return Err(nu.wait_time_from(tpm.clock().now())),
                Err(_) => {}
            }
        }
        Ok(())
    }

    fn count(&mut self, now: Instant, tokens: u64) {
        for w in [self.hour.as_mut(), self.day.as_mut()]
            .into_iter()
            .flatten()
        {
            w.1.used += 1;
        }
        if let Some((_, w)) = self.tokens_day.as_mut() {
            w.used += tokens;
        }
        match self.recent.back_mut() {
            Some((t, n)) if now.duration_since(*t) < Duration::from_millis(100) => *n += 1,
            _ => self.recent.push_back((now, 1)),
        }
        self.served_last_minute(now);
    }

    /// Drops grants older than a minute and returns how many are left.
    fn served_last_minute(&mut self, now: Instant) -> u64 {
        while self
            .recent
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_secs(60))
        {
            self.recent.pop_front();
        }
        self.recent.iter().map(|(_, n)| n).sum()
    }
}

/// Organization and key state, locked only briefly (never across a sleep).
struct Inner {
    ring: KeyRing,
    orgs: Vec<Org>,
    global: Option<DefaultDirectRateLimiter>,
    delay: Duration,
    last_grant: Option<Instant>,
}

/// What the dispatcher hands out.
#[derive(Debug, Clone, PartialEq)]
pub enum Grant {
    /// Send now, on this key.
    Key(usize),
    /// No key is usable (all exhausted or invalid); the earliest one is back at `earliest`.
    NoKey { earliest: Option<SystemTime> },
}

/// Hands out keys at the pace every limit allows. Shared by all in-flight requests.
pub struct Dispatcher {
    inner: Mutex<Inner>,
    /// Held while waiting for a slot, so waiters queue fairly instead of racing.
    turn: tokio::sync::Mutex<()>,
}

/// Per organization: its limits and what it has used today already (requests, tokens).
pub struct OrgSetup {
    pub limits: Limits,
    pub used_today: (u64, u64),
}

impl Dispatcher {
    pub fn new(ring: KeyRing, orgs: &[OrgSetup], delay: Duration) -> Dispatcher {
        let wall = SystemTime::now();
        let global = (delay > Duration::ZERO)
            .then(|| RateLimiter::direct(Quota::with_period(delay).expect("positive delay")));
        Dispatcher {
            inner: Mutex::new(Inner {
                ring,
                orgs: orgs
                    .iter()
                    .map(|o| Org::new(&o.limits, wall, o.used_today))
                    .collect(),
                global,
                delay,
                last_grant: None,
            }),
            turn: tokio::sync::Mutex::new(()),
        }
    }

    /// Runs `f` on the key ring (for summaries and restores).
    pub fn with_ring<T>(&self, f: impl FnOnce(&mut KeyRing) -> T) -> T {
        f(&mut self.inner.lock().unwrap().ring)
    }

    /// Waits until some key may send a request of about `tokens` tokens, and takes that slot.
    /// The health changes seen on the way (cooldowns ending) are passed to `on_change`.
    pub async fn acquire(
        &self,
        tokens: u64,
        on_change: &(dyn Fn(&[HealthChange], &KeyRing) + Sync),
    ) -> Grant {
        let _turn = self.turn.lock().await;
        loop {
            let wait = {
                let mut guard = self.inner.lock().unwrap();
                let inner = &mut *guard;
                let now = Instant::now();
                let wall = SystemTime::now();
                let changes = inner.ring.refresh(now, wall);
                if !changes.is_empty() {
                    on_change(&changes, &inner.ring);
                }
                match inner.try_grant(tokens, now, wall) {
                    Ok(grant) => return grant,
                    Err(wait) => wait,
                }
            };
            tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
        }
    }

    /// A successful reply: un-fail the key, learn from its headers.
    pub fn succeeded(
        &self,
        key: usize,
        headers: &RateHeaders,
        next_tokens: u64,
    ) -> Vec<HealthChange> {
        let mut inner = self.inner.lock().unwrap();
        let now = Instant::now();
        inner.apply_headers(key, headers, next_tokens, now);
        let mut changes = inner.ring.succeeded(key, headers.remaining_requests);
        // No request left for longer than a minute window: the daily quota is used up.
        // Exhaust the organization now, before a request is wasted on a 429.
        if let (Some(0), Some(reset)) = (headers.remaining_requests, headers.reset_requests) {
            if reset > LONG_RESET {
                let err = CallError::QuotaExhausted {
                    reset: Some(reset),
                    what: "no requests left (x-ratelimit-remaining-requests: 0)".into(),
                };
                changes.extend(inner.ring.failed(key, &err, now, SystemTime::now()));
            }
        }
        changes
    }

    /// A failed reply: cool down, exhaust or invalidate the key (or its organization).
    pub fn failed(&self, key: usize, err: &CallError, headers: &RateHeaders) -> Vec<HealthChange> {
        let mut inner = self.inner.lock().unwrap();
        let now = Instant::now();
        inner.apply_headers(key, headers, 0, now);
        if let CallError::RateLimited { what, limit, .. } = err {
            match what.as_str() {
                "RPM" => inner.learn_lower_rpm(key, now, *limit),
                "TPM" => inner.learn_lower_tpm(key, *limit),
                _ => {}
            }
        }
        inner.ring.failed(key, err, now, SystemTime::now())
    }

    /// Whether some key is available or only cooling down (not exhausted or invalid).
    pub fn any_usable(&self) -> bool {
        let mut inner = self.inner.lock().unwrap();
        inner.ring.refresh(Instant::now(), SystemTime::now());
        !inner.ring.candidates().is_empty()
    }

    /// The requests-per-minute now enforced for each organization (for the summary).
    pub fn effective_rpm(&self) -> Vec<Option<u64>> {
        let inner = self.inner.lock().unwrap();
        inner.orgs.iter().map(|o| o.rpm_effective).collect()
    }
}

impl Inner {
    fn try_grant(
        &mut self,
        tokens: u64,
        now: Instant,
        wall: SystemTime,
    ) -> Result<Grant, Duration> {
        let candidates = self.ring.candidates();
        if candidates.is_empty() {
            return Ok(Grant::NoKey {
                earliest: self.ring.earliest_reset(),
            });
        }
        // The global spacing first: it gates everyone, so nothing else is worth checking.
        if let Some(last) = self.last_grant {
            let ready = last + self.delay;
            if ready > now {
                return Err(ready - now);
            }
        }
        let mut wait = Duration::MAX;
        let mut day_blocked_until: Option<SystemTime> = None;
        let mut all_day_blocked = true;
        for key in candidates {
            let cooling = self.ring.cooling_wait(key, now);
            let org = &mut self.orgs[self.ring.slots[key].org];
            if let Some(until) = org.window_wait(wall, tokens) {
                day_blocked_until = day_blocked_until.min(Some(until)).or(Some(until));
                continue;
            }
            all_day_blocked = false;
            if cooling > Duration::ZERO {
                wait = wait.min(cooling);
                continue;
            }
            if let Some(until) = org.blocked_until {
                if until > now {
                    wait = wait.min(until - now);
                    continue;
                }
            }
            match org.take(tokens) {
                Ok(()) => {
                    org.count(now, tokens);
                    self.ring.granted(key);
                    self.last_grant = Some(now);
                    if let Some(global) = &self.global {
                        // Mirrors `last_grant`; governor stays the enforcer of --delay.
                        let _ = global.check();
                    }
                    return Ok(Grant::Key(key));
                }
                Err(w) => wait = wait.min(w),
            }
        }
        if all_day_blocked {
            // Our own count says every usable key's organization is through its hour/day
            // limit. A window that ends soon is waited for; a longer one is like exhaustion,
            // so that --on-exhausted decides instead of a long silent sleep.
            let until = day_blocked_until.unwrap_or(wall);
            let secs = until.duration_since(wall).unwrap_or_default();
            if secs > LONG_RESET {
                return Ok(Grant::NoKey {
                    earliest: Some(until),
                });
            }
            return Err(secs);
        }
        Err(wait)
    }

    fn apply_headers(&mut self, key: usize, h: &RateHeaders, next_tokens: u64, now: Instant) {
        let org = &mut self.orgs[self.ring.slots[key].org];
        let mut block = |d: Option<Duration>| {
            if let Some(d) = d {
                let until = now + d.min(Duration::from_secs(3600));
                org.blocked_until = org.blocked_until.max(Some(until));
            }
        };
        if h.remaining_requests == Some(0) {
            block(h.reset_requests.filter(|r| *r <= LONG_RESET));
        }
        if let Some(left) = h.remaining_tokens {
            if next_tokens > 0 && left < next_tokens {
                block(h.reset_tokens);
            }
        }
    }

    /// A per-minute 429 although our limiter allowed the request: the real limit is lower
    /// than configured. Enforce the limit the provider states, or else what it actually
    /// served in the last minute (only with enough requests to tell).
    fn learn_lower_rpm(&mut self, key: usize, now: Instant, stated: Option<u64>) {
        let org = &mut self.orgs[self.ring.slots[key].org];
        // The failed request itself was counted as a grant.
        let served = org.served_last_minute(now).saturating_sub(1);
        let Some(learned) = stated.or((served >= 5).then_some(served)) else {
            return;
        };
        let learned = learned.max(1);
        if org.rpm_effective.is_none_or(|r| learned < r) {
            org.rpm_effective = Some(learned);
            org.rpm = Some(per_minute(learned, 1));
        }
    }

    /// A tokens-per-minute 429 stating a lower limit than configured.
    fn learn_lower_tpm(&mut self, key: usize, stated: Option<u64>) {
        let org = &mut self.orgs[self.ring.slots[key].org];
        let Some(tpm) = stated.filter(|t| *t > 0) else {
            return;
        };
        let current = org.tpm_burst * 10;
        if org.tpm.is_none() || tpm < current {
            org.tpm_burst = (tpm / 10).max(1);
            org.tpm = Some(per_minute(
                tpm.saturating_sub(org.tpm_burst).max(1),
                org.tpm_burst,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::ApiKey;

    fn dispatcher(orgs: &[usize], limits: Limits, delay: Duration) -> Dispatcher {
        let keys = (0..orgs.len())
            .map(|i| ApiKey::new(i + 1, format!("gsk_TESTFAKEKEY_{i:04}")))
            .collect();
        let n_orgs = orgs.iter().max().unwrap() + 1;
        let setups: Vec<OrgSetup> = (0..n_orgs)
            .map(|_| OrgSetup {
                limits,
                used_today: (0, 0),
            })
            .collect();
        Dispatcher::new(KeyRing::new(keys, orgs), &setups, delay)
    }

    fn no_log(_: &[HealthChange], _: &KeyRing) {}

    #[tokio::test]
    async fn rotates_round_robin_when_unlimited() {
        let d = dispatcher(&[0, 1, 2], Limits::default(), Duration::ZERO);
        let mut got = Vec::new();
        for _ in 0..6 {
            got.push(d.acquire(10, &no_log).await);
        }
        let keys: Vec<_> = got
            .iter()
            .map(|g| match g {
                Grant::Key(k) => *k,
                _ => panic!(),
            })
            .collect();
        assert_eq!(keys, [0, 1, 2, 0, 1, 2]);
    }

    #[tokio::test]
    async fn day_limit_counts_and_then_reports_no_key() {
        let limits = Limits {
            rpd: Some(2),
            ..Limits::default()
        };
        let d = dispatcher(&[0], limits, Duration::ZERO);
        assert_eq!(d.acquire(1, &no_log).await, Grant::Key(0));
        assert_eq!(d.acquire(1, &no_log).await, Grant::Key(0));
        assert!(matches!(
            d.acquire(1, &no_log).await,
            Grant::NoKey { earliest: Some(_) }
        ));
    }

    #[tokio::test]
    async fn exhausted_everywhere_is_no_key() {
        let d = dispatcher(&[0, 1], Limits::default(), Duration::ZERO);
        let err = CallError::QuotaExhausted {
            reset: Some(Duration::from_secs(30)),
            what: "RPD".into(),
        };
        d.failed(0, &err, &RateHeaders::default());
        assert_eq!(d.acquire(1, &no_log).await, Grant::Key(1));
        d.failed(
            1,
            &CallError::InvalidKey { status: 401 },
            &RateHeaders::default(),
        );
        assert!(matches!(
            d.acquire(1, &no_log).await,
            Grant::NoKey { earliest: Some(_) }
        ));
    }

    #[tokio::test]
    async fn per_minute_limits_space_requests() {
        let limits = Limits {
            rpm: Some(600),
            ..Limits::default()
        };
        let d = dispatcher(&[0], limits, Duration::ZERO);
        let start = Instant::now();
        for _ in 0..4 {
            d.acquire(1, &no_log).await;
        }
        // 600/min = one every 100 ms, first one immediate.
        assert!(start.elapsed() >= Duration::from_millis(290));
    }

    #[test]
    fn lower_real_limit_is_learned() {
        let limits = Limits {
            rpm: Some(300),
            ..Limits::default()
        };
        let d = dispatcher(&[0], limits, Duration::ZERO);
        {
            let mut inner = d.inner.lock().unwrap();
            let now = Instant::now();
            for _ in 0..61 {
                inner.orgs[0].count(now, 1);
            }
        }
        let err = CallError::RateLimited {
            retry_after: Duration::from_secs(1),
            what: "RPM".into(),
            limit: None,
        };
        d.failed(0, &err, &RateHeaders::default());
        assert_eq!(d.effective_rpm(), vec![Some(60)]);
        let stated = CallError::RateLimited {
            retry_after: Duration::from_secs(1),
            what: "RPM".into(),
            limit: Some(30),
        };
        d.failed(0, &stated, &RateHeaders::default());
        assert_eq!(d.effective_rpm(), vec![Some(30)]);
    }

    #[test]
    fn one_early_429_without_a_stated_limit_teaches_nothing() {
        let limits = Limits {
            rpm: Some(300),
            ..Limits::default()
        };
        let d = dispatcher(&[0], limits, Duration::ZERO);
        let err = CallError::RateLimited {
            retry_after: Duration::from_secs(1),
            what: "RPM".into(),
            limit: None,
        };
        d.failed(0, &err, &RateHeaders::default());
        assert_eq!(d.effective_rpm(), vec![Some(300)]);
    }

    #[test]
    fn no_requests_left_for_hours_exhausts_the_key() {
        let d = dispatcher(&[0, 1], Limits::default(), Duration::ZERO);
        let h = RateHeaders {
            remaining_requests: Some(0),
            reset_requests: Some(Duration::from_secs(7200)),
            ..Default::default()
        };
        let changes = d.succeeded(0, &h, 10);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].to.name(), "exhausted");
    }
}

//! When the next request may go, and on which key.
//!
//! Two layers: one global spacing (`--delay`, a governor limiter) for all requests, and
//! per-organization limits (`org`, `quota`): requests and tokens per minute spread evenly
//! with GCRA, hour and day counts in calendar windows aligned to the provider's reset,
//! decided in a store every run using the same keys shares (`crate::store`: the state file or a Redis server). A
//! request is checked against every limit before any is charged, so a token-limit
//! refusal never uses up a request slot. Reply headers and 429s feed back into the same
//! state: the limits a provider states replace assumed defaults (see `limits`).
//!
//! All time comes from a [`Clock`], so the whole pacer runs on tokio's paused time in
//! tests.

pub mod changes;
pub mod clock;
mod grant;
pub mod learning;
pub mod minute_rate;
pub mod org;
pub mod quota;
pub mod shared_org;

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::time::Instant;

use crate::keys::ring::{HealthChange, KeyRing};
use crate::keys::suspect::KeyErrors;
use crate::keys::ApiKey;
use crate::limits::{Dim, LimitSet, Limits, Source};
use crate::provider::classify::{human, CallError, RateHeaders, LONG_RESET};
use crate::provider::defaults::HeaderMeaning;
use crate::store::{HealthReason, OrgId, QuotaStore};
use crate::timeutil::DayStart;
pub use changes::{Changes, OrgLimitChange, Rotation, StoreNews};
pub use clock::{Clock, SystemClock};
pub use learning::OrgMerge;
use org::Org;
pub use quota::QuotaOp;
use shared_org::SharedOrgs;

/// The longest the dispatcher sleeps before it looks again.
const LONGEST_NAP: Duration = Duration::from_millis(250);

/// governor's view of our clock: time since the dispatcher started.
#[derive(Clone)]
struct GovernorClock {
    clock: Arc<dyn Clock>,
    origin: Instant,
}

impl governor::clock::Clock for GovernorClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.clock.now().saturating_duration_since(self.origin)
    }
}

type Spacing = RateLimiter<NotKeyed, InMemoryState, GovernorClock, NoOpMiddleware<Duration>>;

/// Organization and key state, locked only briefly (never across a sleep).
struct Inner {
    ring: KeyRing,
    orgs: Vec<Org>,
    /// Per organization: how its provider's replies read (a pool mixes providers).
    rules: Vec<ProviderRules>,
    /// `--delay` between any two requests.
    spacing: Option<Spacing>,
    /// A store outage already reported (reported again only after it recovered).
    store_error_reported: bool,
    /// What the replies say about keys sharing an organization (`None`: the user grouped
    /// the keys, nothing is learned).
    shared: Option<SharedOrgs>,
    /// Errors that follow a key rather than a row (see `keys::suspect`).
    errors: KeyErrors,
}

/// A quota store that fails for this long by default stops the run (`--store-timeout`).
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(60);

/// What the dispatcher hands out.
#[derive(Debug, Clone, PartialEq)]
pub enum Grant {
    /// Send now, on this key.
    Key(usize),
    /// No key is usable (all exhausted or invalid); the earliest one is back at `earliest`.
    NoKey { earliest: Option<SystemTime> },
    /// The quota store has failed for the whole store timeout: no grant can be had.
    StoreLost { since: SystemTime, error: String },
}

/// Per organization: its limits, its name in the quota store, what the ledger says it
/// used today (requests, tokens), how many slots this run can use at once, and its
/// provider's rules.
pub struct OrgSetup {
    pub limits: LimitSet,
    pub id: OrgId,
    pub used_today: (u64, u64),
    pub lease: u64,
    pub rules: ProviderRules,
}

/// How the dispatcher reads a provider.
#[derive(Debug, Clone, Copy)]
pub struct ProviderRules {
    pub headers: HeaderMeaning,
    pub day: DayStart,
}

/// Hands out keys at the pace every limit allows. Shared by all in-flight requests.
pub struct Dispatcher {
    inner: Mutex<Inner>,
    /// Held while waiting for a slot, so waiters queue fairly instead of racing.
    turn: tokio::sync::Mutex<()>,
    clock: Arc<dyn Clock>,
    store_timeout: Duration,
    /// The ring's keys, in its order: read on every request, so without the lock.
    keys: Vec<Arc<ApiKey>>,
}

impl Dispatcher {
    pub fn new(
        ring: KeyRing,
        orgs: Vec<OrgSetup>,
        delay: Duration,
        clock: Arc<dyn Clock>,
        store: Arc<dyn QuotaStore>,
    ) -> Dispatcher {
        let spacing = Quota::with_period(delay).map(|q| {
            RateLimiter::direct_with_clock(
                q.allow_burst(NonZeroU32::MIN),
                GovernorClock {
                    clock: clock.clone(),
                    origin: clock.now(),
                },
            )
        });
        let keys = ring.slots.iter().map(|s| s.key.clone()).collect();
        let n = ring.len();
        Dispatcher {
            keys,
            inner: Mutex::new(Inner {
                ring,
                rules: orgs.iter().map(|o| o.rules).collect(),
                orgs: orgs
                    .into_iter()
                    .map(|o| {
                        Org::new(
                            o.limits,
                            o.id,
                            o.rules.day,
                            store.clone(),
                            o.used_today,
                            o.lease,
                        )
                    })
                    .collect(),
                spacing,
                store_error_reported: false,
                shared: None,
                errors: KeyErrors::new(n),
            }),
            turn: tokio::sync::Mutex::new(()),
            clock,
            store_timeout: DEFAULT_STORE_TIMEOUT,
        }
    }

    /// How long the quota store may fail before `acquire` gives up with `StoreLost`.
    pub fn with_store_timeout(mut self, timeout: Duration) -> Dispatcher {
        self.store_timeout = timeout;
        self
    }

    pub fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    /// Key `k` of the ring (the index a grant names).
    pub fn key(&self, k: usize) -> &ApiKey {
        &self.keys[k]
    }

    /// How many keys the ring has.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Applies `f`'s health changes to the key ring, and returns them as `Changes`.
    pub fn change_ring(&self, f: impl FnOnce(&mut KeyRing) -> Vec<HealthChange>) -> Changes {
        let mut inner = self.inner.lock().unwrap();
        let health = f(&mut inner.ring);
        Changes::of_health(health, &inner.ring)
    }

    /// Runs `f` on the key ring (for summaries and restores).
    pub fn with_ring<T>(&self, f: impl FnOnce(&mut KeyRing) -> T) -> T {
        f(&mut self.inner.lock().unwrap().ring)
    }

    /// The limits in force for each organization.
    pub fn limits(&self) -> Vec<LimitSet> {
        let inner = self.inner.lock().unwrap();
        inner.orgs.iter().map(|o| o.limits.clone()).collect()
    }

    /// Waits until some key may send a request of about `tokens` tokens, and takes that slot.
    /// What changes on the way (cooldowns ending, keys low on a quota stepping aside, the
    /// quota store failing or answering again) is handed to `report` as it happens, once
    /// the lock is released.
    pub async fn acquire(&self, tokens: u64, report: &(dyn Fn(Changes) + Sync)) -> Grant {
        self.acquire_avoiding(tokens, &[], report).await
    }

    /// `acquire`, preferring keys other than `avoid` (those the request already failed
    /// on with an error that may follow the key) while one of them can serve.
    pub async fn acquire_avoiding(
        &self,
        tokens: u64,
        avoid: &[usize],
        report: &(dyn Fn(Changes) + Sync),
    ) -> Grant {
        let _turn = self.turn.lock().await;
        loop {
            let (changes, step) = self.try_acquire(tokens, avoid);
            if !changes.is_empty() {
                report(changes);
            }
            match step {
                Ok(grant) => return grant,
                // Never asleep for long: a reply may meanwhile state a higher limit, end a
                // cooldown or free a key, and the next request should not miss it.
                Err(wait) => {
                    tokio::time::sleep(wait.clamp(Duration::from_millis(1), LONGEST_NAP)).await
                }
            }
        }
    }

    /// One look under the lock: a grant, or how long to wait; and what changed.
    fn try_acquire(&self, tokens: u64, avoid: &[usize]) -> (Changes, Result<Grant, Duration>) {
        let mut guard = self.inner.lock().unwrap();
        let inner = &mut *guard;
        let now = self.clock.now();
        let wall = self.clock.wall();
        let mut health = inner.ring.refresh(now, wall);
        // Keys low on a quota of their own step aside before they run dry.
        health.extend(inner.ring.sweep_quotas(wall));
        // Seen before the grant, while the key that steps aside is still the current one
        // (a rotation is logged from it to the next).
        let mut changes = Changes::of_health(health, &inner.ring);
        let result = inner.try_grant(tokens, avoid, now, wall);
        let down = inner.store_down_since();
        changes.store = inner.store_news(down, now, wall);
        // No grant without the store: once it has failed for the whole timeout, the
        // caller stops instead of waiting on.
        if let (Some(since), Err(_)) = (down, &result) {
            if now.saturating_duration_since(since) >= self.store_timeout {
                let lost = Grant::StoreLost {
                    since: wall_of(since, now, wall),
                    error: inner.store_error().unwrap_or_default(),
                };
                return (changes, Ok(lost));
            }
        }
        (changes, result)
    }

    /// Limits another run sharing the state heard its provider state (newest first per
    /// organization and dimension, as `(org, key, dim, value, header)`): each applies
    /// by the same rule as a reply's own headers, so every run follows a change the
    /// first one learns, not only runs started after it.
    pub fn adopt_stated(&self, stated: &[(usize, usize, Dim, u64, String)]) -> Changes {
        let mut inner = self.inner.lock().unwrap();
        let mut limits = Vec::new();
        for (org_idx, key, dim, value, by) in stated {
            let Some(org) = inner.orgs.get_mut(*org_idx) else {
                continue;
            };
            let source = Source::Stated {
                by: by.clone(),
                earlier: true,
            };
            let change = org.limits.state(*dim, *value, source);
            let changes = org.restate(change.into_iter().collect());
            limits.extend(changes.into_iter().map(|change| OrgLimitChange {
                org: *org_idx,
                key: *key,
                change,
            }));
        }
        Changes {
            limits,
            ..Changes::default()
        }
    }

    /// Which organization key `key` belongs to.
    pub fn org_of(&self, key: usize) -> usize {
        self.inner.lock().unwrap().ring.slots[key].org
    }

    /// A successful reply: un-fail the key, learn from its headers.
    pub fn succeeded(&self, key: usize, headers: &RateHeaders, next_tokens: u64) -> Changes {
        let mut inner = self.inner.lock().unwrap();
        let (now, wall) = (self.clock.now(), self.clock.wall());
        inner.errors.succeeded(key, now);
        let orgs = inner.learn_counters(key, headers);
        let mut limits = inner.read_headers(key, headers, next_tokens, now);
        limits.extend(inner.answered(key, now));
        let mut health = inner.ring.succeeded(key, headers.remaining_requests);
        // No request left for longer than a minute window: the daily quota is used up.
        // Exhaust the organization now, before a request is wasted on a 429.
        if let (Some(0), Some(reset)) = (headers.remaining_requests, headers.reset_requests) {
            if reset > LONG_RESET {
                let err = CallError::QuotaExhausted {
                    reset: Some(reset),
                    what: "no requests left (x-ratelimit-remaining-requests: 0)".into(),
                    dim: None,
                    limit: None,
                };
                health.extend(inner.ring.failed(key, &err, now, wall));
            }
        }
        Changes {
            limits,
            orgs,
            ..Changes::of_health(health, &inner.ring)
        }
    }

    /// A granted request of about `tokens` that never reached the provider (no connection
    /// could be made): it is not charged to any quota, and the key's health stays as it
    /// is, since the key was never tried.
    pub fn unsent(&self, key: usize, tokens: u64) {
        let mut inner = self.inner.lock().unwrap();
        let org = inner.ring.slots[key].org;
        inner.orgs[org].unspend(tokens);
        inner.ring.uncharge(key, tokens);
    }

    /// A failed reply: cool down, exhaust or invalidate the key (or its organization),
    /// and learn the limit a 429 states (and the organization it names).
    pub fn failed(&self, key: usize, err: &CallError, headers: &RateHeaders) -> Changes {
        let mut inner = self.inner.lock().unwrap();
        let (now, wall) = (self.clock.now(), self.clock.wall());
        let orgs = inner.learn_named(key, headers);
        let mut limits = inner.read_headers(key, headers, 0, now);
        let stated = match err {
            CallError::RateLimited { dim, limit, .. }
            | CallError::QuotaExhausted { dim, limit, .. } => dim.map(|d| (d, *limit)),
            _ => None,
        };
        let org = inner.ring.slots[key].org;
        // A 429 that gives no wait (nor states a limit): at the limit for this minute.
        // The keys cool for the hold, then one probe goes; no doubling back-off.
        let silent = matches!(
            err,
            CallError::RateLimited {
                retry_after: None,
                limit: None,
                dim: None | Some(Dim::Rpm),
            }
        );
        let held = silent.then(|| {
            let short = inner.ring.unhinted_base();
            let (hold, learned) = inner.orgs[org].silent_429(now, short);
            limits.extend(
                learned
                    .into_iter()
                    .map(|change| OrgLimitChange { org, key, change }),
            );
            CallError::RateLimited {
                retry_after: Some(hold),
                dim: None,
                limit: None,
            }
        });
        if !silent {
            limits.extend(inner.answered(key, now));
        }
        match stated {
            _ if silent => {}
            Some((dim, Some(limit))) => {
                let source = Source::Stated {
                    by: "a 429 reply".into(),
                    earlier: false,
                };
                let o = &mut inner.orgs[org];
                let change = o.limits.state(dim, limit, source);
                limits.extend(
                    o.restate(change.into_iter().collect())
                        .into_iter()
                        .map(|change| OrgLimitChange { org, key, change }),
                );
            }
            Some((Dim::Rpm, None)) => limits.extend(inner.learn_rpm_from_count(key, now)),
            _ => {}
        }
        let mut health = inner
            .ring
            .failed(key, held.as_ref().unwrap_or(err), now, wall);
        if let Some(CallError::RateLimited {
            retry_after: Some(hold),
            ..
        }) = held
        {
            for c in &mut health {
                c.reason = HealthReason::Provider(format!(
                    "{}: at the limit for this minute, one probe in {}",
                    err.describe(),
                    human(hold)
                ));
            }
        }
        // A cooldown is the organization's: every run sharing it waits it out.
        let cooling = inner.ring.cooling_wait(key, now);
        if !cooling.is_zero() {
            inner.orgs[org].block(now, now + cooling);
        }
        Changes {
            limits,
            orgs,
            ..Changes::of_health(health, &inner.ring)
        }
    }
}

impl Inner {
    /// Learns from the rate-limit headers of any reply: the limits they state, the
    /// provider's own count of the day, and a short block when nothing is left.
    fn read_headers(
        &mut self,
        key: usize,
        h: &RateHeaders,
        next_tokens: u64,
        now: Instant,
    ) -> Vec<OrgLimitChange> {
        let org_idx = self.ring.slots[key].org;
        let rules = self.rules[org_idx];
        let org = &mut self.orgs[org_idx];
        let mut stated = Vec::new();
        for (dim, value, header) in rules.headers.stated(h) {
            let source = Source::Stated {
                by: header.to_string(),
                earlier: false,
            };
            stated.extend(org.limits.state(dim, value, source));
        }
        let changes = org
            .restate(stated)
            .into_iter()
            .map(|change| OrgLimitChange {
                org: org_idx,
                key,
                change,
            })
            .collect();
        if let (Some(dim), Some(limit), Some(left)) = (
            rules.headers.requests,
            h.limit_requests,
            h.remaining_requests,
        ) {
            org.sync_day(now, (dim, limit, left), h.reset_requests);
        }
        let mut block_for = None;
        if h.remaining_requests == Some(0) {
            block_for = block_for.max(h.reset_requests.filter(|r| *r <= LONG_RESET));
        }
        if let Some(left) = h.remaining_tokens {
            if next_tokens > 0 && left < next_tokens {
                block_for = block_for.max(h.reset_tokens.filter(|r| *r <= LONG_RESET));
            }
        }
        if let Some(d) = block_for {
            org.block(now, now + d.min(Duration::from_secs(3600)));
        }
        changes
    }

    /// A per-minute 429 that states no limit although our limiter allowed the request:
    /// the real limit is lower than ours. Enforce what was actually served in the last
    /// minute, but only with enough requests to tell (one early 429 teaches nothing).
    fn learn_rpm_from_count(&mut self, key: usize, now: Instant) -> Vec<OrgLimitChange> {
        let org_idx = self.ring.slots[key].org;
        let org = &mut self.orgs[org_idx];
        // The failed request itself was counted as a grant.
        let served = org.served_last_minute(now).saturating_sub(1);
        if served < 5 {
            return Vec::new();
        }
        let change = org.limits.observe_lower(Dim::Rpm, served);
        org.restate(change.into_iter().collect())
            .into_iter()
            .map(|change| OrgLimitChange {
                org: org_idx,
                key,
                change,
            })
            .collect()
    }

    /// An answer from `key`'s organization other than a 429 without a wait (see
    /// `Org::answered`).
    fn answered(&mut self, key: usize, now: Instant) -> Vec<OrgLimitChange> {
        let org = self.ring.slots[key].org;
        self.orgs[org]
            .answered(now)
            .into_iter()
            .map(|change| OrgLimitChange { org, key, change })
            .collect()
    }
}

/// The calendar time of an earlier instant, given the pair (now, wall) read together.
fn wall_of(then: Instant, now: Instant, wall: SystemTime) -> SystemTime {
    wall.checked_sub(now.saturating_duration_since(then))
        .unwrap_or(wall)
}

/// The limits in force of several organizations, the lowest of each (for summaries).
pub fn lowest(sets: &[LimitSet]) -> Limits {
    sets.iter()
        .map(LimitSet::values)
        .reduce(Limits::min)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;

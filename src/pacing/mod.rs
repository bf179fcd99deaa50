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
mod replies;
pub mod shared_org;

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::time::Instant;

use crate::keys::health::HealthChange;
use crate::keys::ring::KeyRing;
use crate::keys::suspect::KeyErrors;
use crate::keys::ApiKey;
use crate::limits::{LimitSet, Limits};
use crate::provider::classify::LONG_RESET;
use crate::provider::defaults::HeaderMeaning;
use crate::store::{OrgId, QuotaStore};
use crate::timeutil::DayStart;
pub use changes::{Changes, OrgLimitChange, Rotation, StoreNews};
pub use clock::{Clock, SystemClock};
pub use learning::OrgMerge;
use org::Org;
pub use quota::{Priority, QuotaOp, Rank};
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
                    .map(|o| Org::new(o.limits, o.id, o.rules.day, &store, o.used_today, o.lease))
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

    /// How this run ranks against others on the same organizations (`--priority`).
    pub fn with_rank(self, rank: Rank) -> Dispatcher {
        for org in &mut self.inner.lock().unwrap().orgs {
            org.rank = rank;
        }
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
                Err(wait) => org::nap(wait.clamp(Duration::from_millis(1), LONGEST_NAP)).await,
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

    /// Which organization key `key` belongs to.
    pub fn org_of(&self, key: usize) -> usize {
        self.inner.lock().unwrap().ring.slots[key].org
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

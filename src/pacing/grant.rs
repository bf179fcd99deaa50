//! The decision under the dispatcher's lock: which key may send now (or how long to
//! wait), and whether the quota store answers.

use std::time::{Duration, SystemTime};

use governor::clock::Clock as _;
use tokio::time::Instant;

use super::org::Wait;
use super::{wall_of, Grant, Inner, StoreNews, LONG_RESET};
use crate::keys::health::Health;
use crate::keys::quota::QuotaWait;
use crate::keys::suspect;

impl Inner {
    /// A grant for a request of about `tokens` (a key other than `avoid` while one can
    /// serve), `NoKey` when none is left, or how long to wait.
    pub(super) fn try_grant(
        &mut self,
        tokens: u64,
        avoid: &[usize],
        now: Instant,
        wall: SystemTime,
    ) -> Result<Grant, Duration> {
        let mut candidates = self.ring.candidates();
        if candidates.iter().any(|k| !avoid.contains(k)) {
            candidates.retain(|k| !avoid.contains(k));
        }
        if candidates.is_empty() {
            return Ok(Grant::NoKey {
                earliest: self.ring.earliest_reset(),
            });
        }
        let mut wait = Duration::MAX;
        let mut window_until: Option<SystemTime> = None;
        let mut all_windows_full = true;
        for key in candidates {
            let cooling = self.ring.cooling_wait(key, now);
            // The key's own quotas (from its env-file settings) first, then its
            // organization's limits.
            let own = match self.ring.quota_check(key, now, wall, tokens) {
                Ok(()) => Ok(()),
                Err(QuotaWait::For(w)) => Err(Wait::For(w)),
                Err(QuotaWait::Until(t)) => Err(Wait::Until(t)),
            };
            let org = &mut self.orgs[self.ring.slots[key].org];
            match own.and_then(|()| org.check(now, wall, tokens)) {
                Err(Wait::Until(until)) => {
                    window_until = Some(window_until.map_or(until, |u| u.min(until)));
                    continue;
                }
                Err(Wait::For(w)) => {
                    all_windows_full = false;
                    wait = wait.min(w.max(cooling));
                }
                Ok(()) if !cooling.is_zero() => {
                    all_windows_full = false;
                    wait = wait.min(cooling);
                }
                Ok(()) => return self.take_grant(key, tokens, now, wall),
            }
        }
        if all_windows_full {
            // Our own count says every usable key's organization is through its hour/day
            // limit. A window that ends soon is waited for; a longer one is like exhaustion,
            // so that --on-exhausted decides instead of a long silent sleep.
            let until = window_until.unwrap_or(wall);
            let left = until.duration_since(wall).unwrap_or_default();
            if left > LONG_RESET {
                return Ok(Grant::NoKey {
                    earliest: Some(until),
                });
            }
            return Err(left);
        }
        Err(wait)
    }

    /// Every limit of `key`'s organization allows the request (the slot is held, not
    /// spent): the global spacing last, so that nothing is spent unless the request
    /// really goes; then the grant is charged to the organization and the key.
    fn take_grant(
        &mut self,
        key: usize,
        tokens: u64,
        now: Instant,
        wall: SystemTime,
    ) -> Result<Grant, Duration> {
        if let Some(spacing) = &self.spacing {
            if let Err(not_yet) = spacing.check() {
                return Err(not_yet.wait_time_from(spacing.clock().now()));
            }
        }
        self.orgs[self.ring.slots[key].org].take(now, tokens);
        if let Some(shared) = &mut self.shared {
            shared.granted(key);
        }
        self.ring.charge(key, now, wall, tokens);
        self.ring.granted(key);
        if matches!(self.ring.slots[key].health, Health::Suspect { .. }) {
            // Its probe: nothing else goes to it until the answer.
            self.errors.probe_sent(key);
            self.ring.slots[key].health = Health::Suspect {
                until: now + suspect::PROBE_OUT,
            };
        }
        Ok(Grant::Key(key))
    }

    /// Since when the quota store has failed every call, for some organization.
    pub(super) fn store_down_since(&self) -> Option<Instant> {
        self.orgs.iter().filter_map(|o| o.store_failing_since).min()
    }

    pub(super) fn store_error(&self) -> Option<String> {
        self.orgs.iter().find_map(|o| o.store_error.clone())
    }

    /// An outage to report (the first failure after the store last answered), or its end.
    pub(super) fn store_news(
        &mut self,
        down: Option<Instant>,
        now: Instant,
        wall: SystemTime,
    ) -> Option<StoreNews> {
        match (down, self.store_error_reported) {
            (Some(since), false) => {
                self.store_error_reported = true;
                Some(StoreNews::Lost {
                    since: wall_of(since, now, wall),
                    error: self.store_error().unwrap_or_default(),
                })
            }
            (None, true) => {
                self.store_error_reported = false;
                Some(StoreNews::Back)
            }
            _ => None,
        }
    }
}

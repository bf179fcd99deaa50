//! What replies teach the dispatcher: a success un-fails its key, a failure cools,
//! exhausts or invalidates it, and the limits that headers and 429s state (or that a
//! 429 without a wait reveals) replace the ones in force, here and, through the store,
//! in every run that shares it.

use std::time::Duration;

use tokio::time::Instant;

use super::{Changes, Dispatcher, Inner, OrgLimitChange};
use crate::limits::{Dim, Source};
use crate::provider::classify::{human, CallError, RateHeaders, LONG_RESET};
use crate::store::HealthReason;

impl Dispatcher {
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

    /// A failed reply: cool down, exhaust or invalidate the key (or its organization),
    /// and learn the limit a 429 states (and the organization it names).
    pub fn failed(&self, key: usize, err: &CallError, headers: &RateHeaders) -> Changes {
        let mut inner = self.inner.lock().unwrap();
        let (now, wall) = (self.clock.now(), self.clock.wall());
        let orgs = inner.learn_named(key, headers);
        let mut limits = inner.read_headers(key, headers, 0, now);
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
            limits.extend(inner.learn_from_429(key, err, now));
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
    /// The limit a 429 (or an exhausted quota) states, or for a per-minute 429 that
    /// states none, the rate actually served (see `learn_rpm_from_count`).
    fn learn_from_429(&mut self, key: usize, err: &CallError, now: Instant) -> Vec<OrgLimitChange> {
        let stated = match err {
            CallError::RateLimited { dim, limit, .. }
            | CallError::QuotaExhausted { dim, limit, .. } => dim.map(|d| (d, *limit)),
            _ => None,
        };
        let org = self.ring.slots[key].org;
        match stated {
            Some((dim, Some(limit))) => {
                let source = Source::Stated {
                    by: "a 429 reply".into(),
                    earlier: false,
                };
                let o = &mut self.orgs[org];
                let change = o.limits.state(dim, limit, source);
                o.restate(change.into_iter().collect())
                    .into_iter()
                    .map(|change| OrgLimitChange { org, key, change })
                    .collect()
            }
            Some((Dim::Rpm, None)) => self.learn_rpm_from_count(key, now),
            _ => Vec::new(),
        }
    }

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

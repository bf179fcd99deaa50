//! What the dispatcher learns that a provider does not say: which keys share an
//! organization (`shared_org`), and which errors follow a key rather than a row
//! (`keys::suspect`). The pure rules live in those modules; this one applies them to the
//! key ring and the organizations.

use super::shared_org::{Evidence, SharedOrgs};
use super::{Changes, Dispatcher, Inner};
use crate::keys::health::Health;
use crate::keys::suspect::{self, Verdict};
use crate::provider::classify::{human, CallError, ErrorClass, RateHeaders};
use crate::store::HealthReason;

/// Keys found to share one organization, paced as one from now on.
#[derive(Debug, Clone, PartialEq)]
pub struct OrgMerge {
    /// Every key of the organization now, in order.
    pub keys: Vec<usize>,
    pub evidence: Evidence,
}

impl Dispatcher {
    /// Learns from the replies which keys share an organization (`family`: per key, its
    /// provider of the run); for keys the user did not group.
    pub fn learning_orgs(mut self, family: Vec<usize>) -> Dispatcher {
        self.inner.get_mut().unwrap().shared = Some(SharedOrgs::new(family));
        self
    }

    /// Each key's provider (`family`), so that only keys of the same provider are evidence
    /// that an error follows a key.
    pub fn with_families(mut self, family: Vec<usize>) -> Dispatcher {
        let inner = self.inner.get_mut().unwrap();
        inner.errors = inner.errors.clone().with_families(family);
        self
    }

    /// An error other than a 429 on `key` (a 4xx, or a 5xx): sets the key aside as
    /// suspect while other keys succeed, or marks it invalid when it was its probe.
    pub fn key_error(&self, key: usize, err: &CallError) -> Changes {
        let mut inner = self.inner.lock().unwrap();
        let now = self.clock.now();
        let server = err.class() == ErrorClass::Server;
        let suspect = matches!(inner.ring.slots[key].health, Health::Suspect { .. });
        if suspect && !inner.errors.is_probing(key) {
            return Changes::default();
        }
        let (to, reason) = match inner.errors.failed(key, server, now) {
            Verdict::Nothing => return Changes::default(),
            Verdict::Suspect => (
                Health::Suspect {
                    until: now + suspect::SET_ASIDE,
                },
                format!(
                    "suspect: {} while other keys succeed; one probe in {}",
                    err.describe(),
                    human(suspect::SET_ASIDE)
                ),
            ),
            Verdict::Invalid => (
                Health::Invalid,
                format!("failed its probe after being set aside: {}", err.describe()),
            ),
        };
        let reason = HealthReason::Provider(reason);
        let health = inner.ring.set_health(key, to, reason).into_iter().collect();
        Changes::of_health(health, &inner.ring)
    }

    /// The row `key` failed on failed on another key too: it was the row, not the key.
    pub fn row_at_fault(&self, key: usize) -> Changes {
        let mut inner = self.inner.lock().unwrap();
        inner.errors.cleared(key);
        if !matches!(inner.ring.slots[key].health, Health::Suspect { .. }) {
            return Changes::default();
        }
        let reason = "the same row failed on another key: the row, not the key".to_string();
        let health = inner
            .ring
            .set_health(key, Health::Available, HealthReason::Other(reason))
            .into_iter()
            .collect();
        Changes::of_health(health, &inner.ring)
    }

    /// Whether some key of the same provider as `tried` (other than those) can serve, now
    /// or after a wait.
    pub fn other_key(&self, tried: &[usize]) -> bool {
        let inner = self.inner.lock().unwrap();
        let Some(&first) = tried.first() else {
            return !inner.ring.candidates().is_empty();
        };
        inner
            .ring
            .candidates()
            .iter()
            .any(|&k| !tried.contains(&k) && inner.errors.same_family(k, first))
    }
}

impl Inner {
    /// A 429 on `key` named its organization: keys whose 429s named the same are paced
    /// as one.
    pub(super) fn learn_named(&mut self, key: usize, h: &RateHeaders) -> Vec<OrgMerge> {
        let Some(org) = &h.org else {
            return Vec::new();
        };
        let found = self.shared.as_mut().and_then(|s| s.named(key, org));
        found
            .and_then(|(keys, evidence)| self.merge(&keys, evidence))
            .into_iter()
            .collect()
    }

    /// A reply on `key` told its remaining requests: keys whose counters fall together are
    /// paced as one.
    pub(super) fn learn_counters(&mut self, key: usize, h: &RateHeaders) -> Vec<OrgMerge> {
        let (Some(limit), Some(left)) = (h.limit_requests, h.remaining_requests) else {
            return Vec::new();
        };
        let found = self
            .shared
            .as_mut()
            .and_then(|s| s.remaining(key, limit, left));
        found
            .and_then(|keys| self.merge(&keys, Evidence::Counters))
            .into_iter()
            .collect()
    }

    /// Paces `keys`, and every key already paced with one of them, as one organization:
    /// the first key's. Returns the merge when some key moved.
    fn merge(&mut self, keys: &[usize], evidence: Evidence) -> Option<OrgMerge> {
        let target = self.ring.slots[*keys.first()?].org;
        let from: Vec<usize> = keys
            .iter()
            .map(|&k| self.ring.slots[k].org)
            .filter(|&o| o != target)
            .collect();
        if from.is_empty() {
            return None;
        }
        for slot in &mut self.ring.slots {
            if from.contains(&slot.org) {
                slot.org = target;
            }
        }
        for &o in &from {
            self.orgs[o].retire();
        }
        let keys = (0..self.ring.len())
            .filter(|&k| self.ring.slots[k].org == target)
            .collect();
        Some(OrgMerge { keys, evidence })
    }
}

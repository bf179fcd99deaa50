//! Which keys share one organization, learned from the replies.
//!
//! Groq's limits (and a proxy's) belong to an organization, and users make several keys
//! in one account hoping for more quota: paced as independent keys they draw 429s. Two
//! signs give a shared organization away, and nothing but the replies is used (a key's
//! fingerprint never leaves the machine for it):
//! - a 429 body names the organization (`… in organization `org_…` …`): keys whose 429s
//!   name the same one share it;
//! - the `remaining` request counters of keys in one organization fall together: over a
//!   stretch of traffic, a key's counter falls by its own requests plus those of the keys
//!   it shares with, where an independent key's falls by its own alone.
//!
//! The counter test is strict on purpose (a group is accepted only when every key's extra
//! fall matches what the group's other keys sent): a wrong merge halves a run's speed, a
//! missed one only costs the 429s that then name the organization.

/// Requests the other keys must have sent over a key's stretch before its counter says
/// anything.
const MIN_OTHERS: u64 = 20;
/// Requests the counters may be off by at either end of a stretch: those in flight, which
/// the provider may or may not have counted when it answered.
const SLACK: u64 = 8;

/// Why keys were found to share an organization.
#[derive(Debug, Clone, PartialEq)]
pub enum Evidence {
    /// Their 429 replies named this organization.
    Named(String),
    /// Their remaining-request counters fell together.
    Counters,
}

impl Evidence {
    /// The name the state remembers the organization by: the one 429s gave, or one made
    /// up from the fingerprint of its first key.
    pub fn org_name(&self, first_fingerprint: &str) -> String {
        match self {
            Evidence::Named(org) => org.clone(),
            Evidence::Counters => format!("counters:{first_fingerprint}"),
        }
    }

    /// For the log line: `organization org_…a1 (named in 429 replies)`.
    pub fn describe(&self) -> String {
        match self {
            Evidence::Named(org) => {
                format!("organization {} (named in 429 replies)", mask_org(org))
            }
            Evidence::Counters => {
                "an organization (their x-ratelimit-remaining-requests fall together)".into()
            }
        }
    }
}

/// An organization id as logs show it: its prefix and last two characters, `org_…a1`.
pub fn mask_org(org: &str) -> String {
    let prefix = org.split_once('_').map_or("", |(p, _)| p);
    let tail: String = {
        let chars: Vec<char> = org.chars().collect();
        chars[chars.len().saturating_sub(2)..].iter().collect()
    };
    if prefix.is_empty() {
        format!("…{tail}")
    } else {
        format!("{prefix}_…{tail}")
    }
}

/// One key's stretch of counter readings.
#[derive(Debug, Clone)]
struct Stretch {
    limit: u64,
    /// The first reading: remaining, and every key's grants then.
    first: (u64, Vec<u64>),
    /// The latest reading.
    last: (u64, Vec<u64>),
}

impl Stretch {
    /// Requests `key` sent over the stretch.
    fn sent(&self, key: usize) -> u64 {
        self.last.1[key] - self.first.1[key]
    }

    /// How much more the counter fell than this key's own requests explain.
    fn extra(&self, own: usize) -> i64 {
        (self.first.0 as i64 - self.last.0 as i64) - self.sent(own) as i64
    }
}

/// What the replies said so far about which keys share an organization.
#[derive(Debug)]
pub struct SharedOrgs {
    /// Per key: which provider of the run it belongs to (keys of different providers
    /// never share).
    family: Vec<usize>,
    /// Per key: the organization its 429s named.
    named: Vec<Option<String>>,
    /// Per key: requests granted so far.
    grants: Vec<u64>,
    stretches: Vec<Option<Stretch>>,
}

impl SharedOrgs {
    pub fn new(family: Vec<usize>) -> SharedOrgs {
        let n = family.len();
        SharedOrgs {
            family,
            named: vec![None; n],
            grants: vec![0; n],
            stretches: vec![None; n],
        }
    }

    /// A request went on `key`.
    pub fn granted(&mut self, key: usize) {
        self.grants[key] += 1;
    }

    /// A 429 on `key` named organization `org`: every key whose 429s named the same one
    /// (with `key`), when there are two or more.
    pub fn named(&mut self, key: usize, org: &str) -> Option<(Vec<usize>, Evidence)> {
        self.named[key] = Some(org.to_string());
        let keys: Vec<usize> = (0..self.named.len())
            .filter(|&k| self.family[k] == self.family[key])
            .filter(|&k| self.named[k].as_deref() == Some(org))
            .collect();
        (keys.len() > 1).then(|| (keys, Evidence::Named(org.to_string())))
    }

    /// A reply on `key` said `remaining` of `limit` requests are left: the keys found to
    /// share its counter (with `key`), once the evidence decides.
    pub fn remaining(&mut self, key: usize, limit: u64, remaining: u64) -> Option<Vec<usize>> {
        let now = (remaining, self.grants.clone());
        match &mut self.stretches[key] {
            // A new limit or a counter that rose (a new day, a refilled window) starts over.
            Some(s) if s.limit == limit && remaining <= s.last.0 => s.last = now,
            slot => {
                *slot = Some(Stretch {
                    limit,
                    first: now.clone(),
                    last: now,
                });
                return None;
            }
        }
        self.group_of(key)
    }

    /// Whether the group's latest readings could be one counter: each differs from `key`'s
    /// by at most what the group sent between the two readings. (Keys of separate
    /// organizations whose counters also fall for another machine's requests show their
    /// own, different counts.)
    fn one_counter(&self, key: usize, group: &[usize]) -> bool {
        let Some(mine) = &self.stretches[key] else {
            return false;
        };
        group.iter().all(|&k| {
            let Some(theirs) = &self.stretches[k] else {
                return false;
            };
            let between: u64 = group
                .iter()
                .map(|&j| mine.last.1[j].abs_diff(theirs.last.1[j]))
                .sum();
            mine.last.0.abs_diff(theirs.last.0) <= between + SLACK
        })
    }

    /// The keys whose counters fell by more than their own requests (same provider and
    /// limit as `key`), accepted as `key`'s organization only if `key`'s extra fall is what
    /// they sent.
    fn group_of(&self, key: usize) -> Option<Vec<usize>> {
        let mine = self.stretches[key].as_ref()?;
        let others: u64 = (0..self.grants.len())
            .filter(|&k| k != key)
            .map(|k| mine.sent(k))
            .sum();
        if others < MIN_OTHERS {
            return None;
        }
        let group: Vec<usize> = (0..self.grants.len())
            .filter(|&k| self.family[k] == self.family[key])
            .filter(|&k| {
                k == key
                    || self.stretches[k]
                        .as_ref()
                        .is_some_and(|s| s.limit == mine.limit && s.extra(k) > SLACK as i64)
            })
            .collect();
        if group.len() < 2 || !self.one_counter(key, &group) {
            return None;
        }
        let predicted: u64 = group
            .iter()
            .filter(|&&k| k != key)
            .map(|&k| mine.sent(k))
            .sum();
        let tolerance = SLACK.max(predicted / 5) as i64;
        ((mine.extra(key) - predicted as i64).abs() <= tolerance && predicted >= MIN_OTHERS)
            .then_some(group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_whose_429s_name_one_organization_share_it() {
        let mut s = SharedOrgs::new(vec![0, 0, 0]);
        assert_eq!(s.named(0, "org_01abc"), None);
        assert_eq!(s.named(2, "org_other"), None);
        let (keys, evidence) = s.named(1, "org_01abc").unwrap();
        assert_eq!(keys, [0, 1]);
        assert_eq!(
            evidence.describe(),
            "organization org_…bc (named in 429 replies)"
        );
        // Another provider's key never joins.
        let mut s = SharedOrgs::new(vec![0, 1]);
        s.named(0, "org_x");
        assert_eq!(s.named(1, "org_x"), None);
    }

    #[test]
    fn org_ids_are_masked_to_prefix_and_tail() {
        assert_eq!(mask_org("org_01jfakesharedorganizationa1"), "org_…a1");
        assert_eq!(mask_org("proj7"), "…j7");
    }

    /// Round robin over `keys`, each reply reading the counter of `counter_of(key)`.
    fn round_robin(s: &mut SharedOrgs, rounds: usize, orgs: &[usize]) -> Option<Vec<usize>> {
        let mut counters = vec![14_400u64; orgs.len()];
        let mut found = None;
        for _ in 0..rounds {
            for (k, &org) in orgs.iter().enumerate() {
                s.granted(k);
                counters[org] -= 1;
                if let Some(g) = s.remaining(k, 14_400, counters[org]) {
                    found.get_or_insert(g);
                }
            }
        }
        found
    }

    #[test]
    fn counters_that_fall_together_group_their_keys() {
        let mut s = SharedOrgs::new(vec![0, 0, 0]);
        assert_eq!(round_robin(&mut s, 30, &[0, 0, 0]), Some(vec![0, 1, 2]));
    }

    #[test]
    fn independent_counters_never_group() {
        let mut s = SharedOrgs::new(vec![0, 0, 0]);
        assert_eq!(round_robin(&mut s, 60, &[0, 1, 2]), None);
    }

    #[test]
    fn only_the_keys_that_share_are_grouped() {
        let mut s = SharedOrgs::new(vec![0, 0, 0]);
        assert_eq!(round_robin(&mut s, 60, &[0, 1, 0]), Some(vec![0, 2]));
        // Two pairs with look-alike counters: no group explains every fall, so none.
        let mut s = SharedOrgs::new(vec![0, 0, 0, 0]);
        assert_eq!(round_robin(&mut s, 60, &[0, 1, 0, 1]), None);
    }

    #[test]
    fn keys_another_machine_also_uses_are_not_grouped() {
        // Two independent keys, each also used by another machine as much as by this run:
        // each counter falls twice as fast as its own requests explain, but from its own
        // count.
        let mut s = SharedOrgs::new(vec![0, 0]);
        let mut counters = [14_400u64, 9_000];
        let mut found = None;
        for _ in 0..60 {
            for (k, counter) in counters.iter_mut().enumerate() {
                s.granted(k);
                *counter -= 2;
                found = found.or(s.remaining(k, 14_400, *counter));
            }
        }
        assert_eq!(found, None);
    }

    #[test]
    fn a_counter_that_rises_starts_its_stretch_again() {
        let mut s = SharedOrgs::new(vec![0, 0]);
        s.granted(0);
        assert_eq!(s.remaining(0, 100, 50), None);
        assert_eq!(s.remaining(0, 100, 99), None);
        assert_eq!(s.stretches[0].as_ref().unwrap().first.0, 99);
    }
}

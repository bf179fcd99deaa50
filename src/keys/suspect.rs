//! Errors that follow a key rather than a row.
//!
//! A server may refuse one key with something other than 401: a misconfigured proxy
//! answers `400 No connected db.` to every request on it. Taken as the row's fault, each
//! row on that key gets the fallback label. So an error other than a 429 (a 4xx, or a
//! 5xx) that one key gets while another key has succeeded since it last did sets the key
//! aside as `suspect`; after a while it gets one probe request, and a key that fails its
//! probe is invalid. A 5xx, which servers also send at random, counts only the second
//! time in a row. Whether the row itself was the cause is the caller's to tell (the same
//! row failing on another key too); it then clears the suspicion.

use std::time::Duration;

use tokio::time::Instant;

/// How long a suspect key is set aside before its probe.
pub const SET_ASIDE: Duration = Duration::from_secs(30);
/// A suspect key's probe is out: no other request goes to it until it is answered.
pub const PROBE_OUT: Duration = Duration::from_secs(600);
/// Another key's success counts as evidence for this long.
const EVIDENCE_WINDOW: Duration = Duration::from_secs(60);
/// 5xx replies in a row that make a key suspect.
const SERVER_ERRORS_IN_A_ROW: u32 = 2;

/// What a key-level error means for the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to tell yet (no other key succeeded, or a first 5xx).
    Nothing,
    /// Set it aside until its probe.
    Suspect,
    /// It failed its probe: invalid.
    Invalid,
}

/// Per key: its last success, whether its probe is out, its 5xx in a row.
#[derive(Debug, Clone)]
pub struct KeyErrors {
    /// Per key: its provider in the run; only keys of the same provider are evidence.
    family: Vec<usize>,
    last_ok: Vec<Option<Instant>>,
    probing: Vec<bool>,
    server_errors: Vec<u32>,
}

impl KeyErrors {
    pub fn new(keys: usize) -> KeyErrors {
        KeyErrors {
            family: vec![0; keys],
            last_ok: vec![None; keys],
            probing: vec![false; keys],
            server_errors: vec![0; keys],
        }
    }

    /// The provider of each key (a pool): another provider's successes say nothing.
    pub fn with_families(mut self, family: Vec<usize>) -> KeyErrors {
        if family.len() == self.family.len() {
            self.family = family;
        }
        self
    }

    /// Whether keys `a` and `b` belong to the same provider.
    pub fn same_family(&self, a: usize, b: usize) -> bool {
        self.family[a] == self.family[b]
    }

    pub fn succeeded(&mut self, key: usize, now: Instant) {
        self.last_ok[key] = Some(now);
        self.probing[key] = false;
        self.server_errors[key] = 0;
    }

    /// The request just granted to a suspect key is its probe.
    pub fn probe_sent(&mut self, key: usize) {
        self.probing[key] = true;
    }

    pub fn is_probing(&self, key: usize) -> bool {
        self.probing[key]
    }

    /// The suspicion was wrong (the row was at fault): forget the probe.
    pub fn cleared(&mut self, key: usize) {
        self.probing[key] = false;
        self.server_errors[key] = 0;
    }

    /// `key` got an error other than a 429 (`server`: a 5xx).
    pub fn failed(&mut self, key: usize, server: bool, now: Instant) -> Verdict {
        if std::mem::take(&mut self.probing[key]) {
            return Verdict::Invalid;
        }
        if server {
            self.server_errors[key] += 1;
            if self.server_errors[key] < SERVER_ERRORS_IN_A_ROW {
                return Verdict::Nothing;
            }
        }
        let mine = self.last_ok[key];
        let others_ok = self.last_ok.iter().enumerate().any(|(k, ok)| {
            k != key
                && self.family[k] == self.family[key]
                && ok.is_some_and(|t| {
                    now.saturating_duration_since(t) <= EVIDENCE_WINDOW
                        && mine.is_none_or(|m| t > m)
                })
        });
        if others_ok {
            Verdict::Suspect
        } else {
            Verdict::Nothing
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_4xx_one_key_gets_while_another_succeeds_makes_it_suspect() {
        let t = Instant::now();
        let mut e = KeyErrors::new(2);
        // Nobody has succeeded yet: it may be the row or the provider.
        assert_eq!(e.failed(1, false, t), Verdict::Nothing);
        e.succeeded(0, t + Duration::from_secs(1));
        assert_eq!(
            e.failed(1, false, t + Duration::from_secs(2)),
            Verdict::Suspect
        );
        // Its probe fails: invalid.
        e.probe_sent(1);
        assert!(e.is_probing(1));
        assert_eq!(
            e.failed(1, false, t + Duration::from_secs(40)),
            Verdict::Invalid
        );
    }

    #[test]
    fn a_passing_probe_or_a_cleared_suspicion_starts_over() {
        let t = Instant::now();
        let mut e = KeyErrors::new(2);
        e.succeeded(0, t);
        e.probe_sent(1);
        e.succeeded(1, t + Duration::from_secs(1));
        assert!(!e.is_probing(1));
        // Key 1 succeeded after key 0 did: no evidence against it.
        assert_eq!(
            e.failed(1, false, t + Duration::from_secs(2)),
            Verdict::Nothing
        );
        e.probe_sent(1);
        e.cleared(1);
        assert!(!e.is_probing(1));
    }

    #[test]
    fn another_providers_successes_are_no_evidence() {
        let t = Instant::now();
        let mut e = KeyErrors::new(2).with_families(vec![0, 1]);
        e.succeeded(0, t);
        assert_eq!(e.failed(1, false, t), Verdict::Nothing);
    }

    #[test]
    fn a_5xx_counts_the_second_time_in_a_row_and_old_successes_not_at_all() {
        let t = Instant::now();
        let mut e = KeyErrors::new(2);
        e.succeeded(0, t);
        assert_eq!(e.failed(1, true, t), Verdict::Nothing);
        assert_eq!(e.failed(1, true, t), Verdict::Suspect);
        let mut e = KeyErrors::new(2);
        e.succeeded(0, t);
        assert_eq!(
            e.failed(1, false, t + Duration::from_secs(120)),
            Verdict::Nothing
        );
    }
}

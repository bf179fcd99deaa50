//! What other runs sharing the state found about our keys and heard their providers
//! state, taken over every second (on the collector's tick). The state is read by its
//! writer thread; what it found is taken over on the next tick.

use super::journal;
use super::spec::Labeler;
use super::writes::{Asked, StateWriter};
use crate::limits::Dim;
use crate::store::{LearnedLimit, StoredHealth};

/// What the state held the last time it was read.
struct Found {
    /// Every stored key health of the run's providers.
    health: Vec<StoredHealth>,
    /// Per provider of the run (index in `RunSpec::members`), the limits stated for it.
    learned: Vec<(usize, Vec<LearnedLimit>)>,
}

/// The reads of what other runs found, one at a time.
#[derive(Default)]
pub struct Shared {
    asked: Asked<Found>,
}

impl Shared {
    /// Has the state read, unless a read is on its way.
    pub fn ask(&mut self, run: &Labeler, writes: &StateWriter) {
        if self.asked.waiting() {
            return;
        }
        let members: Vec<(&'static str, String)> = run
            .spec
            .members
            .iter()
            .map(|m| (m.provider, m.client.model().to_string()))
            .collect();
        writes.ask(&mut self.asked, move |state| {
            let mut found = Found {
                health: Vec::new(),
                learned: Vec::new(),
            };
            for (m, (provider, model)) in members.iter().enumerate() {
                if let Ok(rows) = state.load_health(provider) {
                    found.health.extend(rows);
                }
                if let Ok(learned) = state.learned_limits(provider, model) {
                    found.learned.push((m, learned));
                }
            }
            found
        });
    }

    /// Takes over what the last read found, once it is made.
    pub fn take_over(&mut self, run: &Labeler, writes: &StateWriter) {
        if let Some(found) = self.asked.take() {
            shared_health(run, writes, &found.health);
            learned_limits(run, writes, found.learned);
        }
    }
}

/// Takes over what other runs sharing the state found about our keys (exhausted,
/// invalid, cooling), so that no run sends to a key another one found spent.
fn shared_health(run: &Labeler, writes: &StateWriter, stored: &[StoredHealth]) {
    let clock = run.dispatcher.clock();
    let (now, wall) = (clock.now(), clock.wall());
    let changes = run
        .dispatcher
        .change_ring(|ring| ring.adopt(stored, now, wall));
    if !changes.is_empty() {
        journal::apply(run, writes, &changes);
    }
}

/// Takes over limits other runs sharing the state heard a provider state since they
/// started (the newest statement by any key of an organization, per dimension).
fn learned_limits(run: &Labeler, writes: &StateWriter, found: Vec<(usize, Vec<LearnedLimit>)>) {
    let mut newest: Vec<(usize, usize, Dim, u64, String, i64)> = Vec::new();
    for (m, learned) in found {
        for l in learned {
            let Some(key) = run
                .spec
                .keys_of(m)
                .find(|&k| run.dispatcher.key(k).fingerprint == l.fingerprint)
            else {
                continue;
            };
            let org = run.dispatcher.org_of(key);
            match newest.iter_mut().find(|n| n.0 == org && n.2 == l.dim) {
                Some(n) if n.5 >= l.updated => {}
                Some(n) => *n = (org, key, l.dim, l.value, l.source, l.updated),
                None => newest.push((org, key, l.dim, l.value, l.source, l.updated)),
            }
        }
    }
    let stated: Vec<_> = newest
        .into_iter()
        .map(|(org, key, dim, value, by, _)| (org, key, dim, value, by))
        .collect();
    if !stated.is_empty() {
        let changes = run.dispatcher.adopt_stated(&stated);
        if !changes.is_empty() {
            journal::apply(run, writes, &changes);
        }
    }
}

//! What other runs sharing the state found about our keys and heard their providers
//! state, taken over every second (on the collector's tick).

use super::journal;
use super::spec::Labeler;
use crate::limits::Dim;

/// Takes over what other runs sharing the state found about our keys (exhausted,
/// invalid, cooling), so that no run sends to a key another one found spent.
pub fn shared_health(run: &Labeler) {
    let mut stored = Vec::new();
    for m in &run.spec.members {
        if let Ok(rows) = run.state.load_health(m.provider) {
            stored.extend(rows);
        }
    }
    let clock = run.dispatcher.clock();
    let (now, wall) = (clock.now(), clock.wall());
    let changes = run
        .dispatcher
        .change_ring(|ring| ring.adopt(&stored, now, wall));
    if !changes.is_empty() {
        journal::apply(run, &changes);
    }
}

/// Takes over limits other runs sharing the state heard a provider state since they
/// started (the newest statement by any key of an organization, per dimension).
pub fn learned_limits(run: &Labeler) {
    let mut newest: Vec<(usize, usize, Dim, u64, String, i64)> = Vec::new();
    for (m, member) in run.spec.members.iter().enumerate() {
        let Ok(learned) = run
            .state
            .learned_limits(member.provider, member.client.model())
        else {
            continue;
        };
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
            journal::apply(run, &changes);
        }
    }
}

//! Key events, logged and persisted: the `Changes` the dispatcher hands out (after its
//! lock is released) are applied here, so nothing writes to the state under that lock.
//! They are logged at once and written by the state's writer thread, in order.

use super::spec::Labeler;
use super::writes::StateWriter;
use crate::keys::health::{rotation_class, Health, HealthChange};
use crate::limits::Source;
use crate::pacing::{Changes, OrgMerge, StoreNews};
use crate::store::StoredHealth;
use crate::timeutil;

/// Logs and persists what a reply or a wait changed: each key-health change with the
/// key-status summary after them, and each change of a limit in force (`-v`), which is
/// remembered when the provider stated it.
pub fn apply(run: &Labeler, writes: &StateWriter, changes: &Changes) {
    for (i, c) in changes.health.iter().enumerate() {
        health_changed(run, c);
        if let Some(r) = changes.rotations.iter().find(|r| r.change == i) {
            rotated(run, writes, c, r.to);
        }
        save_health(run, writes, c);
    }
    if let Some(status) = &changes.status {
        run.ui.info(status);
    }
    match &changes.store {
        // A full disk is no unreachable state: said as the ledger says it (`store::sqlite::room`).
        Some(StoreNews::Lost { since, error }) if error.starts_with("disk full:") => {
            run.ui.error(&format!(
                "state {}: {error}, since {}; retrying, no request goes without a grant from it meanwhile",
                run.state.location,
                timeutil::rfc3339(*since)
            ))
        }
        Some(StoreNews::Lost { since, error }) => run.ui.error(&format!(
            "state {}: unreachable since {} ({error}), retrying; no request goes without a grant from it meanwhile",
            run.state.location,
            timeutil::rfc3339(*since)
        )),
        Some(StoreNews::Back) => run
            .ui
            .info(&format!("state {}: reachable again", run.state.location)),
        None => {}
    }
    for merge in &changes.orgs {
        merged(run, writes, merge);
    }
    for l in &changes.limits {
        let c = &l.change;
        let Some(value) = c.value else {
            // A dropped free-tier default changes what the run may do: said without -v.
            if let Some(line) = c.dropped_default() {
                let key = run.dispatcher.key(l.key).label();
                run.ui.info(&format!("organization of key {key}: {line}"));
            }
            continue;
        };
        run.ui.debug(
            1,
            &format!(
                "organization of key {}: {} = {} from {} (was {})",
                run.dispatcher.key(l.key).label(),
                c.dim,
                value,
                c.source,
                c.was
            ),
        );
        // Saved when this run heard it (one adopted from the state is already there).
        if let Source::Stated { by, earlier: false } = &c.source {
            let member = run.spec.member(l.key);
            let (provider, model) = (member.provider, member.client.model().to_string());
            let fingerprint = run.dispatcher.key(l.key).fingerprint.clone();
            let (dim, by) = (c.dim, by.clone());
            writes.send(move |state, ui| {
                let limit = (dim, value);
                if let Err(e) = state.save_learned_limit(provider, &model, &fingerprint, limit, &by)
                {
                    ui.error(&format!("could not save a learned limit: {e}"));
                }
            });
        }
    }
}

/// Keys found to share an organization: said once, with the evidence and how to overrule
/// it, and remembered so that the next run starts merged.
fn merged(run: &Labeler, writes: &StateWriter, merge: &OrgMerge) {
    let keys: Vec<String> = merge
        .keys
        .iter()
        .map(|&k| format!("#{}", run.dispatcher.key(k).index))
        .collect();
    let provider = run.spec.member(merge.keys[0]).provider;
    run.ui.info(&format!(
        "keys {} share {}: pacing them as one; set {}_ORG_GROUPS to skip the learning",
        keys.join(", "),
        merge.evidence.describe(),
        provider.to_uppercase()
    ));
    let org = merge
        .evidence
        .org_name(&run.dispatcher.key(merge.keys[0]).fingerprint);
    let fingerprints: Vec<String> = merge
        .keys
        .iter()
        .map(|&k| run.dispatcher.key(k).fingerprint.clone())
        .collect();
    writes.send(move |state, ui| {
        for fingerprint in &fingerprints {
            if let Err(e) = state.save_org_member(provider, fingerprint, &org) {
                ui.error(&format!("could not save a shared organization: {e}"));
                break;
            }
        }
    });
}

fn health_changed(run: &Labeler, c: &HealthChange) {
    run.ui.info(&format!(
        "key {}: {} -> {} ({})",
        run.dispatcher.key(c.key).label(),
        c.from,
        c.to.name(),
        c.reason
    ));
}

/// The key's new health, for every run sharing the state.
fn save_health(run: &Labeler, writes: &StateWriter, c: &HealthChange) {
    // A disabled key is disabled in the state's key overrides; its health there stays
    // what the provider last said.
    let Some(status) = c.to.stored_status() else {
        return;
    };
    let clock = run.dispatcher.clock();
    let until = match &c.to {
        Health::Exhausted { until } => Some(*until),
        Health::Cooling { until } => {
            Some(clock.wall() + until.saturating_duration_since(clock.now()))
        }
        _ => None,
    };
    let key = run.dispatcher.key(c.key);
    let stored = StoredHealth {
        fingerprint: key.fingerprint.clone(),
        masked: key.masked.clone(),
        status,
        until,
        reason: c.reason.clone(),
    };
    let provider = run.spec.member(c.key).provider;
    writes.send(move |state, ui| {
        if let Err(e) = state.save_health(provider, &stored) {
            ui.error(&format!("could not save key health: {e}"));
        }
    });
}

/// A change that took the key in use out of service is a rotation: logged with its class
/// (quota low, rate limited, exhausted, invalid, manual), the key that takes over and
/// whether it was automatic or manual.
fn rotated(run: &Labeler, writes: &StateWriter, c: &HealthChange, next: usize) {
    let (class, mode) = rotation_class(c);
    // Named once: "quota low: …", "rate limited (RPM)…", but "exhausted: quota exhausted …".
    let text = c.reason.to_string();
    let reason = if text.starts_with(class) {
        text
    } else {
        format!("{class}: {text}")
    };
    let (from, to) = (run.dispatcher.key(c.key), run.dispatcher.key(next));
    run.ui.debug(
        1,
        &format!("rotating {} -> {} ({reason})", from.label(), to.label()),
    );
    let provider = run.spec.member(c.key).provider;
    let (from, to) = (from.label(), to.label());
    writes.send(move |state, ui| {
        if let Err(e) = state.log_rotation(provider, &from, &to, &reason, mode) {
            ui.error(&format!("could not log a rotation: {e}"));
        }
    });
}

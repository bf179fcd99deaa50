//! Key events, logged and persisted: the `Changes` the dispatcher hands out (after its
//! lock is released) are applied here, so nothing writes to the state under that lock.

use super::spec::Labeler;
use crate::keys::health::{rotation_class, Health, HealthChange};
use crate::limits::Source;
use crate::pacing::{Changes, OrgMerge, StoreNews};
use crate::store::StoredHealth;
use crate::timeutil;

/// Logs and persists what a reply or a wait changed: each key-health change with the
/// key-status summary after them, and each change of a limit in force (`-v`), which is
/// remembered when the provider stated it.
pub fn apply(run: &Labeler, changes: &Changes) {
    for (i, c) in changes.health.iter().enumerate() {
        health_changed(run, c);
        if let Some(r) = changes.rotations.iter().find(|r| r.change == i) {
            rotated(run, c, r.to);
        }
        save_health(run, c);
    }
    if let Some(status) = &changes.status {
        run.ui.info(status);
    }
    match &changes.store {
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
        merged(run, merge);
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
            let saved = run.state.save_learned_limit(
                member.provider,
                member.client.model(),
                &run.dispatcher.key(l.key).fingerprint,
                (c.dim, value),
                by,
            );
            if let Err(e) = saved {
                run.ui
                    .error(&format!("could not save a learned limit: {e}"));
            }
        }
    }
}

/// Keys found to share an organization: said once, with the evidence and how to overrule
/// it, and remembered so that the next run starts merged.
fn merged(run: &Labeler, merge: &OrgMerge) {
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
    for &k in &merge.keys {
        let fingerprint = &run.dispatcher.key(k).fingerprint;
        if let Err(e) = run.state.save_org_member(provider, fingerprint, &org) {
            run.ui
                .error(&format!("could not save a shared organization: {e}"));
            break;
        }
    }
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
fn save_health(run: &Labeler, c: &HealthChange) {
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
    if let Err(e) = run
        .state
        .save_health(run.spec.member(c.key).provider, &stored)
    {
        run.ui.error(&format!("could not save key health: {e}"));
    }
}

/// A change that took the key in use out of service is a rotation: logged with its class
/// (quota low, rate limited, exhausted, invalid, manual), the key that takes over and
/// whether it was automatic or manual.
fn rotated(run: &Labeler, c: &HealthChange, next: usize) {
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
    if let Err(e) = run.state.log_rotation(
        run.spec.member(c.key).provider,
        &from.label(),
        &to.label(),
        &reason,
        mode,
    ) {
        run.ui.error(&format!("could not log a rotation: {e}"));
    }
}

//! One look at the state for the alerts: every key of the pool with its status and the
//! quota it has least of left, and the day's request and success counts.

use std::time::SystemTime;

use super::check::{KeySnap, Snapshot};
use crate::config::Config;
use crate::report::key_report::KeyReport;
use crate::report::keys::key_views;
use crate::store::State;
use crate::timeutil::Day;

pub fn look(pool: &[Config], state: &State) -> Snapshot {
    match read(pool, state) {
        Ok(snap) => snap,
        Err(e) => Snapshot {
            unreachable: Some(e.to_string()),
            ..Snapshot::default()
        },
    }
}

fn read(pool: &[Config], state: &State) -> crate::error::Result<Snapshot> {
    let today = Day::of(SystemTime::now());
    let mut snap = Snapshot::default();
    let mut totals = (0, 0);
    for cfg in pool {
        snap.keys
            .extend(key_views(cfg, state, 1)?.iter().map(key_snap));
        for row in state.usage_since(cfg.provider.as_str(), &today)? {
            totals.0 += row.usage.requests;
            totals.1 += row.usage.successes;
        }
    }
    snap.totals = Some(totals);
    Ok(snap)
}

fn key_snap(k: &KeyReport) -> KeySnap {
    let quota_left = k
        .quotas
        .iter()
        .filter_map(|q| {
            q.used_pct
                .map(|p| ((100.0 - p).max(0.0), q.quota.to_string()))
        })
        .min_by(|a, b| a.0.total_cmp(&b.0));
    KeySnap {
        label: match k.index {
            Some(i) => format!("{} #{i} {}", k.provider, k.key),
            None => format!("{} {}", k.provider, k.key),
        },
        // `disabled` when a person disabled it, else what the provider left on it.
        status: k.status.clone(),
        quota_left,
    }
}

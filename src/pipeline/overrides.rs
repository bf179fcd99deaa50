//! A running labeler follows `autolabel keys disable|enable|reset|rotate`: it reads the
//! key overrides from the state at the start and then every 2 s (on the pipeline's tick),
//! and applies what changed to its key ring, logged like any other key change. On the same
//! beat it takes the day and month use of keys with quotas of their own from the ledger,
//! so that runs sharing a state (and a key) count each other's use within 2 s.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use super::journal;
use super::spec::Labeler;
use crate::keys::health::{Health, HealthChange};
use crate::keys::settings::Period;
use crate::store::KeyOverride;
use crate::timeutil::Day;

/// How often the state is read: often enough that a change is seen within 5 s, rarely
/// enough to cost nothing.
const EVERY: Duration = Duration::from_secs(2);

/// How long the key in use steps aside on `keys rotate`: a minute window is over by then.
const ROTATE_COOLDOWN: Duration = Duration::from_secs(60);

/// The overrides of every provider of the run, and the rotations asked for (in all).
fn read(run: &Labeler) -> crate::error::Result<(Vec<KeyOverride>, i64)> {
    let mut overrides = Vec::new();
    let mut rotations = 0;
    for m in &run.spec.members {
        overrides.extend(run.state.key_overrides(m.provider)?);
        rotations += run.state.rotation_requests(m.provider)?;
    }
    Ok((overrides, rotations))
}

/// Day and month use of every key with quotas of its own, as the ledger has it (less what
/// a `keys reset` forgot), where it is more than the run counted itself.
fn refresh_quota_use(run: &Labeler, overrides: &[KeyOverride]) {
    let wall = SystemTime::now();
    // (key, period, ledger's first day) to read, without holding the ring while reading.
    let wanted: Vec<(usize, Period, Day)> = run.dispatcher.with_ring(|ring| {
        let mut w = Vec::new();
        for (i, slot) in ring.slots.iter().enumerate() {
            if !slot.quota.is_limited() {
                continue;
            }
            for p in [Period::Day, Period::Month] {
                let since = Day::of(slot.quota.period_start(p, wall));
                w.push((i, p, since));
            }
        }
        w
    });
    for (i, period, since) in wanted {
        let key = run.dispatcher.key(i);
        let provider = run.spec.member(i).provider;
        let Ok(used) = run.state.key_used_since(provider, &key.fingerprint, &since) else {
            continue;
        };
        let used = match overrides.iter().find(|o| o.fingerprint == key.fingerprint) {
            Some(o) if period == Period::Day => o.day_base.apply(&since, used),
            Some(o) => o.month_base.apply(&since, used),
            None => used,
        };
        run.dispatcher.with_ring(|ring| {
            ring.slots[i].quota.raise_used(period, wall, used.0, used.1);
        });
    }
}

pub struct OverrideSync {
    /// Per fingerprint, the last `keys reset` applied (or there at the start).
    resets_seen: HashMap<String, i64>,
    rotations_seen: i64,
    last_read: Instant,
}

impl OverrideSync {
    /// Applies the disables in force now; resets and rotation requests made before the
    /// run are history (the quota counts already start after any reset).
    pub fn start(run: &Labeler) -> OverrideSync {
        let mut sync = OverrideSync {
            resets_seen: HashMap::new(),
            rotations_seen: 0,
            last_read: Instant::now(),
        };
        if let Ok((overrides, rotations)) = read(run) {
            for o in &overrides {
                sync.resets_seen.insert(o.fingerprint.clone(), o.reset_seq);
            }
            sync.rotations_seen = rotations;
            sync.apply(run, &overrides, rotations);
        }
        sync
    }

    /// Reads the overrides again if 2 s have passed since the last time.
    pub fn poll(&mut self, run: &Labeler) {
        if self.last_read.elapsed() < EVERY {
            return;
        }
        self.last_read = Instant::now();
        match read(run) {
            Ok((overrides, rotations)) => {
                self.apply(run, &overrides, rotations);
                refresh_quota_use(run, &overrides);
            }
            // The state may be busy for a moment; the next tick tries again.
            Err(e) => run
                .ui
                .debug(1, &format!("could not read key overrides: {e}")),
        }
    }

    /// Applies the overrides to the key ring, then logs and persists what changed.
    fn apply(&mut self, run: &Labeler, overrides: &[KeyOverride], rotations: i64) {
        let wall = SystemTime::now();
        let clock = run.dispatcher.clock();
        let now = clock.now();
        let changes = run.dispatcher.change_ring(|ring| {
            let mut health: Vec<HealthChange> = Vec::new();
            for i in 0..ring.len() {
                let fp = ring.slots[i].key.fingerprint.clone();
                let Some(o) = overrides.iter().find(|o| o.fingerprint == fp) else {
                    continue;
                };
                let disabled_now = matches!(ring.slots[i].health, Health::Disabled { .. });
                if o.is_disabled(wall) && !disabled_now {
                    health.extend(ring.disable(i, o.disabled_until, &o.reason));
                } else if !o.is_disabled(wall) && disabled_now {
                    health.extend(ring.enable(i, "enabled (autolabel keys enable)"));
                }
                let seen = self.resets_seen.entry(fp).or_insert(0);
                if o.reset_seq > *seen {
                    *seen = o.reset_seq;
                    let slot = &mut ring.slots[i];
                    let periods: &[Period] = match o.reset_what.as_str() {
                        "minute" => &[Period::Minute],
                        "day" => &[Period::Day],
                        "month" => &[Period::Month],
                        _ => &[Period::Minute, Period::Day, Period::Month],
                    };
                    for p in periods {
                        slot.quota.forget(*p);
                    }
                    let clears = match (&slot.health, o.reset_what.as_str()) {
                        (Health::Disabled { .. } | Health::Available, _) => false,
                        (Health::Cooling { .. }, _) => true,
                        (Health::Exhausted { .. }, "day" | "month" | "all") => true,
                        (Health::Invalid, "all") => true,
                        _ => false,
                    };
                    if clears {
                        let why = format!("reset (autolabel keys reset --{})", o.reset_what);
                        health.extend(ring.enable(i, &why));
                    }
                }
            }
            if rotations > self.rotations_seen {
                self.rotations_seen = rotations;
                if let Some(current) = ring.current {
                    health.extend(ring.step_aside(current, now, ROTATE_COOLDOWN));
                }
            }
            health
        });
        if !changes.is_empty() {
            journal::apply(run, &changes);
        }
    }
}

//! A running labeler follows `autolabel keys disable|enable|reset|rotate`: it reads the
//! key overrides from the state at the start and then every 2 s (on the pipeline's tick),
//! and applies what changed to its key ring, logged like any other key change. On the same
//! beat it takes the day and month use of keys with quotas of their own from the ledger,
//! so that runs sharing a state (and a key) count each other's use within 2 s. While the
//! run goes, the state is read by its writer thread and the answer applied on the next
//! tick.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use super::journal;
use super::spec::Labeler;
use super::writes::{Asked, StateWriter};
use crate::keys::health::{Health, HealthChange};
use crate::keys::settings::Period;
use crate::store::{KeyOverride, State};
use crate::timeutil::Day;

/// How often the state is read: often enough that a change is seen within 5 s, rarely
/// enough to cost nothing.
const EVERY: Duration = Duration::from_secs(2);

/// How long the key in use steps aside on `keys rotate`: a minute window is over by then.
const ROTATE_COOLDOWN: Duration = Duration::from_secs(60);

/// The overrides of every provider of the run, and the rotations asked for (in all).
fn read(state: &State, providers: &[&str]) -> crate::error::Result<(Vec<KeyOverride>, i64)> {
    let mut overrides = Vec::new();
    let mut rotations = 0;
    for provider in providers {
        overrides.extend(state.key_overrides(provider)?);
        rotations += state.rotation_requests(provider)?;
    }
    Ok((overrides, rotations))
}

/// The providers of the run, in order.
fn providers(run: &Labeler) -> Vec<&'static str> {
    run.spec.members.iter().map(|m| m.provider).collect()
}

/// A key's use in a period, as the ledger has it: key (the dispatcher's index), period,
/// the period's first day, and requests and tokens (once read).
type QuotaUse = (usize, Period, Day, (u64, u64));

/// What one read of the state found: the overrides, the rotations asked for, and the
/// ledger's use of the keys with quotas of their own, as of `wall`.
struct Found {
    overrides: Vec<KeyOverride>,
    rotations: i64,
    used: Vec<QuotaUse>,
    wall: SystemTime,
}

/// The day and month use to read from the ledger: every key with quotas of its own, with
/// its provider and fingerprint (read without holding the ring).
fn quota_use_wanted(run: &Labeler, wall: SystemTime) -> Vec<(QuotaUse, &'static str, String)> {
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
    wanted
        .into_iter()
        .map(|(i, period, since)| {
            let provider = run.spec.member(i).provider;
            let fingerprint = run.dispatcher.key(i).fingerprint.clone();
            ((i, period, since, (0, 0)), provider, fingerprint)
        })
        .collect()
}

/// Raises the day and month use of keys with quotas of their own to what the ledger has
/// (less what a `keys reset` forgot), where it is more than the run counted itself.
fn raise_quota_use(run: &Labeler, found: &Found) {
    for (i, period, since, used) in &found.used {
        let key = run.dispatcher.key(*i);
        let used = match found
            .overrides
            .iter()
            .find(|o| o.fingerprint == key.fingerprint)
        {
            Some(o) if *period == Period::Day => o.day_base.apply(since, *used),
            Some(o) => o.month_base.apply(since, *used),
            None => *used,
        };
        run.dispatcher.with_ring(|ring| {
            ring.slots[*i]
                .quota
                .raise_used(*period, found.wall, used.0, used.1);
        });
    }
}

pub struct OverrideSync {
    /// Per fingerprint, the last `keys reset` applied (or there at the start).
    resets_seen: HashMap<String, i64>,
    rotations_seen: i64,
    last_read: Instant,
    /// The read on its way.
    asked: Asked<crate::error::Result<Found>>,
}

impl OverrideSync {
    /// Applies the disables in force now; resets and rotation requests made before the
    /// run are history (the quota counts already start after any reset).
    pub fn start(run: &Labeler, writes: &StateWriter) -> OverrideSync {
        let mut sync = OverrideSync {
            resets_seen: HashMap::new(),
            rotations_seen: 0,
            last_read: Instant::now(),
            asked: Asked::default(),
        };
        if let Ok((overrides, rotations)) = read(&run.state, &providers(run)) {
            for o in &overrides {
                sync.resets_seen.insert(o.fingerprint.clone(), o.reset_seq);
            }
            sync.rotations_seen = rotations;
            sync.apply(run, writes, &overrides, rotations);
        }
        sync
    }

    /// Applies what the last read found, once it is made; has the overrides read again
    /// if 2 s have passed since the last time.
    pub fn poll(&mut self, run: &Labeler, writes: &StateWriter) {
        match self.asked.take() {
            Some(Ok(found)) => {
                self.apply(run, writes, &found.overrides, found.rotations);
                raise_quota_use(run, &found);
            }
            // The state may be busy for a moment; the next read tries again.
            Some(Err(e)) => run
                .ui
                .debug(1, &format!("could not read key overrides: {e}")),
            None => {}
        }
        if self.asked.waiting() || self.last_read.elapsed() < EVERY {
            return;
        }
        self.last_read = Instant::now();
        let providers = providers(run);
        let wall = SystemTime::now();
        let wanted = quota_use_wanted(run, wall);
        writes.ask(&mut self.asked, move |state| {
            let (overrides, rotations) = read(state, &providers)?;
            let used = wanted
                .into_iter()
                .filter_map(|((i, period, since, _), provider, fingerprint)| {
                    let used = state.key_used_since(provider, &fingerprint, &since);
                    used.ok().map(|used| (i, period, since, used))
                })
                .collect();
            Ok(Found {
                overrides,
                rotations,
                used,
                wall,
            })
        });
    }

    /// Applies the overrides to the key ring, then logs and persists what changed.
    fn apply(
        &mut self,
        run: &Labeler,
        writes: &StateWriter,
        overrides: &[KeyOverride],
        rotations: i64,
    ) {
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
            journal::apply(run, writes, &changes);
        }
    }
}

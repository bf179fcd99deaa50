//! What a reply or a wait changed in the key ring and the limits in force, handed out
//! by the dispatcher as values once its lock is released.

use crate::keys::health::{Health, HealthChange};
use crate::keys::ring::KeyRing;
use crate::limits::LimitChange;
use std::time::SystemTime;

/// The quota store stopped or started answering again.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreNews {
    /// Every call since `since` failed; requests wait for it.
    Lost { since: SystemTime, error: String },
    /// It answers again.
    Back,
}

/// A limit in force that changed, for one organization, seen on a reply of `key`.
#[derive(Debug, Clone, PartialEq)]
pub struct OrgLimitChange {
    pub org: usize,
    pub key: usize,
    pub change: LimitChange,
}

/// Everything a reply or a wait changed that is worth logging and persisting: a value,
/// handed out after the dispatcher's lock is released, so that whoever logs and persists
/// it never does so under that lock. What the key ring looked like right after the
/// changes is taken along (who takes over, the key status line).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Changes {
    pub health: Vec<HealthChange>,
    pub limits: Vec<OrgLimitChange>,
    /// The quota store stopped answering (requests wait for it) or answers again: once
    /// each time.
    pub store: Option<StoreNews>,
    /// The health changes that took the key in use out of service, with the key that
    /// takes over.
    pub rotations: Vec<Rotation>,
    /// The key-status summary right after the health changes (when there are any).
    pub status: Option<String>,
    /// Keys found to share an organization, now paced as one.
    pub orgs: Vec<super::OrgMerge>,
}

/// A health change (`Changes::health[change]`) that took the key in use out of service,
/// and the key that takes over (the first other candidate).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rotation {
    pub change: usize,
    pub to: usize,
}

impl Changes {
    /// Health changes, with what the ring they were made on says about them.
    pub fn of_health(health: Vec<HealthChange>, ring: &KeyRing) -> Changes {
        let mut rotations = Vec::new();
        for (i, c) in health.iter().enumerate() {
            if c.to == Health::Available || ring.current != Some(c.key) {
                continue;
            }
            if let Some(to) = ring.candidates().into_iter().find(|&k| k != c.key) {
                rotations.push(Rotation { change: i, to });
            }
        }
        let status = (!health.is_empty()).then(|| ring.summary());
        Changes {
            health,
            rotations,
            status,
            ..Changes::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.health.is_empty()
            && self.limits.is_empty()
            && self.orgs.is_empty()
            && self.store.is_none()
    }
}

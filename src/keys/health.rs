//! A key's health (available, cooling, suspect, exhausted, invalid, disabled), how the
//! state keeps it, and the change from one to another that is logged and persisted.

use std::time::SystemTime;

use tokio::time::Instant;

use crate::store::{HealthReason, KeyStatus, StoredHealth};

/// The rotation class of a rotation out for a key's own quota.
pub const QUOTA_LOW: &str = "quota low";

/// The class of a health change as a rotation reason: quota low, rate limited, exhausted,
/// invalid or manual; and whether a person asked for it.
pub fn rotation_class(change: &HealthChange) -> (&'static str, &'static str) {
    if let HealthReason::Manual(_) = change.reason {
        return ("manual", "manual");
    }
    let class = match &change.to {
        _ if matches!(change.reason, HealthReason::QuotaLow(_)) => QUOTA_LOW,
        Health::Cooling { .. } => "rate limited",
        Health::Suspect { .. } => "suspect",
        Health::Exhausted { .. } => "exhausted",
        Health::Invalid => "invalid",
        Health::Disabled { .. } => "manual",
        Health::Available => "",
    };
    (class, "auto")
}

#[derive(Debug, Clone, PartialEq)]
pub enum Health {
    Available,
    /// Per-minute limit hit: serves again at `until`.
    Cooling {
        until: Instant,
    },
    /// Set aside after an error other keys do not get (`suspect`): one probe request
    /// after `until` decides (this run only).
    Suspect {
        until: Instant,
    },
    /// Daily quota (or billing) used up: serves again at `until` (kept across runs).
    Exhausted {
        until: SystemTime,
    },
    /// 401/403: kept across runs until `test-keys` passes.
    Invalid,
    /// Taken out of service by `autolabel keys disable` (for good, or until `until`).
    Disabled {
        until: Option<SystemTime>,
    },
}

impl Health {
    /// What a stored record still means at (now, wall): `None` once it has expired (or
    /// says the key is fine).
    pub fn from_stored(h: &StoredHealth, now: Instant, wall: SystemTime) -> Option<Health> {
        match (h.status, h.until) {
            (KeyStatus::Invalid, _) => Some(Health::Invalid),
            (KeyStatus::Exhausted, Some(until)) if until > wall => {
                Some(Health::Exhausted { until })
            }
            (KeyStatus::Cooling, Some(until)) if until > wall => Some(Health::Cooling {
                until: now + until.duration_since(wall).unwrap_or_default(),
            }),
            _ => None,
        }
    }

    /// How the state keeps it; `None` for a disabled key (the key overrides hold that).
    pub fn stored_status(&self) -> Option<KeyStatus> {
        match self {
            Health::Available => Some(KeyStatus::Available),
            Health::Cooling { .. } => Some(KeyStatus::Cooling),
            Health::Exhausted { .. } => Some(KeyStatus::Exhausted),
            Health::Invalid => Some(KeyStatus::Invalid),
            Health::Disabled { .. } | Health::Suspect { .. } => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Health::Available => "available",
            Health::Cooling { .. } => "cooling",
            Health::Suspect { .. } => "suspect",
            Health::Exhausted { .. } => "exhausted",
            Health::Invalid => "invalid",
            Health::Disabled { .. } => "disabled",
        }
    }
}

/// A change worth persisting and logging.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthChange {
    pub key: usize,
    pub from: &'static str,
    pub to: Health,
    pub reason: HealthReason,
}

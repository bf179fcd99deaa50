//! What runs learned about keys: their health, the limits the providers stated, which
//! keys share an organization, and the rotation log.

use std::time::SystemTime;

use super::HealthReason;
use crate::error::Result;
use crate::limits::Dim;

/// What a key's stored health says about it. (A disabled key is not a health: it lives
/// in the key overrides.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Available,
    /// A per-minute limit was hit: serves again at the record's `until`.
    Cooling,
    /// A daily quota (or billing) is used up: serves again at `until`.
    Exhausted,
    /// Refused by the provider (401/403) until `test-keys` passes.
    Invalid,
}

impl KeyStatus {
    pub const ALL: [KeyStatus; 4] = [
        KeyStatus::Available,
        KeyStatus::Cooling,
        KeyStatus::Exhausted,
        KeyStatus::Invalid,
    ];

    /// The name stored and shown (`available`, `cooling`, `exhausted`, `invalid`).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Available => "available",
            KeyStatus::Cooling => "cooling",
            KeyStatus::Exhausted => "exhausted",
            KeyStatus::Invalid => "invalid",
        }
    }

    pub fn parse(s: &str) -> Option<KeyStatus> {
        KeyStatus::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for KeyStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Key health as persisted.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredHealth {
    pub fingerprint: String,
    pub masked: String,
    pub status: KeyStatus,
    pub until: Option<SystemTime>,
    pub reason: HealthReason,
}

impl StoredHealth {
    /// A record as both stores keep it: the status and the reason as text, `until` in
    /// Unix seconds. `None` for a status this version does not know: such a record is
    /// skipped, not fatal.
    pub fn decode(
        fingerprint: String,
        masked: String,
        status: &str,
        until: Option<i64>,
        reason: &str,
    ) -> Option<StoredHealth> {
        Some(StoredHealth {
            fingerprint,
            masked,
            status: KeyStatus::parse(status)?,
            until: until.map(crate::timeutil::from_unix),
            reason: HealthReason::from_stored(reason),
        })
    }
}

#[derive(Debug, Clone)]
pub struct Rotation {
    pub ts: SystemTime,
    pub from: String,
    pub to: String,
    pub reason: String,
    pub mode: String,
}

/// A limit a provider stated on a reply to one key.
#[derive(Debug, Clone, PartialEq)]
pub struct LearnedLimit {
    pub fingerprint: String,
    pub dim: Dim,
    pub value: u64,
    /// What stated it: a header name, or "a 429 reply".
    pub source: String,
    /// Unix seconds.
    pub updated: i64,
}

/// Key health, stated limits and rotations, shared by every run.
pub trait KeyHistory {
    fn save_health(&self, provider: &str, h: &StoredHealth) -> Result<()>;

    fn load_health(&self, provider: &str) -> Result<Vec<StoredHealth>>;

    /// Remembers a limit the provider stated on a reply to this key, for this model.
    /// Values past `i64::MAX` are stored as `i64::MAX`.
    fn save_learned_limit(
        &self,
        provider: &str,
        model: &str,
        fingerprint: &str,
        limit: (Dim, u64),
        source: &str,
    ) -> Result<()>;

    /// Every limit stated for this provider and model, by any key.
    fn learned_limits(&self, provider: &str, model: &str) -> Result<Vec<LearnedLimit>>;

    /// Remembers that key `fingerprint` of `provider` was found in organization `org` (the
    /// name 429 replies gave, or one made up for keys whose counters fell together), so
    /// that the next run paces it with the others from the start.
    fn save_org_member(&self, provider: &str, fingerprint: &str, org: &str) -> Result<()>;

    /// Every key of `provider` found to share an organization: (fingerprint, organization).
    fn org_members(&self, provider: &str) -> Result<Vec<(String, String)>>;

    /// Remembers that `model` of `provider` wraps its labels in prose, so its replies
    /// need `extra` tokens a row above the tight cap: the next run's first tries get them
    /// at once instead of learning it again from cut replies.
    fn save_reply_extra(&self, provider: &str, model: &str, extra: u32) -> Result<()>;

    /// The extra reply tokens a row remembered for `model` of `provider`, if any.
    fn reply_extra(&self, provider: &str, model: &str) -> Result<Option<u32>>;

    fn log_rotation(
        &self,
        provider: &str,
        from: &str,
        to: &str,
        reason: &str,
        mode: &str,
    ) -> Result<()>;

    /// Rotations from `since` on, newest first, at most `limit`.
    fn rotations(&self, provider: &str, since: SystemTime, limit: u32) -> Result<Vec<Rotation>>;
}

//! Every state runs share. The state store: the usage ledger, key health across runs,
//! limits the providers stated, the rotation log, the label cache, which output rows got
//! a fallback label, what people decided about keys, and the runs registry. The quota
//! store: each organization's pacing state, so that every run using the same keys stays
//! under their limits together.
//!
//! Both live in a SQLite file (every run on one machine, [`sqlite`]) or on a Redis server
//! (runs on several machines, [`redis`]); [`State::open_at`] and [`open_quota_store`]
//! are the only places that name a backend, so that nothing outside this module asks.
//! Tests also use the in-memory quota store ([`memory`]) with the same decision code.
//!
//! Keys are known here only by fingerprint (first 8 hex of SHA-256) and masked form.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::SystemTime;

use crate::error::Result;
use crate::limits::Dim;
pub use crate::pacing::quota::QuotaOp;
use crate::pacing::quota::{Decision, Nanos};
use crate::provider::classify::ErrorClass;
use crate::timeutil;

mod key_control;
pub use key_control::{Base, KeyActivity, KeyControl, KeyOverride};
mod runs;
pub use runs::{Beat, RunInfo, RunRegistry, STALE_AFTER};
mod location;
pub use location::{redact_url, RedisTarget, StateLocation, DEFAULT_REDIS_PREFIX};
pub mod memory;
pub use memory::MemoryQuotas;
#[cfg(test)]
pub(crate) mod quota_suite;
pub mod redis;
pub mod sqlite;
#[cfg(test)]
pub(crate) mod suite;

/// What a prune removed, and from when on it kept everything.
#[derive(Debug, Clone, PartialEq)]
pub struct Pruned {
    pub cache: u64,
    pub rotations: u64,
    pub usage: u64,
    /// The first UTC day kept.
    pub kept_from: String,
}

impl Pruned {
    pub fn total(&self) -> u64 {
        self.cache + self.rotations + self.usage
    }
}

impl std::fmt::Display for Pruned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "removed {} cache entries, {} rotations and {} usage rows from before {}",
            self.cache, self.rotations, self.usage, self.kept_from
        )
    }
}

/// A state file's size before and after `vacuum`, in bytes (main file and WAL).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Compacted {
    pub before: u64,
    pub after: u64,
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

/// Counts for one key, model and day, added to the ledger in one go.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsageDelta {
    pub requests: u64,
    pub successes: u64,
    pub errors: [u64; 8],
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost: f64,
    /// Texts the model labeled: with the tokens, what a day of quota bought.
    pub rows: u64,
}

impl UsageDelta {
    pub fn error(&mut self, class: ErrorClass) {
        let i = ErrorClass::ALL.iter().position(|c| *c == class).unwrap();
        self.errors[i] += 1;
    }

    pub fn add(&mut self, other: &UsageDelta) {
        self.requests += other.requests;
        self.successes += other.successes;
        for (a, b) in self.errors.iter_mut().zip(other.errors) {
            *a += b;
        }
        self.tokens_in += other.tokens_in;
        self.tokens_out += other.tokens_out;
        self.cost += other.cost;
        self.rows += other.rows;
    }

    pub fn error_total(&self) -> u64 {
        self.errors.iter().sum()
    }
}

/// One ledger row as read back.
#[derive(Debug, Clone)]
pub struct UsageRow {
    pub day: String,
    pub fingerprint: String,
    pub masked: String,
    pub model: String,
    pub usage: UsageDelta,
}

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
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct Rotation {
    pub ts: SystemTime,
    pub from: String,
    pub to: String,
    pub reason: String,
    pub mode: String,
}

/// One ledger entry as `add_usage` takes it: (key fingerprint, masked key, model, UTC day,
/// counts).
pub type UsageEntry = (String, String, String, String, UsageDelta);

/// What runs learn and keep: usage, key health, stated limits, rotations, the label cache
/// and fallback rows, and keeping all that small.
pub trait History {
    /// Adds several deltas to the ledger at once (all or nothing).
    fn add_usage(&self, provider: &str, rows: &[UsageEntry]) -> Result<()>;

    /// Ledger rows for `provider` from `since_day` (inclusive), ordered by day,
    /// fingerprint and model.
    fn usage_since(&self, provider: &str, since_day: &str) -> Result<Vec<UsageRow>>;

    /// Requests and tokens already used today by these keys (one organization).
    fn used_today(&self, provider: &str, fingerprints: &[String]) -> Result<(u64, u64)> {
        let today = timeutil::utc_date(SystemTime::now());
        let mut total = (0, 0);
        for row in self.usage_since(provider, &today)? {
            if fingerprints.contains(&row.fingerprint) {
                total.0 += row.usage.requests;
                total.1 += row.usage.tokens_in + row.usage.tokens_out;
            }
        }
        Ok(total)
    }

    /// Requests and tokens one key used from `since_day` (inclusive) on, all models.
    fn key_used_since(
        &self,
        provider: &str,
        fingerprint: &str,
        since_day: &str,
    ) -> Result<(u64, u64)> {
        let mut total = (0u64, 0u64);
        for row in self.usage_since(provider, since_day)? {
            if row.fingerprint == fingerprint {
                total.0 = total.0.saturating_add(row.usage.requests);
                total.1 = total
                    .1
                    .saturating_add(row.usage.tokens_in.saturating_add(row.usage.tokens_out));
            }
        }
        Ok(total)
    }

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

    fn cache_get(&self, key: &[u8]) -> Result<Option<String>>;

    fn cache_put_many(&self, entries: &[(Vec<u8>, String)]) -> Result<()>;

    /// How long cache entries written from now on are worth keeping: a store whose
    /// entries expire by themselves (Redis) uses it, the others drop old entries in
    /// `prune`. 0 keeps them for good.
    fn keep_cache_days(&self, _keep_days: u32) {}

    fn add_fallback_rows(&self, output: &str, rows: &[u64]) -> Result<()>;

    fn fallback_rows(&self, output: &str) -> Result<BTreeSet<u64>>;

    /// Replaces the fallback rows recorded for `output` with `rows`.
    fn set_fallback_rows(&self, output: &str, rows: &BTreeSet<u64>) -> Result<()>;

    /// Removes cache entries, rotations and usage rows from before the UTC day
    /// `keep_days` days before `now`, and ended runs as old. Today's usage is always kept:
    /// the daily quota counts start from it. `keep_days` 0 keeps everything.
    fn prune(&self, keep_days: u32, now: SystemTime) -> Result<Pruned>;

    /// `prune` at most once per UTC day and `keep_days` setting, so that runs started
    /// every few minutes from cron do not each scan the whole cache. `None` if it was
    /// done already today.
    fn prune_if_due(&self, keep_days: u32, now: SystemTime) -> Result<Option<Pruned>>;

    /// Gives the space of removed entries back, where the store can.
    fn vacuum(&self) -> Result<Compacted>;
}

/// Everything a state store does.
pub trait StateStore: History + KeyControl + RunRegistry + Send + Sync {}

impl<T: History + KeyControl + RunRegistry + Send + Sync> StateStore for T {}

/// The state a command opened, whichever store holds it. Callers use the store's methods
/// through `Deref`.
pub struct State {
    store: Box<dyn StateStore>,
    /// Where it lives, for messages (any Redis password masked by its `Display`).
    pub location: StateLocation,
}

impl std::ops::Deref for State {
    type Target = dyn StateStore;

    fn deref(&self) -> &Self::Target {
        &*self.store
    }
}

impl State {
    /// Opens the state wherever `--state` put it.
    pub fn open_at(location: &StateLocation) -> Result<State> {
        let store: Box<dyn StateStore> = match location {
            StateLocation::File(path) => Box::new(sqlite::SqliteStore::open(path)?),
            StateLocation::Redis(target) => Box::new(redis::RedisStore::open(location, target)?),
        };
        Ok(State {
            store,
            location: location.clone(),
        })
    }

    /// A SQLite state in memory, gone with the process (tests).
    pub fn in_memory() -> State {
        State {
            store: Box::new(sqlite::SqliteStore::in_memory()),
            location: StateLocation::File(":memory:".into()),
        }
    }
}

/// The quota store of a state location: its own connection to the state file, or to
/// the Redis server.
pub fn open_quota_store(location: &StateLocation) -> Result<Arc<dyn QuotaStore>, String> {
    match location {
        StateLocation::File(path) => Ok(Arc::new(sqlite::SqliteQuotas::open(path)?)),
        StateLocation::Redis(target) => Ok(Arc::new(redis::RedisQuotas::open(target)?)),
    }
}

/// An organization as every run names it: provider, model and its keys' fingerprints.
pub type OrgId = String;

/// What a quota store did with an operation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Applied {
    /// The decision of a `Decide`, in the store's time.
    pub decision: Option<Decision>,
    /// The store's now when it applied the operation (nanoseconds since the epoch).
    pub now: Nanos,
}

/// The quota store did not answer (or answered nonsense): nothing was decided, and no
/// request may go on the strength of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for StoreError {
    fn from(s: String) -> StoreError {
        StoreError(s)
    }
}

impl From<StoreError> for String {
    fn from(e: StoreError) -> String {
        e.0
    }
}

/// Where organizations' quota state lives. A store applies one [`QuotaOp`] at a time,
/// atomically with respect to every other run, at its own "now", and says what that now
/// was: with a Redis server shared by several machines the server's clock rules, and the
/// caller turns the answer's times into its own instants from it.
pub trait QuotaStore: Send + Sync {
    /// Applies `op` to the organization's state (seeded the first time, see
    /// [`QuotaOp::Decide`]), atomically with respect to every other run.
    fn apply(&self, org: &str, op: &QuotaOp) -> Result<Applied, StoreError>;
}

/// Prune's cut: (the first UTC day kept, its start in Unix seconds), `keep_days` days
/// before `now`'s day.
pub(crate) fn prune_cutoff(keep_days: u32, now: SystemTime) -> (String, i64) {
    let day = 86_400;
    let today = timeutil::unix_secs(now).div_euclid(day) * day;
    let cutoff = today - i64::from(keep_days) * day;
    (timeutil::utc_date(timeutil::from_unix(cutoff)), cutoff)
}

/// What `prune_if_due` remembers: the day and setting of the last prune.
pub(crate) fn prune_mark(keep_days: u32, now: SystemTime) -> String {
    format!("{} {keep_days}", timeutil::utc_date(now))
}

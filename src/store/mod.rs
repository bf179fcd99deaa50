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

use std::sync::Arc;

use crate::error::Result;
pub use crate::pacing::quota::QuotaOp;
use crate::pacing::quota::{Decision, Nanos};

mod cache;
pub use cache::{CacheScope, LabelCache};
mod health;
pub use health::{KeyHistory, KeyStatus, LearnedLimit, Rotation, StoredHealth};
mod health_reason;
pub use health_reason::HealthReason;
mod ledger;
pub use ledger::{Ledger, UsageDelta, UsageEntry, UsageRow};
mod upkeep;
pub(crate) use upkeep::{prune_cutoff, prune_mark};
pub use upkeep::{Compacted, Pruned, Upkeep};
pub mod events;
pub use events::{Action, ErrorEntry, EventKind, EventLog};
mod key_control;
pub use key_control::{Base, KeyActivity, KeyControl, KeyOverride};
mod runs;
pub use runs::{Beat, RunInfo, RunQuality, RunRegistry, STALE_AFTER};
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

/// Everything a state store does.
pub trait StateStore:
    Ledger + KeyHistory + LabelCache + Upkeep + KeyControl + RunRegistry + EventLog + Send + Sync
{
}

impl<T> StateStore for T where
    T: Ledger
        + KeyHistory
        + LabelCache
        + Upkeep
        + KeyControl
        + RunRegistry
        + EventLog
        + Send
        + Sync
{
}

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
pub fn open_quota_store(location: &StateLocation) -> Result<Arc<dyn QuotaStore>> {
    match location {
        StateLocation::File(path) => match sqlite::SqliteQuotas::open(path) {
            Ok(store) => Ok(Arc::new(store)),
            Err(e) => Err(location.error(e.to_string()).caused_by(e)),
        },
        StateLocation::Redis(target) => match redis::RedisQuotas::open(target) {
            Ok(store) => Ok(Arc::new(store)),
            Err(e) => Err(location.error(e)),
        },
    }
}

/// One API key as the state names it: its provider and its fingerprint (never the key
/// itself). Redis key names hold it as `provider:fingerprint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId<'a> {
    pub provider: &'a str,
    pub fingerprint: &'a str,
}

impl std::fmt::Display for KeyId<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.provider, self.fingerprint)
    }
}

/// An organization as every run names it in the quota store: provider, model and its
/// keys' fingerprints (`groq:MODEL:FP+FP`), so that runs with the same keys share one
/// limiter. The text is the stores' key for the organization: it must not change
/// between versions, or runs of two versions would pace apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OrgId(String);

impl OrgId {
    /// `fingerprints`: the organization's keys, in configuration order.
    pub fn new(provider: &str, model: &str, fingerprints: &[&str]) -> OrgId {
        OrgId(format!("{provider}:{model}:{}", fingerprints.join("+")))
    }

    /// An id of any text (tests name their organizations freely).
    #[cfg(test)]
    pub fn named(text: &str) -> OrgId {
        OrgId(text.to_string())
    }

    /// The stores' key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for OrgId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

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

    /// Whether a call may wait on the network (a Redis server): such a store is called
    /// on a thread of its own, never the runtime's (see `pacing::lane`).
    fn remote(&self) -> bool {
        false
    }

    /// Since when its calls fail, whoever made them (the start of the first that
    /// failed), if the store keeps track.
    fn down_since(&self) -> Option<std::time::Instant> {
        None
    }
}

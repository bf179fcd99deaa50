//! Keeping the state small: pruning what is older than the kept days, and giving the
//! space back.

use std::time::SystemTime;

use crate::error::Result;
use crate::timeutil::{self, Day};

/// What a prune removed, and from when on it kept everything.
#[derive(Debug, Clone, PartialEq)]
pub struct Pruned {
    pub cache: u64,
    pub rotations: u64,
    pub usage: u64,
    /// The first UTC day kept.
    pub kept_from: Day,
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
            "removed {}, {} and {} from before {}",
            crate::ui::count(self.cache, "cache entry"),
            crate::ui::count(self.rotations, "rotation"),
            crate::ui::count(self.usage, "usage row"),
            self.kept_from
        )
    }
}

/// A state file's size before and after `vacuum`, in bytes (main file and WAL).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Compacted {
    pub before: u64,
    pub after: u64,
}

/// Pruning and compacting a store.
pub trait Upkeep {
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

/// Prune's cut: (the first UTC day kept, its start in Unix seconds), `keep_days` days
/// before `now`'s day.
pub(crate) fn prune_cutoff(keep_days: u32, now: SystemTime) -> (Day, i64) {
    let day = 86_400;
    let today = timeutil::unix_secs(now).div_euclid(day) * day;
    let cutoff = today - i64::from(keep_days) * day;
    (Day::of(timeutil::from_unix(cutoff)), cutoff)
}

/// What `prune_if_due` remembers: the day and setting of the last prune.
pub(crate) fn prune_mark(keep_days: u32, now: SystemTime) -> String {
    format!("{} {keep_days}", timeutil::utc_date(now))
}

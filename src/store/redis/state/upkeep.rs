//! Pruning on the Redis server (it compacts by itself).

use std::time::SystemTime;

use super::RedisStore;
use crate::error::Result;
use crate::store::{prune_cutoff, prune_mark, Compacted, Pruned, Upkeep};

impl Upkeep for RedisStore {
    /// Cache entries are not counted: they expire by themselves.
    fn prune(&self, keep_days: u32, now: SystemTime) -> Result<Pruned> {
        let (kept_from, cutoff) = prune_cutoff(keep_days, now);
        if keep_days == 0 {
            return Ok(Pruned {
                cache: 0,
                rotations: 0,
                usage: 0,
                kept_from,
            });
        }
        let usage = self.prune_usage(&kept_from)?;
        let rotations = self.prune_rotations(cutoff)?;
        self.prune_runs(cutoff)?;
        self.prune_events(cutoff)?;
        Ok(Pruned {
            cache: 0,
            rotations,
            usage,
            kept_from,
        })
    }

    fn prune_if_due(&self, keep_days: u32, now: SystemTime) -> Result<Option<Pruned>> {
        if keep_days == 0 {
            return Ok(None);
        }
        let mark = prune_mark(keep_days, now);
        let last: Option<String> =
            self.run(|c| redis::cmd("GET").arg(self.key("pruned")).query(c))?;
        if last.as_deref() == Some(mark.as_str()) {
            return Ok(None);
        }
        let pruned = self.prune(keep_days, now)?;
        self.run(|c| {
            redis::cmd("SET")
                .arg(self.key("pruned"))
                .arg(&mark)
                .query::<()>(c)
        })?;
        Ok(Some(pruned))
    }

    /// Redis gives freed memory back by itself: there is nothing to compact.
    fn vacuum(&self) -> Result<Compacted> {
        Ok(Compacted {
            before: 0,
            after: 0,
        })
    }
}

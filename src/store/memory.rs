//! The quota store of one process only (tests, and runs whose state cannot be shared):
//! the same decision code as the shared stores, on the pacer's clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{Applied, QuotaStore, StoreError};
use crate::pacing::clock::{Clock, SystemClock};
use crate::pacing::quota::{self, Nanos, QuotaOp, QuotaState};

/// One process only (tests, and runs whose state cannot be shared), on the pacer's clock.
pub struct MemoryQuotas {
    /// By the organizations' ids (`OrgId::as_str`).
    orgs: Mutex<HashMap<String, QuotaState>>,
    clock: Arc<dyn Clock>,
}

impl Default for MemoryQuotas {
    fn default() -> MemoryQuotas {
        MemoryQuotas::new(Arc::new(SystemClock))
    }
}

impl MemoryQuotas {
    pub fn new(clock: Arc<dyn Clock>) -> MemoryQuotas {
        MemoryQuotas {
            orgs: Mutex::new(HashMap::new()),
            clock,
        }
    }

    /// `op` at a chosen time (tests compare stores at the same moments).
    pub fn apply_at(&self, org: &str, op: &QuotaOp, now: Nanos) -> Applied {
        let mut orgs = self.orgs.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = !orgs.contains_key(org);
        let decision = orgs
            .entry(org.to_string())
            .or_default()
            .apply(op, now, fresh);
        Applied { decision, now }
    }
}

impl QuotaStore for MemoryQuotas {
    fn apply(&self, org: &str, op: &QuotaOp) -> Result<Applied, StoreError> {
        Ok(self.apply_at(org, op, quota::nanos(self.clock.wall())))
    }
}

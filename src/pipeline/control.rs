//! Whether the run goes on: set by the jobs (a fatal answer, no key left, the state lost)
//! and by the collector (a signal, a bad input row), read by both. The collector owns it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use super::reach::Reach;
use super::spec::Labeler;
use crate::provider::classify::human;
use crate::timeutil;

pub struct RunControl {
    stopping: AtomicBool,
    /// A provider answer that no row can get past (wrong model or URL).
    fatal: Mutex<Option<String>>,
    /// Why the run stopped for an unreachable state (exit 75), once it did.
    state_lost: Mutex<Option<String>>,
    /// Per provider: taken out of the pool after its model answered 404.
    dropped: Vec<AtomicBool>,
    /// Connection failures since the last reply (DNS, refused, TLS): the network's state.
    pub reach: Mutex<Reach>,
}

/// How the run ended, as far as its control knows.
#[derive(Debug, Default, Clone)]
pub struct Verdict {
    pub fatal: Option<String>,
    pub state_lost: Option<String>,
    /// Per provider: taken out of the pool (404).
    pub dropped: Vec<bool>,
}

impl RunControl {
    pub fn new(members: usize) -> RunControl {
        RunControl {
            stopping: AtomicBool::new(false),
            fatal: Mutex::new(None),
            state_lost: Mutex::new(None),
            dropped: (0..members).map(|_| AtomicBool::new(false)).collect(),
            reach: Mutex::default(),
        }
    }

    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Stops the run; whether this call was the first to.
    pub fn stop_first(&self) -> bool {
        !self.stopping.swap(true, Ordering::SeqCst)
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Keeps the first fatal answer (`message` makes it) and stops the run.
    pub fn fail(&self, message: impl FnOnce() -> String) {
        let mut fatal = self.fatal.lock().unwrap();
        if fatal.is_none() {
            *fatal = Some(message());
        }
        self.stop();
    }

    /// Takes provider `m` out of the pool; whether it was still in.
    pub fn drop_member(&self, m: usize) -> bool {
        !self.dropped[m].swap(true, Ordering::SeqCst)
    }

    /// How many providers are still in the pool.
    pub fn members_left(&self) -> usize {
        self.dropped
            .iter()
            .filter(|d| !d.load(Ordering::SeqCst))
            .count()
    }

    /// The state has been unreachable since `since` for the whole store timeout: stop
    /// feeding rows, as `--on-exhausted stop` does (the run exits 75, to be resumed).
    pub fn stop_for_lost_state(&self, run: &Labeler, since: SystemTime, error: &str) {
        let mut lost = self.state_lost.lock().unwrap_or_else(|p| p.into_inner());
        if lost.is_none() {
            let message = format!(
                "state {}: {}, longer than --store-timeout ({}): stopping; what is done is written, run again to continue",
                run.state.location,
                trouble(error, since),
                human(run.spec.policy.store_timeout)
            );
            run.ui.error(&message);
            *lost = Some(message);
        }
        self.stop();
    }

    pub fn state_lost(&self) -> bool {
        self.state_lost
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    pub fn verdict(&self) -> Verdict {
        Verdict {
            fatal: self.fatal.lock().unwrap().clone(),
            state_lost: self
                .state_lost
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            dropped: self
                .dropped
                .iter()
                .map(|d| d.load(Ordering::SeqCst))
                .collect(),
        }
    }
}

/// What went wrong with the state, as a line says it: a full disk is named as such (the
/// store's error already says "disk full: …" with the space left), since "unreachable"
/// would send the user looking at the network or the server instead of the disk.
pub fn trouble(error: &str, since: SystemTime) -> String {
    let since = timeutil::rfc3339(since);
    if error.contains("disk full:") {
        format!("{error}, since {since}")
    } else {
        format!("unreachable since {since} ({error})")
    }
}

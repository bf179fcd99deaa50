//! An organization's way to the quota store. A store in this process (memory, the state
//! file) is called in place. One across the network (Redis) is called on a thread of
//! the organization's own, in order: a server that hangs holds up that thread, never the
//! runtime's, so replies are still collected and written, signals heard and the store
//! timeout kept while it does. An ask for a grant then becomes a [`Ticket`] the
//! organization polls, and the dispatcher's [`nap`] ends when its answer comes.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::quota::QuotaOp;
use crate::store::{Applied, QuotaStore, StoreError};

type Answer = Result<Applied, StoreError>;

/// Where the answer to one ask will be.
#[derive(Clone)]
pub struct Ticket(Arc<Mutex<Option<Answer>>>);

impl Ticket {
    /// The answer, once it has come (taken: asked again, `None`).
    pub fn take(&self) -> Option<Answer> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// What an ask gets at once: the answer, or a ticket for it.
pub enum Asked {
    Now(Answer),
    Later(Ticket),
}

struct Job {
    org: String,
    op: QuotaOp,
    reply: Option<Ticket>,
}

/// Rung when an ask's answer comes (a run has one dispatcher, the one that waits).
static ANSWERED: Notify = Notify::const_new();

/// Sleeps for `wait`, or less if the answer to an ask comes meanwhile.
pub async fn nap(wait: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(wait) => {}
        _ = ANSWERED.notified() => {}
    }
}

/// What the store's thread and the organization both see.
struct Shared {
    /// When the first call that failed since the store last answered was made.
    failing_since: Mutex<Option<Instant>>,
}

/// The store's own thread, fed in order.
struct Worker {
    tx: Option<mpsc::Sender<Job>>,
    handle: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

pub struct Lane {
    store: Arc<dyn QuotaStore>,
    worker: Option<Worker>,
}

impl Lane {
    /// A lane to `store`: a thread of its own when its calls may wait on the network.
    pub fn new(store: Arc<dyn QuotaStore>) -> Lane {
        // A thread that cannot be started leaves the store called in place.
        let worker = store
            .remote()
            .then(|| Worker::start(store.clone()))
            .flatten();
        Lane { store, worker }
    }

    /// Applies `op`, which nothing waits for: in place (its answer returned), or queued
    /// behind what was asked before it (`None`).
    pub fn tell(&self, org: &str, op: QuotaOp) -> Option<Answer> {
        match &self.worker {
            None => Some(self.store.apply(org, &op)),
            Some(w) => {
                w.send(org, op, None);
                None
            }
        }
    }

    /// Applies `op`, whose answer is waited for.
    pub fn ask(&self, org: &str, op: QuotaOp) -> Asked {
        match &self.worker {
            None => Asked::Now(self.store.apply(org, &op)),
            Some(w) => {
                let ticket = Ticket(Arc::new(Mutex::new(None)));
                w.send(org, op, Some(ticket.clone()));
                Asked::Later(ticket)
            }
        }
    }

    /// When the first of the calls failing since the store last answered was made
    /// (a store called in place: not kept, its caller knows).
    pub fn failing_since(&self) -> Option<Instant> {
        let w = self.worker.as_ref()?;
        let own = *w
            .shared
            .failing_since
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // The store may know of an earlier failure, of another caller's.
        match (own, self.store.down_since()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl Worker {
    fn start(store: Arc<dyn QuotaStore>) -> Option<Worker> {
        let shared = Arc::new(Shared {
            failing_since: Mutex::new(None),
        });
        let (tx, rx) = mpsc::channel::<Job>();
        let seen = shared.clone();
        let handle = std::thread::Builder::new()
            .name("quota-store".into())
            .spawn(move || {
                for job in rx {
                    let started = Instant::now();
                    let answer = store.apply(&job.org, &job.op);
                    {
                        let mut since =
                            seen.failing_since.lock().unwrap_or_else(|p| p.into_inner());
                        match &answer {
                            Ok(_) => *since = None,
                            Err(_) => {
                                since.get_or_insert(started);
                            }
                        }
                    }
                    if let Some(Ticket(slot)) = job.reply {
                        *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(answer);
                        ANSWERED.notify_one();
                    }
                }
            })
            .ok()?;
        Some(Worker {
            tx: Some(tx),
            handle: Some(handle),
            shared,
        })
    }

    fn send(&self, org: &str, op: QuotaOp, reply: Option<Ticket>) {
        let job = Job {
            org: org.to_string(),
            op,
            reply,
        };
        if let Err(mpsc::SendError(job)) = self.tx.as_ref().expect("until dropped").send(job) {
            // The thread is gone (it panicked): an ask is answered with that.
            if let Some(Ticket(slot)) = job.reply {
                let gone = StoreError("the quota store's thread stopped".into());
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(Err(gone));
            }
        }
    }
}

impl Drop for Worker {
    /// What was told before the end (leases given back) still reaches the store: the
    /// thread finishes its queue. A store that is down fails each at once (see
    /// `store::redis::link`), so this never waits long.
    fn drop(&mut self) {
        self.tx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

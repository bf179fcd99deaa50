//! The thread that looks at the state every second and raises alerts: its own thread, so
//! a slow or hung state never stalls labeling or the dashboard's answers.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::check::{self, Snapshot, Window};
use super::webhook::Webhook;
use super::{Alert, Thresholds, Tracker};

/// How often the dashboard looks at the state (a banner within a second)...
pub const EVERY_SERVED: Duration = Duration::from_secs(1);
/// ...and a labeling run: rarely enough to cost its requests nothing measurable (its
/// end still gets a last look).
pub const EVERY_RUN: Duration = Duration::from_secs(5);

/// How long the start waits for the first look, at most.
const FIRST_LOOK: Duration = Duration::from_secs(2);

/// How long the end of a run waits for the last look and the webhook's queue, at most.
const LAST_LOOK: Duration = Duration::from_secs(3);
const DRAIN: Duration = Duration::from_secs(2);

/// A running monitor.
pub struct Monitor {
    stop: mpsc::Sender<()>,
    done: mpsc::Receiver<()>,
    /// The alerts in force, for the dashboard's banners.
    pub active: Arc<Mutex<Vec<Alert>>>,
    webhook: Option<Webhook>,
}

impl Monitor {
    /// Starts looking with `read`; a new alert goes to `log` and to the webhook, if any
    /// (its task is started on the current runtime).
    pub fn start<R, L>(
        mut read: R,
        (t, every): (Thresholds, Duration),
        log: L,
        webhook: Option<Webhook>,
    ) -> Monitor
    where
        R: FnMut() -> Snapshot + Send + 'static,
        L: Fn(&str) + Send + 'static,
    {
        let (stop, stop_rx) = mpsc::channel::<()>();
        let (done_tx, done) = mpsc::channel::<()>();
        let (ready_tx, ready) = mpsc::channel::<()>();
        let active = Arc::new(Mutex::new(Vec::new()));
        let shown = active.clone();
        let queue = webhook.as_ref().map(Webhook::sender);
        std::thread::spawn(move || {
            let mut window = Window::default();
            let mut tracker = Tracker::default();
            let mut look = || {
                let snap = read();
                if let Some(totals) = snap.totals {
                    window.push(totals, t.window);
                }
                for a in tracker.update(check::conditions(&snap, &window, &t)) {
                    log(&format!("alert: {}", a.text));
                    if let Some(q) = &queue {
                        q.send(&a.text);
                    }
                }
                if let Ok(mut s) = shown.lock() {
                    *s = tracker.active().to_vec();
                }
            };
            // The first look is the baseline the success rate counts from: taken before
            // the caller goes on, so none of its requests are missed.
            look();
            let _ = ready_tx.send(());
            loop {
                match stop_rx.recv_timeout(every) {
                    Err(RecvTimeoutError::Timeout) => look(),
                    // A stop still gets a last look: the end of a run may raise one.
                    Ok(()) => {
                        look();
                        break;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            let _ = done_tx.send(());
        });
        let _ = ready.recv_timeout(FIRST_LOOK);
        Monitor {
            stop,
            done,
            active,
            webhook,
        }
    }

    /// Takes a last look (so an alert raised by the run's end is not missed), then lets
    /// the webhook's queue drain: a few seconds at most, whatever the state or the
    /// receiver do.
    pub async fn finish(self) {
        let Monitor {
            stop,
            done,
            webhook,
            ..
        } = self;
        let _ = stop.send(());
        let _ = tokio::task::spawn_blocking(move || done.recv_timeout(LAST_LOOK)).await;
        if let Some(w) = webhook {
            w.close(DRAIN).await;
        }
    }
}

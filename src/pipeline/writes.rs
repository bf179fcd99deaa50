//! The state's reads and writes of a running labeler, made on a thread of their own: a
//! Redis server that goes silent makes a call wait out its response timeout (a slow
//! SQLite its busy timeout), and the runtime thread, which the whole pipeline shares
//! (signals, replies, the output), must never wait with it. One thread, fed in order,
//! so the writes reach the state in the order they were made (a key's newest health
//! last) and a read sees every write sent before it.

use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::Notify;

use crate::store::State;
use crate::ui::Ui;

/// One call (or several) to make on the state.
type Call = Box<dyn FnOnce(&State, &Ui) + Send>;

pub struct StateWriter {
    tx: Option<Sender<Call>>,
    thread: Option<JoinHandle<()>>,
    /// For the calls made in place when no thread could be started.
    state: Arc<State>,
    ui: Arc<Ui>,
}

impl StateWriter {
    pub fn start(state: Arc<State>, ui: Arc<Ui>) -> StateWriter {
        let (tx, rx) = mpsc::channel::<Call>();
        let (s, u) = (state.clone(), ui.clone());
        let thread = std::thread::Builder::new()
            .name("state-writer".into())
            .spawn(move || {
                for call in rx {
                    call(&s, &u);
                }
            })
            .ok();
        StateWriter {
            tx: thread.is_some().then_some(tx),
            thread,
            state,
            ui,
        }
    }

    /// Makes `call` after every call sent before it (in place, without a thread).
    pub fn send(&self, call: impl FnOnce(&State, &Ui) + Send + 'static) {
        let call: Call = Box::new(call);
        match &self.tx {
            Some(tx) => {
                if let Err(mpsc::SendError(call)) = tx.send(call) {
                    call(&self.state, &self.ui);
                }
            }
            None => call(&self.state, &self.ui),
        }
    }

    /// Reads with `read` after every write sent so far; the answer is taken later with
    /// [`Asked::take`].
    pub fn ask<T: Send + 'static>(
        &self,
        asked: &mut Asked<T>,
        read: impl FnOnce(&State) -> T + Send + 'static,
    ) {
        self.ask_and_wake(asked, None, read);
    }

    /// As [`ask`](Self::ask), and wakes `wake` once the answer is there.
    pub fn ask_and_wake<T: Send + 'static>(
        &self,
        asked: &mut Asked<T>,
        wake: Option<Arc<Notify>>,
        call: impl FnOnce(&State) -> T + Send + 'static,
    ) {
        asked.waiting = true;
        let slot = asked.slot.clone();
        self.send(move |state, _| {
            let answer = call(state);
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(answer);
            if let Some(wake) = wake {
                wake.notify_one();
            }
        });
    }

    /// Waits until every call sent so far is made.
    pub fn wait(&self) {
        let (done, made) = mpsc::channel();
        self.send(move |_, _| {
            let _ = done.send(());
        });
        let _ = made.recv();
    }

    /// Makes every call sent so far, then ends the thread.
    pub fn finish(mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for StateWriter {
    /// A run that ends early (an error) still makes what it sent.
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A read sent to the writer, and its answer once it is made.
pub struct Asked<T> {
    slot: Arc<Mutex<Option<T>>>,
    waiting: bool,
}

impl<T> Default for Asked<T> {
    fn default() -> Asked<T> {
        Asked {
            slot: Arc::new(Mutex::new(None)),
            waiting: false,
        }
    }
}

impl<T> Asked<T> {
    /// Whether a read was sent and its answer not yet taken.
    pub fn waiting(&self) -> bool {
        self.waiting
    }

    /// The answer, once the read is made.
    pub fn take(&mut self) -> Option<T> {
        let answer = self.slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        if answer.is_some() {
            self.waiting = false;
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn calls_are_made_in_order_and_reads_see_the_writes_before_them() {
        let writer = StateWriter::start(
            Arc::new(State::in_memory()),
            Arc::new(Ui::new(true, 0, Duration::from_secs(60))),
        );
        let made = Arc::new(Mutex::new(Vec::new()));
        for i in 0..100 {
            let made = made.clone();
            writer.send(move |_, _| made.lock().unwrap().push(i));
        }
        writer.send(|state, _| state.add_fallback_rows("out", &[3, 5]).unwrap());
        let mut asked = Asked::default();
        writer.ask(&mut asked, |state| state.fallback_rows("out").unwrap());
        assert!(asked.waiting());
        writer.wait();
        assert_eq!(*made.lock().unwrap(), (0..100).collect::<Vec<_>>());
        let rows = asked.take().expect("answered");
        assert_eq!(rows.into_iter().collect::<Vec<_>>(), vec![3, 5]);
        assert!(!asked.waiting());
        assert!(asked.take().is_none());
        writer.finish();
    }
}

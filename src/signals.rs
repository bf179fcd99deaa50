//! The signals that end a run early but cleanly: Ctrl-C (SIGINT), SIGTERM (`kill`,
//! systemd, container stops) and SIGHUP (the terminal went away). Each stops new
//! requests, writes every finished row and exits with 128 + the signal number.
//!
//! A signal the parent set to be ignored stays ignored: `nohup` (SIGHUP) and shells that
//! start background jobs with SIGINT ignored rely on that.

/// Which signal asked the run to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    Interrupt,
    Terminate,
    HangUp,
}

impl StopSignal {
    pub fn name(self) -> &'static str {
        match self {
            StopSignal::Interrupt => "SIGINT (Ctrl-C)",
            StopSignal::Terminate => "SIGTERM",
            StopSignal::HangUp => "SIGHUP",
        }
    }
}

#[cfg(unix)]
mod imp {
    use tokio::signal::unix::{signal, Signal, SignalKind};

    use super::StopSignal;

    /// Listeners for the stop signals; installing them replaces the default action
    /// (dying at once) for the rest of the process.
    pub struct Signals {
        int: Option<Signal>,
        term: Option<Signal>,
        hup: Option<Signal>,
    }

    /// Whether the process inherited "ignore" for `signo`.
    fn ignored(signo: libc::c_int) -> bool {
        // SAFETY: a query only (null new action), into a zeroed struct we own.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(signo, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction == libc::SIG_IGN
        }
    }

    fn listen(kind: SignalKind, signo: libc::c_int) -> Option<Signal> {
        if ignored(signo) {
            return None;
        }
        // Failing to listen leaves the default action: the signal still ends the run,
        // only without the final flush, which the output format survives.
        signal(kind).ok()
    }

    async fn next(s: &mut Option<Signal>) {
        match s {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }

    impl Signals {
        pub fn install() -> Signals {
            Signals {
                int: listen(SignalKind::interrupt(), libc::SIGINT),
                term: listen(SignalKind::terminate(), libc::SIGTERM),
                hup: listen(SignalKind::hangup(), libc::SIGHUP),
            }
        }

        /// Waits for the next stop signal.
        pub async fn recv(&mut self) -> StopSignal {
            tokio::select! {
                _ = next(&mut self.int) => StopSignal::Interrupt,
                _ = next(&mut self.term) => StopSignal::Terminate,
                _ = next(&mut self.hup) => StopSignal::HangUp,
            }
        }
    }
}

#[cfg(not(unix))]
mod imp {
    use super::StopSignal;

    /// Elsewhere only Ctrl-C exists.
    pub struct Signals;

    impl Signals {
        pub fn install() -> Signals {
            Signals
        }

        pub async fn recv(&mut self) -> StopSignal {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
            StopSignal::Interrupt
        }
    }
}

pub use imp::Signals;

//! Errors that end a run, and how each run outcome maps to an exit code (the table in
//! the README's "Exit codes").
//!
//! Row-level failures never travel through this type: they are data (`CallError`)
//! that the pipeline counts and turns into fallback labels.

/// A failure that stops the whole command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad flags or flag combinations.
    #[error("{0}")]
    Usage(String),
    /// Missing keys, unreadable env file, bad limits.
    #[error("{0}")]
    Config(String),
    /// The input (or an existing output) is not what we can work with.
    #[error("{0}")]
    Input(String),
    /// The state store could not be opened or written. `place` is the file's path or the
    /// Redis URL with any password masked.
    #[error("state {place}: {message}")]
    State { place: String, message: String },
    /// Anything else at run time (I/O on the output, provider refusing every call...).
    #[error("{0}")]
    Runtime(String),
    /// One of the failures above, with the library or system error that caused it kept
    /// as its source. The message (which already names the cause, as users read it) and
    /// the exit code are those of `error`.
    #[error("{error}")]
    Caused {
        error: Box<Error>,
        #[source]
        source: Cause,
    },
}

/// The errors of the libraries under us that end a command.
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Csv(#[from] csv::Error),
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
}

impl Error {
    /// A run-time I/O failure: `what` (the file and the step), then the cause's text.
    pub fn io(what: impl std::fmt::Display, err: std::io::Error) -> Error {
        Error::Runtime(format!("{what}: {err}")).caused_by(err)
    }

    /// This failure, keeping `source` as what caused it.
    pub fn caused_by(self, source: impl Into<Cause>) -> Error {
        Error::Caused {
            error: Box::new(self),
            source: source.into(),
        }
    }

    /// The failure itself, whether or not its cause was kept.
    pub fn failure(&self) -> &Error {
        match self {
            Error::Caused { error, .. } => error.failure(),
            e => e,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How a command that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every row was labeled by the model (or the cache).
    Complete,
    /// Finished, but some rows got the fallback label.
    WithFallbacks,
    /// `--on-exhausted stop` ended the run with work left.
    Stopped,
    /// The state stayed unreachable for `--store-timeout`: stopped with work left, like
    /// `Stopped`.
    StateLost,
    /// Ctrl-C (SIGINT): everything written so far is kept.
    Interrupted,
    /// SIGTERM: the same as Ctrl-C.
    Terminated,
    /// SIGHUP (the terminal closed): the same as Ctrl-C.
    HungUp,
    /// A check command (test-keys) found problems.
    CheckFailed,
}

/// The one place that knows the exit codes.
pub fn exit_code(result: &Result<Outcome>) -> u8 {
    match result {
        Ok(Outcome::Complete) => 0,
        Ok(Outcome::WithFallbacks) => 3,
        Ok(Outcome::Stopped | Outcome::StateLost) => 75,
        // 128 + the signal number, as a shell reports a process the signal killed.
        Ok(Outcome::HungUp) => 129,
        Ok(Outcome::Interrupted) => 130,
        Ok(Outcome::Terminated) => 143,
        Ok(Outcome::CheckFailed) => 1,
        Err(e) => failure_code(e),
    }
}

fn failure_code(e: &Error) -> u8 {
    match e {
        Error::Usage(_) | Error::Config(_) | Error::Input(_) => 2,
        Error::State { .. } => 2,
        Error::Runtime(_) => 1,
        Error::Caused { error, .. } => failure_code(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn a_kept_cause_changes_neither_the_message_nor_the_exit_code() {
        let io = || std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let e = Error::io("out.csv: cannot write", io());
        assert_eq!(e.to_string(), "out.csv: cannot write: denied");
        assert_eq!(e.source().map(|s| s.to_string()).as_deref(), Some("denied"));
        assert!(matches!(e.failure(), Error::Runtime(_)));
        assert_eq!(exit_code(&Err(e)), 1);

        let e = Error::Input("in.csv: cannot read: denied".into()).caused_by(io());
        assert_eq!(e.to_string(), "in.csv: cannot read: denied");
        assert!(e.source().is_some());
        assert_eq!(exit_code(&Err(e)), 2);
    }
}

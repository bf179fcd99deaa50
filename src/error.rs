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
}

impl Error {
    pub fn io(what: impl std::fmt::Display, err: std::io::Error) -> Error {
        Error::Runtime(format!("{what}: {err}"))
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
        Err(Error::Usage(_) | Error::Config(_) | Error::Input(_)) => 2,
        Err(Error::State { .. }) => 2,
        Err(Error::Runtime(_)) => 1,
    }
}

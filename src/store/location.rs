//! Where the state lives: a SQLite file (every run on one machine) or a Redis server
//! (runs on several machines), from `--state` / `AUTOLABEL_STATE`.

use std::fmt;
use std::path::PathBuf;

use crate::error::{Error, Result};

/// Prefix of every Redis key autolabel writes, unless `--redis-prefix` says otherwise.
pub const DEFAULT_REDIS_PREFIX: &str = "autolabel:";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateLocation {
    File(PathBuf),
    Redis(RedisTarget),
}

/// A Redis server and the prefix of autolabel's keys on it.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisTarget {
    /// `redis://[[user]:password@]host[:port][/db]` or `rediss://…` (TLS). Holds the
    /// password: never print it, print `self` (masked) instead.
    pub url: String,
    pub prefix: String,
}

impl fmt::Debug for RedisTarget {
    /// Masked, so that a debug print cannot leak the password either.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisTarget({self})")
    }
}

impl fmt::Display for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.url))
    }
}

impl fmt::Display for StateLocation {
    /// The file's path, or the Redis URL with any password masked: safe for messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateLocation::File(p) => write!(f, "{}", p.display()),
            StateLocation::Redis(r) => write!(f, "{r}"),
        }
    }
}

impl StateLocation {
    /// `--state` as given (a path or a Redis URL), or the default file in the user's
    /// data directory.
    pub fn resolve(flag: Option<&str>, redis_prefix: &str) -> Result<StateLocation> {
        match flag {
            Some(s) if s.starts_with("redis://") || s.starts_with("rediss://") => {
                if redis_prefix.is_empty() {
                    return Err(Error::Usage(
                        "--redis-prefix must not be empty: autolabel's keys need a prefix of their own".into(),
                    ));
                }
                Ok(StateLocation::Redis(RedisTarget {
                    url: s.to_string(),
                    prefix: redis_prefix.to_string(),
                }))
            }
            Some("") => Err(Error::Usage(
                "--state is empty: give a file path or a redis:// URL".into(),
            )),
            Some(s) => Ok(StateLocation::File(PathBuf::from(s))),
            None => {
                let base = dirs::data_dir().ok_or_else(|| {
                    Error::Config(
                        "no data directory for this user (HOME unset?); pass --state PATH".into(),
                    )
                })?;
                Ok(StateLocation::File(
                    base.join("autolabel").join("state.sqlite3"),
                ))
            }
        }
    }

    /// An error of this state, for messages (never holding a password).
    pub fn error(&self, message: impl Into<String>) -> Error {
        Error::State {
            place: self.to_string(),
            message: message.into(),
        }
    }
}

/// A URL with any password (everything between `://` and the last `@`) masked.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls_are_masked_everywhere() {
        let loc = StateLocation::resolve(Some("redis://:s3cret@host:6379/2"), "x:").unwrap();
        assert_eq!(loc.to_string(), "redis://…@host:6379/2");
        assert!(!format!("{loc:?}").contains("s3cret"));
        assert!(!loc.error("boom").to_string().contains("s3cret"));
        let tls = StateLocation::resolve(Some("rediss://u:pw@h/0"), "x:").unwrap();
        assert_eq!(tls.to_string(), "rediss://…@h/0");
        assert!(StateLocation::resolve(Some("redis://h"), "").is_err());
        assert_eq!(
            StateLocation::resolve(Some("a/b.sqlite3"), "x:").unwrap(),
            StateLocation::File(PathBuf::from("a/b.sqlite3"))
        );
    }
}

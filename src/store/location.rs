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
        match flag.map(|s| (s, url_scheme(s))) {
            Some((s, Some(scheme)))
                if (scheme == "redis" || scheme == "rediss")
                    && s[scheme.len()..].starts_with("://") =>
            {
                // The scheme in any case (`REDIS://`), handed on in the one the client reads.
                let url = format!("{scheme}{}", &s[scheme.len()..]);
                if redis_prefix.is_empty() {
                    return Err(Error::Usage(
                        "--redis-prefix must not be empty: autolabel's keys need a prefix of their own".into(),
                    ));
                }
                Ok(StateLocation::Redis(RedisTarget {
                    url,
                    prefix: redis_prefix.to_string(),
                }))
            }
            // Taken as a path, `http://host/x` would quietly become a local file
            // `./http:/host/x`, and the state the user meant to share would not be shared.
            Some((s, Some(_))) => Err(Error::Usage(format!(
                "--state {}: not a state location autolabel can use; a shared state is a \
                 redis:// or rediss:// URL, and a state file is a path that does not look \
                 like a URL",
                redact_url(s)
            ))),
            Some(("", None)) => Err(Error::Usage(
                "--state is empty: give a file path or a redis:// URL".into(),
            )),
            Some((s, None)) => Ok(StateLocation::File(PathBuf::from(s))),
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

/// The scheme of anything that looks like a URL (`name:/…`, `name://…`), lowercased;
/// `None` for a path. A one-letter "scheme" is a drive letter, not a URL.
fn url_scheme(s: &str) -> Option<String> {
    let (scheme, rest) = s.split_once(':')?;
    let is_scheme = scheme.len() > 1
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    (is_scheme && rest.starts_with('/')).then(|| scheme.to_ascii_lowercase())
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

    #[test]
    fn only_redis_urls_are_urls_and_a_path_never_looks_like_one() {
        let upper = StateLocation::resolve(Some("REDIS://:pw@h:6379/1"), "x:").unwrap();
        let StateLocation::Redis(target) = upper else {
            panic!("REDIS:// is Redis")
        };
        assert_eq!(target.url, "redis://:pw@h:6379/1");
        for bad in [
            "http://u:s3cret@host/x",
            "redis:/host",
            "unix:///tmp/redis.sock",
            "Rediss:/h",
            "file:/tmp/x",
        ] {
            let err = StateLocation::resolve(Some(bad), "x:").unwrap_err();
            assert!(matches!(err, Error::Usage(_)), "{bad}: exit 2");
            assert!(err.to_string().contains("redis://"), "{bad}: {err}");
            assert!(!err.to_string().contains("s3cret"), "{err}");
        }
        for path in [
            "state.sqlite3",
            "./a:b/state",
            "C:/state",
            "dir/x:y.sqlite3",
        ] {
            assert!(
                matches!(
                    StateLocation::resolve(Some(path), "x:"),
                    Ok(StateLocation::File(_))
                ),
                "{path}"
            );
        }
    }
}

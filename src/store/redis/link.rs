//! One connection to the Redis server that holds a shared state, kept alive across
//! outages: a command that finds the server gone or silent fails (the caller decides
//! whether to wait or give up), every later one fails at once, and the link reconnects
//! with back-off on a thread of its own, never holding up a caller.
//!
//! The state on the server is marked as autolabel's (`<prefix>schema`), so that a wrong
//! database or prefix is refused at start instead of being written into. At start an
//! empty prefix is marked and one holding keys without the mark is refused (someone
//! else's); once a run has taken the prefix, a mark that goes missing under it (FLUSHALL,
//! an evicted key) is set again within [`MARK_EVERY`], so that the keys the run goes on
//! writing never sit unmarked and refuse every later run.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::{Connection, ErrorKind, RedisError, RedisResult};

use crate::store::RedisTarget;

/// What `<prefix>schema` holds in a database autolabel set up.
pub const SCHEMA_MARK: &str = "autolabel-state 1";
/// Checks and sets the schema mark in one step (KEYS[1]: the mark's key; ARGV[1]: the
/// mark; ARGV[2]: a MATCH pattern for the prefix). Replies (what, detail): ("mark", its
/// value), ("type", the key's type) or ("foreign", a key under the prefix).
const OWNERSHIP_SCRIPT: &str = r"
local t = redis.call('TYPE', KEYS[1])['ok']
if t == 'string' then return {'mark', redis.call('GET', KEYS[1])} end
if t ~= 'none' then return {'type', t} end
local found = redis.call('SCAN', '0', 'MATCH', ARGV[2], 'COUNT', '10000')[2]
if #found > 0 then return {'foreign', found[1]} end
redis.call('SET', KEYS[1], ARGV[1])
return {'mark', ARGV[1]}
";
/// A connection attempt or a command waits at most this long for the server.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Reconnection attempts start this far apart and double up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// A running link checks at most this often that the schema mark is still there.
pub const MARK_EVERY: Duration = Duration::from_secs(1);

/// Why a command did not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkError {
    /// The server is unreachable or dropped the connection: try again later.
    Down(String),
    /// The server answered, and the answer is a refusal that waiting won't fix (wrong
    /// password, not autolabel's database, a script error).
    Refused(String),
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkError::Down(m) => write!(f, "Redis unreachable: {m}"),
            LinkError::Refused(m) => f.write_str(m),
        }
    }
}

impl From<LinkError> for String {
    fn from(e: LinkError) -> String {
        e.to_string()
    }
}

struct Live {
    conn: Option<Connection>,
    /// A thread is reconnecting (see [`RedisLink::reconnect`]).
    reconnecting: bool,
    /// Why the server cannot be used, told to every call until it can again.
    failure: Option<LinkError>,
    /// When the schema mark was last seen or set.
    marked: Instant,
}

/// What the link and its reconnecting thread share.
struct Shared {
    target: RedisTarget,
    client: redis::Client,
    live: Mutex<Live>,
    /// The server's outage, shared by every link of this process to it.
    server: Arc<Server>,
}

/// One server as every link of the process to it sees it (the state's and the quota
/// store's): once a call of one finds it gone or silent, the others fail at once too,
/// instead of each waiting out its own timeout, and the outage dates from that call.
#[derive(Default)]
struct Server {
    /// When the first call that failed since the server last answered was made, and
    /// why it failed.
    down: Mutex<Option<(Instant, LinkError)>>,
}

impl Server {
    /// The record of the server at `url`.
    fn of(url: &str) -> Arc<Server> {
        static SERVERS: Mutex<Vec<(String, Arc<Server>)>> = Mutex::new(Vec::new());
        let mut all = SERVERS.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, s)) = all.iter().find(|(u, _)| u == url) {
            return s.clone();
        }
        let s = Arc::new(Server::default());
        all.push((url.to_string(), s.clone()));
        s
    }

    fn down(&self) -> std::sync::MutexGuard<'_, Option<(Instant, LinkError)>> {
        self.down.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn failed(&self, call_started: Instant, why: &LinkError) {
        self.down()
            .get_or_insert_with(|| (call_started, why.clone()));
    }

    fn answered(&self) {
        *self.down() = None;
    }
}

pub struct RedisLink {
    shared: Arc<Shared>,
}

fn describe(e: &RedisError) -> String {
    // The client's messages name host and port, never the password.
    e.to_string()
}

fn classify(e: RedisError) -> LinkError {
    if e.kind() == ErrorKind::AuthenticationFailed
        || e.code()
            .is_some_and(|c| matches!(c, "NOAUTH" | "WRONGPASS" | "NOPERM"))
    {
        return LinkError::Refused(format!(
            "Redis refused the credentials in the URL: {}",
            describe(&e)
        ));
    }
    if e.is_timeout() {
        return LinkError::Down(format!("no answer within {}s", IO_TIMEOUT.as_secs()));
    }
    if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
        return LinkError::Down(describe(&e));
    }
    match e.code() {
        // A server still loading its data, or a replica: it will answer soon.
        Some("LOADING" | "BUSY" | "TRYAGAIN" | "MASTERDOWN" | "READONLY") => {
            LinkError::Down(describe(&e))
        }
        _ => LinkError::Refused(format!("Redis: {}", describe(&e))),
    }
}

impl Shared {
    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.target.prefix)
    }

    /// A new connection, each step bounded by [`IO_TIMEOUT`]; `mark`: set the schema
    /// mark if it is missing (a server restarted empty is marked again before anything
    /// is written).
    fn connect(&self, mark: bool) -> Result<Connection, LinkError> {
        let mut conn = self
            .client
            .get_connection_with_timeout(IO_TIMEOUT)
            .map_err(classify)?;
        conn.set_read_timeout(Some(IO_TIMEOUT))
            .and_then(|_| conn.set_write_timeout(Some(IO_TIMEOUT)))
            .map_err(classify)?;
        // Ping before use: a server that wants a password only says so on a command.
        redis::cmd("PING")
            .query::<String>(&mut conn)
            .map_err(classify)?;
        if mark {
            set_mark(&self.key("schema"), &mut conn).map_err(classify)?;
        }
        Ok(conn)
    }
}

impl RedisLink {
    /// Connects now, checks the credentials and that the keys under the prefix are
    /// autolabel's (marking an unused prefix as autolabel's). Any failure here is final:
    /// a run must not start on a state it cannot reach.
    pub fn open(target: &RedisTarget) -> Result<RedisLink, LinkError> {
        let client = redis::Client::open(target.url.as_str())
            .map_err(|e| LinkError::Refused(format!("not a usable Redis URL: {}", describe(&e))))?;
        let link = RedisLink {
            shared: Arc::new(Shared {
                target: target.clone(),
                client,
                live: Mutex::new(Live {
                    conn: None,
                    reconnecting: false,
                    failure: None,
                    marked: Instant::now(),
                }),
                server: Server::of(&target.url),
            }),
        };
        let conn = link.shared.connect(false)?;
        link.check_ownership(conn)?;
        Ok(link)
    }

    /// `<prefix><suffix>`: every key autolabel writes.
    pub fn key(&self, suffix: &str) -> String {
        self.shared.key(suffix)
    }

    /// Since when calls to the server fail (the start of the first that failed), if they
    /// do.
    pub fn down_since(&self) -> Option<Instant> {
        self.shared.server.down().as_ref().map(|(at, _)| *at)
    }

    /// Refuses a database where the prefix holds something else than autolabel's state;
    /// marks an unused prefix as autolabel's. One script, so that runs starting together
    /// on an empty database cannot see each other's fresh mark as a foreign key.
    fn check_ownership(&self, mut conn: Connection) -> Result<(), LinkError> {
        let pattern = format!("{}*", redis_glob_escape(&self.shared.target.prefix));
        let (what, detail): (String, String) = redis::Script::new(OWNERSHIP_SCRIPT)
            .key(self.key("schema"))
            .arg(SCHEMA_MARK)
            .arg(&pattern)
            .invoke(&mut conn)
            .map_err(classify)?;
        match (what.as_str(), detail) {
            ("mark", m) if m == SCHEMA_MARK => {
                self.shared.live().conn = Some(conn);
                Ok(())
            }
            ("foreign", other) => Err(LinkError::Refused(format!(
                "the database holds keys under the prefix {:?} (such as {other:?}) that autolabel did not write: use another database or --redis-prefix",
                self.shared.target.prefix
            ))),
            (_, m) => Err(LinkError::Refused(format!(
                "the key {} holds {m:?}, not autolabel's state: use another database or --redis-prefix",
                self.key("schema")
            ))),
        }
    }

    /// Runs `f` on the connection. Each command waits at most [`IO_TIMEOUT`] for its
    /// answer, and the first that finds the server gone or silent fails the call. From
    /// then on every call fails at once, without touching the network, while a thread
    /// of the link's own reconnects: a server that hangs costs the caller one timeout,
    /// not one per call.
    pub fn run<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, LinkError> {
        let mut live = self.shared.live();
        let live = &mut *live;
        if let (Some(_), Some((_, why))) = (&live.conn, &*self.shared.server.down()) {
            // Another link found the server gone: this connection would wait it out too.
            live.conn = None;
            live.failure = Some(why.clone());
        }
        let Some(conn) = live.conn.as_mut() else {
            let failure = live
                .failure
                .clone()
                .unwrap_or_else(|| LinkError::Down("reconnecting".into()));
            if !live.reconnecting {
                live.reconnecting = true;
                self.reconnect();
            }
            return Err(failure);
        };
        // The prefix is this run's (checked at open): a mark gone since is set again
        // before more is written under it.
        let remark = live.marked.elapsed() >= MARK_EVERY;
        let started = Instant::now();
        let result = if remark {
            set_mark(&self.key("schema"), conn).and_then(|()| f(conn))
        } else {
            f(conn)
        };
        if remark && result.is_ok() {
            live.marked = Instant::now();
        }
        result.map_err(|e| {
            let e = classify(e);
            if matches!(e, LinkError::Down(_)) {
                live.conn = None;
                live.failure = Some(e.clone());
                self.shared.server.failed(started, &e);
            }
            e
        })
    }

    /// Reconnects on a thread of its own, with back-off, until the server answers or the
    /// link is dropped.
    fn reconnect(&self) {
        let weak = Arc::downgrade(&self.shared);
        let spawned = std::thread::Builder::new()
            .name("redis-reconnect".into())
            .spawn(move || {
                let mut backoff = FIRST_BACKOFF;
                loop {
                    std::thread::sleep(backoff);
                    let Some(shared) = weak.upgrade() else { return };
                    let attempt = shared.connect(true);
                    let mut live = shared.live();
                    match attempt {
                        Ok(conn) => {
                            shared.server.answered();
                            live.conn = Some(conn);
                            live.failure = None;
                            live.reconnecting = false;
                            live.marked = Instant::now();
                            return;
                        }
                        Err(e) => live.failure = Some(e),
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            });
        if spawned.is_err() {
            // No thread: the next call tries again.
            self.shared.live().reconnecting = false;
        }
    }
}

impl Drop for RedisLink {
    /// Checks the mark a last time: a flush within [`MARK_EVERY`] of the link's last
    /// writes would otherwise leave them unmarked.
    fn drop(&mut self) {
        let key = self.key("schema");
        if let Some(conn) = self.shared.live().conn.as_mut() {
            let _ = set_mark(&key, conn);
        }
    }
}

/// Sets the schema mark at `key` unless it is there.
fn set_mark(key: &str, conn: &mut Connection) -> RedisResult<()> {
    redis::cmd("SET")
        .arg(key)
        .arg(SCHEMA_MARK)
        .arg("NX")
        .query::<Option<String>>(conn)
        .map(|_| ())
}

/// `s` with the glob characters of Redis's MATCH escaped.
fn redis_glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::redis::test_server::RedisServer;

    fn target(url: String) -> RedisTarget {
        RedisTarget {
            url,
            prefix: "autolabel:".into(),
        }
    }

    fn ping(link: &RedisLink) -> Result<String, LinkError> {
        link.run(|c| redis::cmd("PING").query(c))
    }

    #[test]
    fn refusals_at_open_are_clear_and_never_show_the_password() {
        let server = RedisServer::start_with(Some("right-pw"));
        let wrong = format!("redis://:wrong-pw@127.0.0.1:{}/0", server.port);
        let err = RedisLink::open(&target(wrong))
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("credentials"), "{err}");
        assert!(!err.contains("wrong-pw"), "{err}");
        let none = format!("redis://127.0.0.1:{}/0", server.port);
        let err = RedisLink::open(&target(none))
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("credentials"), "{err}");
        assert!(RedisLink::open(&target(server.url(0))).is_ok());

        // Someone else's keys under the prefix: not autolabel's database.
        let mut c = redis::Client::open(server.url(1))
            .unwrap()
            .get_connection()
            .unwrap();
        redis::cmd("SET")
            .arg("autolabel:session")
            .arg("x")
            .query::<()>(&mut c)
            .unwrap();
        let err = RedisLink::open(&target(server.url(1)))
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("did not write"), "{err}");

        let port = server.port;
        drop(server);
        let err = RedisLink::open(&target(format!("redis://127.0.0.1:{port}/0")))
            .err()
            .expect("unreachable")
            .to_string();
        assert!(err.contains("unreachable"), "{err}");
    }

    #[test]
    fn runs_opening_an_empty_database_together_all_get_in() {
        let server = RedisServer::start();
        for db in 0..10 {
            let url = server.url(db);
            let opened: Vec<Result<(), LinkError>> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..6)
                    .map(|_| s.spawn(|| RedisLink::open(&target(url.clone())).map(|_| ())))
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for r in opened {
                assert_eq!(r, Ok(()), "database {db}");
            }
        }
    }

    #[test]
    fn a_lost_server_fails_fast_and_is_reconnected_and_remarked() {
        let mut server = RedisServer::start();
        let link = RedisLink::open(&target(server.url(0))).unwrap();
        assert_eq!(ping(&link).unwrap(), "PONG");
        server.kill();
        assert!(matches!(ping(&link), Err(LinkError::Down(_))));
        server.restart();
        let deadline = Instant::now() + Duration::from_secs(5);
        while ping(&link).is_err() {
            assert!(Instant::now() < deadline, "never reconnected");
            std::thread::sleep(Duration::from_millis(20));
        }
        let mark: Option<String> = link
            .run(|c| redis::cmd("GET").arg("autolabel:schema").query(c))
            .unwrap();
        assert_eq!(mark.as_deref(), Some(SCHEMA_MARK));
    }

    #[test]
    fn a_mark_lost_under_a_running_link_is_set_again() {
        let server = RedisServer::start();
        let mut other = redis::Client::open(server.url(0))
            .unwrap()
            .get_connection()
            .unwrap();
        let mark_of = |c: &mut Connection| -> Option<String> {
            redis::cmd("GET").arg("autolabel:schema").query(c).unwrap()
        };
        let write = |link: &RedisLink| {
            link.run(|c| redis::cmd("SET").arg("autolabel:x").arg("1").query::<()>(c))
                .unwrap()
        };
        let link = RedisLink::open(&target(server.url(0))).unwrap();
        redis::cmd("FLUSHALL").query::<()>(&mut other).unwrap();
        std::thread::sleep(MARK_EVERY);
        write(&link);
        assert_eq!(mark_of(&mut other).as_deref(), Some(SCHEMA_MARK));
        // A flush right after a check: the link's last look, when it is dropped.
        redis::cmd("FLUSHALL").query::<()>(&mut other).unwrap();
        write(&link);
        drop(link);
        assert_eq!(mark_of(&mut other).as_deref(), Some(SCHEMA_MARK));
        assert!(RedisLink::open(&target(server.url(0))).is_ok());
    }
}

//! A real `redis-server` for tests: started on 127.0.0.1 on a free port, without
//! persistence, stopped when dropped. Shared by the unit tests (as a module of the
//! library, under `cfg(test)`) and the integration tests (`#[path]` from `tests/common`).
//!
//! There is no skipping: a machine without `redis-server` fails the test that needs it
//! with a message saying how to install it.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    password: Option<String>,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_with(None)
    }

    /// A server that wants this password (`requirepass`).
    pub fn start_with(password: Option<&str>) -> RedisServer {
        let mut s = RedisServer {
            port: free_port(),
            password: password.map(str::to_string),
            child: None,
        };
        s.spawn();
        s
    }

    /// `redis://127.0.0.1:PORT/DB` (with the password when the server has one).
    pub fn url(&self, db: u8) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/{db}", self.port),
            None => format!("redis://127.0.0.1:{}/{db}", self.port),
        }
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(p) = &self.password {
            cmd.args(["--requirepass", p]);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start redis-server ({e}): install it (Debian: apt-get install -y redis-server); ./test.sh does"
            )
        });
        // The port was free when picked, but a server of a test running in parallel may
        // have taken it since: only a server that says it is this child counts.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on port {} within 10 s",
                self.port
            );
            if child.try_wait().ok().flatten().is_some() {
                // It could not bind: another port.
                self.port = free_port();
                return self.spawn();
            }
            if self.answering_pid() == Some(child.id()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.child = Some(child);
    }

    /// The process id of the server answering on the port, if one answers.
    fn answering_pid(&self) -> Option<u32> {
        let client = ::redis::Client::open(self.url(0)).ok()?;
        let mut conn = client
            .get_connection_with_timeout(Duration::from_millis(200))
            .ok()?;
        let info: String = ::redis::cmd("INFO").arg("server").query(&mut conn).ok()?;
        info.lines()
            .find_map(|l| l.strip_prefix("process_id:"))
            .and_then(|p| p.trim().parse().ok())
    }

    /// Kills the server (as a crash would: no save, connections reset).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freezes the server (SIGSTOP), as a hung host would: connections stay open and
    /// new ones are accepted by the kernel, but nothing is ever answered.
    pub fn stop(&self) {
        self.signal("-STOP");
    }

    /// Thaws a server frozen by [`stop`](Self::stop) (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, which: &str) {
        let child = self.child.as_ref().expect("a running server");
        let status = Command::new("kill")
            .args([which, &child.id().to_string()])
            .status()
            .expect("kill(1)");
        assert!(status.success(), "kill {which} failed");
    }

    /// Starts it again, empty, on the same port (or, if another server took the port
    /// meanwhile, on a new one: `url` follows).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

//! The dashboard's listener: accepts connections (over TLS when asked), and keeps a slow
//! or silent client from holding the server.
//!
//! `axum::serve` has no header-read timeout and no connection limit, so 300 half-open
//! connections kept it from answering for minutes. Here every connection gets hyper's
//! header-read timeout (which also bounds how long a keep-alive connection may sit idle
//! between requests), each request a deadline, and the number of open connections a cap.
//! At the cap a new connection is let in by closing the oldest one that is not in the
//! middle of a request: a page that polls still gets through while idle or half-open
//! connections pile up, and nothing in progress is cut.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::error::Result;

/// How long a client may be slow, and how many may be connected at once.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// To send a request's headers (from connecting, or from the end of the previous
    /// answer on a kept-alive connection), and to finish a TLS handshake.
    pub client_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
}

/// Connections left free for the state (SQLite, Redis) and the runtime below the process's
/// file limit: a connection cap above `ulimit -n` would fail in `accept` instead.
const SPARE_FILES: u64 = 64;

impl Limits {
    /// `max_connections`, lowered to what the process's open-file limit allows.
    pub fn within_file_limit(mut self) -> Limits {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we own.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
            let room = lim.rlim_cur.saturating_sub(SPARE_FILES).max(8);
            self.max_connections = self.max_connections.min(room as usize);
        }
        self
    }
}

/// One open connection, as the cap sees it.
struct Slot {
    /// Requests being answered on it now (0 or 1 with HTTP/1.1).
    busy: Arc<AtomicUsize>,
    close: Arc<Notify>,
}

/// The open connections, oldest first (ids only grow).
#[derive(Default)]
struct Table {
    next: u64,
    open: BTreeMap<u64, Slot>,
}

impl Table {
    /// Makes room for one more under `max`: closes the oldest idle connection. False when
    /// every one is answering a request (the new one is then turned away).
    fn make_room(&mut self, max: usize) -> bool {
        if self.open.len() < max {
            return true;
        }
        let idle = self
            .open
            .iter()
            .find(|(_, s)| s.busy.load(Ordering::SeqCst) == 0)
            .map(|(id, _)| *id);
        match idle.and_then(|id| self.open.remove(&id)) {
            Some(slot) => {
                slot.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Takes a connection out of the table when its task ends, however it ends.
struct Leave {
    table: Arc<Mutex<Table>>,
    id: u64,
}

impl Drop for Leave {
    fn drop(&mut self) {
        if let Ok(mut t) = self.table.lock() {
            t.open.remove(&self.id);
        }
    }
}

/// Serves `router` on `listener` until Ctrl-C.
pub async fn run(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    limits: Limits,
) -> Result<()> {
    let table = Arc::new(Mutex::new(Table::default()));
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut stop => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of files or a connection reset before it was taken: wait a moment
                // (the timeouts free files) rather than spin or stop serving.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let busy = Arc::new(AtomicUsize::new(0));
        let close = Arc::new(Notify::new());
        let id = {
            let Ok(mut t) = table.lock() else { continue };
            if !t.make_room(limits.max_connections) {
                continue; // dropping the stream closes it
            }
            let id = t.next;
            t.next += 1;
            t.open.insert(
                id,
                Slot {
                    busy: busy.clone(),
                    close: close.clone(),
                },
            );
            id
        };
        let leave = Leave {
            table: table.clone(),
            id,
        };
        let conn = Conn {
            router: router.clone(),
            peer,
            busy,
            limits,
        };
        let tls = tls.clone();
        tokio::spawn(async move {
            let _leave = leave;
            tokio::select! {
                () = conn.serve(stream, tls) => {}
                () = close.notified() => {}
            }
        });
    }
}

/// What one connection's task needs.
struct Conn {
    router: Router,
    peer: SocketAddr,
    busy: Arc<AtomicUsize>,
    limits: Limits,
}

impl Conn {
    async fn serve(self, stream: tokio::net::TcpStream, tls: Option<TlsAcceptor>) {
        match tls {
            None => self.http(stream).await,
            Some(acceptor) => {
                let handshake = acceptor.accept(stream);
                // A client that connects and never finishes the handshake is half-open too.
                if let Ok(Ok(s)) = tokio::time::timeout(self.limits.client_timeout, handshake).await
                {
                    self.http(s).await;
                }
            }
        }
    }

    async fn http<S>(self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Conn {
            router,
            peer,
            busy,
            limits,
        } = self;
        // A request is answered from the state in well under a second; this only ends one
        // whose body never comes.
        let deadline = limits.client_timeout * 3;
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            // What `ConnectInfo<SocketAddr>` extracts, as `into_make_service_with_connect_info` gives it.
            req.extensions_mut().insert(ConnectInfo(peer));
            let router = router.clone();
            let busy = busy.clone();
            async move {
                busy.fetch_add(1, Ordering::SeqCst);
                let answer =
                    tokio::time::timeout(deadline, router.oneshot(req.map(Body::new))).await;
                busy.fetch_sub(1, Ordering::SeqCst);
                Ok::<Response<Body>, Infallible>(match answer {
                    Ok(Ok(r)) => r,
                    Ok(Err(never)) => match never {},
                    Err(_) => {
                        (StatusCode::REQUEST_TIMEOUT, "request took too long").into_response()
                    }
                })
            }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.client_timeout)
            .serve_connection(TokioIo::new(stream), service)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(busy: usize) -> (Slot, Arc<Notify>) {
        let close = Arc::new(Notify::new());
        (
            Slot {
                busy: Arc::new(AtomicUsize::new(busy)),
                close: close.clone(),
            },
            close,
        )
    }

    #[test]
    fn at_the_cap_the_oldest_idle_connection_makes_room() {
        let mut t = Table::default();
        let (busy, _) = slot(1);
        let (idle, _) = slot(0);
        let (young, _) = slot(0);
        t.open.insert(0, busy);
        t.open.insert(1, idle);
        t.open.insert(2, young);
        assert!(t.make_room(4), "under the cap");
        assert_eq!(t.open.len(), 3);
        assert!(t.make_room(3));
        // The busy one stays; the oldest idle one goes.
        assert_eq!(t.open.keys().copied().collect::<Vec<_>>(), [0, 2]);
        t.open.remove(&2);
        assert!(!t.make_room(1), "every connection is answering a request");
    }

    #[test]
    fn the_cap_stays_below_the_file_limit() {
        let l = Limits {
            client_timeout: Duration::from_secs(1),
            max_connections: usize::MAX,
        }
        .within_file_limit();
        assert!(l.max_connections < usize::MAX && l.max_connections >= 8);
    }
}

//! The dashboard is not held by slow clients (#20 row 12): half-open and idle connections
//! are closed after `--client-timeout`, and at the connection cap a new client still gets
//! in, even with the process's open-file limit below the number of clients.

mod common;
mod dashsrv;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use dashsrv::*;

/// Whether the server closed `s` (a read returns end of file, or the connection was
/// reset), waiting at most `limit`.
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // an answer (a 408, or the end of a kept-alive one)
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// A connection that sent the start of a request and then nothing.
fn half_open(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /api/summary HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    s
}

#[test]
fn three_hundred_half_open_connections_under_ulimit_256_do_not_hold_the_api() {
    let (_fake, sb) = labeled_sandbox();
    let d = Dash::start(
        &sb,
        &["--listen", "127.0.0.1:0", "--client-timeout", "3s"],
        Some(256),
    );
    let mut held: Vec<TcpStream> = (0..300).map(|_| half_open(&d.addr)).collect();
    // The API still answers, at once: the oldest idle connection makes room for it.
    let start = Instant::now();
    let r = http(&d.addr, "GET", "/api/summary", &[], "");
    let took = start.elapsed();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("\"requests\":3"), "{}", r.body);
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
    // And every half-open connection is closed within the client timeout (3 s) and a margin.
    let start = Instant::now();
    for s in &mut held {
        let left = Duration::from_secs(8).saturating_sub(start.elapsed());
        assert!(
            closed_within(s, left.max(Duration::from_millis(1))),
            "a half-open connection still open after {:?}",
            start.elapsed()
        );
    }
    let out = d.stop();
    assert!(out.status.code().is_some(), "it ended by itself on SIGINT");
}

#[test]
fn idle_and_half_open_connections_are_closed_after_the_client_timeout() {
    let (_fake, sb) = labeled_sandbox();
    let d = Dash::start(
        &sb,
        &["--listen", "127.0.0.1:0", "--client-timeout", "2s"],
        None,
    );
    // Silent from the start.
    let mut silent = TcpStream::connect(&d.addr).unwrap();
    // Half a request.
    let mut half = half_open(&d.addr);
    // A whole request on a kept-alive connection, then nothing.
    let mut idle = TcpStream::connect(&d.addr).unwrap();
    idle.write_all(format!("GET /api/runs HTTP/1.1\r\nHost: {}\r\n\r\n", d.addr).as_bytes())
        .unwrap();
    let start = Instant::now();
    for (what, s) in [
        ("silent", &mut silent),
        ("half", &mut half),
        ("idle", &mut idle),
    ] {
        assert!(
            closed_within(s, Duration::from_secs(7).saturating_sub(start.elapsed())),
            "{what}: still open after {:?}",
            start.elapsed()
        );
    }
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(1500),
        "closed too early: {took:?}"
    );
    // A connection that keeps asking is not cut: three requests 1 s apart on one connection.
    let mut busy = TcpStream::connect(&d.addr).unwrap();
    busy.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for _ in 0..3 {
        busy.write_all(format!("GET /api/runs HTTP/1.1\r\nHost: {}\r\n\r\n", d.addr).as_bytes())
            .unwrap();
        let mut buf = [0u8; 16];
        busy.read_exact(&mut buf).unwrap();
        assert!(
            buf.starts_with(b"HTTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(&buf)
        );
        // Drain the rest of the answer before the next request.
        std::thread::sleep(Duration::from_millis(1000));
        busy.set_nonblocking(true).unwrap();
        let mut rest = [0u8; 65536];
        while busy.read(&mut rest).is_ok_and(|n| n > 0) {}
        busy.set_nonblocking(false).unwrap();
    }
    d.stop();
}

#[test]
fn client_timeout_and_connection_cap_are_checked() {
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED]);
    for bad in [
        ["--client-timeout", "0s"],
        ["--client-timeout", "soon"],
        ["--max-connections", "0"],
    ] {
        let out = run_with_limit(sb.cmd().arg("dashboard").args(bad), Duration::from_secs(20));
        assert_eq!(code(&out), 2, "{bad:?}: {}", stderr(&out));
    }
}

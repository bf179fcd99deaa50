//! A request that never reached the provider: why the connection could not be made
//! (DNS, refused, no route, a connect timeout, TLS), read from reqwest's error chain,
//! and the host a message names.

/// Why a connection to the provider could not be made.
#[derive(Debug, Clone, PartialEq)]
pub enum Unreached {
    Dns,
    Refused,
    NoRoute,
    /// The connection attempt got no answer within the connect timeout.
    ConnectTimeout,
    /// The TLS handshake failed (the detail is rustls's message).
    Tls(String),
    Other(String),
}

impl Unreached {
    /// The cause in words, with what to check: `DNS lookup failed (is the network up?)`.
    pub fn describe(&self) -> String {
        match self {
            Unreached::Dns => "DNS lookup failed (is the network up?)".into(),
            Unreached::Refused => {
                "connection refused (is the server up, and the base URL's port right?)".into()
            }
            Unreached::NoRoute => "no route to the host (is the network up?)".into(),
            Unreached::ConnectTimeout => {
                "the connection attempt timed out (is the network up?)".into()
            }
            Unreached::Tls(d) => format!("TLS handshake failed ({d})"),
            Unreached::Other(d) => format!("cannot connect ({d})"),
        }
    }
}

/// The connection-level cause of a transport error whose request never reached the
/// server (reqwest's `is_connect()`), read from its source chain: hyper's "dns error",
/// the socket's error kind, or a TLS failure (rustls reports it as invalid data).
pub fn unreached(timed_out: bool, err: &(dyn std::error::Error + 'static)) -> Unreached {
    use std::io::ErrorKind;
    let mut tls = None;
    let mut last = err.to_string();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if text == "dns error" || text.contains("failed to lookup address") {
            return Unreached::Dns;
        }
        // An io::Error may wrap another one (rustls's InvalidData inside an Other).
        let ios = e.downcast_ref::<std::io::Error>().map(|io| {
            let inner = io
                .get_ref()
                .and_then(|i| i.downcast_ref::<std::io::Error>());
            [Some(io.kind()), inner.map(std::io::Error::kind)]
        });
        for kind in ios.into_iter().flatten().flatten() {
            match kind {
                ErrorKind::ConnectionRefused => return Unreached::Refused,
                ErrorKind::NetworkUnreachable | ErrorKind::HostUnreachable => {
                    return Unreached::NoRoute
                }
                ErrorKind::InvalidData => tls = Some(text.clone()),
                _ => {}
            }
        }
        last = text;
        next = e.source();
    }
    match tls {
        Some(detail) => Unreached::Tls(detail),
        None if timed_out => Unreached::ConnectTimeout,
        None => Unreached::Other(last),
    }
}

/// `host` or `host:port` of a URL, as a message names the place it could not reach.
pub fn host_of(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("?");
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::provider::classify::{CallError, ErrorClass};

    /// A real connection failure from reqwest, as the client sees it.
    async fn connect_error(url: &str) -> reqwest::Error {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let err = client.post(url).send().await.unwrap_err();
        assert!(err.is_connect(), "{err:?}");
        err
    }

    #[tokio::test]
    async fn connection_failures_name_their_cause() {
        // `.invalid` never resolves (RFC 2606), with or without a network.
        let dns = connect_error("http://nonexistent.invalid/v1").await;
        assert_eq!(unreached(dns.is_timeout(), &dns), Unreached::Dns);
        assert_eq!(host_of(dns.url().unwrap()), "nonexistent.invalid");
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let refused = connect_error(&format!("http://127.0.0.1:{port}/v1")).await;
        assert_eq!(unreached(false, &refused), Unreached::Refused);
        assert_eq!(host_of(refused.url().unwrap()), format!("127.0.0.1:{port}"));
        // TLS to a server that answers in plain HTTP.
        let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = plain.local_addr().unwrap().port();
        std::thread::spawn(move || {
            use std::io::Write;
            if let Ok((mut s, _)) = plain.accept() {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
            }
        });
        let tls = connect_error(&format!("https://127.0.0.1:{port}/v1")).await;
        assert!(
            matches!(unreached(false, &tls), Unreached::Tls(_)),
            "{:?}",
            unreached(false, &tls)
        );
    }

    #[test]
    fn socket_errors_map_to_causes() {
        use std::io::{Error, ErrorKind};
        let kind = |k: ErrorKind, timed_out: bool| unreached(timed_out, &Error::from(k));
        assert_eq!(
            kind(ErrorKind::NetworkUnreachable, false),
            Unreached::NoRoute
        );
        assert_eq!(kind(ErrorKind::HostUnreachable, false), Unreached::NoRoute);
        assert_eq!(kind(ErrorKind::TimedOut, true), Unreached::ConnectTimeout);
        assert!(matches!(
            kind(ErrorKind::ConnectionReset, false),
            Unreached::Other(_)
        ));
        let e = CallError::Unreachable {
            host: "api.groq.com".into(),
            cause: Unreached::Dns,
        };
        assert_eq!(
            e.describe(),
            "cannot reach api.groq.com: DNS lookup failed (is the network up?)"
        );
        assert_eq!(e.class(), ErrorClass::Network);
    }
}

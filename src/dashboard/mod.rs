//! The dashboard server: a live page over the state, served by axum on this process's
//! tokio runtime, and the JSON API behind it (`api`). `commands::dashboard` starts it.
//!
//! Read-only by default. The few actions (disable, enable, rotate) need the token printed
//! at start-up in the `X-Autolabel-Token` header: a header, not a cookie, so another site
//! cannot make a visitor's browser send it (a cross-site request with a custom header
//! needs a CORS preflight, which this server never grants). Listening beyond loopback
//! needs a token chosen with `--token`; on loopback, requests must name a loopback host,
//! so a foreign name pointed at 127.0.0.1 (DNS rebinding) reads nothing.

mod actions;
pub mod api;
pub mod auth;
mod reads;
pub mod server;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State as AxState};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Serialize;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::store::State;

/// The header that carries the action token.
pub const TOKEN_HEADER: &str = "x-autolabel-token";

/// What the server answers from, and how it guards the answers.
pub struct App {
    pub pool: Vec<Config>,
    pub state: State,
    /// The token, its expiry, the sessions, and whether reads need them.
    pub auth: auth::Auth,
    /// The alerts in force (kept by `alerts::monitor`), shown as banners.
    pub alerts: Arc<std::sync::Mutex<Vec<crate::alerts::Alert>>>,
    /// Listening on loopback: only loopback host names are answered.
    pub loopback: bool,
    pub verbose: u8,
}

#[derive(Serialize)]
struct Failed {
    error: String,
}

fn fail(status: StatusCode, error: impl Into<String>) -> Response {
    json_out(
        status,
        &Failed {
            error: error.into(),
        },
    )
}

fn answer<T: Serialize>(r: Result<T>) -> Response {
    match r {
        Ok(v) => json_out(StatusCode::OK, &v),
        Err(e) => fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Every answer leaves through the masking boundary: a state written by an older
/// version (or by hand) may hold a key in a reason, and it is not served.
fn json_out<T: Serialize>(status: StatusCode, v: &T) -> Response {
    match serde_json::to_string(v) {
        Ok(text) => (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            crate::keys::mask::scrub(&text),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// A random token of 128 bits, hex.
pub fn new_token() -> String {
    auth::random_hex(16)
}

/// Where to listen, and whether that is allowed without `--token`.
pub fn check_listen(listen: &str, token: Option<&str>) -> Result<SocketAddr> {
    let addr: SocketAddr = listen.trim().parse().map_err(|_| {
        Error::Usage(format!(
            "--listen {listen}: not an address and port like 127.0.0.1:8484"
        ))
    })?;
    if let Some(t) = token {
        if t.chars().count() < 16 || t.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(Error::Usage(
                "--token: at least 16 characters, no spaces (anyone who guesses it can disable keys)".into(),
            ));
        }
    }
    if !addr.ip().is_loopback() && token.is_none() {
        return Err(Error::Usage(format!(
            "--listen {addr}: other machines could reach it; pass --token with a secret of your own to listen beyond 127.0.0.1"
        )));
    }
    Ok(addr)
}

/// Serves the page and the API on `listener` (over TLS when given) until Ctrl-C, within `limits`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: App,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: server::Limits,
) -> Result<()> {
    let app = Arc::new(app);
    let router = Router::new()
        .route("/", get(page))
        .route("/api/summary", get(reads::summary))
        .route("/api/keys", get(reads::keys))
        .route("/api/runs", get(reads::runs))
        .route("/api/usage", get(reads::usage))
        .route("/api/rotations", get(reads::rotations))
        .route("/api/actions", get(reads::actions))
        .route("/api/alerts", get(alerts))
        .route("/api/errors", get(reads::errors))
        .route("/api/usage.csv", get(reads::usage_csv))
        .route("/api/errors.csv", get(reads::errors_csv))
        .route("/api/rotate", post(actions::rotate))
        .route(
            "/api/keys/{provider}/{index}/{action}",
            post(actions::key_action),
        )
        .route("/login", get(auth::login_form).post(auth::login))
        .route("/logout", post(auth::logout))
        .layer(middleware::from_fn_with_state(app.clone(), auth::gate))
        .layer(middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app);
    server::run(listener, tls, router, limits).await
}

/// Logs requests (`-v`) and answers only loopback host names when listening on loopback.
async fn guard(AxState(app): AxState<Arc<App>>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let name = host
        .rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(host, |(name, _)| name);
    let loopback_name = matches!(name, "localhost" | "127.0.0.1" | "[::1]")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if app.loopback && !loopback_name {
        return fail(
            StatusCode::MISDIRECTED_REQUEST,
            "this dashboard answers only to localhost or 127.0.0.1",
        );
    }
    let line = format!("{} {}", req.method(), req.uri().path());
    let response = next.run(req).await;
    if app.verbose > 0 {
        eprintln!("dashboard: {line} -> {}", response.status().as_u16());
    }
    response
}

async fn page() -> impl IntoResponse {
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            // Nothing but this server: no CDN, font or script from elsewhere.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
            ),
        ],
        Html(api::PAGE),
    )
}

/// `/api/alerts`: the alerts in force, oldest first.
async fn alerts(AxState(app): AxState<Arc<App>>) -> Response {
    let active = app.alerts.lock().map(|a| a.clone()).unwrap_or_default();
    json_out(StatusCode::OK, &active)
}

/// Why an action is refused, if it is: the token in the header, right and not expired
/// (a session cookie alone opens only reads).
fn refusal(app: &App, headers: &HeaderMap) -> Option<Response> {
    let why = app.auth.check_header(headers).err()?;
    let text = match why {
        auth::Denied::Expired(_) => why.message(),
        _ => format!("actions need the token printed at start-up in the {TOKEN_HEADER} header"),
    };
    Some(fail(StatusCode::UNAUTHORIZED, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_beyond_loopback_needs_a_token() {
        assert!(check_listen("127.0.0.1:0", None).is_ok());
        assert!(check_listen("[::1]:8484", None).is_ok());
        let err = check_listen("0.0.0.0:8484", None).unwrap_err();
        assert!(matches!(err, Error::Usage(_)), "{err}");
        assert!(check_listen("0.0.0.0:8484", Some("a-long-enough-secret")).is_ok());
        assert!(check_listen("0.0.0.0:8484", Some("short")).is_err());
        assert!(check_listen("localhost", None).is_err());
        assert_eq!(new_token().len(), 32);
    }
}

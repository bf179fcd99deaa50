//! Who may read and act on the dashboard: the token, when it expires, the sessions a login
//! opens, and the gate every request passes.
//!
//! On loopback, reads are open (as before) and actions take the token. Bound to anything
//! else, the page and every API read take it too: in the `X-Autolabel-Token` header (for
//! scripts) or as a session cookie set by the login form (for a browser). The cookie holds
//! a random session id, never the token, and is HttpOnly (no script reads it),
//! SameSite=Strict (no other site's page sends it) and Secure under TLS. Actions still take
//! the token in the header, so a session alone reads but changes nothing. The token is
//! never taken from a URL: a URL stays in history, logs and Referer headers, so a request
//! carrying it there is refused, not served. The login form takes a few attempts a
//! minute per client address (`limit`), so a token cannot be guessed through it.

mod limit;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{ConnectInfo, Request, State as AxState};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::{App, TOKEN_HEADER};
use crate::timeutil;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "autolabel_session";

/// A session lasts at most this long (and never past the token's expiry).
const SESSION_LIFE: Duration = Duration::from_secs(12 * 3600);

/// Sessions kept at most: a login needs the token, so this only bounds a careless script.
const MAX_SESSIONS: usize = 1000;

/// The login form.
const LOGIN_PAGE: &str = include_str!("login.html");

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No token and no session.
    Missing,
    /// A token or session that is not this server's.
    Wrong,
    /// The right token, past `--token-ttl`.
    Expired(SystemTime),
}

impl Denied {
    pub fn message(self) -> String {
        match self {
            Denied::Missing => {
                format!("this needs the token: in the {TOKEN_HEADER} header, or log in at /login")
            }
            Denied::Wrong => "wrong token, or a session this server did not open".into(),
            Denied::Expired(at) => format!(
                "the token expired at {} (--token-ttl): restart the dashboard with a new one",
                timeutil::rfc3339(at)
            ),
        }
    }
}

/// The token, its expiry and the open sessions.
pub struct Auth {
    token: String,
    expires: Option<SystemTime>,
    /// Bound beyond loopback: reads need the token or a session too.
    pub reads_need_token: bool,
    /// Served over TLS: the cookie is marked Secure.
    pub tls: bool,
    /// Session id → when it ends.
    sessions: Mutex<HashMap<String, SystemTime>>,
    /// Login attempts per client address.
    logins: limit::LoginLimit,
    /// Requests whose token header is checked, per client address: counted apart from
    /// logins, so a locked login form leaves a working header token alone.
    header_tries: limit::LoginLimit,
}

impl Auth {
    pub fn new(token: String, ttl: Option<Duration>, reads_need_token: bool, tls: bool) -> Auth {
        Auth {
            token,
            expires: ttl.map(|t| SystemTime::now() + t),
            reads_need_token,
            tls,
            sessions: Mutex::new(HashMap::new()),
            logins: limit::LoginLimit::new(limit::WINDOW),
            header_tries: limit::LoginLimit::new(limit::WINDOW),
        }
    }

    /// Counts login attempts over `window` instead of a minute (the hidden
    /// `--login-window`, so a test need not wait a minute for the window to end).
    pub fn with_login_window(mut self, window: Duration) -> Auth {
        self.logins = limit::LoginLimit::new(window);
        self.header_tries = limit::LoginLimit::new(window);
        self
    }

    /// When the token stops working (`--token-ttl`), if ever.
    pub fn expires(&self) -> Option<SystemTime> {
        self.expires
    }

    fn live(&self) -> Result<(), Denied> {
        match self.expires {
            Some(at) if SystemTime::now() >= at => Err(Denied::Expired(at)),
            _ => Ok(()),
        }
    }

    /// Checks a token given by the client (compared without an early exit).
    pub fn check_token(&self, given: Option<&[u8]>) -> Result<(), Denied> {
        let given = given.ok_or(Denied::Missing)?;
        if !same(given, self.token.as_bytes()) {
            return Err(Denied::Wrong);
        }
        self.live()
    }

    /// The token in the `X-Autolabel-Token` header: what actions take.
    pub fn check_header(&self, headers: &HeaderMap) -> Result<(), Denied> {
        self.check_token(headers.get(TOKEN_HEADER).map(|v| v.as_bytes()))
    }

    /// Counts a request whose token header will be checked against its address's tries,
    /// before comparing it, as a login is counted; the right token starts the count
    /// again, so a page that has the token is never held up. Err: too many wrong tokens
    /// from this address lately, and how long until it may try again. Without this the
    /// header would be an unlimited way to guess what the login form limits.
    fn count_header_try(&self, req: &Request) -> Result<(), Duration> {
        let checked = req.method() != axum::http::Method::GET || self.reads_need_token;
        let client = req.extensions().get::<ConnectInfo<SocketAddr>>();
        let (true, true, Some(ConnectInfo(client))) =
            (checked, req.headers().contains_key(TOKEN_HEADER), client)
        else {
            return Ok(());
        };
        self.header_tries.attempt(client.ip(), Instant::now())?;
        if self.check_header(req.headers()).is_ok() {
            self.header_tries.succeeded(client.ip());
        }
        Ok(())
    }

    /// A session cookie this server set, not yet ended.
    fn check_session(&self, headers: &HeaderMap) -> Result<(), Denied> {
        let ids = cookies(headers, SESSION_COOKIE);
        if ids.is_empty() {
            return Err(Denied::Missing);
        }
        let now = SystemTime::now();
        let sessions = self.sessions.lock().map_err(|_| Denied::Wrong)?;
        let open = ids.iter().any(|id| {
            sessions
                .iter()
                .any(|(s, end)| same(s.as_bytes(), id.as_bytes()) && now < *end)
        });
        if !open {
            return Err(Denied::Wrong);
        }
        // A session ends with the token.
        self.live()
    }

    /// What a read takes: the header, else a session.
    pub fn check_read(&self, headers: &HeaderMap) -> Result<(), Denied> {
        if headers.contains_key(TOKEN_HEADER) {
            return self.check_header(headers);
        }
        self.check_session(headers)
    }

    /// Opens a session and returns its `Set-Cookie` value.
    fn open_session(&self) -> String {
        let now = SystemTime::now();
        let end = self
            .expires
            .map_or(now + SESSION_LIFE, |t| t.min(now + SESSION_LIFE));
        let id = random_hex(16);
        if let Ok(mut s) = self.sessions.lock() {
            s.retain(|_, e| now < *e);
            if s.len() >= MAX_SESSIONS {
                if let Some(first) = s.iter().min_by_key(|(_, e)| **e).map(|(k, _)| k.clone()) {
                    s.remove(&first);
                }
            }
            s.insert(id.clone(), end);
        }
        let age = end.duration_since(now).unwrap_or_default().as_secs();
        self.cookie(&id, age)
    }

    fn close_session(&self, headers: &HeaderMap) -> String {
        if let Ok(mut s) = self.sessions.lock() {
            for id in cookies(headers, SESSION_COOKIE) {
                s.remove(&id);
            }
        }
        self.cookie("", 0)
    }

    fn cookie(&self, value: &str, max_age: u64) -> String {
        let secure = if self.tls { "; Secure" } else { "" };
        format!("{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
    }

    /// Whether the URL carries the token (as it is, or percent-encoded), or a parameter
    /// named like one, whatever its value: such a URL is already in a log or a history.
    pub fn in_url(&self, uri: &Uri) -> bool {
        let Some(query) = uri.query() else {
            return !self.token.is_empty() && percent_decode(uri.path()).contains(&self.token);
        };
        let named = query.split('&').any(|pair| {
            let name = percent_decode(pair.split('=').next().unwrap_or("")).to_ascii_lowercase();
            name.contains("token") || name == SESSION_COOKIE
        });
        let whole = percent_decode(&format!("{}?{query}", uri.path()));
        named || (!self.token.is_empty() && whole.contains(&self.token))
    }
}

/// Equal bytes, compared in a time that depends only on the lengths.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The values of every cookie named `name`.
fn cookies(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .collect()
}

/// `%XX` and `+` decoded; anything malformed kept as it is.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `n` random bytes from the kernel, hex: tokens and session ids must not be guessable
/// from earlier ones, which a fast non-cryptographic generator does not promise.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    let mut filled = 0;
    while filled < n {
        // SAFETY: getrandom writes at most `n - filled` bytes into our buffer.
        let got = unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), n - filled, 0) };
        if got > 0 {
            filled += got as usize;
        } else if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            // No kernel randomness at all: nothing sensible is left to do.
            panic!("getrandom failed: {}", std::io::Error::last_os_error());
        }
    }
    crate::hex::hex(&buf)
}

/// Refuses what the token does not open, adds the security headers to every answer.
pub async fn gate(AxState(app): AxState<Arc<App>>, req: Request, next: Next) -> Response {
    let auth = &app.auth;
    let mut response = if auth.in_url(req.uri()) {
        super::fail(
            StatusCode::BAD_REQUEST,
            format!("the token is never taken from a URL (it stays in logs and history): send it in the {TOKEN_HEADER} header, or log in at /login"),
        )
    } else if matches!(req.uri().path(), "/login" | "/logout") {
        next.run(req).await
    } else if let Err(wait) = auth.count_header_try(&req) {
        let secs = limit::retry_after_secs(wait);
        let why = format!(
            "too many wrong tokens from your address ({} a minute at most): try again in {secs} s",
            limit::MAX_TRIES
        );
        let mut r = super::fail(StatusCode::TOO_MANY_REQUESTS, why);
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        r
    } else if !auth.reads_need_token {
        next.run(req).await
    } else {
        match auth.check_read(req.headers()) {
            Ok(()) => next.run(req).await,
            Err(why) if req.uri().path().starts_with("/api/") => {
                super::fail(StatusCode::UNAUTHORIZED, why.message())
            }
            Err(why) => login_page(StatusCode::UNAUTHORIZED, &why.message()),
        }
    };
    let h = response.headers_mut();
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("frame-ancestors 'none'"),
        );
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // Nothing here may be kept by a browser or a proxy: keys, hosts, paths, usage.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Over TLS only (a browser ignores it over plain HTTP, and there it would be a false
    // promise): for a year the browser goes to this host by HTTPS alone, so a typed
    // http:// link cannot leak the session cookie or be downgraded on the way.
    if auth.tls {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    response
}

/// The login form, with a line saying why it is shown.
fn login_page(status: StatusCode, why: &str) -> Response {
    let escaped = why
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    (
        status,
        [(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        )],
        Html(LOGIN_PAGE.replace("<!--WHY-->", &escaped)),
    )
        .into_response()
}

pub async fn login_form(AxState(app): AxState<Arc<App>>) -> Response {
    let why = if app.auth.reads_need_token {
        "this dashboard is reachable from other machines: its pages need the token"
    } else {
        "reads are open on loopback; the token is for actions"
    };
    login_page(StatusCode::OK, why)
}

#[derive(Deserialize)]
pub struct Login {
    token: String,
}

/// `POST /login` (a form body, never a query): the right token opens a session. Past
/// [`limit::MAX_TRIES`] attempts from one address in a window, 429 with `Retry-After`
/// and the token is not compared.
pub async fn login(
    AxState(app): AxState<Arc<App>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Form(form): Form<Login>,
) -> Response {
    if let Err(wait) = app.auth.logins.attempt(client.ip(), Instant::now()) {
        return too_many(wait);
    }
    match app.auth.check_token(Some(form.token.trim().as_bytes())) {
        Ok(()) => {
            app.auth.logins.succeeded(client.ip());
            let cookie = app.auth.open_session();
            let mut r = Redirect::to("/").into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Err(why) => login_page(StatusCode::UNAUTHORIZED, &why.message()),
    }
}

/// The login form again, refusing: too many attempts from this address for now.
fn too_many(wait: Duration) -> Response {
    let secs = limit::retry_after_secs(wait);
    let why = format!(
        "too many attempts from your address ({} a minute at most): try again in {secs} s",
        limit::MAX_TRIES
    );
    let mut r = login_page(StatusCode::TOO_MANY_REQUESTS, &why);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    r
}

/// `POST /logout`: ends the session.
pub async fn logout(AxState(app): AxState<Arc<App>>, headers: HeaderMap) -> Response {
    let cookie = app.auth.close_session(&headers);
    let mut r = Redirect::to("/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(ttl: Option<Duration>) -> Auth {
        Auth::new("s3cret-token-0123456789".into(), ttl, true, false)
    }

    #[test]
    fn the_token_in_any_url_is_seen() {
        let a = auth(None);
        for url in [
            "/api/keys?token=x",
            "/api/keys?X-Autolabel-Token=x",
            "/?a=s3cret-token-0123456789",
            "/?a=s3cret%2Dtoken%2D0123456789",
            "/s3cret-token-0123456789",
            "/?autolabel_session=abc",
        ] {
            assert!(a.in_url(&url.parse().unwrap()), "{url}");
        }
        for url in ["/", "/api/usage?days=7", "/api/summary"] {
            assert!(!a.in_url(&url.parse().unwrap()), "{url}");
        }
    }

    #[test]
    fn tokens_sessions_and_expiry() {
        let a = auth(None);
        assert_eq!(a.check_token(None), Err(Denied::Missing));
        assert_eq!(
            a.check_token(Some(b"s3cret-token-012345678")),
            Err(Denied::Wrong)
        );
        assert_eq!(a.check_token(Some(b"s3cret-token-0123456789")), Ok(()));
        let cookie = a.open_session();
        assert!(cookie.contains("HttpOnly; SameSite=Strict"), "{cookie}");
        assert!(!cookie.contains("Secure"), "{cookie}");
        let id = cookie.split(';').next().unwrap().to_string();
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("other=1; {id}")).unwrap(),
        );
        assert_eq!(a.check_read(&h), Ok(()));
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("autolabel_session=0000"),
        );
        assert_eq!(a.check_read(&h), Err(Denied::Wrong));

        let gone = auth(Some(Duration::ZERO));
        assert!(matches!(
            gone.check_token(Some(b"s3cret-token-0123456789")),
            Err(Denied::Expired(_))
        ));
        let tls = Auth::new("t".into(), None, true, true);
        assert!(tls.open_session().ends_with("; Secure"));
    }

    #[test]
    fn random_ids_differ() {
        let (a, b) = (random_hex(16), random_hex(16));
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}

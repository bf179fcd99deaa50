//! A fake LLM provider for autolabel's integration tests and benchmarks.
//!
//! It imitates Groq's OpenAI-compatible API (`POST …/chat/completions`, `GET …/models`)
//! closely enough to exercise the client's whole error handling: per-organization
//! limits on requests and tokens per minute and per day with Groq's exact 429 bodies,
//! `retry-after` and `x-ratelimit-*` headers, the 401 body of an invalid key, and
//! injected faults (5xx, hangs, TCP resets, malformed JSON, wrong batch counts).
//! Every text is answered with [`expected_label`], so a test can check each output row.
//!
//! The HTTP/1.1 server is written by hand over a tokio `TcpListener` (no hyper/axum)
//! so that faults can reset or hang a connection at will. It runs on its own thread
//! with its own runtime, so it works from synchronous tests and from inside another
//! tokio runtime alike.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

#[path = "fake_chatty.rs"]
pub mod chatty;
#[path = "fake_logprobs.rs"]
pub mod logprobs;
#[path = "fake_noise.rs"]
pub mod noise;

pub use logprobs::Logprobs;
pub use noise::Noise;

/// The labels the fake answers with, indexed by `fnv1a64(text) % 3`.
pub const LABELS: [&str; 3] = ["positif", "negatif", "netral"];

/// Per-day request limit stated in headers when an org has no RPD limit: far above
/// anything a test sends, as a real provider states the real (high) limit of a paid tier.
pub const DEFAULT_LIMIT_REQUESTS: u32 = 1_000_000_000;
/// Per-minute token limit stated in headers when an org has no TPM limit.
pub const DEFAULT_LIMIT_TOKENS: u32 = 1_000_000_000;

const MINUTE: Duration = Duration::from_secs(60);
const MAX_HEAD: usize = 1 << 20;
const MAX_BODY: usize = 64 << 20;

/// FNV-1a, 64 bit.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The label the fake gives `text`: FNV-1a 64 of its UTF-8 bytes, `% 3` into [`LABELS`].
pub fn expected_label(text: &str) -> &'static str {
    LABELS[(fnv1a64(text.as_bytes()) % 3) as usize]
}

/// English synonym of a label (`positif` → `positive`, …).
pub fn english_label(label: &str) -> &'static str {
    match label {
        "positif" => "positive",
        "negatif" => "negative",
        _ => "neutral",
    }
}

/// Formats a duration the way Groq does (Go style): `720ms`, `1.5s`, `2m59.56s`,
/// `1h2m3.4s`, `0s`. Rounded up (to the millisecond below 1 s, else to 10 ms) so a
/// client that waits exactly this long is not early.
pub fn groq_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000_000_000 {
        let ms = nanos.div_ceil(1_000_000);
        if ms < 1000 {
            return format!("{ms}ms");
        }
    }
    let cs = nanos.div_ceil(10_000_000);
    let h = cs / 360_000;
    let m = (cs / 6_000) % 60;
    let s = cs % 6_000;
    let mut out = String::new();
    if h > 0 {
        let _ = write!(out, "{h}h");
    }
    if h > 0 || m > 0 {
        let _ = write!(out, "{m}m");
    }
    let (whole, frac) = (s / 100, s % 100);
    if frac == 0 {
        let _ = write!(out, "{whole}s");
    } else if frac % 10 == 0 {
        let _ = write!(out, "{whole}.{}s", frac / 10);
    } else {
        let _ = write!(out, "{whole}.{frac:02}s");
    }
    out
}

/// `ceil` of a duration in whole seconds, as sent in `retry-after`.
fn ceil_secs(d: Duration) -> u64 {
    d.as_nanos().div_ceil(1_000_000_000) as u64
}

/// One API key known to the fake.
#[derive(Clone, Debug)]
pub struct FakeKey {
    pub key: String,
    pub org: String,
    pub valid: bool,
    /// Every chat request on this key gets this status and message, whatever it asks (a
    /// key the server rejects with something other than 401, as a misconfigured proxy
    /// does: `400 No connected db.`).
    pub reject: Option<(u16, String)>,
}

impl FakeKey {
    /// A valid key in `org`.
    pub fn new(key: &str, org: &str) -> Self {
        FakeKey {
            key: key.to_string(),
            org: org.to_string(),
            valid: true,
            reject: None,
        }
    }

    /// A key in `org` whose every chat request gets `status` with `message`.
    pub fn rejected(key: &str, org: &str, status: u16, message: &str) -> Self {
        FakeKey {
            reject: Some((status, message.to_string())),
            ..FakeKey::new(key, org)
        }
    }

    /// A key the fake answers with 401.
    pub fn invalid(key: &str) -> Self {
        FakeKey {
            key: key.to_string(),
            org: "org_invalid".to_string(),
            valid: false,
            reject: None,
        }
    }
}

/// Limits of one organization; `None` means unlimited.
#[derive(Clone, Debug, Default)]
pub struct OrgLimits {
    pub rpm: Option<u32>,
    pub rpd: Option<u32>,
    pub tpm: Option<u32>,
    pub tpd: Option<u32>,
}

/// How the content of a successful reply is worded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReplyStyle {
    /// Exactly the label (single) or `{"labels":[…]}` (batch).
    #[default]
    Plain,
    /// Rotating variants a careful normalizer maps to the same label.
    Messy,
    /// The label inside 5–20 tokens of prose, as chatty models answer (see `chatty`);
    /// batches as fenced JSON inside prose, each label with a sentence of reason.
    Chatty,
}

/// A fault injected into one chat request (see [`FakeProvider::push_faults`]).
#[derive(Clone, Debug)]
pub enum Fault {
    /// That status with body `{"error":{"message":"fake fault","type":"server_error"}}`
    /// (no `retry-after`, even for 429).
    Status(u16),
    /// Read the request, wait that long (after the latency), close without a response.
    Hang(Duration),
    /// Read the request, then close with `SO_LINGER` 0 (TCP RST), no response.
    Reset,
    /// 200 with a body that is not valid JSON.
    MalformedJson,
    /// 200, normal envelope, message content is this literal string.
    Reply(String),
    /// 429 with Groq's RPM body, "try again in" this long and `retry-after: ceil`.
    RateLimitMinute { retry_after_secs: f64 },
    /// 429 with Groq's RPD body; the hint is the time left in the day window.
    RateLimitDay,
    /// 429 whose body names no window and gives no wait, with `retry-after` set to this
    /// raw value (huge, negative, NaN, garbage...).
    RateLimitRaw { retry_after: String },
    /// Batch only: one label fewer than asked (a single request is answered normally).
    WrongCount,
    /// That status with a chunked body (no length announced) that goes on for `bytes`
    /// bytes: streamed from one small buffer, never held in memory, so only the client
    /// can grow with it. The connection closes after it.
    HugeBody { status: u16, bytes: u64 },
    /// 200 whose response head holds one header line of `bytes` bytes (streamed, never
    /// finished if the client stops reading).
    HugeHeader(u64),
    /// That status with a body repeating the request's `Authorization` header, as some
    /// proxies do: in the error message (the header, and the bare key beside it) for an
    /// error status; as the message content of an otherwise normal reply for 200.
    Echo(u16),
    /// That status with exactly this body (an HTML page, JSON of the wrong shape).
    Body { status: u16, body: String },
    /// That redirect status (302, 307…) with `location: <location>` and no body.
    Redirect { status: u16, location: String },
}

/// Configuration of a [`FakeProvider`].
#[derive(Clone, Debug)]
pub struct FakeConfig {
    pub keys: Vec<FakeKey>,
    /// Orgs not listed have no limits.
    pub orgs: Vec<(String, OrgLimits)>,
    /// Added before every chat reply (and before a Hang/Reset fault acts).
    pub latency: Duration,
    /// Uniform ± on top of `latency`.
    pub jitter: Duration,
    pub style: ReplyStyle,
    pub model: String,
    /// Length of the per-day window; per-day counters reset when it elapses.
    pub day_window: Duration,
    /// Record every chat request (turn off for very long benchmarks).
    pub record: bool,
    /// Answer a chat request for any other model than `model` with 404
    /// `model_not_found`, as a real provider does (off: any model is served).
    pub strict_model: bool,
    /// Count requests and tokens per minute in fixed windows (minute 0, 1, 2… since the
    /// server started) instead of a sliding 60 s: a benchmark then sees any minute in
    /// which runs together sent more than the limit, with no window sliding past it.
    pub fixed_minute: bool,
    /// Honour `max_tokens` as a provider does: a longer reply is cut to it and ends with
    /// `finish_reason: "length"`, and its completion tokens are what was sent.
    pub cut_at_max_tokens: bool,
    /// A bare rate-limiting proxy: no reply carries a rate-limit header, and a 429 says
    /// only "Too Many Requests" (no `retry-after`, no window, no wait, no organization).
    pub bare_429: bool,
    /// Wrong labels now and then (see [`Noise`]); `None` answers every text right.
    pub noise: Option<Noise>,
    /// What a request asking for `logprobs` gets (see [`Logprobs`]).
    pub logprobs: Logprobs,
}

/// The organization id of [`FakeConfig::shared_org`], shaped like Groq's.
pub const SHARED_ORG: &str = "org_01jfakesharedorganizationa1";

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            keys: Vec::new(),
            orgs: Vec::new(),
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            style: ReplyStyle::Plain,
            model: "llama-3.1-8b-instant".to_string(),
            day_window: Duration::from_secs(24 * 3600),
            record: true,
            strict_model: false,
            fixed_minute: false,
            cut_at_max_tokens: false,
            bare_429: false,
            noise: None,
            logprobs: Logprobs::Ignore,
        }
    }
}

impl FakeConfig {
    /// Each key valid and in its own org, named `org_0`, `org_1`, … (by position), no limits.
    pub fn with_keys(keys: &[&str]) -> Self {
        FakeConfig {
            keys: keys
                .iter()
                .enumerate()
                .map(|(i, k)| FakeKey::new(k, &format!("org_{i}")))
                .collect(),
            ..FakeConfig::default()
        }
    }

    /// All keys valid and in one org with these limits.
    pub fn single_org(keys: &[&str], org: &str, limits: OrgLimits) -> Self {
        FakeConfig {
            keys: keys.iter().map(|k| FakeKey::new(k, org)).collect(),
            orgs: vec![(org.to_string(), limits)],
            ..FakeConfig::default()
        }
    }

    /// Several keys of one organization, as Groq users make them hoping for more quota:
    /// one limit of `rpm` behind all of them, 429 bodies naming [`SHARED_ORG`], and
    /// headers as Groq sends them (a day's requests, whose `remaining` falls for every
    /// key at once, and 10,000,000 tokens a minute).
    pub fn shared_org(keys: &[&str], rpm: u32) -> Self {
        let limits = OrgLimits {
            rpm: Some(rpm),
            rpd: Some(1_000_000),
            tpm: Some(10_000_000),
            ..OrgLimits::default()
        };
        FakeConfig::single_org(keys, SHARED_ORG, limits)
    }

    /// Sets (or replaces) the limits of `org`.
    pub fn limit(mut self, org: &str, limits: OrgLimits) -> Self {
        self.orgs.retain(|(o, _)| o != org);
        self.orgs.push((org.to_string(), limits));
        self
    }
}

/// One chat request as the fake saw it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// The bearer key sent (empty if none).
    pub key: String,
    pub path: String,
    /// Single: `[text]`; batch: the texts in order; empty if the body was unusable.
    pub texts: Vec<String>,
    /// Status replied; 0 for Hang/Reset.
    pub status: u16,
    /// Arrival time since server start.
    pub at: Duration,
    pub batch: bool,
    /// The request body (`Null` if it was not JSON).
    pub body: Value,
}

#[derive(Default)]
struct OrgState {
    limits: OrgLimits,
    minute_reqs: VecDeque<Instant>,
    minute_tokens: VecDeque<(Instant, u64)>,
    minute_token_sum: u64,
    day_reqs: u64,
    day_tokens: u64,
}

impl OrgState {
    /// Forgets what left the minute window: the last 60 s, or (fixed windows) everything
    /// before `fixed_from`, the start of the current minute.
    fn prune(&mut self, now: Instant, fixed_from: Option<Instant>) {
        let gone = |t: Instant| match fixed_from {
            Some(from) => t < from,
            None => t + MINUTE <= now,
        };
        while self.minute_reqs.front().is_some_and(|&t| gone(t)) {
            self.minute_reqs.pop_front();
        }
        while let Some(&(t, n)) = self.minute_tokens.front() {
            if !gone(t) {
                break;
            }
            self.minute_token_sum -= n;
            self.minute_tokens.pop_front();
        }
    }
}

struct State {
    keys: HashMap<String, (String, bool)>,
    /// Keys whose every chat request is rejected: status and message.
    rejects: HashMap<String, (u16, String)>,
    orgs: HashMap<String, OrgState>,
    day_start: Instant,
    faults: VecDeque<Fault>,
    models_faults: VecDeque<Fault>,
    records: Vec<RecordedRequest>,
    per_key: HashMap<String, usize>,
    per_status: HashMap<u16, usize>,
    next_id: u64,
    messy: u64,
    rng: u64,
    /// Replies cut at `max_tokens` (`finish_reason: "length"`).
    cut: usize,
    noise: noise::NoiseState,
}

struct Shared {
    state: Mutex<State>,
    start: Instant,
    model: String,
    latency: Duration,
    jitter: Duration,
    style: ReplyStyle,
    day_window: Duration,
    record: bool,
    strict_model: bool,
    fixed_minute: bool,
    cut_at_max_tokens: bool,
    bare_429: bool,
    noise: Option<Noise>,
    logprobs: Logprobs,
}

/// The running fake server. Dropping it stops the server.
pub struct FakeProvider {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Arc<Notify>,
    thread: Option<JoinHandle<()>>,
}

impl FakeProvider {
    /// Binds 127.0.0.1:0 and serves on a dedicated thread; returns once listening.
    pub fn start(cfg: FakeConfig) -> FakeProvider {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("fake: bind 127.0.0.1:0");
        FakeProvider::serve(cfg, listener)
    }

    /// Starts listening on a port reserved earlier (until now it refused connections,
    /// as a server that is down does), and serves there.
    pub fn start_on(cfg: FakeConfig, port: ReservedPort) -> FakeProvider {
        FakeProvider::serve(cfg, port.listen())
    }

    fn serve(cfg: FakeConfig, listener: std::net::TcpListener) -> FakeProvider {
        let start = Instant::now();
        let mut orgs: HashMap<String, OrgState> = HashMap::new();
        for (org, limits) in &cfg.orgs {
            orgs.entry(org.clone()).or_default().limits = limits.clone();
        }
        let keys = cfg
            .keys
            .iter()
            .map(|k| (k.key.clone(), (k.org.clone(), k.valid)))
            .collect();
        let rejects = cfg
            .keys
            .iter()
            .filter_map(|k| Some((k.key.clone(), k.reject.clone()?)))
            .collect();
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                keys,
                rejects,
                orgs,
                day_start: start,
                faults: VecDeque::new(),
                models_faults: VecDeque::new(),
                records: Vec::new(),
                per_key: HashMap::new(),
                per_status: HashMap::new(),
                next_id: 0,
                messy: 0,
                rng: seed,
                cut: 0,
                noise: noise::NoiseState::default(),
            }),
            start,
            model: cfg.model,
            strict_model: cfg.strict_model,
            fixed_minute: cfg.fixed_minute,
            cut_at_max_tokens: cfg.cut_at_max_tokens,
            bare_429: cfg.bare_429,
            noise: cfg.noise,
            logprobs: cfg.logprobs,
            latency: cfg.latency,
            jitter: cfg.jitter,
            style: cfg.style,
            day_window: cfg.day_window,
            record: cfg.record,
        });
        listener
            .set_nonblocking(true)
            .expect("fake: set_nonblocking");
        let addr = listener.local_addr().expect("fake: local_addr");
        let shutdown = Arc::new(Notify::new());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let thread = {
            let shared = shared.clone();
            let shutdown = shutdown.clone();
            std::thread::Builder::new()
                .name("fake-provider".to_string())
                .spawn(move || {
                    let rt = tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(2)
                        .thread_name("fake-provider-worker")
                        .enable_all()
                        .build()
                        .expect("fake: tokio runtime");
                    rt.block_on(async move {
                        let listener = TcpListener::from_std(listener).expect("fake: listener");
                        let _ = ready_tx.send(());
                        accept_loop(listener, shared, shutdown).await;
                    });
                    rt.shutdown_background();
                })
                .expect("fake: spawn thread")
        };
        ready_rx.recv().expect("fake: server thread died");
        FakeProvider {
            shared,
            addr,
            shutdown,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:<port>/openai/v1`
    /// Time since the server started, on the clock of `RecordedRequest::at`.
    pub fn elapsed(&self) -> Duration {
        self.shared.start.elapsed()
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/openai/v1", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queues faults; each chat request with a valid key pops the next one.
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.lock().faults.extend(faults);
    }

    /// Queues faults for `GET /models`; each request with a valid key pops the next one
    /// (only `Status` and `HugeBody` apply there).
    pub fn push_models_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.lock().models_faults.extend(faults);
    }

    /// Faults still queued.
    pub fn pending_faults(&self) -> usize {
        self.lock().faults.len()
    }

    /// Drops every queued fault.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Replies cut at `max_tokens` so far (see `FakeConfig::cut_at_max_tokens`).
    pub fn cut_replies(&self) -> usize {
        self.lock().cut
    }

    /// Chat requests in arrival order (empty if `record` is off).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().records.clone()
    }

    /// Chat requests sent with `key`, any status (counted even if `record` is off).
    pub fn requests_for(&self, key: &str) -> usize {
        self.lock().per_key.get(key).copied().unwrap_or(0)
    }

    /// Chat replies with that status (0 = Hang/Reset); counted even if `record` is off.
    pub fn count_status(&self, status: u16) -> usize {
        self.lock().per_status.get(&status).copied().unwrap_or(0)
    }

    /// Chat replies with status 200 (including `Reply`/`MalformedJson` faults).
    pub fn ok_count(&self) -> usize {
        self.count_status(200)
    }

    /// All chat requests, any status.
    pub fn total_requests(&self) -> usize {
        self.lock().per_status.values().sum()
    }

    /// Clears every org's per-day counters now and restarts the day window.
    pub fn reset_day(&self) {
        let mut st = self.lock();
        st.day_start = Instant::now();
        for org in st.orgs.values_mut() {
            org.day_reqs = 0;
            org.day_tokens = 0;
        }
    }

    /// Replaces the limits of `org` (usage so far is kept).
    pub fn set_limits(&self, org: &str, limits: OrgLimits) {
        self.lock().orgs.entry(org.to_string()).or_default().limits = limits;
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.shutdown.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A port on 127.0.0.1 that is bound but not listening: connections to it are refused
/// (and no other test can take it) until `FakeProvider::start_on` listens on it.
pub struct ReservedPort {
    fd: std::os::fd::OwnedFd,
    addr: SocketAddr,
}

impl ReservedPort {
    pub fn new() -> ReservedPort {
        use std::os::fd::{FromRawFd, OwnedFd};
        // SAFETY: plain socket calls on a descriptor this function owns from creation.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            assert!(fd >= 0, "fake: socket");
            let fd = OwnedFd::from_raw_fd(fd);
            let mut sa: libc::sockaddr_in = std::mem::zeroed();
            sa.sin_family = libc::AF_INET as libc::sa_family_t;
            sa.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
            let bound = libc::bind(raw, &sa as *const _ as *const libc::sockaddr, len);
            assert_eq!(bound, 0, "fake: bind 127.0.0.1:0");
            let mut got = len;
            libc::getsockname(raw, &mut sa as *mut _ as *mut libc::sockaddr, &mut got);
            let port = u16::from_be(sa.sin_port);
            ReservedPort {
                fd,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
            }
        }
    }

    /// The base URL the fake will serve at once started on this port.
    pub fn base_url(&self) -> String {
        format!("http://{}/openai/v1", self.addr)
    }

    fn listen(self) -> std::net::TcpListener {
        use std::os::fd::AsRawFd;
        // SAFETY: the descriptor is a bound TCP socket owned by `self`.
        let listening = unsafe { libc::listen(self.fd.as_raw_fd(), 128) };
        assert_eq!(listening, 0, "fake: listen");
        std::net::TcpListener::from(self.fd)
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, shutdown: Arc<Notify>) {
    loop {
        tokio::select! {
            _ = shutdown.notified() => break,
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    tokio::spawn(serve_conn(stream, shared.clone()));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            },
        }
    }
}

// ---------------------------------------------------------------- HTTP/1.1

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    keep_alive: bool,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

enum BodyKind {
    Length(usize),
    Chunked,
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Decodes a complete chunked body from `buf`; returns (body, bytes consumed).
fn decode_chunked(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, ()> {
    let mut pos = 0;
    let mut body = Vec::new();
    loop {
        let Some(rel) = buf[pos..].windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&buf[pos..pos + rel]).map_err(|_| ())?;
        let size_txt = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_txt, 16).map_err(|_| ())?;
        pos += rel + 2;
        if size == 0 {
            // Trailers end with an empty line.
            loop {
                let Some(rel) = buf[pos..].windows(2).position(|w| w == b"\r\n") else {
                    return Ok(None);
                };
                pos += rel + 2;
                if rel == 0 {
                    return Ok(Some((body, pos)));
                }
            }
        }
        if body.len() + size > MAX_BODY {
            return Err(());
        }
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        pos += size + 2;
    }
}

/// Reads one request; `Ok(None)` on a clean close between requests.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Option<Request>, ()> {
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(end) = find_head_end(buf) {
            break end;
        }
        if buf.len() > MAX_HEAD {
            return Err(());
        }
        let n = stream.read(&mut chunk).await.map_err(|_| ())?;
        if n == 0 {
            return if buf.is_empty() { Ok(None) } else { Err(()) };
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end - 4]).map_err(|_| ())?;
    let mut lines = head.split("\r\n");
    let mut first = lines.next().ok_or(())?.split_whitespace();
    let method = first.next().ok_or(())?.to_string();
    let path = first.next().ok_or(())?.to_string();
    let version = first.next().unwrap_or("HTTP/1.1").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            Some((n.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect();
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let conn = get("connection").map(|v| v.to_ascii_lowercase());
    let keep_alive = match conn.as_deref() {
        Some(c) if c.contains("close") => false,
        Some(c) if c.contains("keep-alive") => true,
        _ => version != "HTTP/1.0",
    };
    let kind =
        if get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
            BodyKind::Chunked
        } else {
            let len = match get("content-length") {
                Some(v) => v.parse::<usize>().map_err(|_| ())?,
                None => 0,
            };
            if len > MAX_BODY {
                return Err(());
            }
            BodyKind::Length(len)
        };
    let expect_continue = get("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    let mut sent_continue = false;
    let (body, consumed) = loop {
        let rest = &buf[head_end..];
        match kind {
            BodyKind::Length(len) if rest.len() >= len => break (rest[..len].to_vec(), len),
            BodyKind::Chunked => {
                if let Some(done) = decode_chunked(rest)? {
                    break done;
                }
            }
            _ => {}
        }
        if expect_continue && !sent_continue {
            sent_continue = true;
            stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .map_err(|_| ())?;
        }
        let n = stream.read(&mut chunk).await.map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    buf.drain(..head_end + consumed);
    Ok(Some(Request {
        method,
        path,
        headers,
        body,
        keep_alive,
    }))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

type Headers = Vec<(&'static str, String)>;

fn encode_response(status: u16, headers: &Headers, body: &[u8], keep_alive: bool) -> Vec<u8> {
    let mut head = String::with_capacity(512);
    let _ = write!(
        head,
        "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: {}\r\n",
        reason(status),
        body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    );
    for (n, v) in headers {
        let _ = write!(head, "{n}: {v}\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

enum Action {
    Respond {
        status: u16,
        headers: Headers,
        body: Vec<u8>,
        delay: Duration,
    },
    Hang(Duration),
    Reset(Duration),
    Stream {
        status: u16,
        bytes: u64,
        delay: Duration,
    },
    StreamHead {
        bytes: u64,
        delay: Duration,
    },
}

async fn serve_conn(mut stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(8 * 1024);
    loop {
        let req = match read_request(&mut stream, &mut buf).await {
            Ok(Some(r)) => r,
            _ => return,
        };
        let action = shared.handle(&req);
        match action {
            Action::Respond {
                status,
                headers,
                body,
                delay,
            } => {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let out = encode_response(status, &headers, &body, req.keep_alive);
                if stream.write_all(&out).await.is_err() || !req.keep_alive {
                    let _ = stream.shutdown().await;
                    return;
                }
            }
            Action::Hang(d) => {
                tokio::time::sleep(d).await;
                return;
            }
            Action::Reset(d) => {
                if !d.is_zero() {
                    tokio::time::sleep(d).await;
                }
                let _ = stream.set_zero_linger();
                drop(stream);
                return;
            }
            Action::Stream {
                status,
                bytes,
                delay,
            } => {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let _ = stream_huge_body(&mut stream, status, bytes).await;
                let _ = stream.shutdown().await;
                return;
            }
            Action::StreamHead { bytes, delay } => {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let _ = stream_huge_head(&mut stream, bytes).await;
                let _ = stream.shutdown().await;
                return;
            }
        }
    }
}

/// Writes a chunked response of `bytes` body bytes (a JSON-looking start, then filler)
/// until done or until the client stops reading.
async fn stream_huge_body(stream: &mut TcpStream, status: u16, bytes: u64) -> std::io::Result<()> {
    const CHUNK: usize = 64 * 1024;
    let head = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        reason(status)
    );
    stream.write_all(head.as_bytes()).await?;
    let start = br#"{"choices":[{"index":0,"message":{"role":"assistant","content":""#;
    let mut frame = Vec::with_capacity(CHUNK + 16);
    let mut left = bytes;
    let mut first = true;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        frame.clear();
        frame.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        if first && n >= start.len() {
            frame.extend_from_slice(start);
            frame.resize(frame.len() + n - start.len(), b'x');
        } else {
            frame.resize(frame.len() + n, b'x');
        }
        first = false;
        frame.extend_from_slice(b"\r\n");
        stream.write_all(&frame).await?;
        left -= n as u64;
    }
    stream.write_all(b"0\r\n\r\n").await
}

/// Writes a 200 response whose head has one `x-filler` header of `bytes` bytes.
async fn stream_huge_head(stream: &mut TcpStream, bytes: u64) -> std::io::Result<()> {
    stream
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-filler: ")
        .await?;
    let chunk = vec![b'h'; 64 * 1024];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        stream.write_all(&chunk[..n]).await?;
        left -= n as u64;
    }
    stream
        .write_all(b"\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
        .await
}

// ---------------------------------------------------------------- API logic

fn error_body(message: &str, kind: &str, code: Option<&str>) -> Vec<u8> {
    let mut err = json!({ "message": message, "type": kind });
    if let Some(c) = code {
        err["code"] = json!(c);
    }
    serde_json::to_vec(&json!({ "error": err })).unwrap_or_default()
}

fn invalid_key_body() -> Vec<u8> {
    error_body(
        "Invalid API Key",
        "invalid_request_error",
        Some("invalid_api_key"),
    )
}

#[derive(Clone, Copy)]
enum Dim {
    Rpm,
    Rpd,
    Tpm,
    Tpd,
}

impl Dim {
    fn text(self) -> &'static str {
        match self {
            Dim::Rpm => "requests per minute (RPM)",
            Dim::Rpd => "requests per day (RPD)",
            Dim::Tpm => "tokens per minute (TPM)",
            Dim::Tpd => "tokens per day (TPD)",
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Dim::Rpm | Dim::Rpd => "requests",
            Dim::Tpm | Dim::Tpd => "tokens",
        }
    }
}

struct Limited {
    dim: Dim,
    limit: u64,
    used: u64,
    requested: u64,
    wait: Duration,
    too_large: bool,
}

/// An `Echo` fault made concrete for this request: what such a proxy sends back.
fn echoed(fault: Fault, req: &Request) -> Fault {
    let Fault::Echo(status) = fault else {
        return fault;
    };
    let text = format!(
        "you sent Authorization: {} (key {})",
        req.header("authorization").unwrap_or(""),
        bearer(req).unwrap_or_default()
    );
    if status == 200 {
        return Fault::Reply(text);
    }
    let body = error_body(&text, "invalid_request_error", None);
    Fault::Body {
        status,
        body: String::from_utf8(body).expect("json is utf-8"),
    }
}

/// The key of the request's `Authorization: Bearer` header (beside it, a base URL with
/// `user:password@` makes reqwest send a `Basic` one, meant for a proxy).
fn bearer(req: &Request) -> Option<String> {
    req.headers
        .iter()
        .filter(|(n, _)| n == "authorization")
        .find_map(|(_, v)| {
            let (scheme, key) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| key.trim().to_string())
        })
}

fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

struct ChatBody {
    texts: Vec<String>,
    batch: bool,
    prompt_tokens: u64,
    max_tokens: u64,
    cost: u64,
}

fn parse_chat(body: &Value) -> Result<ChatBody, String> {
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| "'messages' must be a non-empty array".to_string())?;
    let mut chars = 0u64;
    let mut last_user = None;
    for m in messages {
        let text = content_text(m.get("content").unwrap_or(&Value::Null));
        chars += text.chars().count() as u64;
        if m.get("role").and_then(Value::as_str) == Some("user") {
            last_user = Some(text);
        }
    }
    let last_user = last_user.ok_or_else(|| "no user message".to_string())?;
    let prompt_tokens = chars.div_ceil(4);
    let max_tokens = body.get("max_tokens").and_then(Value::as_u64).unwrap_or(16);
    // A batch is a JSON array of strings (what autolabel sends), or the older
    // `{"texts": [...]}` object.
    let batch_texts = serde_json::from_str::<Value>(last_user.trim())
        .ok()
        .and_then(|v| match v {
            Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_string) => {
                Some(items)
            }
            v => v.get("texts").and_then(Value::as_array).cloned(),
        });
    let (texts, batch) = match batch_texts {
        Some(items) => (
            items
                .iter()
                .map(|it| match it {
                    Value::String(s) => s.clone(),
                    Value::Object(_) => match it.get("text") {
                        Some(Value::String(s)) => s.clone(),
                        Some(other) => other.to_string(),
                        None => String::new(),
                    },
                    other => other.to_string(),
                })
                .collect(),
            true,
        ),
        None => (vec![last_user], false),
    };
    Ok(ChatBody {
        texts,
        batch,
        prompt_tokens,
        max_tokens,
        cost: prompt_tokens + max_tokens,
    })
}

fn messy_single(label: &str, n: u64) -> String {
    let en = english_label(label);
    let cap = |s: &str| {
        let mut c = s.chars();
        c.next()
            .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
            .unwrap_or_default()
    };
    match n % 9 {
        0 => format!("{}.", cap(label)),
        1 => format!("**{label}**"),
        2 => format!("Sentimen: {label}"),
        3 => format!("```json\n{{\"label\": \"{label}\"}}\n```"),
        4 => format!("\"{}\"", cap(label)),
        5 => format!("{{\"sentiment\": \"{label}\"}}"),
        6 => cap(en),
        7 => format!("{}!", en.to_uppercase()),
        _ => en.to_string(),
    }
}

impl Shared {
    /// The start of the current fixed minute, when minutes are counted in fixed windows.
    fn fixed_minute_start(&self, now: Instant) -> Option<Instant> {
        self.fixed_minute.then(|| {
            let minutes = now.saturating_duration_since(self.start).as_secs() / 60;
            self.start + MINUTE * minutes as u32
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn handle(&self, req: &Request) -> Action {
        let path = req.path.split('?').next().unwrap_or("");
        if path.ends_with("/chat/completions") && req.method == "POST" {
            self.chat(req)
        } else if path.ends_with("/models") && req.method == "GET" {
            self.models(req)
        } else {
            let msg = format!("Unknown request URL: {} {}", req.method, path);
            Action::Respond {
                status: 404,
                headers: Vec::new(),
                body: error_body(&msg, "invalid_request_error", Some("unknown_url")),
                delay: Duration::ZERO,
            }
        }
    }

    fn roll_day(&self, st: &mut State, now: Instant) {
        let dw = self.day_window.as_nanos();
        if dw == 0 {
            return;
        }
        let elapsed = now.saturating_duration_since(st.day_start).as_nanos();
        if elapsed >= dw {
            let n = elapsed / dw;
            st.day_start += Duration::from_nanos((n * dw).min(u64::MAX as u128) as u64);
            for org in st.orgs.values_mut() {
                org.day_reqs = 0;
                org.day_tokens = 0;
            }
        }
    }

    fn day_remaining(&self, st: &State, now: Instant) -> Duration {
        (st.day_start + self.day_window).saturating_duration_since(now)
    }

    fn rate_headers(&self, org: &OrgState, day_left: Duration, now: Instant) -> Headers {
        if self.bare_429 {
            return Vec::new();
        }
        let l = &org.limits;
        let (limit_req, remaining_req, reset_req) = match l.rpd {
            Some(rpd) => {
                let remaining = u64::from(rpd).saturating_sub(org.day_reqs);
                let reset = if org.day_reqs == 0 {
                    Duration::ZERO
                } else if remaining == 0 {
                    day_left
                } else {
                    (self.day_window / rpd.max(1)).min(day_left)
                };
                (u64::from(rpd), remaining, reset)
            }
            None => (
                u64::from(DEFAULT_LIMIT_REQUESTS),
                u64::from(DEFAULT_LIMIT_REQUESTS),
                Duration::ZERO,
            ),
        };
        let (limit_tok, remaining_tok, reset_tok) = match l.tpm {
            Some(tpm) => {
                let reset = org
                    .minute_tokens
                    .front()
                    .map(|&(t, _)| (t + MINUTE).saturating_duration_since(now))
                    .unwrap_or(Duration::ZERO);
                (
                    u64::from(tpm),
                    u64::from(tpm).saturating_sub(org.minute_token_sum),
                    reset,
                )
            }
            None => (
                u64::from(DEFAULT_LIMIT_TOKENS),
                u64::from(DEFAULT_LIMIT_TOKENS),
                Duration::ZERO,
            ),
        };
        vec![
            ("x-ratelimit-limit-requests", limit_req.to_string()),
            ("x-ratelimit-remaining-requests", remaining_req.to_string()),
            ("x-ratelimit-reset-requests", groq_duration(reset_req)),
            ("x-ratelimit-limit-tokens", limit_tok.to_string()),
            ("x-ratelimit-remaining-tokens", remaining_tok.to_string()),
            ("x-ratelimit-reset-tokens", groq_duration(reset_tok)),
        ]
    }

    /// Checks RPD, TPD, RPM, TPM in that order; `None` means the request fits.
    fn check_limits(
        &self,
        org: &OrgState,
        cost: u64,
        day_left: Duration,
        now: Instant,
    ) -> Option<Limited> {
        let l = &org.limits;
        if let Some(rpd) = l.rpd.map(u64::from) {
            if org.day_reqs + 1 > rpd {
                return Some(Limited {
                    dim: Dim::Rpd,
                    limit: rpd,
                    used: org.day_reqs,
                    requested: 1,
                    wait: day_left,
                    too_large: false,
                });
            }
        }
        if let Some(tpd) = l.tpd.map(u64::from) {
            if org.day_tokens + cost > tpd {
                return Some(Limited {
                    dim: Dim::Tpd,
                    limit: tpd,
                    used: org.day_tokens,
                    requested: cost,
                    wait: day_left,
                    too_large: cost > tpd,
                });
            }
        }
        if let Some(rpm) = l.rpm.map(u64::from) {
            let used = org.minute_reqs.len() as u64;
            if used + 1 > rpm {
                // The (used + 1 - rpm)-th oldest request must leave the window.
                let idx = (used + 1 - rpm - 1) as usize;
                let wait = match self.fixed_minute_start(now) {
                    Some(from) => (from + MINUTE).saturating_duration_since(now),
                    None => org
                        .minute_reqs
                        .get(idx)
                        .map(|&t| (t + MINUTE).saturating_duration_since(now))
                        .unwrap_or(MINUTE),
                };
                return Some(Limited {
                    dim: Dim::Rpm,
                    limit: rpm,
                    used,
                    requested: 1,
                    wait,
                    too_large: false,
                });
            }
        }
        if let Some(tpm) = l.tpm.map(u64::from) {
            let used = org.minute_token_sum;
            if used + cost > tpm {
                let too_large = cost > tpm;
                let mut wait = MINUTE;
                if !too_large {
                    let need = used + cost - tpm;
                    let mut freed = 0;
                    for &(t, n) in &org.minute_tokens {
                        freed += n;
                        if freed >= need {
                            wait = (t + MINUTE).saturating_duration_since(now);
                            break;
                        }
                    }
                }
                return Some(Limited {
                    dim: Dim::Tpm,
                    limit: tpm,
                    used,
                    requested: cost,
                    wait,
                    too_large,
                });
            }
        }
        None
    }

    fn limited_reply(
        &self,
        org_name: &str,
        lim: &Limited,
        mut headers: Headers,
        delay: Duration,
    ) -> (u16, Action) {
        if lim.too_large {
            // What Groq does when one request alone exceeds a token limit.
            let msg = format!(
                "Request too large for model `{}` in organization `{org_name}` service tier `on_demand` on {}: Limit {}, Requested {}, please reduce your message size and try again. Need more tokens? Upgrade to Dev Tier today at https://console.groq.com/settings/billing",
                self.model,
                lim.dim.text(),
                lim.limit,
                lim.requested
            );
            let body = error_body(&msg, lim.dim.kind(), Some("rate_limit_exceeded"));
            return (
                413,
                Action::Respond {
                    status: 413,
                    headers,
                    body,
                    delay,
                },
            );
        }
        if self.bare_429 {
            let body = error_body("Too Many Requests", "rate_limit_error", None);
            return (
                429,
                Action::Respond {
                    status: 429,
                    headers,
                    body,
                    delay,
                },
            );
        }
        let body = rate_limit_body(
            &self.model,
            org_name,
            lim.dim,
            lim.limit,
            lim.used,
            lim.requested,
            lim.wait,
        );
        headers.push(("retry-after", ceil_secs(lim.wait).to_string()));
        (
            429,
            Action::Respond {
                status: 429,
                headers,
                body,
                delay,
            },
        )
    }

    fn delay(&self, st: &mut State) -> Duration {
        if self.jitter.is_zero() {
            return self.latency;
        }
        let mut x = st.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        st.rng = x;
        let j = self.jitter.as_nanos().min(u64::MAX as u128 / 4) as u64;
        let r = x % (2 * j + 1);
        let base = self.latency.as_nanos().min(u64::MAX as u128 / 4) as u64;
        Duration::from_nanos((base + r).saturating_sub(j))
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        st: &mut State,
        key: &str,
        path: &str,
        texts: Vec<String>,
        status: u16,
        at: Duration,
        batch: bool,
        body: &Value,
    ) {
        *st.per_key.entry(key.to_string()).or_default() += 1;
        *st.per_status.entry(status).or_default() += 1;
        if self.record {
            st.records.push(RecordedRequest {
                key: key.to_string(),
                path: path.to_string(),
                texts,
                status,
                at,
                batch,
                body: body.clone(),
            });
        }
    }

    /// The reply to a fault other than `Reply`/`WrongCount`; returns (recorded status, action).
    fn fault_action(
        &self,
        st: &State,
        fault: Fault,
        org_name: &str,
        mut headers: Headers,
        delay: Duration,
        day_left: Duration,
    ) -> (u16, Action) {
        let limits = &st.orgs[org_name].limits;
        match fault {
            Fault::Status(code) => (
                code,
                Action::Respond {
                    status: code,
                    headers,
                    body: error_body("fake fault", "server_error", None),
                    delay,
                },
            ),
            Fault::Hang(d) => (0, Action::Hang(delay + d)),
            Fault::HugeHeader(bytes) => (200, Action::StreamHead { bytes, delay }),
            Fault::HugeBody { status, bytes } => (
                status,
                Action::Stream {
                    status,
                    bytes,
                    delay,
                },
            ),
            Fault::Reset => (0, Action::Reset(delay)),
            Fault::MalformedJson => (
                200,
                Action::Respond {
                    status: 200,
                    headers,
                    body: br#"{"choices": ["#.to_vec(),
                    delay,
                },
            ),
            Fault::RateLimitMinute { retry_after_secs } => {
                let limit = u64::from(limits.rpm.unwrap_or(30));
                let lim = Limited {
                    dim: Dim::Rpm,
                    limit,
                    used: limit,
                    requested: 1,
                    wait: Duration::from_secs_f64(retry_after_secs.max(0.0)),
                    too_large: false,
                };
                self.limited_reply(org_name, &lim, headers, delay)
            }
            Fault::RateLimitDay => {
                let limit = u64::from(limits.rpd.unwrap_or(DEFAULT_LIMIT_REQUESTS));
                for h in headers.iter_mut() {
                    if h.0 == "x-ratelimit-remaining-requests" {
                        h.1 = "0".to_string();
                    } else if h.0 == "x-ratelimit-reset-requests" {
                        h.1 = groq_duration(day_left);
                    }
                }
                let lim = Limited {
                    dim: Dim::Rpd,
                    limit,
                    used: limit,
                    requested: 1,
                    wait: day_left,
                    too_large: false,
                };
                self.limited_reply(org_name, &lim, headers, delay)
            }
            Fault::RateLimitRaw { retry_after } => {
                headers.push(("retry-after", retry_after));
                (
                    429,
                    Action::Respond {
                        status: 429,
                        headers,
                        body: error_body(
                            "Too many requests",
                            "requests",
                            Some("rate_limit_exceeded"),
                        ),
                        delay,
                    },
                )
            }
            Fault::Body { status, body } => (
                status,
                Action::Respond {
                    status,
                    headers,
                    body: body.into_bytes(),
                    delay,
                },
            ),
            Fault::Redirect { status, location } => {
                headers.push(("location", location));
                (
                    status,
                    Action::Respond {
                        status,
                        headers,
                        body: Vec::new(),
                        delay,
                    },
                )
            }
            Fault::Reply(_) | Fault::WrongCount | Fault::Echo(_) => {
                unreachable!("handled by the caller")
            }
        }
    }

    fn chat(&self, req: &Request) -> Action {
        let now = Instant::now();
        let at = now.saturating_duration_since(self.start);
        let key = bearer(req).unwrap_or_default();
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let parsed = parse_chat(&body);
        let mut st = self.lock();
        let delay = self.delay(&mut st);
        let (texts, batch) = match &parsed {
            Ok(p) => (p.texts.clone(), p.batch),
            Err(_) => (Vec::new(), false),
        };

        let org_name = match st.keys.get(&key) {
            Some((org, true)) => org.clone(),
            _ => {
                self.record(&mut st, &key, &req.path, texts, 401, at, batch, &body);
                return Action::Respond {
                    status: 401,
                    headers: Vec::new(),
                    body: invalid_key_body(),
                    delay,
                };
            }
        };
        if let Some((status, message)) = st.rejects.get(&key).cloned() {
            self.record(&mut st, &key, &req.path, texts, status, at, batch, &body);
            return Action::Respond {
                status,
                headers: Vec::new(),
                body: error_body(&message, "invalid_request_error", None),
                delay,
            };
        }
        let parsed = match parsed {
            Ok(p) => p,
            Err(msg) => {
                self.record(&mut st, &key, &req.path, texts, 400, at, batch, &body);
                return Action::Respond {
                    status: 400,
                    headers: Vec::new(),
                    body: error_body(&msg, "invalid_request_error", None),
                    delay,
                };
            }
        };

        if self.logprobs == Logprobs::Refuse && body.get("logprobs").is_some() {
            self.record(
                &mut st,
                &key,
                &req.path,
                parsed.texts,
                400,
                at,
                parsed.batch,
                &body,
            );
            return Action::Respond {
                status: 400,
                headers: Vec::new(),
                body: error_body(logprobs::REFUSAL, "invalid_request_error", None),
                delay,
            };
        }
        let asked = body["model"].as_str().unwrap_or("");
        if self.strict_model && asked != self.model {
            self.record(
                &mut st,
                &key,
                &req.path,
                parsed.texts,
                404,
                at,
                parsed.batch,
                &body,
            );
            let msg =
                format!("The model `{asked}` does not exist or you do not have access to it.");
            return Action::Respond {
                status: 404,
                headers: Vec::new(),
                body: error_body(&msg, "invalid_request_error", Some("model_not_found")),
                delay,
            };
        }
        self.roll_day(&mut st, now);
        let day_left = self.day_remaining(&st, now);
        let fixed_from = self.fixed_minute_start(now);
        st.orgs
            .entry(org_name.clone())
            .or_default()
            .prune(now, fixed_from);
        let fault = st.faults.pop_front().map(|f| echoed(f, req));
        let mut headers = self.rate_headers(&st.orgs[&org_name], day_left, now);

        let mut content_override = None;
        let mut wrong_count = false;
        match fault {
            Some(Fault::Reply(s)) => content_override = Some(s),
            Some(Fault::WrongCount) => wrong_count = true,
            Some(fault) => {
                let (status, action) =
                    self.fault_action(&st, fault, &org_name, headers, delay, day_left);
                self.record(
                    &mut st,
                    &key,
                    &req.path,
                    parsed.texts,
                    status,
                    at,
                    parsed.batch,
                    &body,
                );
                return action;
            }
            None => {
                let org = &st.orgs[&org_name];
                if let Some(lim) = self.check_limits(org, parsed.cost, day_left, now) {
                    let (status, action) = self.limited_reply(&org_name, &lim, headers, delay);
                    self.record(
                        &mut st,
                        &key,
                        &req.path,
                        parsed.texts,
                        status,
                        at,
                        parsed.batch,
                        &body,
                    );
                    return action;
                }
                let org = st.orgs.get_mut(&org_name).expect("org exists");
                org.minute_reqs.push_back(now);
                org.minute_tokens.push_back((now, parsed.cost));
                org.minute_token_sum += parsed.cost;
                org.day_reqs += 1;
                org.day_tokens += parsed.cost;
                headers = self.rate_headers(&st.orgs[&org_name], day_left, now);
            }
        }

        let mut labels: Vec<&'static str> =
            parsed.texts.iter().map(|t| expected_label(t)).collect();
        if let Some(noise) = &self.noise {
            labels = st.noise.apply(noise, &parsed.texts, labels, &LABELS);
        }
        if wrong_count && parsed.batch {
            labels.pop();
        }
        let content = match content_override {
            Some(s) => s,
            None if parsed.batch => {
                let inner = json!({ "labels": labels }).to_string();
                match self.style {
                    ReplyStyle::Plain => inner,
                    ReplyStyle::Messy => format!("```json\n{inner}\n```"),
                    ReplyStyle::Chatty => chatty::batch(&labels),
                }
            }
            None => {
                let label = labels.first().copied().unwrap_or("netral");
                match self.style {
                    ReplyStyle::Plain => label.to_string(),
                    ReplyStyle::Messy => {
                        st.messy += 1;
                        messy_single(label, st.messy - 1)
                    }
                    ReplyStyle::Chatty => {
                        let text = parsed.texts.first().map_or("", String::as_str);
                        chatty::single(label, fnv1a64(text.as_bytes()) >> 8)
                    }
                }
            }
        };
        let (content, completion, finish) =
            if self.cut_at_max_tokens || self.style == ReplyStyle::Chatty {
                let cap = if self.cut_at_max_tokens {
                    parsed.max_tokens
                } else {
                    u64::MAX
                };
                chatty::within(content, cap)
            } else {
                (content, (2 * labels.len().max(1)) as u64, "stop")
            };
        st.cut += usize::from(finish == "length");
        st.next_id += 1;
        let id = st.next_id;
        self.record(
            &mut st,
            &key,
            &req.path,
            parsed.texts.clone(),
            200,
            at,
            parsed.batch,
            &body,
        );
        drop(st);

        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut choice = json!({
            "index": 0,
            "message": { "role": "assistant", "content": content },
            "finish_reason": finish
        });
        let asked_logprobs = body.get("logprobs").and_then(Value::as_bool) == Some(true);
        if self.logprobs == Logprobs::Serve && asked_logprobs && !parsed.batch {
            let top = body["top_logprobs"].as_u64().unwrap_or(0) as usize;
            let text = parsed.texts.first().map_or("", String::as_str);
            let answered = labels.first().copied().unwrap_or("netral");
            choice["logprobs"] = logprobs::content(&content, text, answered, &LABELS, top);
        }
        let reply = json!({
            "id": format!("chatcmpl-{id}"),
            "object": "chat.completion",
            "created": created,
            "model": self.model,
            "choices": [choice],
            "usage": {
                "prompt_tokens": parsed.prompt_tokens,
                "completion_tokens": completion,
                "total_tokens": parsed.prompt_tokens + completion
            }
        });
        Action::Respond {
            status: 200,
            headers,
            body: serde_json::to_vec(&reply).unwrap_or_default(),
            delay,
        }
    }

    fn models(&self, req: &Request) -> Action {
        let now = Instant::now();
        let key = bearer(req).unwrap_or_default();
        let mut st = self.lock();
        let org_name = match st.keys.get(&key) {
            Some((org, true)) => org.clone(),
            _ => {
                return Action::Respond {
                    status: 401,
                    headers: Vec::new(),
                    body: invalid_key_body(),
                    delay: Duration::ZERO,
                }
            }
        };
        match st.models_faults.pop_front().map(|f| echoed(f, req)) {
            Some(Fault::Body { status, body }) => {
                return Action::Respond {
                    status,
                    headers: Vec::new(),
                    body: body.into_bytes(),
                    delay: Duration::ZERO,
                }
            }
            Some(Fault::Redirect { status, location }) => {
                return Action::Respond {
                    status,
                    headers: vec![("location", location)],
                    body: Vec::new(),
                    delay: Duration::ZERO,
                }
            }
            Some(Fault::HugeBody { status, bytes }) => {
                return Action::Stream {
                    status,
                    bytes,
                    delay: Duration::ZERO,
                }
            }
            Some(Fault::Status(status)) => {
                return Action::Respond {
                    status,
                    headers: Vec::new(),
                    body: error_body("fake fault", "server_error", None),
                    delay: Duration::ZERO,
                }
            }
            _ => {}
        }
        self.roll_day(&mut st, now);
        let day_left = self.day_remaining(&st, now);
        let fixed_from = self.fixed_minute_start(now);
        st.orgs
            .entry(org_name.clone())
            .or_default()
            .prune(now, fixed_from);
        let headers = self.rate_headers(&st.orgs[&org_name], day_left, now);
        let body = json!({
            "object": "list",
            "data": [{ "id": self.model, "object": "model", "owned_by": "fake" }]
        });
        Action::Respond {
            status: 200,
            headers,
            body: serde_json::to_vec(&body).unwrap_or_default(),
            delay: Duration::ZERO,
        }
    }
}

/// Groq's 429 body for a limit in dimension `dim`.
fn rate_limit_body(
    model: &str,
    org: &str,
    dim: Dim,
    limit: u64,
    used: u64,
    requested: u64,
    wait: Duration,
) -> Vec<u8> {
    let msg = format!(
        "Rate limit reached for model `{model}` in organization `{org}` service tier `on_demand` on {}: Limit {limit}, Used {used}, Requested {requested}. Please try again in {}. Need more tokens? Upgrade to Dev Tier today at https://console.groq.com/settings/billing",
        dim.text(),
        groq_duration(wait)
    );
    error_body(&msg, dim.kind(), Some("rate_limit_exceeded"))
}

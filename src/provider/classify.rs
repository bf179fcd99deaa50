//! Reading a provider's answer: which kind of failure it is, and what its rate-limit
//! headers say. Pure functions over status, headers and body, so every provider quirk
//! is unit-tested here, and property-tested never to panic on what a provider sends.
//!
//! Every duration a provider sends (`retry-after`, `x-ratelimit-reset-*`, Gemini's
//! `retryDelay`, "try again in 4.2s") is data: negative, NaN, empty and garbled values
//! are ignored, and huge ones are clamped to [`LONGEST_HINT`].

use std::time::Duration;

use serde_json::Value;

use super::unreached::Unreached;
use crate::limits::Dim;

/// The longest wait a provider can meaningfully ask for: a monthly quota's reset.
pub const LONGEST_HINT: Duration = Duration::from_secs(31 * 86_400);

/// A wait longer than this is a daily (or longer) quota, not a minute window.
pub const LONG_RESET: Duration = Duration::from_secs(120);

/// A minute window never needs a longer wait than this; a per-minute 429 asking for more
/// is clamped to it.
const MINUTE_WINDOW: Duration = Duration::from_secs(60);

/// What a failed call means for the key and the row.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// A per-minute (or per-hour) limit: the key cools down, then serves again.
    RateLimited {
        /// How long the provider asks to wait; `None` when it says nothing usable.
        retry_after: Option<Duration>,
        /// The window the provider names, if it names one.
        dim: Option<Dim>,
        /// The real limit when the provider states it ("Limit 30" in Groq's message).
        limit: Option<u64>,
    },
    /// A daily/monthly quota or billing limit: the key is done until `reset`.
    QuotaExhausted {
        reset: Option<Duration>,
        what: String,
        /// The window and limit when the provider names them (Groq's RPD/TPD messages).
        dim: Option<Dim>,
        limit: Option<u64>,
    },
    /// 401/403: the key is invalid until `test-keys` passes.
    InvalidKey { status: u16 },
    /// Worth retrying after a back-off, on this key or another.
    Transient { class: ErrorClass, detail: String },
    /// The provider refused the request itself (400/413/422): retrying won't help this row.
    Rejected { status: u16, message: String },
    /// 404: wrong model or base URL; no row can succeed.
    NotFound { message: String },
    /// The request never reached the provider (DNS, connection refused, TLS): no HTTP
    /// status came back, so no quota was used and the key is not to blame.
    Unreachable { host: String, cause: Unreached },
}

/// Error classes as counted in the usage ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorClass {
    RateLimit,
    Quota,
    Auth,
    Server,
    Timeout,
    Network,
    Unparsable,
    Rejected,
}

impl ErrorClass {
    pub const ALL: [ErrorClass; 8] = [
        ErrorClass::RateLimit,
        ErrorClass::Quota,
        ErrorClass::Auth,
        ErrorClass::Server,
        ErrorClass::Timeout,
        ErrorClass::Network,
        ErrorClass::Unparsable,
        ErrorClass::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::RateLimit => "rate_limit",
            ErrorClass::Quota => "quota",
            ErrorClass::Auth => "auth",
            ErrorClass::Server => "server",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Network => "network",
            ErrorClass::Unparsable => "unparsable",
            ErrorClass::Rejected => "rejected",
        }
    }
}

impl CallError {
    pub fn class(&self) -> ErrorClass {
        match self {
            CallError::RateLimited { .. } => ErrorClass::RateLimit,
            CallError::QuotaExhausted { .. } => ErrorClass::Quota,
            CallError::InvalidKey { .. } => ErrorClass::Auth,
            CallError::Transient { class, .. } => *class,
            CallError::Unreachable { .. } => ErrorClass::Network,
            CallError::Rejected { .. } | CallError::NotFound { .. } => ErrorClass::Rejected,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            CallError::RateLimited {
                retry_after, dim, ..
            } => {
                let what = dim.map_or("rate limit".to_string(), |d| d.as_str().to_uppercase());
                match retry_after {
                    Some(r) => format!("rate limited ({what}), retry in {:.1}s", r.as_secs_f64()),
                    None => format!("rate limited ({what}), no retry time given"),
                }
            }
            CallError::QuotaExhausted { reset, what, .. } => match reset {
                Some(r) => format!("quota exhausted ({what}), resets in {}", human(*r)),
                None => format!("quota exhausted ({what})"),
            },
            CallError::InvalidKey { status } => format!("invalid key (HTTP {status})"),
            CallError::Transient { class, detail } => format!("{}: {detail}", class.as_str()),
            CallError::Rejected { status, message } => {
                format!("rejected (HTTP {status}): {message}")
            }
            CallError::NotFound { message } => format!("not found (HTTP 404): {message}"),
            CallError::Unreachable { host, cause } => {
                format!("cannot reach {host}: {}", cause.describe())
            }
        }
    }
}

/// Rate-limit headers of one reply (Groq/OpenAI style).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RateHeaders {
    pub limit_requests: Option<u64>,
    pub remaining_requests: Option<u64>,
    pub reset_requests: Option<Duration>,
    pub limit_tokens: Option<u64>,
    pub remaining_tokens: Option<u64>,
    pub reset_tokens: Option<Duration>,
    pub retry_after: Option<Duration>,
    /// The organization a 429 body names (Groq's "… in organization `org_…` …"): not a
    /// header, but read with them, since it says whose limit was hit.
    pub org: Option<String>,
}

impl RateHeaders {
    /// One pass over the headers (names arrive lowercased), matching the ones we read:
    /// cheaper than seven lookups by name on every reply.
    pub fn from_headers(h: &reqwest::header::HeaderMap) -> RateHeaders {
        let mut out = RateHeaders::default();
        for (name, value) in h {
            let name = name.as_str();
            if !(name.starts_with("x-ratelimit-") || name == "retry-after") {
                continue;
            }
            let Some(v) = value.to_str().ok().map(str::trim) else {
                continue;
            };
            match name {
                "x-ratelimit-limit-requests" => out.limit_requests = parse_count(v),
                "x-ratelimit-remaining-requests" => out.remaining_requests = parse_count(v),
                "x-ratelimit-reset-requests" => out.reset_requests = parse_duration(v),
                "x-ratelimit-limit-tokens" => out.limit_tokens = parse_count(v),
                "x-ratelimit-remaining-tokens" => out.remaining_tokens = parse_count(v),
                "x-ratelimit-reset-tokens" => out.reset_tokens = parse_duration(v),
                "retry-after" => out.retry_after = parse_duration(v),
                _ => {}
            }
        }
        out
    }
}

/// A count in a header: a whole number, or a finite non-negative decimal (rounded down).
fn parse_count(s: &str) -> Option<u64> {
    if let Ok(n) = s.parse::<u64>() {
        return Some(n);
    }
    let v: f64 = s.parse().ok()?;
    // `as` saturates at u64::MAX for huge values.
    (v.is_finite() && v >= 0.0).then_some(v as u64)
}

/// Seconds from outside as a duration: `None` for negative, NaN or infinite values,
/// clamped to [`LONGEST_HINT`].
pub fn seconds(secs: f64) -> Option<Duration> {
    (secs.is_finite() && secs >= 0.0)
        .then(|| Duration::from_secs_f64(secs.min(LONGEST_HINT.as_secs_f64())))
}

/// Parses `2m59.56s`, `7.66s`, `1h2m3s`, `120ms`, `26s` and bare seconds `4` / `4.5`.
/// Anything else is `None`; huge values are clamped to [`LONGEST_HINT`].
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim().trim_matches('"');
    if s.is_empty() || s.len() > 64 {
        return None;
    }
    if let Ok(secs) = s.parse::<f64>() {
        return seconds(secs);
    }
    let mut total = 0.0;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let value: f64 = num.parse().ok()?;
        num.clear();
        if !value.is_finite() {
            return None;
        }
        let unit = match c {
            'h' => 3600.0,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                0.001
            }
            'm' => 60.0,
            's' => 1.0,
            _ => return None,
        };
        total += value * unit;
        any = true;
    }
    if !num.is_empty() || !any {
        return None;
    }
    seconds(total)
}

/// `3m12s` style, for messages.
pub fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 3600 {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    } else if secs >= 60 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// The error object, also when Gemini wraps it in an array.
fn error_object(body: &str) -> Option<Value> {
    let v: Value = serde_json::from_str(body).ok()?;
    let v = match v {
        Value::Array(mut a) if !a.is_empty() => a.swap_remove(0),
        other => other,
    };
    v.get("error").cloned()
}

/// "Please try again in 4.2s." / "try again in 7m22.5s"
fn try_again_in(message: &str) -> Option<Duration> {
    let lower = message.to_lowercase();
    let at = lower.find("try again in ")? + "try again in ".len();
    let rest = &lower[at..];
    let token: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '.')
        .collect();
    parse_duration(token.trim_end_matches('.'))
}

/// Classifies a non-2xx reply.
pub fn classify_status(status: u16, headers: &RateHeaders, body: &str) -> CallError {
    let err = error_object(body);
    let message = err
        .as_ref()
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let code = err
        .as_ref()
        .and_then(|e| e.get("code"))
        .map(|c| match c {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_default();
    let short = |m: &str| m.chars().take(200).collect::<String>();
    match status {
        401 | 403 => CallError::InvalidKey { status },
        429 => classify_429(headers, &message, &code, err.as_ref()),
        404 => CallError::NotFound {
            message: short(&message),
        },
        400 | 413 | 422 => CallError::Rejected {
            status,
            message: short(&message),
        },
        408 => CallError::Transient {
            class: ErrorClass::Timeout,
            detail: format!("HTTP {status}"),
        },
        _ => CallError::Transient {
            class: ErrorClass::Server,
            detail: if message.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {}", short(&message))
            },
        },
    }
}

fn classify_429(
    headers: &RateHeaders,
    message: &str,
    code: &str,
    err: Option<&Value>,
) -> CallError {
    let lower = message.to_lowercase();
    let hinted = try_again_in(message)
        .or(headers.retry_after)
        .or_else(|| gemini_retry_delay(err));
    // OpenAI billing: the key is done, never retry it in a loop.
    if code == "insufficient_quota" || lower.contains("exceeded your current quota") {
        return CallError::QuotaExhausted {
            reset: None,
            what: "insufficient quota".into(),
            dim: None,
            limit: None,
        };
    }
    let dim = dimension(&lower);
    let per_day = matches!(dim, Some(Dim::Rpd | Dim::Tpd))
        || ["per day", "daily", "per month", "monthly"]
            .iter()
            .any(|k| lower.contains(k))
        || gemini_quota_ids(err).iter().any(|q| q.contains("PerDay"));
    let per_minute = matches!(dim, Some(Dim::Rpm | Dim::Tpm))
        || gemini_quota_ids(err)
            .iter()
            .any(|q| q.contains("PerMinute"));
    let limit = stated_limit(message);
    // A wait far longer than any minute window, for a limit that names no minute window,
    // is a quota in all but name: the key is done until then, and --on-exhausted decides.
    let long_wait = hinted.is_some_and(|h| h > LONG_RESET) && !per_minute;
    if per_day || long_wait {
        CallError::QuotaExhausted {
            reset: hinted,
            what: dim.map_or_else(
                || {
                    if per_day {
                        "daily quota"
                    } else {
                        "long rate limit"
                    }
                    .to_string()
                },
                |d| d.as_str().to_uppercase(),
            ),
            dim,
            limit,
        }
    } else {
        CallError::RateLimited {
            // A minute window never needs a longer wait, whatever the reply says.
            retry_after: hinted.map(|h| h.min(MINUTE_WINDOW)),
            dim,
            limit,
        }
    }
}

/// The organization a 429 body names: "… in organization `org_01abc` service tier …" →
/// `org_01abc` (at most 100 characters of letters, digits, `_` and `-`).
pub fn named_org(body: &str) -> Option<String> {
    let message = error_object(body)?.get("message")?.as_str()?.to_string();
    let at = message.find("organization `")? + "organization `".len();
    let id: String = message[at..].chars().take_while(|c| *c != '`').collect();
    let valid = !id.is_empty()
        && id.len() <= 100
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    valid.then_some(id)
}

/// "…: Limit 30, Used 30, Requested 1." → 30
fn stated_limit(message: &str) -> Option<u64> {
    let at = message.find("Limit ")? + "Limit ".len();
    let digits: String = message[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .take(19)
        .collect();
    digits.parse().ok().filter(|n| *n > 0)
}

/// Which of Groq's dimensions the message names: "… on tokens per minute (TPM): …".
fn dimension(lower: &str) -> Option<Dim> {
    Dim::ALL
        .into_iter()
        .find(|d| lower.contains(&format!("({})", d.as_str())))
}

fn gemini_quota_ids(err: Option<&Value>) -> Vec<String> {
    let Some(details) = err.and_then(|e| e.get("details")).and_then(Value::as_array) else {
        return Vec::new();
    };
    details
        .iter()
        .filter_map(|d| d.get("violations").and_then(Value::as_array))
        .flatten()
        .filter_map(|v| v.get("quotaId").and_then(Value::as_str).map(str::to_string))
        .collect()
}

fn gemini_retry_delay(err: Option<&Value>) -> Option<Duration> {
    err?.get("details")?
        .as_array()?
        .iter()
        .find_map(|d| d.get("retryDelay").and_then(Value::as_str))
        .and_then(parse_duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GROQ_RPM: &str = r#"{"error":{"message":"Rate limit reached for model `llama-3.1-8b-instant` in organization `org_x` service tier `on_demand` on requests per minute (RPM): Limit 30, Used 30, Requested 1. Please try again in 1.5s. Need more tokens?","type":"requests","code":"rate_limit_exceeded"}}"#;
    const GROQ_RPD: &str = r#"{"error":{"message":"Rate limit reached for model `llama-3.1-8b-instant` in organization `org_x` service tier `on_demand` on requests per day (RPD): Limit 14400, Used 14400, Requested 1. Please try again in 7m22.5s.","type":"requests","code":"rate_limit_exceeded"}}"#;

    #[test]
    fn a_429_body_names_its_organization() {
        assert_eq!(named_org(GROQ_RPM).as_deref(), Some("org_x"));
        assert_eq!(
            named_org(r#"{"error":{"message":"Too Many Requests"}}"#),
            None
        );
        let odd = r#"{"error":{"message":"in organization `a b` x"}}"#;
        assert_eq!(named_org(odd), None);
        assert_eq!(named_org("not json"), None);
    }

    #[test]
    fn durations_in_provider_formats() {
        assert_eq!(
            parse_duration("2m59.56s"),
            Some(Duration::from_secs_f64(179.56))
        );
        assert_eq!(parse_duration("7.66s"), Some(Duration::from_secs_f64(7.66)));
        assert_eq!(parse_duration("1h2m3s"), Some(Duration::from_secs(3723)));
        assert_eq!(parse_duration("120ms"), Some(Duration::from_millis(120)));
        assert_eq!(parse_duration("4"), Some(Duration::from_secs(4)));
        assert_eq!(parse_duration("soon"), None);
    }

    #[test]
    fn groq_minute_vs_day() {
        let h = RateHeaders {
            retry_after: Some(Duration::from_secs(2)),
            ..Default::default()
        };
        match classify_status(429, &h, GROQ_RPM) {
            CallError::RateLimited {
                retry_after,
                dim,
                limit,
            } => {
                assert_eq!(retry_after, Some(Duration::from_secs_f64(1.5)));
                assert_eq!(dim, Some(Dim::Rpm));
                assert_eq!(limit, Some(30));
            }
            other => panic!("{other:?}"),
        }
        match classify_status(429, &h, GROQ_RPD) {
            CallError::QuotaExhausted {
                reset,
                what,
                dim,
                limit,
            } => {
                assert_eq!(reset, Some(Duration::from_secs_f64(442.5)));
                assert_eq!(what, "RPD");
                assert_eq!(dim, Some(Dim::Rpd));
                assert_eq!(limit, Some(14400));
            }
            other => panic!("{other:?}"),
        }
        let tpd = GROQ_RPD.replace("requests per day (RPD)", "tokens per day (TPD)");
        assert!(matches!(
            classify_status(429, &h, &tpd),
            CallError::QuotaExhausted { .. }
        ));
    }

    #[test]
    fn gemini_array_wrapped_and_quota_ids() {
        let body = r#"[{"error":{"code":429,"message":"You exceeded your quota.","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaId":"GenerateContentRequestsPerDayPerProjectPerModel-FreeTier"}]},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"26s"}]}}]"#;
        assert!(matches!(
            classify_status(429, &RateHeaders::default(), body),
            CallError::QuotaExhausted { reset: Some(r), .. } if r == Duration::from_secs(26)
        ));
        let minute = body.replace("PerDay", "PerMinute");
        assert!(matches!(
            classify_status(429, &RateHeaders::default(), &minute),
            CallError::RateLimited { retry_after: Some(r), .. } if r == Duration::from_secs(26)
        ));
        let bare = r#"{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED"}}"#;
        assert!(matches!(
            classify_status(429, &RateHeaders::default(), bare),
            CallError::RateLimited { .. }
        ));
    }

    #[test]
    fn openai_billing_and_auth_and_servers() {
        let billing = r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#;
        assert!(matches!(
            classify_status(429, &RateHeaders::default(), billing),
            CallError::QuotaExhausted { reset: None, .. }
        ));
        let auth = r#"{"error":{"message":"Invalid API Key","type":"invalid_request_error","code":"invalid_api_key"}}"#;
        assert_eq!(
            classify_status(401, &RateHeaders::default(), auth),
            CallError::InvalidKey { status: 401 }
        );
        assert_eq!(
            classify_status(503, &RateHeaders::default(), "<html>").class(),
            ErrorClass::Server
        );
        assert!(matches!(
            classify_status(400, &RateHeaders::default(), "{}"),
            CallError::Rejected { .. }
        ));
    }

    #[test]
    fn absurd_durations_are_clamped_or_ignored() {
        assert_eq!(parse_duration("1e20"), Some(LONGEST_HINT));
        assert_eq!(parse_duration("99999999999999999999h"), Some(LONGEST_HINT));
        for bad in [
            "-1", "NaN", "inf", "-inf", "", "garbage", "1e400s", "5x", ".",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        let h = |v: &str| {
            let mut map = reqwest::header::HeaderMap::new();
            map.insert("retry-after", v.parse().unwrap());
            map.insert("x-ratelimit-remaining-requests", v.parse().unwrap());
            RateHeaders::from_headers(&map)
        };
        assert_eq!(h("1e20").retry_after, Some(LONGEST_HINT));
        assert_eq!(h("1e20").remaining_requests, Some(u64::MAX));
        assert_eq!(h("NaN").retry_after, None);
        assert_eq!(h("-1").remaining_requests, None);
    }

    #[test]
    fn a_huge_wait_without_a_minute_window_is_exhaustion() {
        let huge = RateHeaders {
            retry_after: parse_duration("1e20"),
            ..Default::default()
        };
        let bare = r#"{"error":{"message":"fake fault","type":"server_error"}}"#;
        assert!(matches!(
            classify_status(429, &huge, bare),
            CallError::QuotaExhausted { reset: Some(r), .. } if r == LONGEST_HINT
        ));
        // A per-minute 429 is never asked to wait more than a minute.
        let minute = GROQ_RPM.replace("Please try again in 1.5s. ", "");
        assert!(matches!(
            classify_status(429, &huge, &minute),
            CallError::RateLimited { retry_after: Some(r), .. } if r == Duration::from_secs(60)
        ));
        // No usable hint at all: the caller decides the wait.
        assert!(matches!(
            classify_status(429, &RateHeaders::default(), bare),
            CallError::RateLimited {
                retry_after: None,
                ..
            }
        ));
    }

    mod never_panics {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn durations(s in ".{0,40}") {
                if let Some(d) = parse_duration(&s) {
                    prop_assert!(d <= LONGEST_HINT);
                }
            }

            #[test]
            fn duration_like(s in "[0-9.eE+-]{0,12}[hms]{0,2}[0-9.]{0,8}[ms]{0,2}") {
                if let Some(d) = parse_duration(&s) {
                    prop_assert!(d <= LONGEST_HINT);
                }
            }

            #[test]
            fn bodies(status in 100u16..600, body in ".{0,200}", retry in ".{0,12}") {
                let mut map = reqwest::header::HeaderMap::new();
                if let Ok(v) = reqwest::header::HeaderValue::from_str(&retry) {
                    map.insert("retry-after", v.clone());
                    map.insert("x-ratelimit-reset-requests", v.clone());
                    map.insert("x-ratelimit-limit-tokens", v);
                }
                let h = RateHeaders::from_headers(&map);
                let _ = classify_status(status, &h, &body).describe();
            }

            #[test]
            fn groq_like_bodies(limit in ".{0,8}", wait in ".{0,10}", dim in "(RPM|RPD|TPM|TPD|rph|x)") {
                let body = format!(
                    r#"{{"error":{{"message":"Rate limit reached on requests per minute ({dim}): Limit {limit}, Used 1. Please try again in {wait}. ","code":"rate_limit_exceeded"}}}}"#
                );
                let e = classify_status(429, &RateHeaders::default(), &body);
                if let CallError::RateLimited { retry_after: Some(r), .. } = e {
                    prop_assert!(r <= LONGEST_HINT);
                }
            }

            #[test]
            fn gemini_like_bodies(delay in ".{0,12}", quota in ".{0,30}") {
                let body = format!(
                    r#"[{{"error":{{"code":429,"details":[{{"violations":[{{"quotaId":"{quota}"}}]}},{{"retryDelay":"{delay}"}}]}}}}]"#
                );
                let _ = classify_status(429, &RateHeaders::default(), &body);
            }
        }
    }
}

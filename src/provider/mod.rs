//! The one client every provider shares: OpenAI-compatible chat completions over reqwest.
//! It sends, times out, and classifies; it never decides about retries or keys.

pub mod classify;
pub mod defaults;
pub mod logprobs;
pub mod unreached;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use classify::{classify_status, CallError, ErrorClass, RateHeaders};
use logprobs::{LogprobSwitch, TokenLogprob};
use unreached::Unreached;

/// The most of a reply body that is ever read. The largest legitimate reply is a batch
/// of 100 labels: `{"labels": [...]}` of about 1.5 KB inside a ~500-byte envelope, and
/// `max_tokens` bounds what a model can add around it. 1 MiB leaves several hundred times
/// that, and keeps a broken or hostile endpoint from growing memory with each request in
/// flight (at most concurrency × 1 MiB).
pub const MAX_REPLY_BYTES: usize = 1 << 20;

/// The most of a `GET /models` reply that is read (once per key, by `test-keys`): some
/// providers list hundreds of models with descriptions and prices, over a megabyte.
const MAX_MODELS_BYTES: usize = 16 << 20;

/// The response header block allowed over HTTP/2 (reqwest's builder sets it). Over
/// HTTP/1, hyper itself refuses a head that does not fit its ~400 KB read buffer or that
/// has more than 100 headers; reqwest exposes no knob for those, and they are bounded.
const MAX_HEADER_LIST_BYTES: u32 = 64 * 1024;

/// One request's messages and size.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub system: String,
    pub user: String,
    pub max_tokens: u32,
    /// Ask for a JSON object (batches), where the provider has JSON mode.
    pub json: bool,
}

impl ChatRequest {
    /// Tokens this request may cost before the reply says: ~4 bytes a token, plus the reply budget.
    pub fn estimated_tokens(&self) -> u64 {
        ((self.system.len() + self.user.len()) as u64).div_ceil(4) + 8 + self.max_tokens as u64
    }
}

#[derive(Debug, Clone)]
pub struct ChatReply {
    pub content: String,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    /// The reply was cut at `max_tokens` (`finish_reason: "length"`).
    pub cut: bool,
    /// The reply's tokens with their log-probabilities, when they were asked and came.
    pub logprobs: Option<Vec<TokenLogprob>>,
}

/// A call's result together with the rate-limit headers it carried (also on errors).
#[derive(Debug)]
pub struct CallResult {
    pub result: Result<ChatReply, CallError>,
    pub headers: RateHeaders,
    pub latency: Duration,
    /// The reply's HTTP status; `None` when no reply came. A 2xx with an error is a reply
    /// of the wrong shape (an HTML page where JSON was due): `test-keys` calls the key
    /// unverified, not ok.
    pub status: Option<u16>,
    /// The request asked for logprobs: a 400 to it may be the provider refusing them.
    pub logprobs_sent: bool,
}

#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    /// Parsed once: parsing a URL string on every request was a measurable share of the
    /// client's CPU time.
    chat_url: reqwest::Url,
    models_url: reqwest::Url,
    model: String,
    json_mode: bool,
    /// `--confidence logprobs` on a provider known to return them: single-text requests
    /// ask for them until the provider refuses.
    logprobs: Option<Arc<LogprobSwitch>>,
}

/// The request body, serialized straight from borrowed parts (no JSON tree per request).
#[derive(Serialize)]
struct ChatBody<'a> {
    model: &'a str,
    messages: [OutMessage<'a>; 2],
    temperature: u8,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<JsonMode>,
    /// Only ever present as `true`: a provider that does not know the field may refuse it.
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_logprobs: Option<u8>,
}

#[derive(Serialize)]
struct OutMessage<'a> {
    role: &'static str,
    content: &'a str,
}

/// OpenAI's JSON mode: `{"type": "json_object"}`.
#[derive(Serialize)]
struct JsonMode {
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Deserialize)]
struct Completion {
    choices: Vec<Choice>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    message: Message,
    finish_reason: Option<String>,
    /// Kept raw: read by `logprobs::parse`, which never fails the reply.
    #[serde(default)]
    logprobs: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Message {
    content: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
}

impl Client {
    pub fn new(
        base_url: &str,
        model: &str,
        json_mode: bool,
        timeout: Duration,
        pool: usize,
    ) -> Result<Client, crate::error::Error> {
        let base = base_url.trim_end_matches('/');
        let url = |path: &str| {
            reqwest::Url::parse(&format!("{base}/{path}")).map_err(|e| {
                let base = crate::keys::mask::scrub(base);
                crate::error::Error::Usage(format!("--base-url {base}: not a usable URL ({e})"))
            })
        };
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(pool)
            .tcp_nodelay(true)
            .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
            .user_agent(concat!("autolabel/", env!("CARGO_PKG_VERSION")))
            // A redirect would re-send the texts (307) or turn the POST into a GET (302)
            // to a host nobody configured, and take its reply as labels: never follow one.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                crate::error::Error::Runtime(format!("cannot set up the HTTP client: {e}"))
            })?;
        Ok(Client {
            http,
            chat_url: url("chat/completions")?,
            models_url: url("models")?,
            model: model.to_string(),
            json_mode,
            logprobs: None,
        })
    }

    /// Asks this client's single-text requests for the top `top` logprobs of each token.
    pub fn with_logprobs(mut self, top: u8) -> Client {
        self.logprobs = Some(LogprobSwitch::new(top));
        self
    }

    /// The logprobs switch, when this client asks for them.
    pub fn logprobs(&self) -> Option<&LogprobSwitch> {
        self.logprobs.as_deref()
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    pub fn json_mode(&self) -> bool {
        self.json_mode
    }

    /// One chat completion with `key` (its secret goes only into the Authorization header).
    pub async fn chat(&self, key: &str, req: &ChatRequest) -> CallResult {
        // Batches are answered in JSON, whose first tokens are no label: never asked.
        let top_logprobs = self
            .logprobs()
            .filter(|s| !req.json && s.on())
            .map(|s| s.top);
        let body = ChatBody {
            model: &self.model,
            messages: [
                OutMessage {
                    role: "system",
                    content: &req.system,
                },
                OutMessage {
                    role: "user",
                    content: &req.user,
                },
            ],
            temperature: 0,
            max_tokens: req.max_tokens,
            response_format: (req.json && self.json_mode).then_some(JsonMode {
                kind: "json_object",
            }),
            logprobs: top_logprobs.map(|_| true),
            top_logprobs,
        };
        let started = Instant::now();
        let sent = self
            .http
            .post(self.chat_url.clone())
            .bearer_auth(key)
            .json(&body)
            .send()
            .await;
        let replied = sent.as_ref().ok().map(|r| r.status().as_u16());
        let (result, headers) = match sent {
            Err(e) => (Err(transport_error(&e)), RateHeaders::default()),
            Ok(resp) => {
                let headers = RateHeaders::from_headers(resp.headers());
                let status = resp.status().as_u16();
                if resp.status().is_redirection() {
                    return scrubbed_result(Err(redirected(&resp)), headers, started, replied)
                        .asked_logprobs(top_logprobs.is_some());
                }
                match read_capped(resp, MAX_REPLY_BYTES).await {
                    Err(e) => (Err(e), headers),
                    Ok(bytes) if (200..300).contains(&status) => {
                        (parse_completion(&bytes), headers)
                    }
                    Ok(bytes) => {
                        let text = String::from_utf8_lossy(&bytes);
                        let mut headers = headers;
                        if status == 429 {
                            headers.org = classify::named_org(&text);
                        }
                        (Err(classify_status(status, &headers, &text)), headers)
                    }
                }
            }
        };
        scrubbed_result(result, headers, started, replied).asked_logprobs(top_logprobs.is_some())
    }

    /// `GET /models`: the cheapest way to learn whether a key works.
    pub async fn list_models(&self, key: &str) -> CallResult {
        let started = Instant::now();
        let sent = self
            .http
            .get(self.models_url.clone())
            .bearer_auth(key)
            .send()
            .await;
        let replied = sent.as_ref().ok().map(|r| r.status().as_u16());
        let (result, headers) = match sent {
            Err(e) => (Err(transport_error(&e)), RateHeaders::default()),
            Ok(resp) => {
                let headers = RateHeaders::from_headers(resp.headers());
                let status = resp.status().as_u16();
                if resp.status().is_redirection() {
                    return scrubbed_result(Err(redirected(&resp)), headers, started, replied);
                }
                if (200..300).contains(&status) {
                    // A 200 alone proves nothing (a captive portal, a proxy's page): the
                    // key is ok only if the reply is the provider's model list.
                    let result = match read_capped(resp, MAX_MODELS_BYTES).await {
                        Err(e) => Err(e),
                        Ok(bytes) => parse_model_list(&bytes),
                    };
                    (result, headers)
                } else {
                    match read_capped(resp, MAX_REPLY_BYTES).await {
                        Err(e) => (Err(e), headers),
                        Ok(bytes) => {
                            let text = String::from_utf8_lossy(&bytes);
                            (Err(classify_status(status, &headers, &text)), headers)
                        }
                    }
                }
            }
        };
        scrubbed_result(result, headers, started, replied)
    }
}

/// A 3xx is not followed (see `Client::new`): it is a provider error naming where it
/// pointed, retried like a 5xx, never a label.
fn redirected(resp: &reqwest::Response) -> CallError {
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .map(|l| {
            String::from_utf8_lossy(l.as_bytes())
                .chars()
                .take(300)
                .collect()
        })
        .unwrap_or_else(|| "nowhere".to_string());
    CallError::Transient {
        class: ErrorClass::Server,
        detail: format!(
            "HTTP {} redirect to {location} (redirects are not followed; check the base URL)",
            resp.status().as_u16()
        ),
    }
}

fn scrubbed_result(
    result: Result<ChatReply, CallError>,
    headers: RateHeaders,
    started: Instant,
    status: Option<u16>,
) -> CallResult {
    CallResult {
        result: scrubbed(result),
        headers,
        latency: started.elapsed(),
        status,
        logprobs_sent: false,
    }
}

impl CallResult {
    fn asked_logprobs(mut self, sent: bool) -> CallResult {
        self.logprobs_sent = sent;
        self
    }
}

/// The masking boundary: every text of a reply (its content, an error's message, a
/// transport error naming the URL) is scrubbed of keys and URL passwords here, before
/// any caller can print, log, store or serve it.
fn scrubbed(result: Result<ChatReply, CallError>) -> Result<ChatReply, CallError> {
    use crate::keys::mask::scrub;
    match result {
        Ok(reply) => Ok(ChatReply {
            content: scrub(&reply.content),
            ..reply
        }),
        Err(CallError::Transient { class, detail }) => Err(CallError::Transient {
            class,
            detail: scrub(&detail),
        }),
        Err(CallError::Rejected { status, message }) => Err(CallError::Rejected {
            status,
            message: scrub(&message),
        }),
        Err(CallError::NotFound { message }) => Err(CallError::NotFound {
            message: scrub(&message),
        }),
        Err(CallError::QuotaExhausted {
            reset,
            what,
            dim,
            limit,
        }) => Err(CallError::QuotaExhausted {
            reset,
            what: scrub(&what),
            dim,
            limit,
        }),
        Err(CallError::Unreachable { host, cause }) => Err(CallError::Unreachable {
            host: scrub(&host),
            cause: match cause {
                Unreached::Tls(d) => Unreached::Tls(scrub(&d)),
                Unreached::Other(d) => Unreached::Other(scrub(&d)),
                named => named,
            },
        }),
        Err(e @ (CallError::RateLimited { .. } | CallError::InvalidKey { .. })) => Err(e),
    }
}

/// Reads the body chunk by chunk and gives up past `cap` bytes: a reply that large is
/// broken (counted as unparsable and retried like one), and memory stays bounded
/// whatever the endpoint sends. Dropping the response closes the connection.
async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, CallError> {
    let over = || CallError::Transient {
        class: ErrorClass::Unparsable,
        detail: format!("reply body over {cap} bytes"),
    };
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(over());
    }
    let mut body = Vec::with_capacity(resp.content_length().unwrap_or(0) as usize);
    while let Some(chunk) = resp.chunk().await.map_err(|e| transport_error(&e))? {
        if body.len() + chunk.len() > cap {
            return Err(over());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `GET /models` on every OpenAI-compatible provider: `{"data": [{"id": "…"}, …]}`.
/// Only its shape is checked (each entry names a model with a string `id`), so its
/// fields are never read.
#[derive(Deserialize)]
#[allow(dead_code)]
struct ModelList {
    data: Vec<ModelEntry>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct ModelEntry {
    id: String,
}

fn parse_model_list(bytes: &[u8]) -> Result<ChatReply, CallError> {
    serde_json::from_slice::<ModelList>(bytes).map_err(|e| CallError::Transient {
        class: ErrorClass::Unparsable,
        detail: format!("the reply to GET /models is not a model list ({e})"),
    })?;
    Ok(ChatReply {
        content: String::new(),
        prompt_tokens: None,
        completion_tokens: None,
        cut: false,
        logprobs: None,
    })
}

fn parse_completion(bytes: &[u8]) -> Result<ChatReply, CallError> {
    let parsed: Completion = serde_json::from_slice(bytes).map_err(|e| CallError::Transient {
        class: ErrorClass::Unparsable,
        detail: format!("malformed reply body: {e}"),
    })?;
    let choice = parsed.choices.into_iter().next();
    let cut = choice
        .as_ref()
        .is_some_and(|c| c.finish_reason.as_deref() == Some("length"));
    let (content, logprobs) = choice
        .map(|c| (c.message.content, logprobs::parse(c.logprobs)))
        .and_then(|(content, logprobs)| Some((content?, logprobs)))
        .ok_or_else(|| CallError::Transient {
            class: ErrorClass::Unparsable,
            detail: "reply has no message content".into(),
        })?;
    Ok(ChatReply {
        cut,
        content,
        logprobs,
        prompt_tokens: parsed.usage.as_ref().and_then(|u| u.prompt_tokens),
        completion_tokens: parsed.usage.as_ref().and_then(|u| u.completion_tokens),
    })
}

fn transport_error(e: &reqwest::Error) -> CallError {
    // No connection, so no request: the provider never saw it (and never counted it).
    if e.is_connect() {
        return CallError::Unreachable {
            host: e.url().map(unreached::host_of).unwrap_or_default(),
            cause: unreached::unreached(e.is_timeout(), e),
        };
    }
    // reqwest's messages carry the URL, never the Authorization header.
    let class = if e.is_timeout() {
        ErrorClass::Timeout
    } else if e.is_decode() {
        ErrorClass::Unparsable
    } else {
        ErrorClass::Network
    };
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail = format!("{detail}: {s}");
        source = s.source();
    }
    CallError::Transient { class, detail }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_body_is_openai_chat_json() {
        let body = |json: bool| {
            let b = ChatBody {
                model: "m",
                messages: [
                    OutMessage {
                        role: "system",
                        content: "s \"q\"",
                    },
                    OutMessage {
                        role: "user",
                        content: "u\n",
                    },
                ],
                temperature: 0,
                max_tokens: 4,
                response_format: json.then_some(JsonMode {
                    kind: "json_object",
                }),
                logprobs: None,
                top_logprobs: None,
            };
            serde_json::to_value(&b).unwrap()
        };
        assert_eq!(
            body(false),
            serde_json::json!({
                "model": "m",
                "messages": [
                    {"role": "system", "content": "s \"q\""},
                    {"role": "user", "content": "u\n"},
                ],
                "temperature": 0,
                "max_tokens": 4,
            })
        );
        assert_eq!(body(true)["response_format"]["type"], "json_object");
    }

    #[test]
    fn logprobs_are_asked_only_as_the_openai_fields_and_read_back() {
        let b = ChatBody {
            model: "m",
            messages: [
                OutMessage {
                    role: "system",
                    content: "s",
                },
                OutMessage {
                    role: "user",
                    content: "u",
                },
            ],
            temperature: 0,
            max_tokens: 4,
            response_format: None,
            logprobs: Some(true),
            top_logprobs: Some(5),
        };
        let v = serde_json::to_value(&b).unwrap();
        assert_eq!(v["logprobs"], true);
        assert_eq!(v["top_logprobs"], 5);
        let reply = br#"{"choices":[{"message":{"content":"pos"},"logprobs":{"content":[
            {"token":"pos","logprob":-0.2,"top_logprobs":[{"token":"pos","logprob":-0.2}]}]}}]}"#;
        let r = parse_completion(reply).unwrap();
        assert_eq!(r.logprobs.unwrap()[0].token, "pos");
        // Logprobs of another shape cost nothing but themselves.
        let odd = br#"{"choices":[{"message":{"content":"pos"},"logprobs":{"content":"x"}}]}"#;
        let r = parse_completion(odd).unwrap();
        assert_eq!((r.content.as_str(), r.logprobs), ("pos", None));
    }

    #[test]
    fn a_reply_cut_at_max_tokens_says_so() {
        let reply = |finish: &str| {
            let body = format!(
                r#"{{"choices":[{{"message":{{"content":"Sentimen: Pos"}},"finish_reason":{finish}}}]}}"#
            );
            parse_completion(body.as_bytes()).unwrap()
        };
        assert!(reply(r#""length""#).cut);
        assert!(!reply(r#""stop""#).cut);
        assert!(!reply("null").cut);
        let bare = br#"{"choices":[{"message":{"content":"netral"}}]}"#;
        assert!(!parse_completion(bare).unwrap().cut);
    }
}

//! Token log-probabilities (`--confidence logprobs`): which providers are asked for them,
//! the run-wide switch that turns them off for a provider that refuses them, and the
//! reply's `choices[0].logprobs.content` read defensively (a reply whose logprobs are
//! missing or of another shape is still a reply; it just has none).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::Deserialize;

use super::defaults::ProviderName;

/// The providers whose OpenAI-compatible endpoint is documented to return logprobs.
/// Groq answers a request carrying `logprobs` with 400; for the others nothing is known,
/// and a request that might cost a 400 on every row is not worth the try.
pub fn supported(p: ProviderName) -> bool {
    matches!(p, ProviderName::Openai | ProviderName::Gemini)
}

/// Alternatives asked per token: enough for every label plus a few other tokens, within
/// the 1–20 OpenAI (and Gemini) accept.
pub fn top_k(labels: usize) -> u8 {
    (labels + 2).clamp(5, 20) as u8
}

/// Whether a client asks for logprobs: shared by every request of the run through that
/// client, so the first refusal turns them off for all.
#[derive(Debug)]
pub struct LogprobSwitch {
    pub top: u8,
    refused: AtomicBool,
}

impl LogprobSwitch {
    pub fn new(top: u8) -> Arc<LogprobSwitch> {
        Arc::new(LogprobSwitch {
            top,
            refused: AtomicBool::new(false),
        })
    }

    /// Whether the next request asks for logprobs.
    pub fn on(&self) -> bool {
        !self.refused.load(Ordering::Relaxed)
    }

    /// The provider refused a request carrying logprobs: none are asked from now on.
    /// Whether this call turned them off (true once a run, for the one warning).
    pub fn refuse(&self) -> bool {
        !self.refused.swap(true, Ordering::Relaxed)
    }
}

/// One token of the reply with its log-probability and the most likely alternatives
/// at its position (the token itself usually among them).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f64,
    #[serde(default)]
    pub top_logprobs: Vec<Alternative>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Alternative {
    pub token: String,
    pub logprob: f64,
}

/// `choices[0].logprobs` in OpenAI's shape: `{"content": [TokenLogprob…]}`.
#[derive(Deserialize)]
struct ChoiceLogprobs {
    content: Option<Vec<TokenLogprob>>,
}

/// The reply's tokens from the raw `logprobs` value of its first choice; `None` when it
/// is absent, `null`, or not in OpenAI's shape (read apart from the rest of the reply so
/// that odd logprobs never cost a label).
pub fn parse(value: Option<serde_json::Value>) -> Option<Vec<TokenLogprob>> {
    let value = value.filter(|v| !v.is_null())?;
    let parsed: ChoiceLogprobs = serde_json::from_value(value).ok()?;
    parsed.content.filter(|c| !c.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_shaped_logprobs_are_read_and_anything_else_is_none() {
        let v = serde_json::json!({"content": [
            {"token": "pos", "logprob": -0.1, "bytes": [112], "top_logprobs": [
                {"token": "pos", "logprob": -0.1}, {"token": "neg", "logprob": -2.5}]},
            {"token": "itif", "logprob": 0.0}
        ]});
        let t = parse(Some(v)).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].top_logprobs[1].token, "neg");
        assert!(t[1].top_logprobs.is_empty());
        assert_eq!(parse(None), None);
        assert_eq!(parse(Some(serde_json::Value::Null)), None);
        assert_eq!(parse(Some(serde_json::json!({"content": null}))), None);
        assert_eq!(parse(Some(serde_json::json!([1, 2]))), None);
        assert_eq!(
            parse(Some(serde_json::json!({"content": [{"t": 1}]}))),
            None
        );
    }

    #[test]
    fn the_switch_turns_off_once() {
        let s = LogprobSwitch::new(top_k(3));
        assert_eq!(s.top, 5);
        assert!(s.on());
        assert!(s.refuse());
        assert!(!s.refuse());
        assert!(!s.on());
        assert_eq!(top_k(30), 20);
        assert!(supported(ProviderName::Openai) && !supported(ProviderName::Groq));
    }
}

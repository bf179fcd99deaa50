//! Token logprobs as OpenAI returns them (`choices[0].logprobs.content[i]` with `token`,
//! `logprob` and `top_logprobs`), and whether the fake takes a request asking for them.
//!
//! The answered label is split into two tokens (`pos` + `itif`). At its first token the
//! alternatives are the three labels' first tokens and one token that is no label
//! (`The`), with probabilities fixed by the text (see [`probabilities`]), so a test can
//! compute the confidence the tool should write.

use serde_json::{json, Value};

/// What the fake does with a request carrying `logprobs`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Logprobs {
    /// Ignores the field (answers as without it), as many servers do.
    #[default]
    Ignore,
    /// Returns them (OpenAI's shape), for single-text requests that ask.
    Serve,
    /// Answers 400, as Groq does.
    Refuse,
}

/// The 400 body Groq sends to a request carrying `logprobs`.
pub const REFUSAL: &str = "logprobs is not supported with this model";

/// Probability of the answered label's first token, of the other labels' (in `others`
/// order) and of the token that is no label; they sum to 1. The answered label gets
/// 0.40–0.95 by the text's hash.
pub fn probabilities(text: &str) -> (f64, [f64; 2], f64) {
    let h = super::fnv1a64(text.as_bytes()) >> 16;
    let main = 0.40 + (h % 56) as f64 / 100.0;
    let rest = 1.0 - main;
    (main, [rest * 0.5, rest * 0.3], rest * 0.2)
}

/// The confidence the tool should compute for `text` answered with its label: the label's
/// share of the mass on labels (the `The` token left out).
pub fn expected_confidence(text: &str) -> f64 {
    let (main, others, _) = probabilities(text);
    main / (main + others[0] + others[1])
}

fn first_token(label: &str) -> &str {
    let end = label.char_indices().nth(3).map_or(label.len(), |(i, _)| i);
    &label[..end]
}

fn token(text: &str, logprob: f64, top: Vec<(&str, f64)>) -> Value {
    let top: Vec<Value> = top
        .into_iter()
        .map(|(t, lp)| json!({"token": t, "logprob": lp, "bytes": t.as_bytes()}))
        .collect();
    json!({"token": text, "logprob": logprob, "bytes": text.as_bytes(), "top_logprobs": top})
}

/// `{"content": [...]}` for `content`, which names `answered` (the label of `text`, or
/// the noise's) somewhere; `top` alternatives at most per token.
pub fn content(content: &str, text: &str, answered: &str, labels: &[&str], top: usize) -> Value {
    let Some(at) = content.find(answered) else {
        return json!({"content": [token(content, 0.0, vec![(content, 0.0)])]});
    };
    let (main, others, other) = probabilities(text);
    let mut alts: Vec<(&str, f64)> = vec![(first_token(answered), main.ln())];
    for (l, p) in labels.iter().filter(|l| **l != answered).zip(others) {
        alts.push((first_token(l), p.ln()));
    }
    alts.push(("The", other.ln()));
    alts.truncate(top.max(1));
    let head = first_token(answered);
    let mut tokens = Vec::new();
    if at > 0 {
        tokens.push(token(&content[..at], 0.0, vec![(&content[..at], 0.0)]));
    }
    tokens.push(token(head, main.ln(), alts));
    let tail = &answered[head.len()..];
    if !tail.is_empty() {
        tokens.push(token(tail, 0.0, vec![(tail, 0.0)]));
    }
    let after = &content[at + answered.len()..];
    if !after.is_empty() {
        tokens.push(token(after, 0.0, vec![(after, 0.0)]));
    }
    json!({ "content": tokens })
}

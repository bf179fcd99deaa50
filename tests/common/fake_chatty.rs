//! Replies in the styles real models use when asked for one word: the label inside 5–20
//! tokens of prose, a fenced JSON block, `Sentimen: Positif.` followed by a reason. And
//! how a provider cuts a reply at `max_tokens` (`finish_reason: "length"`).
//!
//! Tokens are counted as the fake counts prompts: 4 characters a token. No template
//! holds a word that names another label (or a synonym the normalizer knows), so an
//! uncut reply always names exactly its label.

/// The fake's token count of a reply.
pub fn tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// A chatty reply for one text; `variant` picks the wording (the fake uses the text's
/// hash, so a text is always answered the same way).
pub fn single(label: &str, variant: u64) -> String {
    match variant % 7 {
        0 => format!(
            "Sentimen: {}. Nada teks ini cukup jelas.",
            capitalized(label)
        ),
        1 => format!("Based on the wording, the sentiment is {label}."),
        2 => format!("```json\n{{\"label\": \"{label}\"}}\n```"),
        3 => format!(
            "{}. The tone of the writer makes that fairly clear.",
            capitalized(label)
        ),
        4 => format!("I would classify this text as {label}, given its tone."),
        5 => format!("Label: **{label}**"),
        _ => format!("After reading it carefully, my answer is: {label}"),
    }
}

/// Why a label, as a chatty model explains each of a batch's: 5–12 tokens of prose that
/// name no label.
const REASONS: [&str; 4] = [
    "Nada teks ini cukup jelas.",
    "The tone of the writer makes that fairly clear.",
    "Given the wording and its tone.",
    "Kata-katanya menunjukkan hal itu dengan jelas.",
];

/// A chatty reply for a batch: the JSON the prompt asks for, each label with a reason
/// beside it, fenced, inside prose.
pub fn batch(labels: &[&str]) -> String {
    let items: Vec<serde_json::Value> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| serde_json::json!({ "label": l, "reason": REASONS[i % REASONS.len()] }))
        .collect();
    let inner = serde_json::json!({ "labels": items }).to_string();
    format!("Here are the labels, in order:\n```json\n{inner}\n```\nHope this helps.")
}

/// The reply as a provider returns it under `max_tokens`: whole, or cut to the cap.
/// Returns (content, completion tokens, finish reason).
pub fn within(content: String, max_tokens: u64) -> (String, u64, &'static str) {
    let n = tokens(&content);
    if n <= max_tokens {
        return (content, n, "stop");
    }
    let cut: String = content.chars().take(max_tokens as usize * 4).collect();
    (cut, max_tokens, "length")
}

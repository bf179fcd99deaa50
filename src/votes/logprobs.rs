//! `--confidence logprobs`: a row's confidence from one answer's token probabilities
//! instead of votes. Pure.
//!
//! The position read is the first token of the reply that starts a word and matches the
//! chosen label; its alternatives are the model's other candidates for that token. A
//! token matches a label when, lowercased and trimmed of spaces and punctuation, it is a
//! prefix of the label or the label is a prefix of it: `positif` may be split into
//! `pos` + `itif`, and `Pos` then stands for it. A candidate that matches several labels
//! (`ne` for `negatif` and `netral`) shares its probability equally among them.
//! Candidates that match no label (`The`, `Sent`) are left out: the confidence is the
//! chosen label's share of the mass on labels, not of all the mass.

use crate::provider::logprobs::TokenLogprob;

/// The chosen label's share of the first label token's probability mass on labels;
/// `None` when no token of the reply matches it or no candidate carries mass.
pub fn confidence(tokens: &[TokenLogprob], labels: &[String], chosen: usize) -> Option<f64> {
    let forms: Vec<String> = labels.iter().map(|l| l.trim().to_lowercase()).collect();
    let target = forms.get(chosen)?;
    let at = tokens
        .iter()
        .enumerate()
        .position(|(i, t)| starts_word(tokens, i) && matches(&stem(&t.token), target))?;
    let position = &tokens[at];
    // The emitted token counts once, whether or not it is among the alternatives.
    let emitted = (!position
        .top_logprobs
        .iter()
        .any(|a| a.token == position.token))
    .then_some((position.token.as_str(), position.logprob));
    let candidates = position
        .top_logprobs
        .iter()
        .map(|a| (a.token.as_str(), a.logprob))
        .chain(emitted);
    let mut mass = vec![0.0f64; forms.len()];
    for (token, logprob) in candidates {
        let s = stem(token);
        let hits: Vec<usize> = (0..forms.len())
            .filter(|&l| matches(&s, &forms[l]))
            .collect();
        let p = logprob.exp();
        if hits.is_empty() || !p.is_finite() {
            continue;
        }
        for l in &hits {
            mass[*l] += p / hits.len() as f64;
        }
    }
    let total: f64 = mass.iter().sum();
    (total > 0.0).then(|| (mass[chosen] / total).clamp(0.0, 1.0))
}

/// Where the label cache keeps a label asked with `--confidence logprobs`, beside the
/// label's own entry (`label_key`): the label with the confidence it came with, so a row
/// served from the cache shows what the answer showed. A label cached without logprobs
/// is not served in such a run (its confidence was never measured).
pub fn cache_key(label_key: Vec<u8>) -> Vec<u8> {
    let mut key = label_key;
    key.extend_from_slice(b"|logprobs");
    key
}

/// `positif 0.873214`, or `positif` for an answer that carried no logprobs.
pub fn cache_value(label: &str, confidence: Option<f64>) -> String {
    match confidence {
        Some(c) => format!("{label} {c:.6}"),
        None => label.to_string(),
    }
}

/// A cached value read back: `None` when its confidence is not a share.
pub fn read_cache_value(value: &str) -> Option<(&str, Option<f64>)> {
    match value.rsplit_once(' ') {
        None => Some((value, None)),
        Some((label, c)) => {
            let c: f64 = c.parse().ok()?;
            (0.0..=1.0).contains(&c).then_some((label, Some(c)))
        }
    }
}

/// A token lowercased and trimmed of spaces, quotes and other punctuation.
fn stem(token: &str) -> String {
    token
        .trim_matches(|c: char| !c.is_alphanumeric())
        .to_lowercase()
}

/// Whether a token's stem stands for `label` (one a prefix of the other; never empty).
fn matches(stem: &str, label: &str) -> bool {
    !stem.is_empty() && !label.is_empty() && (label.starts_with(stem) || stem.starts_with(label))
}

/// Whether token `i` begins a word: the first token, one that begins with a space or
/// punctuation, or one after a token that ends with them (`imen` in `Sent`+`imen` does
/// not, so a label's letters inside another word are never read as the label).
fn starts_word(tokens: &[TokenLogprob], i: usize) -> bool {
    let first = |s: &str| s.chars().next().is_some_and(|c| !c.is_alphanumeric());
    let last = |s: &str| s.chars().last().is_some_and(|c| !c.is_alphanumeric());
    i == 0 || first(&tokens[i].token) || last(&tokens[i - 1].token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::logprobs::Alternative;

    fn labels() -> Vec<String> {
        ["positif", "negatif", "netral"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    fn tok(token: &str, alts: &[(&str, f64)]) -> TokenLogprob {
        TokenLogprob {
            token: token.into(),
            logprob: alts.iter().find(|a| a.0 == token).map_or(0.0, |a| a.1.ln()),
            top_logprobs: alts
                .iter()
                .map(|(t, p)| Alternative {
                    token: t.to_string(),
                    logprob: p.ln(),
                })
                .collect(),
        }
    }

    #[test]
    fn the_share_of_the_first_label_tokens_mass_on_labels() {
        // `pos` 0.6, `neg` 0.2, `The` 0.15 (no label), `net` 0.05: 0.6 / 0.85.
        let t = [
            tok(
                "pos",
                &[("pos", 0.6), ("neg", 0.2), ("The", 0.15), ("net", 0.05)],
            ),
            tok("itif", &[("itif", 1.0)]),
        ];
        let c = confidence(&t, &labels(), 0).unwrap();
        assert!((c - 0.6 / 0.85).abs() < 1e-9, "{c}");
        // Had the model picked `neg` there, its share would be 0.2 / 0.85.
        let t = [tok("neg", &[("pos", 0.6), ("neg", 0.2)]), tok("atif", &[])];
        assert!((confidence(&t, &labels(), 1).unwrap() - 0.25).abs() < 1e-9);
    }

    #[test]
    fn an_ambiguous_prefix_shares_its_mass_and_case_and_spaces_do_not_matter() {
        // ` Ne` stands for negatif and netral alike: 0.8 split, plus `net` 0.2 for netral.
        let t = [
            tok("Sent", &[("Sent", 1.0)]),
            tok("imen", &[("imen", 1.0)]),
            tok(":", &[(":", 1.0)]),
            tok(" Ne", &[(" Ne", 0.8), (" net", 0.2)]),
            tok("gatif", &[]),
        ];
        let c = confidence(&t, &labels(), 1).unwrap();
        assert!((c - 0.4).abs() < 1e-9, "{c}");
        assert!((confidence(&t, &labels(), 2).unwrap() - 0.6).abs() < 1e-9);
    }

    #[test]
    fn a_cached_value_keeps_label_and_confidence() {
        let v = cache_value("very good", Some(0.5));
        assert_eq!(read_cache_value(&v), Some(("very good", Some(0.5))));
        assert_eq!(read_cache_value("netral"), Some(("netral", None)));
        assert_eq!(read_cache_value("netral 7"), None);
        assert_ne!(cache_key(vec![1, 2]), vec![1, 2]);
    }

    #[test]
    fn no_matching_token_no_confidence_and_letters_inside_a_word_are_not_a_label() {
        let t = [tok("Sure", &[("Sure", 0.9), ("pos", 0.1)])];
        assert_eq!(confidence(&t, &labels(), 0), None);
        // `ne` inside `Sentimen`-like words is no label token: `imenne` never starts one.
        let t = [tok("Sent", &[]), tok("ne", &[("ne", 1.0)])];
        assert_eq!(confidence(&t, &labels(), 1), None);
        assert_eq!(confidence(&[], &labels(), 0), None);
        // The emitted token alone (no alternatives given) is certain.
        let t = [TokenLogprob {
            token: "\"positif\"".into(),
            logprob: -0.01,
            top_logprobs: Vec::new(),
        }];
        assert_eq!(confidence(&t, &labels(), 0), Some(1.0));
    }
}

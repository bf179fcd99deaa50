//! Showing a key without revealing it: `gsk_…a1b2`. Every place that prints a key goes
//! through here, so a full key cannot reach a log, a report or the state file.
//!
//! Text from outside (a provider's bodies, headers and replies, a URL given on the
//! command line) can carry a key too: some proxies echo the `Authorization` header in
//! their errors. [`scrub`] is the one boundary such text passes before it is printed,
//! logged, stored or served. It hides every key this process has loaded ([`remember`],
//! called for every [`crate::keys::ApiKey`]), any stretch of [`WINDOW`] characters of one,
//! anything that looks like a key (`gsk_…`, `sk-…`, `xai-…`, `AIza…`, `Bearer …`,
//! `Basic …`), and the password of a URL (`http://user:***@host`).

use std::sync::{LazyLock, RwLock};

use rustc_hash::FxHashSet;
use sha2::{Digest, Sha256};

/// A stretch of this many characters of a key counts as showing it: long enough that
/// ordinary words do not collide with a random key, short enough that a cut-off echo
/// (a provider trims its message) cannot slip through.
pub const WINDOW: usize = 8;

/// Keys shorter than this are not looked for in text: hiding every "abc" in a message
/// protects nothing (such a key is guessed anyway) and makes the message unreadable.
const MIN_KNOWN: usize = 4;

/// What looks like a key even when it is not one of ours: the prefixes of Groq,
/// OpenAI-style (OpenAI, OpenRouter, Anthropic), xAI and Google keys. `sk-` is common
/// inside words ("task-…"), so it counts only at the start of a word.
const KEY_PREFIXES: [(&str, bool); 4] = [
    ("gsk_", false),
    ("xai-", false),
    ("AIza", false),
    ("sk-", true),
];

/// After a key-like prefix, at least this many key characters make it a key.
const KEY_LIKE_REST: usize = 8;

/// Every key loaded in this process, and each of their [`WINDOW`]-byte stretches.
#[derive(Default)]
struct Known {
    /// Longest first, so a key that contains another is hidden whole.
    keys: Vec<String>,
    windows: FxHashSet<[u8; WINDOW]>,
}

/// Global because keys are loaded in one place (the config) and outside text arrives in
/// many (every provider call, test-keys, the dashboard): passing the list to each would
/// leave the one forgotten caller that leaks.
static KNOWN: LazyLock<RwLock<Known>> = LazyLock::new(Default::default);

/// Makes [`scrub`] hide `secret` (and any stretch of it) from now on.
pub fn remember(secret: &str) {
    if secret.len() < MIN_KNOWN {
        return;
    }
    let mut known = KNOWN.write().unwrap_or_else(|p| p.into_inner());
    known.add(secret);
}

/// The one masking function for text from outside: see the module comment.
pub fn scrub(text: &str) -> String {
    KNOWN.read().unwrap_or_else(|p| p.into_inner()).scrub(text)
}

impl Known {
    fn add(&mut self, secret: &str) {
        if self.keys.iter().any(|k| k == secret) {
            return;
        }
        self.keys.push(secret.to_string());
        self.keys.sort_by_key(|k| std::cmp::Reverse(k.len()));
        for w in secret.as_bytes().windows(WINDOW) {
            self.windows.insert(w.try_into().expect("window size"));
        }
    }

    fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for k in &self.keys {
            if out.contains(k.as_str()) {
                out = out.replace(k.as_str(), &mask(k));
            }
        }
        let out = hide_credentials(&out);
        let out = hide_key_like(&out);
        let out = self.hide_stretches(&out);
        hide_userinfo(&out)
    }

    /// Whatever is left of a known key (cut off, glued to other text): every stretch of
    /// [`WINDOW`] bytes found in a key becomes `…`.
    fn hide_stretches(&self, text: &str) -> String {
        let bytes = text.as_bytes();
        if self.windows.is_empty() || bytes.len() < WINDOW {
            return text.to_string();
        }
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        for (i, w) in bytes.windows(WINDOW).enumerate() {
            let w: &[u8; WINDOW] = w.try_into().expect("window size");
            if !self.windows.contains(w) {
                continue;
            }
            match ranges.last_mut() {
                Some(last) if last.1 >= i => last.1 = i + WINDOW,
                _ => ranges.push((i, i + WINDOW)),
            }
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (mut start, mut end) in ranges {
            // A key with non-ASCII characters may match from inside one: widen to whole ones.
            while !text.is_char_boundary(start) {
                start -= 1;
            }
            while !text.is_char_boundary(end) {
                end += 1;
            }
            if start < at {
                start = at;
            }
            out.push_str(&text[at..start]);
            out.push('…');
            at = end;
        }
        out.push_str(&text[at..]);
        out
    }
}

/// Characters a key is made of (the ones that continue a key-like word).
fn key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// `gsk_…`, `xai-…`, `AIza…` anywhere in a word, `sk-…` at its start: the rest of the
/// word becomes its masked form.
fn hide_key_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(key_char) {
        out.push_str(&rest[..start]);
        let word_len = rest[start..]
            .find(|c: char| !key_char(c))
            .unwrap_or(rest.len() - start);
        let word = &rest[start..start + word_len];
        match key_like_at(word) {
            Some(at) => {
                out.push_str(&word[..at]);
                out.push_str(&mask(&word[at..]));
            }
            None => out.push_str(word),
        }
        rest = &rest[start + word_len..];
    }
    out.push_str(rest);
    out
}

/// Where in `word` a key-like token starts, if one does.
fn key_like_at(word: &str) -> Option<usize> {
    KEY_PREFIXES
        .iter()
        .filter_map(|(prefix, at_word_start)| {
            word.match_indices(prefix).map(|(i, _)| i).find(|&i| {
                let starts_word = i == 0 || !word.as_bytes()[i - 1].is_ascii_alphanumeric();
                (starts_word || !at_word_start) && word.len() - i - prefix.len() >= KEY_LIKE_REST
            })
        })
        .min()
}

/// `Bearer <token>` and `Basic <credentials>` (an echoed `Authorization` header): the
/// token becomes its masked form, whatever it looks like. Short words after them are
/// prose ("Bearer auth"), and a token already masked stays as it is.
fn hide_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let lower = text.to_ascii_lowercase();
    let mut at = 0;
    while let Some((token_start, token_len)) = next_credential(text, &lower, at) {
        out.push_str(&text[at..token_start]);
        out.push_str(&mask(&text[token_start..token_start + token_len]));
        at = token_start + token_len;
    }
    out.push_str(&text[at..]);
    out
}

/// The next credential after `from`: (start, length) of the token.
fn next_credential(text: &str, lower: &str, from: usize) -> Option<(usize, usize)> {
    let mut search = from;
    loop {
        let bearer = lower[search..]
            .find("bearer")
            .map(|i| (search + i, 6, false));
        let basic = text[search..].find("Basic").map(|i| (search + i, 5, true));
        let (found, len, base64) = match (bearer, basic) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        let after = found + len;
        let token_start =
            after + text[after..].len() - text[after..].trim_start_matches([' ', '\t']).len();
        // A bearer token is whatever stands there; Basic credentials are base64.
        let ends = |c: char| match base64 {
            true => !(c.is_ascii_alphanumeric() || "+/=".contains(c)),
            false => c.is_whitespace() || "\"'<>,;\\".contains(c),
        };
        let token_len = text[token_start..]
            .find(ends)
            .unwrap_or(text.len() - token_start);
        let token = &text[token_start..token_start + token_len];
        if token_start > after && token.len() >= KEY_LIKE_REST && !token.contains('…') {
            return Some((token_start, token_len));
        }
        search = found + 1;
    }
}

/// `scheme://user:password@host` → `scheme://user:***@host`, wherever a URL stands.
fn hide_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let authority_start = i + 3;
        out.push_str(&rest[..authority_start]);
        let after = &rest[authority_start..];
        let len = after
            .find(|c: char| c.is_whitespace() || "/?#\"'<>".contains(c))
            .unwrap_or(after.len());
        let authority = &after[..len];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.split_once(':') {
                    Some((user, _password)) => {
                        out.push_str(user);
                        out.push_str(":***");
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

/// The masked form of a key: its well-known prefix (if any) and its last four characters.
pub fn mask(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() < 12 {
        // Too short to show anything of it safely.
        let tail: String = chars
            .iter()
            .rev()
            .take(2.min(chars.len() / 4))
            .rev()
            .collect();
        return format!("…{tail}");
    }
    let prefix_len = chars
        .iter()
        .take(5)
        .position(|c| *c == '_' || *c == '-')
        .map(|p| p + 1)
        .unwrap_or(3);
    let prefix: String = chars[..prefix_len].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{prefix}…{tail}")
}

/// A stable identifier for a key that reveals nothing: the first 8 hex digits of its SHA-256.
pub fn fingerprint(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    crate::hex::hex(&digest[..4])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_known_prefixes() {
        assert_eq!(mask("gsk_abcdefghijklmnopqrstuvwxyza1b2"), "gsk_…a1b2");
        assert_eq!(mask("xai-abcdefghijklmnopqrstuvwxyz9876"), "xai-…9876");
        assert_eq!(mask("AIzaSyAbcdefghijklmnopqrstuvwxyzQ1w2"), "AIz…Q1w2");
        assert_eq!(mask("short"), "…t");
    }

    #[test]
    fn fingerprint_is_short_and_stable() {
        assert_eq!(fingerprint("abc"), "ba7816bf");
        assert_eq!(fingerprint("abc").len(), 8);
    }

    fn known(keys: &[&str]) -> Known {
        let mut k = Known::default();
        for key in keys {
            k.add(key);
        }
        k
    }

    /// No stretch of WINDOW characters of `secret` in `text`.
    fn shows_none_of(text: &str, secret: &str) -> bool {
        let chars: Vec<char> = secret.chars().collect();
        chars.is_empty()
            || chars
                .windows(WINDOW.min(chars.len()))
                .all(|w| !text.contains(&w.iter().collect::<String>()))
    }

    #[test]
    fn a_known_key_anywhere_is_masked() {
        let key = "qwertyuiopasdfghjkl0987";
        let k = known(&[key]);
        assert_eq!(
            k.scrub(&format!("error: you sent {key}, x{key}y")),
            "error: you sent qwe…0987, xqwe…0987y"
        );
        // Cut off by the provider, glued to other text: what is left is hidden.
        let out = k.scrub(&format!("echo=\"{}", &key[..14]));
        assert!(shows_none_of(&out, key), "{out}");
        assert!(out.starts_with("echo=\""), "{out}");
        // Ordinary text passes untouched.
        let plain = "Rate limit reached: Limit 30, Used 30. Please try again in 1.5s.";
        assert_eq!(k.scrub(plain), plain);
    }

    #[test]
    fn key_like_tokens_and_credentials_are_masked() {
        let k = Known::default();
        assert_eq!(
            k.scrub("key gsk_abcdefghijklmnopqrstuvwxyz1234 is bad"),
            "key gsk_…1234 is bad"
        );
        assert_eq!(k.scrub("\"sk-proj-abcdefghij0123\""), "\"sk-…0123\"");
        assert_eq!(k.scrub("x:xai-abcdefghijk9876"), "x:xai-…9876");
        assert_eq!(k.scrub("AIzaSyAbcdefghijklmnQ1w2"), "AIz…Q1w2");
        assert_eq!(
            k.scrub("Authorization: Bearer abcdefghijklmnop4321."),
            "Authorization: Bearer abc…321."
        );
        assert_eq!(
            k.scrub("authorization: Basic dXNlcjpwYXNzd29yZA=="),
            "authorization: Basic dXN…ZA=="
        );
        // Words that only resemble them stay.
        for prose in [
            "multi-task-learning failed",
            "use Bearer auth",
            "a basic reply",
            "sk-short",
            "risk-averse model",
        ] {
            assert_eq!(k.scrub(prose), prose);
        }
    }

    #[test]
    fn url_passwords_are_hidden() {
        let k = Known::default();
        assert_eq!(
            k.scrub("error sending request for url (http://bob:hunter2@127.0.0.1:9/v1/models)"),
            "error sending request for url (http://bob:***@127.0.0.1:9/v1/models)"
        );
        assert_eq!(k.scrub("see https://a@b.c/x"), "see https://a@b.c/x");
        assert_eq!(k.scrub("http://h/p?q=a:b@c"), "http://h/p?q=a:b@c");
    }

    #[test]
    fn remembered_keys_are_scrubbed_everywhere() {
        let key = "zzRememberedKey_0123456789abcd";
        remember(key);
        remember("ab"); // too short to look for
        assert!(!scrub(&format!("<p>{key}</p> ab")).contains(key));
        assert!(scrub("ab cd").contains("ab"));
    }

    mod never_leaks {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn a_known_key_anywhere_in_any_body(
                key in "[A-Za-z0-9_-]{12,64}",
                before in ".{0,80}",
                after in ".{0,80}",
                cut in 0usize..64,
            ) {
                let k = known(&[&key]);
                let body = format!("{before}{key}{after}");
                let out = k.scrub(&body);
                prop_assert!(shows_none_of(&out, &key), "{body:?} -> {out:?}");
                // The provider may cut the key off anywhere.
                let cut = cut.clamp(WINDOW, key.len());
                let body = format!("{before}{}", &key[..cut]);
                let out = k.scrub(&body);
                prop_assert!(shows_none_of(&out, &key[..cut]), "{body:?} -> {out:?}");
            }

            #[test]
            fn an_unknown_key_like_token(
                prefix in "(gsk_|sk-|xai-|AIza|Bearer |Basic )",
                secret in "[A-Za-z0-9]{16,48}",
                before in ".{0,40}",
                after in "[ ,;\"'<>.]{0,1}.{0,40}",
            ) {
                let out = Known::default().scrub(&format!("{before} {prefix}{secret}{after}"));
                prop_assert!(shows_none_of(&out, &secret), "{out:?}");
            }

            #[test]
            fn a_url_password(
                user in "[a-z]{1,8}",
                password in "[A-Za-z0-9]{8,20}",
                before in ".{0,40}",
            ) {
                let out = Known::default()
                    .scrub(&format!("{before} http://{user}:{password}@127.0.0.1:8/v1 x"));
                prop_assert!(!out.contains(&password), "{out:?}");
                let shown = format!("http://{user}:***@127.0.0.1:8/v1");
                prop_assert!(out.contains(&shown), "{out:?}");
            }
        }
    }
}

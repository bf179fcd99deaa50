//! Showing a key without revealing it: `gsk_…a1b2`. Every place that prints a key goes
//! through here, so a full key cannot reach a log, a report or the state file.

use sha2::{Digest, Sha256};

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
}

//! Why a key's health changed: what runs decide on, and the text the state keeps.

/// Why a key's health changed. The state keeps it as its text (`Display`), which users
/// also read in the log and in `keys list`; [`HealthReason::from_stored`] reads every
/// text written so far back. So the texts must not change between versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthReason {
    /// A person asked (`keys disable`, `enable`, `reset`, `rotate`): `manual: WHAT`.
    Manual(String),
    /// The key's own quota is nearly used up: `quota low: daily requests 96 of 100 used,
    /// …`. Each run judges that from the ledger itself, so it is never adopted from
    /// another run.
    QuotaLow(String),
    /// The provider's answer to a call through the key (rate limited, quota exhausted,
    /// invalid key), in `CallError::describe`'s words.
    Provider(String),
    /// What another run sharing the state found: `seen by another run: REASON`.
    SeenByAnotherRun(Box<HealthReason>),
    /// A cooldown, a quota or a disable ran out: `reset`.
    Reset,
    /// A call through the key succeeded: `succeeded`.
    Succeeded,
    /// `autolabel test-keys` found the key working: `test-keys passed`.
    TestKeysPassed,
    /// `autolabel test-keys` found the key refused: `test-keys: invalid key`.
    TestKeysInvalid,
    /// A text this version does not write (from elsewhere, or edited by hand): kept as
    /// it is.
    Other(String),
}

const MANUAL: &str = "manual: ";
const QUOTA_LOW: &str = "quota low: ";
const SEEN: &str = "seen by another run: ";
const TEST_KEYS_PASSED: &str = "test-keys passed";
const TEST_KEYS_INVALID: &str = "test-keys: invalid key";
/// How `CallError::describe` begins for the errors that change a key's health.
const PROVIDER: [&str; 3] = ["rate limited (", "quota exhausted (", "invalid key ("];

impl HealthReason {
    /// The reason a stored text gives; `from_stored(t).to_string() == t` for every `t`.
    pub fn from_stored(text: &str) -> HealthReason {
        if let Some(what) = text.strip_prefix(MANUAL) {
            HealthReason::Manual(what.to_string())
        } else if let Some(what) = text.strip_prefix(QUOTA_LOW) {
            HealthReason::QuotaLow(what.to_string())
        } else if let Some(inner) = text.strip_prefix(SEEN) {
            HealthReason::SeenByAnotherRun(Box::new(HealthReason::from_stored(inner)))
        } else if PROVIDER.iter().any(|p| text.starts_with(p)) {
            HealthReason::Provider(text.to_string())
        } else {
            match text {
                "reset" => HealthReason::Reset,
                "succeeded" => HealthReason::Succeeded,
                TEST_KEYS_PASSED => HealthReason::TestKeysPassed,
                TEST_KEYS_INVALID => HealthReason::TestKeysInvalid,
                _ => HealthReason::Other(text.to_string()),
            }
        }
    }
}

impl std::fmt::Display for HealthReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HealthReason::Manual(what) => write!(f, "{MANUAL}{what}"),
            HealthReason::QuotaLow(what) => write!(f, "{QUOTA_LOW}{what}"),
            HealthReason::SeenByAnotherRun(inner) => write!(f, "{SEEN}{inner}"),
            HealthReason::Provider(text) | HealthReason::Other(text) => f.write_str(text),
            HealthReason::Reset => f.write_str("reset"),
            HealthReason::Succeeded => f.write_str("succeeded"),
            HealthReason::TestKeysPassed => f.write_str(TEST_KEYS_PASSED),
            HealthReason::TestKeysInvalid => f.write_str(TEST_KEYS_INVALID),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::HealthReason::{self, *};

    #[test]
    fn every_stored_text_reads_back_and_is_written_again_unchanged() {
        let cases = [
            (
                "manual: disabled (leaked)",
                Manual("disabled (leaked)".into()),
            ),
            (
                "manual: autolabel keys rotate",
                Manual("autolabel keys rotate".into()),
            ),
            (
                "quota low: daily requests 96 of 100 used, 4.0 % left (--rotate-below 5 %)",
                QuotaLow("daily requests 96 of 100 used, 4.0 % left (--rotate-below 5 %)".into()),
            ),
            (
                "rate limited (RPM), retry in 1.5s",
                Provider("rate limited (RPM), retry in 1.5s".into()),
            ),
            (
                "quota exhausted (RPD)",
                Provider("quota exhausted (RPD)".into()),
            ),
            (
                "invalid key (HTTP 401)",
                Provider("invalid key (HTTP 401)".into()),
            ),
            (
                "seen by another run: quota exhausted (RPD)",
                SeenByAnotherRun(Box::new(Provider("quota exhausted (RPD)".into()))),
            ),
            (
                "seen by another run: manual: autolabel keys rotate",
                SeenByAnotherRun(Box::new(Manual("autolabel keys rotate".into()))),
            ),
            ("reset", Reset),
            ("succeeded", Succeeded),
            ("test-keys passed", TestKeysPassed),
            ("test-keys: invalid key", TestKeysInvalid),
            // Texts no version writes this way stay what they were.
            ("manual", Other("manual".into())),
            ("quota low", Other("quota low".into())),
            ("429", Other("429".into())),
            ("", Other(String::new())),
        ];
        for (text, reason) in cases {
            assert_eq!(HealthReason::from_stored(text), reason, "{text}");
            assert_eq!(reason.to_string(), text);
        }
    }
}

//! How far one key's quota goes: rows per day under the limits, which limit binds, and
//! the batch size `--batch-size auto` picks to spend the quota on texts rather than on
//! repeated instructions.
//!
//! The rules work on a cost function, "estimated tokens of one request of `n` texts", so
//! they know nothing of prompts and are tested on plain numbers; `auto_batch_size` ties
//! them to the real prompt.

use crate::prompt::Prompter;
use crate::provider::defaults::Limits;

/// The largest batch `auto` picks: the longer the reply, the likelier a model miscounts,
/// and a refused batch is split and paid for again.
pub const AUTO_MAX_BATCH: usize = 50;
/// The context window assumed for every provider's default model. Most have far more
/// (Groq's llama-3.1-8b-instant 128k); 8k is what the smallest common models offer, so
/// a batch that fits it fits anywhere.
pub const ASSUMED_CONTEXT_TOKENS: f64 = 8192.0;
/// A batch is filled only to half the context or of the per-minute token limit: texts
/// vary, and a batch of long ones must still fit.
const HEADROOM: f64 = 0.5;
/// A larger batch is worth it only if it saves at least this share of tokens per row.
const WORTHWHILE_SAVING: f64 = 0.02;
/// Batch sizes the rules look at (beyond the cap, to tell whether the cap decided).
const SEARCH_LIMIT: usize = 1000;

/// One of the five limits a key (or its organization) has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    RequestsPerMinute,
    RequestsPerHour,
    RequestsPerDay,
    TokensPerMinute,
    TokensPerDay,
}

impl Limit {
    pub fn describe(self) -> &'static str {
        match self {
            Limit::RequestsPerMinute => "requests per minute",
            Limit::RequestsPerHour => "requests per hour",
            Limit::RequestsPerDay => "requests per day",
            Limit::TokensPerMinute => "tokens per minute",
            Limit::TokensPerDay => "tokens per day",
        }
    }

    fn counts_tokens(self) -> bool {
        matches!(self, Limit::TokensPerMinute | Limit::TokensPerDay)
    }
}

/// Rows one key labels in a day at some batch size, and the limit that stops it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DayBudget {
    /// `None`: no limit is known, so no daily ceiling either.
    pub rows: Option<f64>,
    pub binding: Option<Limit>,
}

/// Rows per key per day when every request carries `batch` texts and costs
/// `request_tokens`: the least of what each limit allows over 24 hours. A request larger
/// than the per-minute token limit can never be sent: zero rows.
pub fn rows_per_day(limits: &Limits, batch: usize, request_tokens: f64) -> DayBudget {
    let b = batch.max(1) as f64;
    let per_row = (request_tokens / b).max(f64::MIN_POSITIVE);
    if limits.tpm.is_some_and(|t| request_tokens > t as f64) {
        return DayBudget {
            rows: Some(0.0),
            binding: Some(Limit::TokensPerMinute),
        };
    }
    // Token limits first: on a tie they are the ones in use to the full.
    let candidates = [
        (
            Limit::TokensPerMinute,
            limits.tpm.map(|n| n as f64 * 1440.0 / per_row),
        ),
        (Limit::TokensPerDay, limits.tpd.map(|n| n as f64 / per_row)),
        (
            Limit::RequestsPerMinute,
            limits.rpm.map(|n| n as f64 * 1440.0 * b),
        ),
        (
            Limit::RequestsPerHour,
            limits.rph.map(|n| n as f64 * 24.0 * b),
        ),
        (Limit::RequestsPerDay, limits.rpd.map(|n| n as f64 * b)),
    ];
    candidates
        .into_iter()
        .filter_map(|(limit, rows)| rows.map(|r| (limit, r)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(
            DayBudget {
                rows: None,
                binding: None,
            },
            |(limit, rows)| DayBudget {
                rows: Some(rows),
                binding: Some(limit),
            },
        )
}

/// The batch size `auto` chose, and why, in words for the log and the dry run.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoChoice {
    pub size: usize,
    pub reason: String,
}

/// Picks the batch size from the limit that binds:
/// - while a request limit binds, batches grow until the token limits are used fully
///   (more texts per request is then free capacity);
/// - while a token limit binds (or none is known), batches grow until a larger one would
///   save less than 2 % of the tokens per row, i.e. until the per-request overhead
///   (instructions, reply envelope) is under 2 % of a row's cost;
/// - never past `AUTO_MAX_BATCH` texts, nor past half the assumed context or of the
///   per-minute token limit.
///
/// `request_tokens(n)` is the estimated cost of one request of `n` texts.
pub fn choose_batch_size(limits: &Limits, request_tokens: impl Fn(usize) -> f64) -> AutoChoice {
    let per_row = |n: usize| request_tokens(n) / n as f64;
    // What a row costs when the overhead is spread over an unbounded batch.
    let marginal =
        (request_tokens(2 * SEARCH_LIMIT) - request_tokens(SEARCH_LIMIT)) / SEARCH_LIMIT as f64;
    let room = limits.tpm.map_or(ASSUMED_CONTEXT_TOKENS, |t| {
        ASSUMED_CONTEXT_TOKENS.min(t as f64)
    }) * HEADROOM;
    let cap = (1..=AUTO_MAX_BATCH)
        .take_while(|&n| n == 1 || request_tokens(n) <= room)
        .last()
        .unwrap_or(1);
    let cap_reason = if cap == AUTO_MAX_BATCH {
        format!("{AUTO_MAX_BATCH} texts at most")
    } else if limits
        .tpm
        .is_some_and(|t| (t as f64) < ASSUMED_CONTEXT_TOKENS)
    {
        "half the tokens per minute at most".to_string()
    } else {
        format!("half of an assumed {ASSUMED_CONTEXT_TOKENS:.0}-token context at most")
    };
    // Both rules are looked at past the cap, to tell whether the cap decided.
    let enough_saved = (1..SEARCH_LIMIT)
        .find(|&n| per_row(n) - marginal < WORTHWHILE_SAVING * per_row(n))
        .unwrap_or(SEARCH_LIMIT);
    let binds = |n: usize| rows_per_day(limits, n, request_tokens(n)).binding;
    let tokens_take_over = (1..SEARCH_LIMIT)
        .find(|&n| binds(n).is_none_or(Limit::counts_tokens))
        .unwrap_or(SEARCH_LIMIT);
    let wanted = enough_saved.max(tokens_take_over);
    let size = wanted.min(cap);
    let at_one = binds(1);
    let budget = rows_per_day(limits, size, request_tokens(size));
    let mut why = match at_one {
        Some(l) if !l.counts_tokens() => format!(
            "{} bind, so batches grow until the token limits are used",
            l.describe()
        ),
        Some(l) => format!(
            "{} bind, so batches grow until a larger one saves under 2 % of tokens",
            l.describe()
        ),
        None => "no limit is known, so batches grow until a larger one saves under 2 % of tokens"
            .to_string(),
    };
    if wanted > cap {
        why.push_str(&format!("; capped at {cap_reason}"));
    }
    let outcome = match (budget.rows, budget.binding) {
        (Some(rows), Some(limit)) => format!(
            "about {} rows per key a day at {:.1} tokens a row{}",
            thousands(rows),
            request_tokens(size) / size as f64,
            if Some(limit) == at_one {
                String::new()
            } else {
                format!(" ({} bind then)", limit.describe())
            }
        ),
        _ => format!("{:.1} tokens a row", request_tokens(size) / size as f64),
    };
    AutoChoice {
        size,
        reason: format!("{why}: {outcome}"),
    }
}

/// `auto` for this prompt and texts of `avg_text_bytes` on average, under `limits`.
pub fn auto_batch_size(limits: &Limits, prompter: &Prompter, avg_text_bytes: f64) -> AutoChoice {
    choose_batch_size(limits, |n| {
        prompter.estimated_request_tokens(n, avg_text_bytes)
    })
}

/// `12345.6` → `12,345`.
pub fn thousands(v: f64) -> String {
    let digits = (v.max(0.0).floor() as u64).to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groq_free() -> Limits {
        Limits {
            rpm: Some(30),
            rph: None,
            rpd: Some(14_400),
            tpm: Some(6_000),
            tpd: Some(500_000),
        }
    }

    /// `fixed` tokens per request plus `row` per text.
    fn linear(fixed: f64, row: f64) -> impl Fn(usize) -> f64 {
        move |n| fixed + row * n as f64
    }

    #[test]
    fn rows_per_day_is_the_least_any_limit_allows() {
        // One text per request, 50 tokens: 500,000 / 50 = 10,000 rows < 14,400 requests.
        let b = rows_per_day(&groq_free(), 1, 50.0);
        assert_eq!(b.binding, Some(Limit::TokensPerDay));
        assert_eq!(b.rows, Some(10_000.0));
        // Tiny requests: the request count binds.
        let b = rows_per_day(&groq_free(), 1, 20.0);
        assert_eq!(b.binding, Some(Limit::RequestsPerDay));
        assert_eq!(b.rows, Some(14_400.0));
        // Ten texts a request multiply the requests' rows.
        let gemini = Limits {
            rpm: Some(15),
            rpd: Some(1_500),
            tpm: Some(1_000_000),
            ..Limits::default()
        };
        let b = rows_per_day(&gemini, 10, 400.0);
        assert_eq!(
            (b.binding, b.rows),
            (Some(Limit::RequestsPerDay), Some(15_000.0))
        );
        // No limit: no ceiling.
        assert_eq!(rows_per_day(&Limits::default(), 5, 100.0).rows, None);
        // A request above the per-minute token limit never goes.
        let b = rows_per_day(&groq_free(), 200, 7_000.0);
        assert_eq!(
            (b.rows, b.binding),
            (Some(0.0), Some(Limit::TokensPerMinute))
        );
    }

    #[test]
    fn when_tokens_bind_the_batch_grows_until_the_overhead_is_under_two_percent() {
        // 30 tokens of overhead, 40 a row: 30/n < 2 % of (40 + 30/n) from n = 37.
        let c = choose_batch_size(&groq_free(), linear(30.0, 40.0));
        assert_eq!(c.size, 37, "{c:?}");
        // 50 of overhead would want 62 texts: capped at 50.
        let c = choose_batch_size(&groq_free(), linear(50.0, 40.0));
        assert_eq!(c.size, AUTO_MAX_BATCH, "{c:?}");
        assert!(c.reason.contains("capped at 50 texts"), "{}", c.reason);
        assert!(c.reason.starts_with("tokens per day bind"), "{}", c.reason);
        // Long texts (400 tokens a row): 2 % of a row is 8 tokens, reached at n = 5.
        let c = choose_batch_size(&groq_free(), linear(40.0, 400.0));
        assert_eq!(c.size, 5, "{c:?}");
        // The rule holds at the size chosen and not one below.
        let per_row = |n: f64| (40.0 + 400.0 * n) / n;
        assert!(per_row(5.0) - 400.0 < 0.02 * per_row(5.0));
        assert!(per_row(4.0) - 400.0 >= 0.02 * per_row(4.0));
    }

    #[test]
    fn when_requests_bind_the_batch_grows_until_tokens_take_over() {
        // Gemini-like: 1,500 requests a day, a million tokens a minute. Requests bind at
        // every size, so the batch goes to the cap.
        let gemini = Limits {
            rpm: Some(15),
            rpd: Some(1_500),
            tpm: Some(1_000_000),
            ..Limits::default()
        };
        let c = choose_batch_size(&gemini, linear(40.0, 40.0));
        assert_eq!(c.size, AUTO_MAX_BATCH);
        assert!(
            c.reason.starts_with("requests per day bind"),
            "{}",
            c.reason
        );
        // 1,000 requests and 100,000 tokens a day, 10 tokens a row and none of overhead:
        // requests bind up to 10 texts a request (10,000 rows either way), tokens after.
        let tight = Limits {
            rpd: Some(1_000),
            tpd: Some(100_000),
            ..Limits::default()
        };
        let c = choose_batch_size(&tight, linear(0.0, 10.0));
        assert_eq!(c.size, 10, "{c:?}");
        assert_eq!(
            rows_per_day(&tight, 9, 90.0).binding,
            Some(Limit::RequestsPerDay)
        );
        assert_eq!(
            rows_per_day(&tight, 10, 100.0).binding,
            Some(Limit::TokensPerDay)
        );
    }

    #[test]
    fn the_batch_fits_the_context_and_the_minute_token_limit() {
        // 400 tokens of overhead and 300 a row would want 66 texts; half of 8,192 holds 12.
        let c = choose_batch_size(&Limits::default(), linear(400.0, 300.0));
        assert_eq!(c.size, 12, "{c:?}");
        assert!(c.reason.contains("8192-token context"), "{}", c.reason);
        // A 1,000-token minute: half of it holds 4 rows of 110 plus 40.
        let small = Limits {
            tpm: Some(1_000),
            ..Limits::default()
        };
        let c = choose_batch_size(&small, linear(40.0, 110.0));
        assert_eq!(c.size, 4, "{c:?}");
        assert!(c.reason.contains("tokens per minute"), "{}", c.reason);
        // A text larger than everything still goes alone.
        assert_eq!(choose_batch_size(&small, linear(40.0, 5_000.0)).size, 1);
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(12_345.9), "12,345");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
    }
}

//! `--confidence logprobs` in a request: the label with the confidence its answer's
//! logprobs give it, and a provider that refuses logprobs met without costing the row.

use super::Job;
use crate::normalize::LabelSet;
use crate::provider::classify::CallError;
use crate::provider::{CallResult, ChatReply};

/// The label a single reply names, with its logprobs' confidence when it carried some.
pub(super) fn labeled(labels: &LabelSet, reply: &ChatReply) -> Option<(usize, Option<f64>)> {
    let i = labels.normalize(&reply.content)?;
    let confidence = reply
        .logprobs
        .as_deref()
        .and_then(|t| crate::votes::logprobs::confidence(t, labels.labels(), i));
    Some((i, confidence))
}

/// A 400 (or 422) to a request that carried logprobs: the server (a proxy, an unknown
/// OpenAI-compatible one) may not take them. Its client asks for none for the rest of the
/// run (said once) and the row is asked again without them: the refused request is
/// counted and logged, but it is not one of the row's retries and no key is blamed for
/// it. Whether it was such a refusal.
pub(super) fn refused(job: Job<'_>, key: usize, res: &CallResult) -> bool {
    let Err(err @ CallError::Rejected { status, message }) = &res.result else {
        return false;
    };
    let member = job.run.spec.member(key);
    let switch = member.client.logprobs();
    let (true, 400 | 422, Some(switch)) = (res.logprobs_sent, *status, switch) else {
        return false;
    };
    job.usage.record(key, |d| {
        d.requests += 1;
        d.error(err.class());
    });
    job.usage.note_error(job.run, key, err);
    if switch.refuse() {
        job.run.ui.error(&format!(
            "provider {}: answered {status} to a request asking for logprobs ({message}); \
             asking it without them for the rest of the run, so its rows get no confidence",
            member.provider
        ));
    }
    true
}

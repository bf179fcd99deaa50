//! `test-keys --chat`: which keys share an organization, as far as one request per key
//! and earlier runs tell. Three signs, strongest first: earlier runs found it (the
//! state remembers), this test's 429s named the same organization, or the requests'
//! `x-ratelimit-remaining-requests` fell by one from each key to the next (the keys
//! are asked one after another, so one shared counter counts down across them).

use serde_json::Value;

use crate::config::Config;
use crate::error::Result;
use crate::pacing::shared_org::mask_org;
use crate::store::State;

/// Keys (indexes from 1) found in one organization, and how.
pub struct Group {
    pub keys: Vec<u64>,
    pub how: String,
}

impl Group {
    pub fn describe(&self) -> String {
        let keys: Vec<String> = self.keys.iter().map(|k| format!("#{k}")).collect();
        format!(
            "keys {} share {}: runs pace them as one (P_ORG_GROUPS groups keys your way)",
            keys.join(", "),
            self.how
        )
    }
}

/// Groups of `keys` by organization name, in key order; only those of two keys or more.
fn by_name<'a>(named: impl Iterator<Item = (u64, &'a str)>) -> Vec<(&'a str, Vec<u64>)> {
    let mut orgs: Vec<(&str, Vec<u64>)> = Vec::new();
    for (key, org) in named {
        match orgs.iter_mut().find(|(o, _)| *o == org) {
            Some((_, keys)) => keys.push(key),
            None => orgs.push((org, vec![key])),
        }
    }
    orgs.retain(|(_, keys)| keys.len() > 1);
    orgs
}

/// Runs of keys, in order, whose remaining-request counter fell by one from each to the
/// next under the same limit.
fn falling_runs(results: &[Value]) -> Vec<Vec<u64>> {
    let counter = |r: &Value| {
        Some((
            r["limit_requests"].as_u64()?,
            r["remaining_requests"].as_u64()?,
        ))
    };
    let mut runs: Vec<Vec<u64>> = Vec::new();
    for (i, r) in results.iter().enumerate() {
        let index = r["index"].as_u64().unwrap_or(0);
        let falls = i > 0
            && matches!(
                (counter(&results[i - 1]), counter(r)),
                (Some((l1, r1)), Some((l2, r2))) if l1 == l2 && r2 + 1 == r1
            );
        match runs.last_mut() {
            Some(run) if falls => run.push(index),
            _ => runs.push(vec![index]),
        }
    }
    runs.retain(|run| run.len() > 1);
    runs
}

/// The groups of `cfg`'s keys, from the state and from `results` (one per key, in order).
pub fn groups(cfg: &Config, state: &State, results: &[Value]) -> Result<Vec<Group>> {
    let index = |i: usize| results[i]["index"].as_u64().unwrap_or(0);
    let members = state.org_members(cfg.provider.as_str())?;
    let remembered = cfg.keys.iter().enumerate().filter_map(|(i, key)| {
        let (_, org) = members.iter().find(|(fp, _)| *fp == key.fingerprint)?;
        Some((index(i), org.as_str()))
    });
    let mut out: Vec<Group> = by_name(remembered)
        .into_iter()
        .map(|(org, keys)| {
            let name = if org.starts_with("counters:") {
                "an organization".to_string()
            } else {
                format!("organization {}", mask_org(org))
            };
            Group {
                keys,
                how: format!("{name} (found by an earlier run)"),
            }
        })
        .collect();
    let new =
        |out: &[Group], keys: &[u64]| !keys.iter().all(|k| out.iter().any(|g| g.keys.contains(k)));
    let named = results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| Some((index(i), r["named_org"].as_str()?)));
    for (org, keys) in by_name(named) {
        if new(&out, &keys) {
            let how = format!("organization {} (named in 429 replies)", mask_org(org));
            out.push(Group { keys, how });
        }
    }
    for keys in falling_runs(results) {
        if new(&out, &keys) {
            let how = "an organization (their x-ratelimit-remaining-requests fell by one from key to key)";
            out.push(Group {
                keys,
                how: how.into(),
            });
        }
    }
    Ok(out)
}

/// Adds to each key's result the other keys of its organization (`shares_with`), and
/// drops the fields only the grouping needed.
pub fn mark(results: &mut [Value], groups: &[Group]) {
    for r in results.iter_mut() {
        let me = r["index"].as_u64().unwrap_or(0);
        let with: Vec<u64> = groups
            .iter()
            .filter(|g| g.keys.contains(&me))
            .flat_map(|g| g.keys.iter().copied().filter(|&k| k != me))
            .collect();
        if let Some(o) = r.as_object_mut() {
            o.remove("limit_requests");
            o.remove("named_org");
            o.insert("shares_with".into(), Value::from(with));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counters_falling_by_one_from_key_to_key_make_a_run() {
        let r = |i: u64, left: u64| json!({"index": i, "limit_requests": 100, "remaining_requests": left});
        let results = [r(1, 50), r(2, 49), r(3, 48), r(4, 90)];
        assert_eq!(falling_runs(&results), [vec![1, 2, 3]]);
        assert!(falling_runs(&[r(1, 99), r(2, 99)]).is_empty());
    }
}

//! Which keys share an organization, and so its limits: the user's groups, or those
//! earlier runs found; and the name each organization has in the shared quota store.

use super::Config;
use crate::error::{Error, Result};
use crate::store::{OrgId, State};

impl Config {
    pub fn org_count(&self) -> usize {
        self.key_orgs.iter().max().map_or(0, |m| m + 1)
    }

    /// Groups the keys that earlier runs found in one organization (see
    /// `Store::org_members`); the user's own groups win.
    pub(super) fn adopt_org_members(&mut self, state: &State) -> crate::error::Result<()> {
        if self.org_groups_given || self.keys.len() < 2 {
            return Ok(());
        }
        let members = state.org_members(self.provider.as_str())?;
        let org_of = |fp: &str| {
            members
                .iter()
                .find(|(f, _)| f == fp)
                .map(|(_, o)| o.as_str())
        };
        let mut seen: Vec<(&str, usize)> = Vec::new();
        let mut key_orgs = Vec::new();
        let mut next = 0;
        for key in &self.keys {
            let group = org_of(&key.fingerprint);
            match group.and_then(|g| seen.iter().find(|(o, _)| *o == g)) {
                Some(&(_, index)) => key_orgs.push(index),
                None => {
                    seen.extend(group.map(|g| (g, next)));
                    key_orgs.push(next);
                    next += 1;
                }
            }
        }
        if key_orgs != self.key_orgs {
            self.key_orgs = key_orgs;
            self.org_limits = vec![self.limits.clone(); next];
        }
        Ok(())
    }

    /// The keys (their indexes, from 1) of each organization of several keys.
    pub fn shared_groups(&self) -> Vec<Vec<usize>> {
        (0..self.org_count())
            .map(|org| {
                self.keys
                    .iter()
                    .zip(&self.key_orgs)
                    .filter(|(_, o)| **o == org)
                    .map(|(k, _)| k.index)
                    .collect::<Vec<_>>()
            })
            .filter(|keys| keys.len() > 1)
            .collect()
    }

    /// How every run names organization `org` in the shared quota store: provider, model
    /// and its keys' fingerprints, so runs with the same keys share one limiter.
    pub fn org_id(&self, org: usize) -> OrgId {
        OrgId::new(
            self.provider.as_str(),
            &self.model,
            &self.org_fingerprints(org),
        )
    }

    /// The fingerprints of organization `org`'s keys, in configuration order.
    pub(super) fn org_fingerprints(&self, org: usize) -> Vec<&str> {
        self.keys
            .iter()
            .zip(&self.key_orgs)
            .filter(|(_, o)| **o == org)
            .map(|(k, _)| k.fingerprint.as_str())
            .collect()
    }
}

/// `"1,2;3"` → keys 1 and 2 share an organization, key 3 has its own, and every key not
/// named has its own too. Returns the organization index of each key.
pub fn parse_org_groups(spec: Option<&str>, keys: usize) -> Result<Vec<usize>> {
    let mut orgs: Vec<Option<usize>> = vec![None; keys];
    let mut next = 0;
    if let Some(spec) = spec.filter(|s| !s.trim().is_empty()) {
        for group in spec.split(';').map(str::trim).filter(|g| !g.is_empty()) {
            for item in group.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                let idx: usize = item
                    .parse()
                    .ok()
                    .filter(|i| (1..=keys).contains(i))
                    .ok_or_else(|| {
                        Error::Usage(format!(
                            "org groups '{spec}': '{item}' is not a key index between 1 and {keys}"
                        ))
                    })?;
                if orgs[idx - 1].is_some() {
                    return Err(Error::Usage(format!(
                        "org groups '{spec}': key {idx} is named twice"
                    )));
                }
                orgs[idx - 1] = Some(next);
            }
            next += 1;
        }
    }
    Ok(orgs
        .into_iter()
        .map(|o| {
            o.unwrap_or_else(|| {
                next += 1;
                next - 1
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn org_groups() {
        assert_eq!(parse_org_groups(None, 3).unwrap(), [0, 1, 2]);
        assert_eq!(parse_org_groups(Some("1,2"), 3).unwrap(), [0, 0, 1]);
        assert_eq!(parse_org_groups(Some("1,3;2"), 4).unwrap(), [0, 1, 0, 2]);
        assert!(parse_org_groups(Some("1,4"), 3).is_err());
        assert!(parse_org_groups(Some("1;1"), 3).is_err());
    }
}

//! Label noise: a model that is sometimes wrong, more so further down a batch. With
//! probability `p + slope × position` (position 0 for a single text) a returned label is
//! replaced by one of the other labels. Each decision is a hash of the seed, the text and
//! how many times that text was asked before, so repeated requests for one text err
//! independently, and a run's answers do not depend on which request reached the fake
//! first.

use std::collections::HashMap;

/// How often, and where in a batch, the fake answers wrong.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Noise {
    /// Chance that a label is wrong at position 0 (or in a single request).
    pub p: f64,
    /// Added per position in a batch: position 49 errs with `p + 49 × slope`.
    pub slope: f64,
    pub seed: u64,
}

impl Noise {
    /// Wrong with probability `p` anywhere.
    pub fn flat(p: f64, seed: u64) -> Noise {
        Noise {
            p,
            slope: 0.0,
            seed,
        }
    }

    /// The chance that the label at `position` is wrong (clamped to 0–1).
    pub fn chance(&self, position: usize) -> f64 {
        (self.p + self.slope * position as f64).clamp(0.0, 1.0)
    }
}

/// How many times each text was asked, for independent decisions.
#[derive(Default)]
pub struct NoiseState {
    asked: HashMap<String, u64>,
}

/// SplitMix64: a good 64-bit mix for hashing counters.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl NoiseState {
    /// The labels to answer for `texts` (in the order sent), given the right ones.
    pub fn apply(
        &mut self,
        noise: &Noise,
        texts: &[String],
        right: Vec<&'static str>,
        labels: &[&'static str],
    ) -> Vec<&'static str> {
        right
            .into_iter()
            .enumerate()
            .map(|(pos, label)| {
                let Some(text) = texts.get(pos) else {
                    return label;
                };
                let n = self.asked.entry(text.clone()).or_default();
                *n += 1;
                let h = mix(noise.seed ^ mix(super::fnv1a64(text.as_bytes()) ^ mix(*n)));
                let u = (h >> 11) as f64 / (1u64 << 53) as f64;
                if u >= noise.chance(pos) {
                    return label;
                }
                let others: Vec<&'static str> =
                    labels.iter().copied().filter(|l| *l != label).collect();
                others[(mix(h) % others.len() as u64) as usize]
            })
            .collect()
    }
}

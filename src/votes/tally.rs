//! One row's votes: who leads, whether the remaining votes could still change that, how
//! many more to ask now, and how the votes are kept in the label cache. Pure.

/// The votes of one text, in the order they arrived.
#[derive(Debug, Clone, PartialEq)]
pub struct Tally {
    /// Votes allowed (`--votes`).
    n: u32,
    /// Each vote: the label, and the provider (index in the run's pool) that gave it.
    votes: Vec<(String, usize)>,
    /// Votes asked and not answered yet.
    pub inflight: u32,
    /// Votes sent so far (answered or not): the next vote's ordinal.
    pub asked: u32,
    /// Why a vote could not be had (no usable key, retries spent): no more are asked.
    pub failed: Option<String>,
    /// A vote came back unanswered because the run is stopping.
    pub stopped: bool,
}

/// What a row shows of its votes.
#[derive(Debug, Clone, PartialEq)]
pub struct VoteSummary {
    /// The winner's share of the votes cast (with `--confidence logprobs`, the answer's
    /// share of the probability on labels; `None` when the answer carried no logprobs).
    pub confidence: Option<f64>,
    /// `positif:4|netral:1`, the winner first.
    pub counts: String,
    /// Every vote cast named the same label.
    pub unanimous: bool,
}

impl VoteSummary {
    /// A single label, as a run with one vote (or a cached single label) has it.
    pub fn single(label: &str) -> VoteSummary {
        VoteSummary {
            confidence: Some(1.0),
            counts: format!("{label}:1"),
            unanimous: true,
        }
    }

    /// A single label whose confidence its logprobs gave (`None`: they did not).
    pub fn measured(label: &str, confidence: Option<f64>) -> VoteSummary {
        VoteSummary {
            confidence,
            ..VoteSummary::single(label)
        }
    }

    /// The confidence as the column shows it: three decimals (empty when unknown).
    pub fn confidence_text(&self) -> String {
        self.confidence
            .map(|c| format!("{c:.3}"))
            .unwrap_or_default()
    }
}

impl Tally {
    pub fn new(n: u32) -> Tally {
        Tally {
            n: n.max(1),
            votes: Vec::new(),
            inflight: 0,
            asked: 0,
            failed: None,
            stopped: false,
        }
    }

    /// Votes cast.
    pub fn cast(&self) -> u32 {
        self.votes.len() as u32
    }

    /// The labels by standing: most votes first, and among equals the one that reached
    /// its count first (which is how a tie is decided). With each label's count.
    pub fn standing(&self) -> Vec<(&str, u32)> {
        // (label, count, the vote at which it reached that count)
        let mut rows: Vec<(&str, u32, usize)> = Vec::new();
        for (i, (label, _)) in self.votes.iter().enumerate() {
            match rows.iter_mut().find(|r| r.0 == label) {
                Some(r) => {
                    r.1 += 1;
                    r.2 = i;
                }
                None => rows.push((label, 1, i)),
            }
        }
        rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.2.cmp(&b.2)));
        rows.into_iter().map(|(l, c, _)| (l, c)).collect()
    }

    /// The leader's margin over the runner-up (its count when it is alone).
    fn lead(&self) -> u32 {
        let s = self.standing();
        match s.as_slice() {
            [] => 0,
            [(_, c)] => *c,
            [(_, a), (_, b), ..] => a - b,
        }
    }

    /// Whether the votes not cast yet (asked or not) can no longer change the winner:
    /// even if they all went to the runner-up, it would at most tie, and a tie goes to
    /// the label that reached it first, the leader.
    pub fn settled(&self) -> bool {
        let cast = self.cast();
        cast > 0 && (cast >= self.n || self.lead() >= self.n - cast)
    }

    /// Whether the row has its answer: settled, or no more votes will come.
    pub fn finished(&self) -> bool {
        self.settled() || (self.inflight == 0 && (self.failed.is_some() || self.stopped))
    }

    /// How many more votes to send now: the fewest that, all agreeing with the leader,
    /// would settle the row. Asking them one round at a time spends fewer requests than
    /// asking all N at once; asking them together keeps a row's latency to a few rounds.
    pub fn to_ask(&self) -> u32 {
        if self.finished() || self.failed.is_some() || self.stopped {
            return 0;
        }
        let open = self.n - self.cast();
        let needed = open.saturating_sub(self.lead()).div_ceil(2).clamp(1, open);
        needed.saturating_sub(self.inflight)
    }

    /// Marks one more vote as sent; its ordinal (0 for the first).
    pub fn send(&mut self) -> u32 {
        self.inflight += 1;
        self.asked += 1;
        self.asked - 1
    }

    fn answered(&mut self) {
        self.inflight = self.inflight.saturating_sub(1);
    }

    pub fn record(&mut self, label: &str, member: usize) {
        self.answered();
        if self.cast() < self.n {
            self.votes.push((label.to_string(), member));
        }
    }

    pub fn fail(&mut self, why: String) {
        self.answered();
        self.failed.get_or_insert(why);
    }

    pub fn stop(&mut self) {
        self.answered();
        self.stopped = true;
    }

    /// The winning label and the provider of its first vote; `None` before any vote.
    pub fn winner(&self) -> Option<(&str, usize)> {
        let (label, _) = *self.standing().first()?;
        let member = self.votes.iter().find(|(l, _)| l == label)?.1;
        Some((label, member))
    }

    pub fn summary(&self) -> Option<VoteSummary> {
        let standing = self.standing();
        let (_, top) = *standing.first()?;
        let counts: Vec<String> = standing.iter().map(|(l, c)| format!("{l}:{c}")).collect();
        Some(VoteSummary {
            confidence: Some(f64::from(top) / f64::from(self.cast())),
            counts: counts.join("|"),
            unanimous: standing.len() == 1,
        })
    }

    /// The votes as the label cache keeps them: `positif/0,negatif/1` (label/provider).
    pub fn encode(&self) -> String {
        let votes: Vec<String> = self.votes.iter().map(|(l, m)| format!("{l}/{m}")).collect();
        votes.join(",")
    }

    /// Votes read back from the cache: `None` when a label is not one of `known`, or a
    /// provider index not below `members` (the entry is then ignored).
    pub fn decode(
        n: u32,
        text: &str,
        known: impl Fn(&str) -> bool,
        members: usize,
    ) -> Option<Tally> {
        let mut t = Tally::new(n);
        for vote in text.split(',') {
            let (label, m) = vote.rsplit_once('/')?;
            let m: usize = m.parse().ok()?;
            if !known(label) || m >= members {
                return None;
            }
            t.votes.push((label.to_string(), m));
        }
        t.votes.truncate(n as usize);
        t.asked = t.cast();
        (!t.votes.is_empty()).then_some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(n: u32, votes: &[&str]) -> Tally {
        let mut t = Tally::new(n);
        for v in votes {
            t.send();
            t.record(v, 0);
        }
        t
    }

    #[test]
    fn two_agreeing_votes_of_three_settle_and_a_split_asks_one_more() {
        let t = Tally::new(3);
        assert_eq!(t.to_ask(), 2);
        assert!(tally(3, &["a", "a"]).settled());
        let split = tally(3, &["a", "b"]);
        assert!(!split.settled());
        assert_eq!(split.to_ask(), 1);
        assert!(tally(3, &["a", "b", "b"]).settled());
        assert_eq!(tally(3, &["a", "b", "b"]).winner(), Some(("b", 0)));
    }

    #[test]
    fn five_votes_ask_three_first_then_only_what_can_still_matter() {
        assert_eq!(Tally::new(5).to_ask(), 3);
        assert!(tally(5, &["a", "a", "a"]).settled());
        // 2–1: two open votes; one more for the leader settles it.
        let t = tally(5, &["a", "b", "a"]);
        assert_eq!(t.to_ask(), 1);
        // 1–1–1: two open; one more for the first settles it (a tie at worst).
        let t = tally(5, &["a", "b", "c"]);
        assert_eq!(t.to_ask(), 1);
        let t = tally(7, &["a", "b", "c"]);
        assert_eq!(t.to_ask(), 2);
        assert_eq!(Tally::new(1).to_ask(), 1);
        assert!(tally(1, &["b"]).settled());
    }

    #[test]
    fn a_tie_goes_to_the_label_that_reached_it_first_and_shows() {
        let t = tally(4, &["a", "b", "b", "a"]);
        assert!(t.settled());
        assert_eq!(t.winner(), Some(("b", 0)));
        let s = t.summary().unwrap();
        assert_eq!(s.counts, "b:2|a:2");
        assert_eq!(s.confidence_text(), "0.500");
        assert!(!s.unanimous);
        let t = tally(3, &["c", "a", "b"]);
        assert_eq!(t.winner(), Some(("c", 0)));
        assert_eq!(t.summary().unwrap().confidence_text(), "0.333");
    }

    #[test]
    fn a_failed_vote_ends_the_asking_and_the_votes_cast_decide() {
        let mut t = Tally::new(5);
        for _ in 0..t.to_ask() {
            t.send();
        }
        t.record("a", 1);
        t.fail("no usable key".into());
        assert!(!t.finished());
        t.record("b", 0);
        assert!(t.finished());
        assert_eq!(t.to_ask(), 0);
        assert_eq!(t.winner(), Some(("a", 1)));
        assert_eq!(t.summary().unwrap().confidence_text(), "0.500");
    }

    #[test]
    fn votes_survive_the_cache_and_bad_entries_are_ignored() {
        let mut t = Tally::new(5);
        t.send();
        t.record("positif", 1);
        t.send();
        t.record("netral", 0);
        let back = Tally::decode(5, &t.encode(), |l| l != "x", 2).unwrap();
        assert_eq!(back.encode(), "positif/1,netral/0");
        assert_eq!(back.asked, 2);
        assert_eq!(back.to_ask(), 2);
        assert!(Tally::decode(5, "x/0", |l| l != "x", 2).is_none());
        assert!(Tally::decode(5, "positif/2", |_| true, 2).is_none());
        assert!(Tally::decode(5, "positif", |_| true, 2).is_none());
    }
}

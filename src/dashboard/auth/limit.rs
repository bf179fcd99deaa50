//! How often one client may try a token at the login form: [`MAX_TRIES`] attempts per
//! window (a minute), then 429 with `Retry-After` until its window ends, the token not
//! even compared. A right token resets the count, so only guessing is slowed. Memory is
//! bounded: at most [`MAX_TRACKED`] addresses are remembered.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Attempts allowed per client address and window; the next one is refused.
pub const MAX_TRIES: u32 = 5;

/// The window attempts are counted over (the hidden `--login-window` shortens it for tests).
pub const WINDOW: Duration = Duration::from_secs(60);

/// Addresses remembered at most. Past it, windows that ended are forgotten first, then the
/// oldest window, so a flood of addresses costs memory only up to this.
pub const MAX_TRACKED: usize = 4096;

/// Attempts of one address in its current window.
struct Tries {
    count: u32,
    since: Instant,
}

pub struct LoginLimit {
    window: Duration,
    tries: Mutex<HashMap<IpAddr, Tries>>,
}

impl LoginLimit {
    pub fn new(window: Duration) -> LoginLimit {
        LoginLimit {
            window,
            tries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, Tries>> {
        // A panic while holding it leaves nothing half-done worth refusing logins over.
        self.tries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts an attempt of `client` at `now`, or refuses it with how long until its window
    /// ends. Counted before the token is compared (and uncounted by [`Self::succeeded`]),
    /// so attempts sent at once cannot all slip in before the first failure is counted.
    pub fn attempt(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let who = counted_as(client);
        let mut tries = self.lock();
        if let Some(t) = tries.get_mut(&who) {
            let end = t.since + self.window;
            if now >= end {
                *t = Tries {
                    count: 1,
                    since: now,
                };
            } else if t.count >= MAX_TRIES {
                return Err(end - now);
            } else {
                t.count += 1;
            }
            return Ok(());
        }
        if tries.len() >= MAX_TRACKED {
            let window = self.window;
            tries.retain(|_, t| now < t.since + window);
        }
        if tries.len() >= MAX_TRACKED {
            let oldest = tries.iter().min_by_key(|(_, t)| t.since).map(|(k, _)| *k);
            if let Some(k) = oldest {
                tries.remove(&k);
            }
        }
        tries.insert(
            who,
            Tries {
                count: 1,
                since: now,
            },
        );
        Ok(())
    }

    /// The right token from `client`: its count starts again.
    pub fn succeeded(&self, client: IpAddr) {
        self.lock().remove(&counted_as(client));
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.lock().len()
    }
}

/// The address attempts are counted under: an IPv6 client by its /64, which one host or
/// site usually holds whole (so it cannot start afresh from the next address in it); an
/// IPv4 address mapped into IPv6 as the IPv4 address.
fn counted_as(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

/// Whole seconds to wait, rounded up and at least 1, for `Retry-After`.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_millis().div_ceil(1000) as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_sixth_attempt_in_a_window_is_refused_until_it_ends() {
        let l = LoginLimit::new(WINDOW);
        let t0 = Instant::now();
        for i in 0..MAX_TRIES {
            assert_eq!(
                l.attempt(ip("10.0.0.1"), t0 + Duration::from_secs(i as u64)),
                Ok(())
            );
        }
        let wait = l
            .attempt(ip("10.0.0.1"), t0 + Duration::from_secs(10))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        assert_eq!(retry_after_secs(wait), 50);
        // Another address is not held up by it.
        assert_eq!(
            l.attempt(ip("10.0.0.2"), t0 + Duration::from_secs(10)),
            Ok(())
        );
        // When the window ends, a new one starts.
        assert_eq!(l.attempt(ip("10.0.0.1"), t0 + WINDOW), Ok(()));
    }

    #[test]
    fn a_success_starts_the_count_again() {
        let l = LoginLimit::new(WINDOW);
        let t0 = Instant::now();
        for _ in 0..MAX_TRIES {
            l.attempt(ip("10.0.0.1"), t0).unwrap();
        }
        l.succeeded(ip("10.0.0.1"));
        for _ in 0..MAX_TRIES {
            assert_eq!(l.attempt(ip("10.0.0.1"), t0), Ok(()));
        }
        assert!(l.attempt(ip("10.0.0.1"), t0).is_err());
    }

    #[test]
    fn an_ipv6_client_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        let l = LoginLimit::new(WINDOW);
        let t0 = Instant::now();
        for i in 0..MAX_TRIES {
            l.attempt(ip(&format!("2001:db8:1:2::{i}")), t0).unwrap();
        }
        assert!(l.attempt(ip("2001:db8:1:2:ffff::9"), t0).is_err());
        assert_eq!(l.attempt(ip("2001:db8:1:3::1"), t0), Ok(()));
        for _ in 0..MAX_TRIES {
            l.attempt(ip("192.0.2.7"), t0).unwrap();
        }
        assert!(l.attempt(ip("::ffff:192.0.2.7"), t0).is_err());
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_addresses() {
        let l = LoginLimit::new(WINDOW);
        let t0 = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 1000) {
            let a = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            l.attempt(a, t0 + Duration::from_millis(i as u64)).unwrap();
        }
        assert_eq!(l.tracked(), MAX_TRACKED);
        // Windows that ended make room first.
        let later = t0 + WINDOW + Duration::from_secs(10);
        l.attempt(ip("192.0.2.1"), later).unwrap();
        assert_eq!(l.tracked(), 1);
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}

//! Where the pacer reads the time.
//!
//! Production reads the system clocks. Tests run the pacer on tokio's paused time with a
//! wall clock that follows it ([`FollowingClock`]), so a test can cross midnight, wait
//! out a huge `retry-after` or a minute of token budget without waiting at all.

use std::time::SystemTime;

use tokio::time::Instant;

pub trait Clock: Send + Sync {
    /// Monotonic time, for spacing and cooldowns (tokio's, so that paused time applies).
    fn now(&self) -> Instant;
    /// Calendar time, for hour and day windows and quota resets.
    fn wall(&self) -> SystemTime;
}

/// The real clocks.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Calendar time that moves with tokio's clock from a chosen start.
pub struct FollowingClock {
    origin: Instant,
    wall_origin: SystemTime,
}

impl FollowingClock {
    pub fn starting_at(wall: SystemTime) -> FollowingClock {
        FollowingClock {
            origin: Instant::now(),
            wall_origin: wall,
        }
    }
}

impl Clock for FollowingClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall(&self) -> SystemTime {
        self.wall_origin + self.origin.elapsed()
    }
}

//! Refused connections, counted per peer user and logged at a bounded rate.
//!
//! A client refused for its credentials often retries at once, and a
//! hostile one can connect thousands of times a second: a log line per
//! refusal would flood the journal. The first refusal of a user in each
//! window is logged with its reason; the rest are counted and logged once,
//! as a number, when the window ends. The connection counter in STATS
//! still counts every one.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How often refusals of one user are logged at most.
pub(super) const WINDOW: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub(super) struct Refusals {
    started: Instant,
    /// Refusals this window, by peer uid (`None`: credentials unreadable).
    counts: HashMap<Option<u32>, u64>,
}

impl Refusals {
    pub fn new(now: Instant) -> Self {
        Self { started: now, counts: HashMap::new() }
    }

    /// Counts a refusal; true if it is the user's first this window and
    /// should be logged in full.
    pub fn refused(&mut self, uid: Option<u32>, now: Instant) -> bool {
        self.roll(now);
        let n = self.counts.entry(uid).or_insert(0);
        *n += 1;
        *n == 1
    }

    /// Ends the window if it is over; returns, for each user refused more
    /// than once in it, how many refusals were not logged.
    pub fn roll(&mut self, now: Instant) -> Vec<(Option<u32>, u64)> {
        if now.duration_since(self.started) < WINDOW {
            return Vec::new();
        }
        self.started = now;
        let mut unlogged: Vec<_> = self.counts.drain().filter(|(_, n)| *n > 1).map(|(uid, n)| (uid, n - 1)).collect();
        unlogged.sort_unstable();
        unlogged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_user_and_window_and_the_rest_as_a_count() {
        let t0 = Instant::now();
        let mut log = Refusals::new(t0);
        let logged = (0..5000).filter(|_| log.refused(Some(65534), t0)).count();
        assert_eq!(logged, 1, "5,000 refusals of one user in a window: one line");
        assert!(log.refused(Some(1000), t0), "another user's first refusal is logged");
        assert!(log.roll(t0 + WINDOW / 2).is_empty(), "the window is not over");
        assert_eq!(log.roll(t0 + WINDOW), vec![(Some(65534), 4999)], "the rest, as one count");
        assert!(log.refused(Some(65534), t0 + WINDOW), "a new window logs again");
    }
}

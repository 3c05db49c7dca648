//! The clock seam: expiry is computed from `Clock::now_ms`, so tests can
//! move time without sleeping; and the guard that notices the wall clock
//! jumping.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Wall-clock time in Unix milliseconds.
    fn now_ms(&self) -> u64;
    /// Milliseconds on a clock that only moves forward, at a steady rate,
    /// from an arbitrary origin: what the wall clock is checked against.
    fn monotonic_ms(&self) -> u64;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        // A clock before 1970 reads as 0: sessions then look young, never
        // older than they are.
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    fn monotonic_ms(&self) -> u64 {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        u64::try_from(ORIGIN.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// A clock that moves only when told to. Moving it forward is time
/// passing (both clocks move); [`ManualClock::jump`] and moving it back
/// change the wall clock alone, as an operator or a bad time source would.
#[derive(Debug, Default)]
pub struct ManualClock {
    wall: AtomicU64,
    monotonic: AtomicU64,
}

impl ManualClock {
    pub fn new(now_ms: u64) -> Self {
        Self { wall: AtomicU64::new(now_ms), monotonic: AtomicU64::new(0) }
    }

    pub fn set(&self, now_ms: u64) {
        let before = self.wall.swap(now_ms, Ordering::SeqCst);
        self.monotonic.fetch_add(now_ms.saturating_sub(before), Ordering::SeqCst);
    }

    pub fn advance(&self, ms: u64) {
        self.wall.fetch_add(ms, Ordering::SeqCst);
        self.monotonic.fetch_add(ms, Ordering::SeqCst);
    }

    /// Steps the wall clock by `ms` (either way) while no time passes.
    pub fn jump(&self, ms: i64) {
        let now = self.wall.load(Ordering::SeqCst);
        self.wall.store(now.saturating_add_signed(ms), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.wall.load(Ordering::SeqCst)
    }

    fn monotonic_ms(&self) -> u64 {
        self.monotonic.load(Ordering::SeqCst)
    }
}

/// Wall-clock steps larger than this, against the monotonic clock, are
/// jumps: NTP slews far more gently, and steps a clock by this much only
/// when it was badly wrong.
const JUMP_TOLERANCE_MS: u64 = 2_000;

/// Notices the wall clock jumping, so that what cannot be undone waits
/// until the clock has run steadily for a while.
///
/// Sweeping deletes sessions for good, and purging forgets redeemed
/// tokens and revoked cookies; done on a wall clock that has leapt ahead
/// and will be set back, either would reopen what was closed (a token
/// redeemed twice, a revoked cookie accepted) or end every session. Reads
/// keep following the wall clock: a session is served only while its
/// expiry, by the current wall clock, has not passed.
#[derive(Debug)]
pub struct JumpGuard {
    hold_ms: u64,
    state: Mutex<GuardState>,
}

#[derive(Debug)]
struct GuardState {
    /// (wall, monotonic) at the last look; `None` before the first.
    last: Option<(u64, u64)>,
    /// Monotonic time until which irreversible work waits.
    held_until: u64,
}

impl JumpGuard {
    /// A guard that holds for `hold_ms` of steady time after a jump.
    pub fn new(hold_ms: u64) -> Self {
        Self { hold_ms, state: Mutex::new(GuardState { last: None, held_until: 0 }) }
    }

    /// Looks at the clock; true if it has run steadily (no jump) for the
    /// hold time, so sweeping and purging may go ahead.
    pub fn steady(&self, clock: &dyn Clock) -> bool {
        let (wall, mono) = (clock.now_ms(), clock.monotonic_ms());
        let mut state = self.state.lock();
        if let Some((last_wall, last_mono)) = state.last {
            let passed = mono.saturating_sub(last_mono);
            let moved = i128::from(wall) - i128::from(last_wall);
            let off = moved - i128::from(passed);
            if off.unsigned_abs() > u128::from(JUMP_TOLERANCE_MS) {
                state.held_until = mono.saturating_add(self.hold_ms);
                tracing::warn!(
                    jump_ms = i64::try_from(off).unwrap_or(i64::MAX),
                    hold_secs = self.hold_ms / 1000,
                    "the wall clock jumped: sweeping and purging of used tokens and revoked cookies wait until it \
                     has run steadily"
                );
            }
        }
        state.last = Some((wall, mono));
        mono >= state.held_until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jump_either_way_holds_until_the_clock_has_run_steadily() {
        let clock = ManualClock::new(1_000_000);
        let guard = JumpGuard::new(60_000);
        assert!(guard.steady(&clock));
        clock.advance(30_000);
        assert!(guard.steady(&clock), "time passing is no jump");
        clock.jump(2 * 3600 * 1000);
        assert!(!guard.steady(&clock), "+2 h in no time");
        clock.advance(59_000);
        assert!(!guard.steady(&clock), "still within the hold");
        clock.advance(1_000);
        assert!(guard.steady(&clock), "steady for the hold time");
        clock.jump(-120_000);
        assert!(!guard.steady(&clock), "a step back holds too");
        clock.jump(1_500);
        clock.advance(60_000);
        assert!(guard.steady(&clock), "a step within the tolerance is not a jump");
    }
}

//! The double's clock: the simulated time every session, token and expiry runs on.
//!
//! It runs `speed` times faster than the wall clock from a start instant, and the test may move
//! it forward ([`Clock::advance`]). Rate-limit windows and HTTP timeouts stay on the wall clock:
//! they are properties of the network and of Klarna's servers, not of a session's life.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use hpp_session::Timestamp;

/// An accelerated clock that only moves forward.
#[derive(Debug)]
pub struct Clock {
    origin: Instant,
    start: Timestamp,
    speed: f64,
    advanced: Mutex<Duration>,
}

impl Clock {
    /// A clock that reads `start` now and runs `speed` times faster than the wall clock
    /// (`speed` is taken as at least 1).
    #[must_use]
    pub fn new(start: Timestamp, speed: f64) -> Self {
        Self {
            origin: Instant::now(),
            start,
            speed: if speed.is_finite() && speed >= 1.0 {
                speed
            } else {
                1.0
            },
            advanced: Mutex::new(Duration::ZERO),
        }
    }

    /// How many simulated seconds pass in one wall-clock second.
    #[must_use]
    pub fn speed(&self) -> f64 {
        self.speed
    }

    /// The simulated time now, to the millisecond: Klarna's timestamps carry 3 fractional
    /// digits (`2019-05-13T14:52:57.540Z`), and so does everything the double stamps with it.
    #[must_use]
    pub fn now(&self) -> Timestamp {
        let run = self.origin.elapsed().mul_f64(self.speed);
        let advanced = *self
            .advanced
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = self.start.saturating_add(run.saturating_add(advanced));
        let nanos = now.subsec_nanos();
        Timestamp::from_unix(now.unix_seconds(), nanos - nanos % 1_000_000).unwrap_or(now)
    }

    /// Moves the clock forward by `by` (simulated time).
    pub fn advance(&self, by: Duration) {
        let mut advanced = self
            .advanced
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *advanced = advanced.saturating_add(by);
    }

    /// The wall-clock time until the simulated instant `at` (zero when it has passed).
    #[must_use]
    pub fn real_until(&self, at: Timestamp) -> Duration {
        at.duration_since(self.now())
            .map_or(Duration::ZERO, |d| d.div_f64(self.speed))
    }
}

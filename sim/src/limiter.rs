//! Klarna's rate limiter as documented, for one merchant's bucket: fixed 1-second windows; once
//! the merchant is over its limit in a window, every further request in it is refused, money
//! calls included. `now` is passed in: the double counts on the wall clock (Klarna's windows
//! are wall-clock seconds even when the double's clock runs fast), the fleet on its simulated
//! clock. Each create call has a bucket of its own ("other operations" share one).
//!
//! <https://docs.klarna.com/api/#rate-limiting>

use core::time::Duration;

/// What the limiter says about one request: Klarna's `X-Ratelimit-*` and whether it may go
/// ahead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admission {
    /// The request may go ahead (else: 429).
    pub allowed: bool,
    /// The limit (`X-Ratelimit-Limit`).
    pub limit: u32,
    /// Requests left in this window (`X-Ratelimit-Remaining`).
    pub remaining: u32,
    /// Milliseconds until the window resets, `1..=1000` (`X-Ratelimit-Reset` says it in whole
    /// seconds, rounded up).
    pub reset_ms: u64,
}

/// One bucket of one merchant: the requests counted in the current window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateWindow {
    limit: u32,
    /// The window (whole seconds since the limiter's origin) `used` counts.
    second: u64,
    used: u32,
}

impl RateWindow {
    /// A bucket allowing `limit` requests a second.
    #[must_use]
    pub const fn new(limit: u32) -> Self {
        Self {
            limit,
            second: 0,
            used: 0,
        }
    }

    /// The requests counted in the window holding `elapsed` (time since the limiter's
    /// origin): none in a window not seen yet.
    #[must_use]
    pub const fn used(&self, elapsed: Duration) -> u32 {
        if self.second == elapsed.as_secs() {
            self.used
        } else {
            0
        }
    }

    /// What the window holding `elapsed` has left.
    #[must_use]
    pub const fn remaining(&self, elapsed: Duration) -> u32 {
        self.limit.saturating_sub(self.used(elapsed))
    }

    /// Counts one request at `elapsed` since the limiter's origin.
    pub fn admit(&mut self, elapsed: Duration) -> Admission {
        self.count(elapsed, 1);
        Admission {
            allowed: self.used <= self.limit,
            limit: self.limit,
            remaining: self.limit.saturating_sub(self.used),
            reset_ms: 1_000 - u64::from(elapsed.subsec_millis()),
        }
    }

    /// Counts `n` requests at `elapsed` that the caller sized to what the window had left
    /// ([`RateWindow::remaining`]); any past the limit would have been refused.
    pub fn count(&mut self, elapsed: Duration, n: u32) {
        let second = elapsed.as_secs();
        if self.second != second {
            self.second = second;
            self.used = 0;
        }
        self.used = self.used.saturating_add(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn at(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn every_request_over_the_limit_in_a_window_is_refused() {
        let mut bucket = RateWindow::new(3);
        let allowed = [0, 10, 20, 30, 999].map(|ms| bucket.admit(at(ms)).allowed);
        assert_eq!(allowed, [true, true, true, false, false]);
        let next = bucket.admit(at(1_000));
        assert!(next.allowed, "a new window");
        assert_eq!((next.limit, next.remaining, next.reset_ms), (3, 2, 1_000));
        assert_eq!(bucket.admit(at(1_999)).reset_ms, 1);
        assert_eq!(bucket.used(at(1_500)), 2);
        assert_eq!(bucket.used(at(2_000)), 0, "not seen yet");
        assert_eq!(bucket.remaining(at(1_500)), 1);
        assert_eq!(bucket.remaining(at(5_000)), 3);
    }

    #[test]
    fn counted_requests_fill_the_window() {
        let mut bucket = RateWindow::new(5);
        bucket.count(at(100), 4);
        assert_eq!(bucket.remaining(at(200)), 1);
        assert!(bucket.admit(at(300)).allowed);
        let over = bucket.admit(at(400));
        assert_eq!((over.allowed, over.remaining), (false, 0));
        bucket.count(at(1_100), 2);
        assert_eq!(bucket.used(at(1_100)), 2, "a new window starts from zero");
    }
}

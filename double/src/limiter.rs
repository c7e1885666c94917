//! Klarna's rate limiter ([`hpp_sim::limiter`], the fleet's too) per merchant, in real time:
//! Klarna's windows are seconds of real time even when the double's clock runs fast. The
//! windows are whole seconds counted from the limiter's start (a monotonic clock), not from the
//! wall clock's second boundaries.

use std::collections::HashMap;
use std::time::Instant;

use hpp_sim::limiter::{Admission, RateWindow};

/// Counts one bucket of requests ("other operations", or one create call) per merchant.
#[derive(Debug)]
pub struct Limiter {
    limit: u32,
    origin: Instant,
    windows: HashMap<String, RateWindow>,
}

impl Limiter {
    /// A limiter allowing `limit` requests a second per merchant.
    #[must_use]
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            origin: Instant::now(),
            windows: HashMap::new(),
        }
    }

    /// Counts a request of `merchant` now.
    pub fn check(&mut self, merchant: &str) -> Admission {
        let elapsed = self.origin.elapsed();
        self.windows
            .entry(merchant.to_owned())
            .or_insert_with(|| RateWindow::new(self.limit))
            .admit(elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_merchant_apart_on_the_wall_clock() {
        let mut limiter = Limiter::new(3);
        let verdicts: Vec<bool> = (0..5).map(|_| limiter.check("m").allowed).collect();
        // The window is a second long; five calls take microseconds (and if a window boundary
        // fell between them, the new window would allow more, never fewer).
        assert!(verdicts[..3].iter().all(|&a| a));
        assert!(limiter.check("other").allowed, "per merchant");
        std::thread::sleep(std::time::Duration::from_millis(5));
        let v = limiter.check("m");
        assert!((1..=1_000).contains(&v.reset_ms), "{v:?}");
        assert_eq!(v.limit, 3);
        if limiter.origin.elapsed().as_secs() == 0 {
            assert_eq!(verdicts[3..], [false, false]);
        }
    }
}

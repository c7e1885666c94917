//! Klarna's rate limiter as documented: per merchant, in 1-second windows of the wall clock;
//! once a merchant is over its limit, every further request in that window is refused, money
//! calls included.

use std::collections::HashMap;
use std::time::Instant;

/// What the limiter says about one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The request may go ahead.
    pub allowed: bool,
    /// The limit (`X-Ratelimit-Limit`).
    pub limit: u32,
    /// Requests left in this window (`X-Ratelimit-Remaining`).
    pub remaining: u32,
    /// Milliseconds until the window resets (`X-Ratelimit-Reset`, in whole seconds, rounded up).
    pub reset_ms: u64,
}

/// Counts one bucket of requests ("other operations", or session creation) per merchant.
#[derive(Debug)]
pub struct Limiter {
    limit: u32,
    origin: Instant,
    windows: HashMap<String, (u64, u32)>,
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
    pub fn check(&mut self, merchant: &str) -> Verdict {
        let elapsed = self.origin.elapsed();
        let window = elapsed.as_secs();
        let reset_ms = 1_000 - u64::from(elapsed.subsec_millis());
        let entry = self
            .windows
            .entry(merchant.to_owned())
            .or_insert((window, 0));
        if entry.0 != window {
            *entry = (window, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        Verdict {
            allowed: entry.1 <= self.limit,
            limit: self.limit,
            remaining: self.limit.saturating_sub(entry.1),
            reset_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_everything_over_the_limit_in_a_window() {
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

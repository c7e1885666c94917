//! When to read a session next: the safety net Klarna advises, since callbacks stop after a few
//! failed tries.

use core::fmt;
use core::time::Duration;

use crate::timestamp::Timestamp;

/// The shortest interval [`ReadPolicy`] accepts between two reads of one session: Klarna's
/// playground shows about 5 requests a second on payments endpoints.
pub const MIN_READ_INTERVAL: Duration = Duration::from_millis(200);

/// How a [`crate::Tracker`] schedules reads of its session (see [`crate::Tracker::next_read`]).
///
/// After every change the tracker learns of (its *anchor*), reads are due at
/// `anchor + first`, then after gaps of `interval`, `2 × interval`, `4 × interval`, … up to
/// `max_interval`, and every `max_interval` after that: backing off while nothing changes. When
/// an unsigned callback reports a final status, the first read is due at the anchor itself (at
/// once), then the same backoff. Once a final status is confirmed, or the session expired, no
/// read is due.
///
/// The default (`ReadPolicy::DEFAULT`) is 10 s, 10 s, 10 min: at most one read of a session every
/// 10 s, far under Klarna's rate limits even for many sessions at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReadPolicy {
    first: Duration,
    interval: Duration,
    max_interval: Duration,
}

impl Default for ReadPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl ReadPolicy {
    /// 10 s after a change, then every 10 s, 20 s, 40 s, … up to every 10 minutes.
    pub const DEFAULT: Self = Self {
        first: Duration::from_secs(10),
        interval: Duration::from_secs(10),
        max_interval: Duration::from_secs(600),
    };

    /// A policy.
    ///
    /// # Errors
    /// [`PolicyError`] when `interval` is under [`MIN_READ_INTERVAL`] or `max_interval` is under
    /// `interval`.
    pub const fn new(
        first: Duration,
        interval: Duration,
        max_interval: Duration,
    ) -> Result<Self, PolicyError> {
        if interval.as_nanos() < MIN_READ_INTERVAL.as_nanos() {
            return Err(PolicyError::IntervalTooShort);
        }
        if max_interval.as_nanos() < interval.as_nanos() {
            return Err(PolicyError::MaxBelowInterval);
        }
        Ok(Self {
            first,
            interval,
            max_interval,
        })
    }

    /// The delay of the first read after a change.
    #[must_use]
    pub const fn first(&self) -> Duration {
        self.first
    }

    /// The first gap between reads while nothing changes.
    #[must_use]
    pub const fn interval(&self) -> Duration {
        self.interval
    }

    /// The longest gap between reads.
    #[must_use]
    pub const fn max_interval(&self) -> Duration {
        self.max_interval
    }

    /// The first read slot at or after `now`, for a schedule anchored at `anchor`; `at_once`
    /// puts the first slot at the anchor itself.
    #[must_use]
    pub fn next_slot(&self, anchor: Timestamp, at_once: bool, now: Timestamp) -> Timestamp {
        let mut slot = if at_once {
            anchor
        } else {
            anchor.saturating_add(self.first)
        };
        let mut gap = self.interval;
        // Doubling from at least 200 ms passes any `max_interval` a Duration can hold in well
        // under 128 rounds; the loop is bounded all the same.
        for _ in 0..128 {
            if slot >= now || slot == Timestamp::MAX {
                return slot;
            }
            if gap >= self.max_interval {
                break;
            }
            slot = slot.saturating_add(gap);
            gap = gap.saturating_mul(2).min(self.max_interval);
        }
        // Every `max_interval` from here: jump straight to the first slot at or after `now`.
        let behind = now.duration_since(slot).unwrap_or_default().as_nanos();
        let step = self.max_interval.as_nanos().max(1);
        let steps = behind.div_ceil(step);
        let ahead = steps.saturating_mul(step);
        let secs = u64::try_from(ahead / 1_000_000_000).unwrap_or(u64::MAX);
        let nanos = u32::try_from(ahead % 1_000_000_000).unwrap_or(0);
        slot.saturating_add(Duration::new(secs, nanos))
    }
}

/// A [`ReadPolicy`] that would read too often or is inconsistent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PolicyError {
    /// `interval` is under [`MIN_READ_INTERVAL`].
    IntervalTooShort,
    /// `max_interval` is under `interval`.
    MaxBelowInterval,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::IntervalTooShort => write!(
                f,
                "read interval under {} ms would exceed Klarna's rate limits",
                MIN_READ_INTERVAL.as_millis()
            ),
            Self::MaxBelowInterval => f.write_str("max_interval is shorter than interval"),
        }
    }
}

impl core::error::Error for PolicyError {}

//! What an unsigned status callback claims, before authenticated evidence confirms it.

use core::fmt;
use core::time::Duration;

use crate::precedence::{ChangeKey, change_key};
use crate::status::Status;
use crate::timestamp::Timestamp;

/// How far ahead of the caller's clock an unsigned callback's `updated_at` may be before it is
/// refused ([`FutureHint`]): 60 s. Clocks kept by NTP agree within well under a second; a
/// minute leaves room for a badly synchronised host without letting a forged claim sit far
/// ahead of every real change. Configure it with [`crate::TrackerConfig::max_clock_skew`].
pub const DEFAULT_MAX_CLOCK_SKEW: Duration = Duration::from_secs(60);

/// A status change that an unsigned callback (a *hint*) claims and no authenticated evidence has
/// shown yet: a reason to read the session sooner, never a reason to move money or release the
/// cart. Carries no completion data on purpose: a claimed token or order id is not to be acted
/// on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Claim {
    status: Status,
    updated_at: Timestamp,
}

impl Claim {
    /// The claim that `status` was reached at `updated_at`.
    #[must_use]
    pub const fn new(status: Status, updated_at: Timestamp) -> Self {
        Self { status, updated_at }
    }

    /// The claimed status.
    #[must_use]
    pub const fn status(&self) -> Status {
        self.status
    }

    /// The claimed `updated_at`.
    #[must_use]
    pub const fn updated_at(&self) -> Timestamp {
        self.updated_at
    }

    /// The claim's place in the precedence order (as a snapshot's, without completion data).
    pub(crate) const fn key(&self) -> ChangeKey {
        change_key(self.status, self.updated_at)
    }
}

impl fmt::Display for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {} (unconfirmed)", self.status, self.updated_at)
    }
}

/// An unsigned callback stamped later than the caller's `now` plus the tracker's clock-skew
/// tolerance: no real status change is in the future, so it is refused and nothing changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FutureHint {
    /// The callback's `updated_at`.
    pub updated_at: Timestamp,
    /// The caller's clock when it arrived.
    pub now: Timestamp,
    /// The tolerance ([`crate::TrackerConfig::max_clock_skew`]).
    pub max_clock_skew: Duration,
}

impl fmt::Display for FutureHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unsigned callback stamped {}, more than {:?} after now ({}): refused",
            self.updated_at, self.max_clock_skew, self.now
        )
    }
}

impl core::error::Error for FutureHint {}

/// Refuses an unsigned snapshot stamped more than `max_clock_skew` after `now` (an undated one is
/// stamped on arrival: never in the future).
pub(crate) fn refuse_future(
    updated_at: Option<Timestamp>,
    now: Timestamp,
    max_clock_skew: Duration,
) -> Result<(), FutureHint> {
    match updated_at {
        Some(updated_at) if updated_at > now.saturating_add(max_clock_skew) => Err(FutureHint {
            updated_at,
            now,
            max_clock_skew,
        }),
        _ => Ok(()),
    }
}

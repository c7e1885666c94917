//! Why a tracker refused an observation. A refused observation changes nothing.

use core::fmt;

use crate::claim::FutureHint;
use crate::excerpt::Excerpt;
use crate::id::SessionId;

/// An observation a [`crate::Tracker`] refused; nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refused {
    /// The snapshot is of another session than the tracker's.
    OtherSession(OtherSession),
    /// An unsigned callback stamped in the future.
    FutureHint(FutureHint),
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OtherSession(e) => e.fmt(f),
            Self::FutureHint(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for Refused {}

impl From<FutureHint> for Refused {
    fn from(e: FutureHint) -> Self {
        Self::FutureHint(e)
    }
}

/// A snapshot of another session than the tracker's: a mixed-up id (the read of one session fed
/// to another's tracker) must never place an order with the other session's token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OtherSession {
    /// The tracker's session (a bounded excerpt).
    pub tracked: Excerpt,
    /// The snapshot's session (a bounded excerpt).
    pub observed: Excerpt,
}

impl OtherSession {
    pub(crate) fn new(tracked: &SessionId, observed: &SessionId) -> Self {
        Self {
            tracked: Excerpt::new(tracked.as_str()),
            observed: Excerpt::new(observed.as_str()),
        }
    }
}

impl fmt::Display for OtherSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a snapshot of session {} given to the tracker of session {}: refused",
            self.observed, self.tracked
        )
    }
}

impl core::error::Error for OtherSession {}

//! Why a tracker refused an observation. A refused observation changes nothing.

use core::fmt;

use crate::action::ActionKind;
use crate::claim::FutureHint;
use crate::excerpt::Excerpt;
use crate::id::SessionId;

/// An observation or a report a [`crate::Tracker`] refused; nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refused {
    /// The snapshot, redirect or action is of another session than the tracker's.
    OtherSession(OtherSession),
    /// An unsigned callback stamped in the future.
    FutureHint(FutureHint),
    /// An action reported done ([`crate::Tracker::done`]) that this tracker never asked for.
    NotAsked(ActionKind),
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OtherSession(e) => e.fmt(f),
            Self::FutureHint(e) => e.fmt(f),
            Self::NotAsked(kind) => write!(
                f,
                "`{}` reported done, but this session's tracker never asked for it: refused",
                kind.as_str()
            ),
        }
    }
}

impl core::error::Error for Refused {}

impl From<FutureHint> for Refused {
    fn from(e: FutureHint) -> Self {
        Self::FutureHint(e)
    }
}

/// A snapshot (or a redirect, or an action reported done) of another session than the tracker's:
/// a mixed-up id (the read of one session fed to another's tracker) must never place an order
/// with the other session's token, nor mark another session's order placed.
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
            "session {} given to the tracker of session {}: refused",
            self.observed, self.tracked
        )
    }
}

impl core::error::Error for OtherSession {}

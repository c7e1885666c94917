//! What one observation did to a tracker.

use core::fmt;

use crate::action::DisableAnswer;
use crate::status::Status;

/// What an observation did. [`Outcome::Advanced`], [`Outcome::Confirmed`], [`Outcome::Claimed`],
/// [`Outcome::Conflict`], [`Outcome::Refuted`], [`Outcome::Contradicts`] and [`Outcome::Expired`]
/// change the tracker's confirmed state or its claim ([`Outcome::changed`]);
/// [`Outcome::Duplicate`] and [`Outcome::Stale`] change neither; [`Outcome::Redirected`] and
/// [`Outcome::DisableRefused`] change only when the next read falls due. Whatever the outcome, a
/// read is still a read: it moves the schedule (and one past
/// [`crate::TrackerConfig::abandon_after`] may ask for the disable), so store the tracker after
/// every observation, not only when the outcome says it changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// Confirmed evidence newer than any known: the confirmed state moved to it.
    Advanced {
        /// The status before (`None` when the tracker knew nothing yet).
        from: Option<Status>,
        /// The status now.
        to: Status,
        /// Whether statuses in between were not seen (`from → to` is not one edge, but
        /// reachable), e.g. a lost `BACK` callback between two `IN_PROGRESS`.
        skipped: bool,
    },
    /// Confirmed evidence showed exactly the status change an unsigned callback claimed: the
    /// confirmed state moved to it.
    Confirmed(Status),
    /// An unsigned callback claims a status change newer than any confirmed one: read the
    /// session to confirm it; nothing is acted on ([`crate::Claim`]).
    Claimed(Status),
    /// Already known: the same status change, or a callback whose `event_id` was already handled.
    Duplicate,
    /// Older than what is known.
    Stale,
    /// Confirmed evidence contradicts confirmed evidence: the tracker keeps the one of higher
    /// precedence (an authorization always wins) and remembers the conflict
    /// ([`crate::Tracker::has_conflict`]: a person should look).
    Conflict {
        /// The status known before.
        known: Status,
        /// The status observed.
        observed: Status,
        /// How they contradict each other.
        kind: ConflictKind,
    },
    /// The session expired: a read answered 404 at or after `expires_at`.
    Expired,
    /// An unsigned callback claims what confirmed evidence shows false (a forged callback, most
    /// likely): counted ([`crate::Tracker::refuted_claims`]), never acted on, never a conflict.
    Refuted {
        /// The confirmed status.
        known: Status,
        /// The status the callback claims.
        claimed: Status,
        /// How they contradict each other.
        kind: ConflictKind,
    },
    /// Confirmed evidence moved the state, as [`Outcome::Advanced`] does, and made money meet a
    /// release: a release already asked for a session it shows paid. Nothing is undone and the
    /// money is never dropped; a person should look ([`crate::Tracker::has_conflict`]).
    Contradicts {
        /// The confirmed status before (`None` when unknown or when it confirmed a claim).
        from: Option<Status>,
        /// The confirmed status now.
        to: Status,
    },
    /// The consumer's browser came back through the merchant's redirect URL that suggests this
    /// status ([`crate::Redirect`]): when it is a final status, a read is due at once. The state
    /// does not change.
    Redirected(Status),
    /// Klarna refused the merchant's disable (400: final already; 404: gone): the state is as
    /// it was, and a read is due at once to see why.
    DisableRefused(DisableAnswer),
}

impl Outcome {
    /// The outcome's name in the replay tool's JSON: `advanced` (also for `Confirmed`),
    /// `claimed`, `duplicate`, `stale`, `conflict` (also for `Contradicts`), `refuted`,
    /// `expired`, `redirected`, `disable_refused`.
    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Advanced { .. } | Self::Confirmed(_) => "advanced",
            Self::Claimed(_) => "claimed",
            Self::Duplicate => "duplicate",
            Self::Stale => "stale",
            Self::Conflict { .. } | Self::Contradicts { .. } => "conflict",
            Self::Refuted { .. } => "refuted",
            Self::Expired => "expired",
            Self::Redirected(_) => "redirected",
            Self::DisableRefused(_) => "disable_refused",
        }
    }

    /// Whether the observation changed the tracker's state (a redirect or a refused disable
    /// changes only when the next read falls due).
    #[must_use]
    pub const fn changed(&self) -> bool {
        !matches!(
            self,
            Self::Duplicate | Self::Stale | Self::Redirected(_) | Self::DisableRefused(_)
        )
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Advanced { from: None, to, .. } => write!(f, "advanced to {to}"),
            Self::Advanced {
                from: Some(from),
                to,
                skipped,
            } => {
                write!(f, "advanced {from} -> {to}")?;
                if skipped {
                    f.write_str(" (statuses in between not seen)")?;
                }
                Ok(())
            }
            Self::Confirmed(status) => write!(f, "confirmed {status}"),
            Self::Claimed(status) => write!(f, "claims {status} (unsigned: read to confirm)"),
            Self::Duplicate => f.write_str("duplicate"),
            Self::Stale => f.write_str("stale"),
            Self::Conflict {
                known,
                observed,
                kind,
            } => write!(f, "conflict: {observed} {kind} {known}"),
            Self::Expired => f.write_str("expired"),
            Self::Redirected(status) => {
                write!(f, "redirected as {status} (unsigned: read to confirm)")
            }
            Self::Refuted {
                known,
                claimed,
                kind,
            } => write!(f, "refuted: an unsigned claim of {claimed} {kind} {known}"),
            Self::Contradicts { from, to } => {
                match from {
                    Some(from) => write!(f, "advanced {from} -> {to}")?,
                    None => write!(f, "advanced to {to}")?,
                }
                f.write_str(", contradicting what was seen before")
            }
            Self::DisableRefused(answer) => {
                write!(f, "disable refused ({answer}): read to see why")
            }
        }
    }
}

/// How two snapshots contradict each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConflictKind {
    /// Two different final statuses, or the same final status at two different times.
    TwoFinals,
    /// Two `COMPLETED` snapshots with different completion data (e.g. two tokens).
    TwoCompletions,
    /// The later snapshot's status cannot follow the earlier one's (not reachable in the table,
    /// or a status stamped after a final one).
    CannotFollow,
}

impl fmt::Display for ConflictKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TwoFinals => "contradicts the final status",
            Self::TwoCompletions => "carries other completion data than",
            Self::CannotFollow => "cannot be ordered with",
        })
    }
}

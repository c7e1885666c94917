//! What an integrator sees of a session: a snapshot from a status callback or a read.

use core::fmt;

use crate::completion::Completion;
use crate::id::{IdError, SessionId};
use crate::status::{Status, UnknownStatus};
use crate::timestamp::{Timestamp, TimestampError};

/// A session as Klarna reported it at one moment, validated: the status, when it last changed,
/// when the session expires, and the completion data of a `COMPLETED` session.
///
/// Build one with [`Snapshot::new`], or from the wire types of the `serde` feature
/// (`wire::SessionBody::snapshot`). Feed it to a [`crate::Tracker`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Snapshot {
    /// The session it is of, when the body said (Klarna's own fixtures often do not).
    session_id: Option<SessionId>,
    /// The status change it reports: what a tracker keeps of it.
    change: Change,
    expires_at: Option<Timestamp>,
}

/// One status change of a session: its status, when it happened, and the completion data of a
/// `COMPLETED` one. What a tracker keeps of the confirmed snapshot of highest precedence (it
/// knows its session, and keeps the expiry apart).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Change {
    completion: Option<Completion>,
    /// `None` only for an undated `COMPLETED` (a body that did not say when) or the undated
    /// `DISABLED` a disable's 204 shows.
    updated_at: Option<Timestamp>,
    status: Status,
}

impl Change {
    /// The status.
    pub(crate) const fn status(&self) -> Status {
        self.status
    }

    /// When the status changed, when known.
    pub(crate) const fn updated_at(&self) -> Option<Timestamp> {
        self.updated_at
    }

    /// The completion data; `Some` exactly when the status is `COMPLETED`.
    pub(crate) const fn completion(&self) -> Option<&Completion> {
        self.completion.as_ref()
    }

    /// A change of `status` at `updated_at` with `completion`, trusted to fit together (the
    /// caller made it from a checked snapshot or a settled session's).
    pub(crate) const fn new(
        status: Status,
        updated_at: Option<Timestamp>,
        completion: Option<Completion>,
    ) -> Self {
        Self {
            completion,
            updated_at,
            status,
        }
    }

    /// The `DISABLED` a `DELETE` answered 204 shows: undated, since the answer does not say
    /// when, and the caller's clock must not stand in for Klarna's.
    pub(crate) const fn disabled_undated() -> Self {
        Self::new(Status::Disabled, None, None)
    }

    /// Whether `other` is the same status change: same status and completion, and the same
    /// `updated_at`, or either undated (a session completes once, and is disabled once).
    pub(crate) fn same_change(&self, other: &Self) -> bool {
        let same_time = match (self.updated_at, other.updated_at) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        self.status == other.status && same_time && self.completion == other.completion
    }
}

impl Snapshot {
    /// A snapshot, checked for consistency.
    ///
    /// # Errors
    /// [`SnapshotError::MissingCompletion`] for `COMPLETED` without completion data (pass
    /// [`Completion::Unusable`] for a paid session whose data cannot be acted on), and
    /// [`SnapshotError::UnexpectedCompletion`] for completion data on another status.
    pub fn new(
        status: Status,
        updated_at: Timestamp,
        expires_at: Option<Timestamp>,
        completion: Option<Completion>,
    ) -> Result<Self, SnapshotError> {
        match (status, &completion) {
            (Status::Completed, None) => Err(SnapshotError::MissingCompletion),
            (Status::Completed, Some(_)) | (_, None) => Ok(Self {
                session_id: None,
                change: Change::new(status, Some(updated_at), completion),
                expires_at,
            }),
            (_, Some(_)) => Err(SnapshotError::UnexpectedCompletion(status)),
        }
    }

    /// A `COMPLETED` snapshot whose body did not say when the consumer was authorized, or said
    /// it in a form that is not a timestamp. It is a paid session all the same: strictness about
    /// a timestamp must never turn a paid session into a released cart. It is the same change as
    /// any dated `COMPLETED` snapshot with the same completion ([`Snapshot::same_change`]), and
    /// ranks below it, so a dated read of the same completion adds its date.
    #[must_use]
    pub const fn paid_undated(completion: Completion, expires_at: Option<Timestamp>) -> Self {
        Self {
            session_id: None,
            change: Change::new(Status::Completed, None, Some(completion)),
            expires_at,
        }
    }

    /// The snapshot of a change, without a session id.
    pub(crate) const fn of_change(change: Change, expires_at: Option<Timestamp>) -> Self {
        Self {
            session_id: None,
            change,
            expires_at,
        }
    }

    /// The same snapshot, of session `session_id`: a [`crate::Tracker`] refuses a snapshot of
    /// another session than its own ([`crate::Refused::OtherSession`]).
    #[must_use]
    pub fn of_session(mut self, session_id: SessionId) -> Self {
        self.set_session(session_id);
        self
    }

    /// [`Snapshot::of_session`] in place (a snapshot is about 570 bytes: each move is a copy).
    pub(crate) fn set_session(&mut self, session_id: SessionId) {
        self.session_id = Some(session_id);
    }

    /// The session it is of, when known.
    #[must_use]
    pub const fn session_id(&self) -> Option<&SessionId> {
        self.session_id.as_ref()
    }

    /// The status change it reports.
    pub(crate) const fn change(&self) -> &Change {
        &self.change
    }

    /// The session's status.
    #[must_use]
    pub const fn status(&self) -> Status {
        self.change.status
    }

    /// When the status last changed (`updated_at`); `None` only for an undated `COMPLETED`
    /// snapshot ([`Snapshot::paid_undated`]).
    #[must_use]
    pub const fn updated_at(&self) -> Option<Timestamp> {
        self.change.updated_at
    }

    /// When the session expires (`expires_at`), if the snapshot says.
    #[must_use]
    pub const fn expires_at(&self) -> Option<Timestamp> {
        self.expires_at
    }

    /// The completion data; `Some` exactly when the status is `COMPLETED`.
    #[must_use]
    pub const fn completion(&self) -> Option<&Completion> {
        self.change.completion.as_ref()
    }

    /// Whether `other` reports the same status change: same status, same `updated_at`, same
    /// completion (`expires_at` and the session id may differ). An undated `COMPLETED` snapshot
    /// is the same change as any `COMPLETED` snapshot with the same completion: a session
    /// completes once.
    #[must_use]
    pub fn same_change(&self, other: &Self) -> bool {
        self.change.same_change(&other.change)
    }
}

/// Which timestamp field of a session object was malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimestampField {
    /// `updated_at`.
    UpdatedAt,
    /// `expires_at`.
    ExpiresAt,
}

impl TimestampField {
    /// The wire name of the field.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::UpdatedAt => "updated_at",
            Self::ExpiresAt => "expires_at",
        }
    }
}

/// A session object that does not make a valid snapshot. Nothing was observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SnapshotError {
    /// No `status` field.
    MissingStatus,
    /// A `status` that is not a known wire name.
    UnknownStatus(UnknownStatus),
    /// No `updated_at` field: the snapshot cannot be ordered.
    MissingUpdatedAt,
    /// A malformed timestamp field.
    Timestamp(TimestampField, TimestampError),
    /// An empty or over-long identifier.
    Id(IdError),
    /// [`Snapshot::new`] was given `COMPLETED` without a [`Completion`]. (A body from the wire
    /// never gives this: a `COMPLETED` body without usable data is [`Completion::Unusable`].)
    MissingCompletion,
    /// Completion data on a status other than `COMPLETED`.
    UnexpectedCompletion(Status),
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingStatus => f.write_str("session object has no status"),
            Self::UnknownStatus(e) => e.fmt(f),
            Self::MissingUpdatedAt => f.write_str("session object has no updated_at"),
            Self::Timestamp(field, e) => write!(f, "{}: {e}", field.as_str()),
            Self::Id(e) => e.fmt(f),
            Self::MissingCompletion => f.write_str("COMPLETED snapshot without its completion"),
            Self::UnexpectedCompletion(s) => write!(f, "{s} session carries completion data"),
        }
    }
}

impl core::error::Error for SnapshotError {}

impl From<UnknownStatus> for SnapshotError {
    fn from(e: UnknownStatus) -> Self {
        Self::UnknownStatus(e)
    }
}

impl From<IdError> for SnapshotError {
    fn from(e: IdError) -> Self {
        Self::Id(e)
    }
}

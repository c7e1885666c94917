//! A session driven by events: the lifecycle table applied to one session's state.

use core::fmt;

use crate::completion::Completion;
use crate::event::Event;
use crate::status::Status;
use crate::table::{self, Edge};
use crate::timestamp::Timestamp;

/// One HPP session's state: its status, when it last changed, what it completed with, and how
/// many times the consumer came back after leaving the page.
///
/// Changes go through [`Session::apply`] and [`Session::authorize`], which follow
/// [`crate::table::EDGES`] and are atomic: on any error the session is exactly as before.
/// Invariant: [`Session::completion`] is `Some` exactly when the status is `COMPLETED`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Session {
    status: Status,
    changed_at: Timestamp,
    completion: Option<Completion>,
    retries: u32,
}

impl Session {
    /// A new session, `WAITING` since `created_at`.
    #[must_use]
    pub const fn new(created_at: Timestamp) -> Self {
        Self {
            status: Status::Waiting,
            changed_at: created_at,
            completion: None,
            retries: 0,
        }
    }

    /// Rebuilds a session from stored parts, checking that they fit together.
    ///
    /// # Errors
    /// [`InvalidSession`] when `completion` is given for a status other than `COMPLETED` or
    /// missing for `COMPLETED`, or when a `WAITING` session claims retries.
    pub fn from_parts(
        status: Status,
        changed_at: Timestamp,
        completion: Option<Completion>,
        retries: u32,
    ) -> Result<Self, InvalidSession> {
        match (status, &completion) {
            (Status::Completed, None) => return Err(InvalidSession::MissingCompletion),
            (Status::Completed, Some(_)) | (_, None) => {}
            (_, Some(_)) => return Err(InvalidSession::UnexpectedCompletion(status)),
        }
        if status == Status::Waiting && retries > 0 {
            return Err(InvalidSession::RetriesWhileWaiting);
        }
        Ok(Self {
            status,
            changed_at,
            completion,
            retries,
        })
    }

    /// The current status.
    #[must_use]
    pub const fn status(&self) -> Status {
        self.status
    }

    /// When the status last changed (the creation time while `WAITING`).
    #[must_use]
    pub const fn changed_at(&self) -> Timestamp {
        self.changed_at
    }

    /// What the session completed with; `Some` exactly when the status is `COMPLETED`.
    #[must_use]
    pub const fn completion(&self) -> Option<&Completion> {
        self.completion.as_ref()
    }

    /// How many times the consumer opened the page again after `FAILED`, `BACK`, `ERROR` or
    /// `TIMEOUT` (saturates at `u32::MAX`).
    #[must_use]
    pub const fn retries(&self) -> u32 {
        self.retries
    }

    /// Applies `event`, which happened at `at`, and returns the edge taken.
    ///
    /// # Errors
    /// - [`SessionError::NotAllowed`] when the table has no edge for the current status and
    ///   `event` (every event on a final status);
    /// - [`SessionError::CompletionRequired`] for [`Event::Authorize`]: use
    ///   [`Session::authorize`], which takes the completion data;
    /// - [`SessionError::BeforeLastChange`] when `at` is earlier than [`Session::changed_at`].
    ///
    /// On error the session is unchanged.
    #[inline]
    pub fn apply(&mut self, event: Event, at: Timestamp) -> Result<Edge, SessionError> {
        let Some(to) = table::next(self.status, event) else {
            return Err(self.not_allowed(event));
        };
        if event == Event::Authorize || at < self.changed_at {
            return Err(self.late_or_incomplete(at));
        }
        Ok(self.enter(event, to, at))
    }

    /// Applies [`Event::Authorize`] at `at`, keeping a copy of what the session completed with.
    ///
    /// The completion is borrowed and copied only when the event is accepted: a rejected
    /// authorization (a duplicate, a replay, a late one) costs a table lookup, not a copy of
    /// its 520 bytes.
    ///
    /// # Errors
    /// [`SessionError::NotAllowed`] when the table has no authorization from the current
    /// status; [`SessionError::BeforeLastChange`] when `at` is earlier than
    /// [`Session::changed_at`]. The session is unchanged on error.
    #[inline]
    pub fn authorize(
        &mut self,
        completion: &Completion,
        at: Timestamp,
    ) -> Result<Edge, SessionError> {
        let Some(to) = table::next(self.status, Event::Authorize) else {
            return Err(self.not_allowed(Event::Authorize));
        };
        if at < self.changed_at {
            return Err(self.late_or_incomplete(at));
        }
        self.completion = Some(completion.clone());
        Ok(self.enter(Event::Authorize, to, at))
    }

    #[inline]
    const fn not_allowed(&self, event: Event) -> SessionError {
        SessionError::NotAllowed {
            from: self.status,
            event,
        }
    }

    /// The rare rejections of an event the table allows: stamped before the last change (checked
    /// first), or `Authorize` passed to [`Session::apply`].
    #[cold]
    fn late_or_incomplete(&self, at: Timestamp) -> SessionError {
        if at < self.changed_at {
            SessionError::BeforeLastChange {
                at,
                last_change: self.changed_at,
            }
        } else {
            // Only `Authorize` is allowed by the table and on time yet rejected here.
            SessionError::CompletionRequired
        }
    }

    #[inline]
    fn enter(&mut self, event: Event, to: Status, at: Timestamp) -> Edge {
        let from = self.status;
        if event == Event::Open && from.can_retry() {
            self.retries = self.retries.saturating_add(1);
        }
        self.status = to;
        self.changed_at = at;
        Edge { from, event, to }
    }
}

/// Why an event was not applied. The session is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SessionError {
    /// The table has no edge for this status and event.
    NotAllowed {
        /// The session's status.
        from: Status,
        /// The rejected event.
        event: Event,
    },
    /// The event is stamped earlier than the session's last change.
    BeforeLastChange {
        /// The event's time.
        at: Timestamp,
        /// The session's last change.
        last_change: Timestamp,
    },
    /// [`Event::Authorize`] was passed to [`Session::apply`]; use [`Session::authorize`].
    CompletionRequired,
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NotAllowed { from, event } if from.is_final() => {
                write!(f, "event `{event}` on a {from} session: {from} is final")
            }
            Self::NotAllowed { from, event } => {
                write!(f, "event `{event}` is not allowed from {from}")
            }
            Self::BeforeLastChange { at, last_change } => write!(
                f,
                "event stamped {at} is earlier than the session's last change at {last_change}"
            ),
            Self::CompletionRequired => f.write_str(
                "`authorize` needs the completion data: use Session::authorize, not Session::apply",
            ),
        }
    }
}

impl core::error::Error for SessionError {}

/// Stored session parts that do not fit together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InvalidSession {
    /// A `COMPLETED` session without its completion data.
    MissingCompletion,
    /// Completion data on a session that is not `COMPLETED`.
    UnexpectedCompletion(Status),
    /// A `WAITING` session cannot have retried.
    RetriesWhileWaiting,
}

impl fmt::Display for InvalidSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingCompletion => f.write_str("a COMPLETED session needs its completion data"),
            Self::UnexpectedCompletion(status) => {
                write!(f, "a {status} session cannot carry completion data")
            }
            Self::RetriesWhileWaiting => f.write_str("a WAITING session cannot have retries"),
        }
    }
}

impl core::error::Error for InvalidSession {}

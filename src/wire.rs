//! Klarna's JSON bodies as borrowing types (feature `serde`): zero copy, zero allocation.
//!
//! [`SessionBody`] is the session object of a read (`GET session_url`) and of a status callback;
//! [`CallbackBody`] is a callback's `{"event_id", "session"}`. Every field is optional in the
//! shape, as in Klarna's schema, and unknown fields (`customer`, `manual_identification`, …) are
//! ignored; only JSON objects are accepted (not serde's positional arrays). [`SessionBody::snapshot`] then checks the fields and gives a [`Snapshot`] or a typed
//! [`SnapshotError`].
//!
//! Strings are borrowed from the input, so a deserializer that must unescape a string (one with
//! a `\` escape) fails on it; Klarna's ids, statuses and timestamps have none.
//!
//! ```
//! use hpp_session::{Status, wire::CallbackBody};
//!
//! let body = r#"{"event_id":"27ba32b0-644b-4b22-94a9-dac503bcae18","session":{
//!   "session_id":"39a1c773-bafd-754d-af1f-b30c592f1267","status":"COMPLETED",
//!   "authorization_token":"a1a8f727-2756-6058-bd3c-40069be0994b",
//!   "updated_at":"2019-05-13T14:54:04.675Z","expires_at":"2019-05-15T13:51:43.507Z"}}"#;
//! let callback: CallbackBody<'_> = serde_json::from_str(body)?;
//! let snapshot = callback.session.snapshot()?;
//! assert_eq!(snapshot.status(), Status::Completed);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::fmt;
use core::marker::PhantomData;

use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserializer, MapAccess, Visitor};

use crate::id::{Completion, CompletionProblem, SessionId};
use crate::snapshot::{Snapshot, SnapshotError, TimestampField};
use crate::status::Status;
use crate::timestamp::Timestamp;

/// A session object, as a read returns it and a callback carries it. Deserializes from a JSON
/// object only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionBody<'a> {
    /// `session_id`.
    pub session_id: Option<&'a str>,
    /// `status`, a wire name.
    pub status: Option<&'a str>,
    /// `updated_at`, RFC 3339.
    pub updated_at: Option<&'a str>,
    /// `expires_at`, RFC 3339.
    pub expires_at: Option<&'a str>,
    /// `authorization_token` (a `COMPLETED` Klarna Payments session).
    pub authorization_token: Option<&'a str>,
    /// `order_id` (a `COMPLETED` session whose order Klarna placed).
    pub order_id: Option<&'a str>,
    /// `klarna_reference` (with `order_id`).
    pub klarna_reference: Option<&'a str>,
}

/// The body of a status callback. Deserializes from a JSON object only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallbackBody<'a> {
    /// `event_id`, for de-duplication.
    pub event_id: Option<&'a str>,
    /// The session as it is after the change.
    pub session: SessionBody<'a>,
}

impl SessionBody<'_> {
    /// The `session_id`, checked.
    ///
    /// # Errors
    /// [`SnapshotError::Id`] when it is empty or over-long. `Ok(None)` when absent.
    pub fn session_id(&self) -> Result<Option<SessionId>, SnapshotError> {
        Ok(self.session_id.map(SessionId::new).transpose()?)
    }

    /// The snapshot these fields describe.
    ///
    /// A `COMPLETED` body is a paid session whatever its completion fields look like: they are
    /// read by [`Completion::from_fields`], and data that cannot be acted on (none, or a field
    /// that is empty or over-long) becomes [`Completion::Unusable`], never an error.
    ///
    /// # Errors
    /// A [`SnapshotError`] naming the first problem: missing or unknown status, missing or
    /// malformed timestamps, completion fields on a status other than `COMPLETED`.
    pub fn snapshot(&self) -> Result<Snapshot, SnapshotError> {
        let status = Status::from_wire(self.status.ok_or(SnapshotError::MissingStatus)?)?;
        let updated_at = self.updated_at.ok_or(SnapshotError::MissingUpdatedAt)?;
        let updated_at = Timestamp::parse(updated_at)
            .map_err(|e| SnapshotError::Timestamp(TimestampField::UpdatedAt, e))?;
        let expires_at = self
            .expires_at
            .map(Timestamp::parse)
            .transpose()
            .map_err(|e| SnapshotError::Timestamp(TimestampField::ExpiresAt, e))?;
        let mut completion = Completion::from_fields(
            self.authorization_token,
            self.order_id,
            self.klarna_reference,
        );
        // A paid session stays paid whatever its data looks like (`Completion::from_fields`).
        // (Changed in place: the completion is 520 bytes, and every move of it is a copy.)
        if status == Status::Completed && completion.is_none() {
            completion = Some(Completion::Unusable(CompletionProblem::Missing));
        }
        Snapshot::new(status, updated_at, expires_at, completion)
    }
}

// serde's derive also reads a struct from a JSON *array*, by field position; a session object is
// never an array. So the derived readers below (`remote`, field for field) are only reached
// through `MapOnly`, which accepts a map and nothing else.

#[derive(Deserialize)]
#[serde(remote = "SessionBody")]
struct SessionBodyFields<'a> {
    #[serde(borrow, default)]
    session_id: Option<&'a str>,
    #[serde(borrow, default)]
    status: Option<&'a str>,
    #[serde(borrow, default)]
    updated_at: Option<&'a str>,
    #[serde(borrow, default)]
    expires_at: Option<&'a str>,
    #[serde(borrow, default)]
    authorization_token: Option<&'a str>,
    #[serde(borrow, default)]
    order_id: Option<&'a str>,
    #[serde(borrow, default)]
    klarna_reference: Option<&'a str>,
}

#[derive(Deserialize)]
#[serde(remote = "CallbackBody")]
struct CallbackBodyFields<'a> {
    #[serde(borrow, default)]
    event_id: Option<&'a str>,
    #[serde(borrow)]
    session: SessionBody<'a>,
}

/// A body read field by field from a map.
trait FromFields<'de>: Sized {
    fn from_fields<D: Deserializer<'de>>(fields: D) -> Result<Self, D::Error>;
}

impl<'de: 'a, 'a> FromFields<'de> for SessionBody<'a> {
    fn from_fields<D: Deserializer<'de>>(fields: D) -> Result<Self, D::Error> {
        SessionBodyFields::deserialize(fields)
    }
}

impl<'de: 'a, 'a> FromFields<'de> for CallbackBody<'a> {
    fn from_fields<D: Deserializer<'de>>(fields: D) -> Result<Self, D::Error> {
        CallbackBodyFields::deserialize(fields)
    }
}

/// Accepts a map (a JSON object) and nothing else.
struct MapOnly<T>(PhantomData<T>);

impl<'de, T: FromFields<'de>> Visitor<'de> for MapOnly<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::from_fields(MapAccessDeserializer::new(map))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for SessionBody<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(MapOnly(PhantomData))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for CallbackBody<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(MapOnly(PhantomData))
    }
}

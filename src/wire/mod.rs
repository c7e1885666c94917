//! Klarna's JSON bodies as borrowing types (feature `serde`): zero copy, zero allocation.
//!
//! [`SessionBody`] is the session object of a read (`GET session_url`) and of a status callback;
//! [`CallbackBody`] is a callback's `{"event_id", "session"}`. Every field is optional in the
//! shape, as in Klarna's schema, and unknown fields (`customer`, `manual_identification`, …) are
//! ignored; only JSON objects are accepted (not serde's positional arrays).
//! [`SessionBody::snapshot`] then checks the fields and gives a [`Snapshot`] or a typed
//! [`SnapshotError`].
//!
//! Every valid JSON spelling of a string is its value ([`Text`]): strings without escapes are
//! borrowed from the input, escaped ones (`\/`, which PHP's `json_encode` writes by default, or
//! any `\uXXXX`) are unescaped into an inline buffer. Both `serde_json` and `serde-json-core`
//! (its `from_str`, which hands escaped strings over as they are, and its `from_str_escaped`)
//! read the same values.
//!
//! # A paid session stays paid
//!
//! A `COMPLETED` body is a paid session whatever else about it is odd: [`SessionBody::snapshot`]
//! reads it with a missing, `null` or malformed `updated_at` (an undated snapshot), a malformed
//! `expires_at` (left out), and completion data it cannot act on ([`Completion::Unusable`]).
//! Only a status that is not a known wire name is refused. And when a body cannot be parsed at
//! all because a field Klarna documents as a string is not one (an integrator's own round trip
//! that turned an `order_id` into a number), parse it again as a [`SessionStatus`], which reads
//! only `session_id` and `status`: a `COMPLETED` one gives [`SessionStatus::paid_snapshot`], a
//! paid session a person must review, never a rejected read that lets the cart be released.
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

use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use crate::completion::{Completion, CompletionProblem};
use crate::id::SessionId;
use crate::snapshot::{Snapshot, SnapshotError, TimestampField};
use crate::status::Status;
use crate::timestamp::Timestamp;

mod text;

pub use text::Text;

/// A session object, as a read returns it and a callback carries it. Deserializes from a JSON
/// object only. `Debug` does not show the `authorization_token` (a credential).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SessionBody<'a> {
    /// `session_id`.
    pub session_id: Option<Text<'a>>,
    /// `status`, a wire name.
    pub status: Option<Text<'a>>,
    /// `updated_at`, RFC 3339.
    pub updated_at: Option<Text<'a>>,
    /// `expires_at`, RFC 3339.
    pub expires_at: Option<Text<'a>>,
    /// `authorization_token` (a `COMPLETED` Klarna Payments session).
    pub authorization_token: Option<Text<'a>>,
    /// `order_id` (a `COMPLETED` session whose order Klarna placed).
    pub order_id: Option<Text<'a>>,
    /// `klarna_reference` (with `order_id`).
    pub klarna_reference: Option<Text<'a>>,
}

impl fmt::Debug for SessionBody<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fields().debug("SessionBody", f)
    }
}

/// The body of a status callback. Deserializes from a JSON object only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallbackBody<'a> {
    /// `event_id`, for de-duplication.
    pub event_id: Option<Text<'a>>,
    /// The session as it is after the change.
    pub session: SessionBody<'a>,
}

/// The two fields of a session object that decide whether it is paid, read from a body whose
/// other fields may be anything (numbers, objects, `null`): the fallback for a body that
/// [`SessionBody`] cannot parse. Deserializes from a JSON object only.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionStatus<'a> {
    /// `session_id`.
    pub session_id: Option<Text<'a>>,
    /// `status`, a wire name.
    pub status: Option<Text<'a>>,
}

/// The session fields of a callback whose body [`CallbackBody`] cannot parse: its `event_id`
/// and the [`SessionStatus`] of its `session`. Deserializes from a JSON object only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallbackStatus<'a> {
    /// `event_id`, for de-duplication.
    pub event_id: Option<Text<'a>>,
    /// The session's id and status.
    pub session: SessionStatus<'a>,
}

impl CallbackBody<'_> {
    /// The `event_id`'s value, for [`crate::Tracker::observe_callback`]. `None` when absent, and
    /// for an escaped one longer than [`crate::MAX_ID_LEN`] bytes: event ids only label
    /// re-deliveries, and correctness never depends on them.
    #[must_use]
    pub fn event_id(&self) -> Option<&str> {
        self.event_id.as_ref()?.as_str().ok()
    }
}

impl SessionStatus<'_> {
    /// The `session_id`, checked.
    ///
    /// # Errors
    /// [`SnapshotError::Id`] when it is empty or over-long. `Ok(None)` when absent.
    pub fn session_id(&self) -> Result<Option<SessionId>, SnapshotError> {
        session_id(self.session_id.as_ref().map(Text::as_str))
    }

    /// The snapshot of a paid session whose body could not be read: `Some` exactly when the
    /// status is `COMPLETED`, with [`CompletionProblem::Malformed`] (a person must look) and no
    /// `updated_at`. For any other status `None`: such a body is rightly refused.
    ///
    /// # Errors
    /// [`SnapshotError::MissingStatus`] or [`SnapshotError::UnknownStatus`].
    pub fn paid_snapshot(&self) -> Result<Option<Snapshot>, SnapshotError> {
        Ok(match status(self.status.as_ref().map(Text::as_str))? {
            Status::Completed => {
                let problem = CompletionProblem::Malformed;
                let paid = Snapshot::paid_undated(Completion::Unusable(problem), None);
                // A paid session stays paid: an unusable id is left out, never a rejection.
                Some(match self.session_id() {
                    Ok(Some(id)) => paid.of_session(id),
                    Ok(None) | Err(_) => paid,
                })
            }
            _ => None,
        })
    }
}

/// The status a body's `status` field names, after unescaping.
fn status(field: Option<Value<'_>>) -> Result<Status, SnapshotError> {
    let text = field.ok_or(SnapshotError::MissingStatus)?;
    Ok(Status::from_wire(text.unwrap_or_default())?)
}

/// A body's `session_id`, checked.
fn session_id(field: Option<Value<'_>>) -> Result<Option<SessionId>, SnapshotError> {
    let Some(value) = field else {
        return Ok(None);
    };
    let id = value.map_err(|len| crate::IdError {
        kind: crate::IdKind::SessionId,
        len,
    })?;
    Ok(Some(SessionId::new(id)?))
}

/// A timestamp field, parsed. An over-long one is malformed like any other text that is not a
/// timestamp.
fn timestamp(
    field: Option<Value<'_>>,
    which: TimestampField,
) -> Option<Result<Timestamp, SnapshotError>> {
    field.map(|value| {
        Timestamp::parse(value.unwrap_or_default()).map_err(|e| SnapshotError::Timestamp(which, e))
    })
}

/// The value of one field of a body: the string, or the length in bytes of an escaped one too
/// long to have been kept ([`Text::as_str`]).
pub type Value<'t> = Result<&'t str, usize>;

/// The values of a session object's fields, however a reader holds the strings: what
/// [`SessionBody::snapshot`] checks, and the one place it is checked.
///
/// [`SessionBody`] holds each field as a [`Text`] (264 bytes, so that an escaped string needs no
/// allocator); a reader that has one of its own (the replay tool keeps its lines small, and
/// boxes the rare escaped string) fills these in with [`Value`]s and gets the snapshot the
/// library would make, on one condition: each value is what [`Text::as_str`] gives for the
/// field. That is, the string *unescaped* (`"IN\u005fPROGRESS"` is `IN_PROGRESS`), and
/// `Err(len)` exactly where `Text` keeps only the length: an escaped string longer than
/// [`crate::MAX_ID_LEN`] bytes unescaped. The simplest way to honour it is to read each string
/// with `Text`'s own deserializer and keep the result as you like. `Debug` does not show the
/// `authorization_token`.
///
/// ```
/// use hpp_session::{Status, wire::SessionFields};
///
/// // A reader of its own, with the values it parsed (unescaped).
/// let fields = SessionFields {
///     session_id: Some(Ok("39a1c773-bafd-754d-af1f-b30c592f1267")),
///     status: Some(Ok("COMPLETED")),
///     updated_at: Some(Ok("2019-05-13T14:54:04.675Z")),
///     authorization_token: Some(Ok("a1a8f727-2756-6058-bd3c-40069be0994b")),
///     ..SessionFields::default()
/// };
/// assert_eq!(fields.snapshot()?.status(), Status::Completed);
/// # Ok::<(), hpp_session::SnapshotError>(())
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionFields<'t> {
    /// `session_id`.
    pub session_id: Option<Value<'t>>,
    /// `status`, a wire name.
    pub status: Option<Value<'t>>,
    /// `updated_at`, RFC 3339.
    pub updated_at: Option<Value<'t>>,
    /// `expires_at`, RFC 3339.
    pub expires_at: Option<Value<'t>>,
    /// `authorization_token`.
    pub authorization_token: Option<Value<'t>>,
    /// `order_id`.
    pub order_id: Option<Value<'t>>,
    /// `klarna_reference`.
    pub klarna_reference: Option<Value<'t>>,
}

impl fmt::Debug for SessionFields<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.debug("SessionFields", f)
    }
}

impl SessionFields<'_> {
    /// Writes the fields as `name { … }`, each value as [`Text`] shows it, the token hidden.
    fn debug(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// A value as `Text`'s `Debug` shows it.
        struct Shown<'t>(Option<Value<'t>>);
        impl fmt::Debug for Shown<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.0 {
                    None => f.write_str("None"),
                    Some(Ok(s)) => f.debug_tuple("Some").field(&s).finish(),
                    Some(Err(len)) => f
                        .debug_tuple("Some")
                        .field(&format_args!("<{len} bytes>"))
                        .finish(),
                }
            }
        }
        let token = self.authorization_token.map(|_| "<redacted>");
        f.debug_struct(name)
            .field("session_id", &Shown(self.session_id))
            .field("status", &Shown(self.status))
            .field("updated_at", &Shown(self.updated_at))
            .field("expires_at", &Shown(self.expires_at))
            .field("authorization_token", &token)
            .field("order_id", &Shown(self.order_id))
            .field("klarna_reference", &Shown(self.klarna_reference))
            .finish()
    }
}

impl SessionBody<'_> {
    /// The `session_id`, checked.
    ///
    /// # Errors
    /// [`SnapshotError::Id`] when it is empty or over-long. `Ok(None)` when absent.
    pub fn session_id(&self) -> Result<Option<SessionId>, SnapshotError> {
        session_id(self.session_id.as_ref().map(Text::as_str))
    }

    /// The fields' values, borrowed.
    #[must_use]
    pub fn fields(&self) -> SessionFields<'_> {
        fn value<'t>(field: Option<&'t Text<'_>>) -> Option<Value<'t>> {
            field.map(Text::as_str)
        }
        SessionFields {
            session_id: value(self.session_id.as_ref()),
            status: value(self.status.as_ref()),
            updated_at: value(self.updated_at.as_ref()),
            expires_at: value(self.expires_at.as_ref()),
            authorization_token: value(self.authorization_token.as_ref()),
            order_id: value(self.order_id.as_ref()),
            klarna_reference: value(self.klarna_reference.as_ref()),
        }
    }

    /// The snapshot these fields describe: [`SessionFields::snapshot`].
    ///
    /// # Errors
    /// [`SessionFields::snapshot`]'s.
    pub fn snapshot(&self) -> Result<Snapshot, SnapshotError> {
        self.fields().snapshot()
    }
}

impl SessionFields<'_> {
    /// The snapshot these fields describe, of the session its `session_id` names (when it
    /// names one: a tracker refuses a snapshot of another session than its own).
    ///
    /// A `COMPLETED` body is a paid session whatever else about it is odd: its completion
    /// fields are read by [`Completion::from_fields`], and data that cannot be acted on (none,
    /// or a field that is empty or over-long) becomes [`Completion::Unusable`]; a missing or
    /// malformed `updated_at` makes an undated snapshot ([`Snapshot::paid_undated`]), and a
    /// malformed `expires_at` is left out. Never an error but for the status itself.
    ///
    /// # Errors
    /// A [`SnapshotError`] naming the first problem: missing or unknown status; for any status
    /// but `COMPLETED`, an empty or over-long `session_id`, a missing or malformed timestamp,
    /// or completion fields.
    pub fn snapshot(&self) -> Result<Snapshot, SnapshotError> {
        let status = status(self.status)?;
        let updated_at = timestamp(self.updated_at, TimestampField::UpdatedAt);
        let expires_at = timestamp(self.expires_at, TimestampField::ExpiresAt);
        let session_id = session_id(self.session_id);
        if status == Status::Completed {
            // A paid session stays paid: what cannot be read is left out, never a rejection.
            let completion = Completion::from_values(
                self.authorization_token,
                self.order_id,
                self.klarna_reference,
            )
            .unwrap_or(Completion::Unusable(CompletionProblem::Missing));
            let expires_at = expires_at.and_then(Result::ok);
            let mut paid = match updated_at.and_then(Result::ok) {
                Some(updated_at) => {
                    Snapshot::new(status, updated_at, expires_at, Some(completion))?
                }
                None => Snapshot::paid_undated(completion, expires_at),
            };
            if let Ok(Some(id)) = session_id {
                paid.set_session(id);
            }
            return Ok(paid);
        }
        let session_id = session_id?;
        let updated_at = updated_at.ok_or(SnapshotError::MissingUpdatedAt)??;
        let expires_at = expires_at.transpose()?;
        // Completion data on any other status is refused; the check needs no `Completion` (520
        // bytes) built and moved: `Completion::from_values` gives one exactly when a field is
        // there.
        let completion_fields = [
            self.authorization_token,
            self.order_id,
            self.klarna_reference,
        ];
        if completion_fields.iter().any(Option::is_some) {
            return Err(SnapshotError::UnexpectedCompletion(status));
        }
        let mut snapshot = Snapshot::new(status, updated_at, expires_at, None)?;
        if let Some(id) = session_id {
            snapshot.set_session(id);
        }
        Ok(snapshot)
    }
}

/// Writes the fields that are present, in Klarna's order, as the strings they hold: what the
/// replay's log and the simulator write, read back by the same type.
impl Serialize for SessionBody<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let fields = [
            ("session_id", &self.session_id),
            ("status", &self.status),
            ("updated_at", &self.updated_at),
            ("expires_at", &self.expires_at),
            ("authorization_token", &self.authorization_token),
            ("order_id", &self.order_id),
            ("klarna_reference", &self.klarna_reference),
        ];
        let present = fields.iter().filter(|(_, f)| f.is_some()).count();
        let mut map = serializer.serialize_map(Some(present))?;
        for (name, field) in fields {
            if let Some(text) = field {
                map.serialize_entry(name, text)?;
            }
        }
        map.end()
    }
}

/// `{"event_id", "session"}`, `event_id` only when present.
impl Serialize for CallbackBody<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1 + usize::from(self.event_id.is_some())))?;
        if let Some(event_id) = &self.event_id {
            map.serialize_entry("event_id", event_id)?;
        }
        map.serialize_entry("session", &self.session)?;
        map.end()
    }
}

// serde's derive also reads a struct from a JSON *array*, by field position; a session object is
// never an array. So the derived readers below (`remote`, field for field) are only reached
// through `MapOnly`, which accepts a map and nothing else.

#[derive(Deserialize)]
#[serde(remote = "SessionBody")]
struct SessionBodyFields<'a> {
    #[serde(borrow, default)]
    session_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    status: Option<Text<'a>>,
    #[serde(borrow, default)]
    updated_at: Option<Text<'a>>,
    #[serde(borrow, default)]
    expires_at: Option<Text<'a>>,
    #[serde(borrow, default)]
    authorization_token: Option<Text<'a>>,
    #[serde(borrow, default)]
    order_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    klarna_reference: Option<Text<'a>>,
}

#[derive(Deserialize)]
#[serde(remote = "SessionStatus")]
struct SessionStatusFields<'a> {
    #[serde(borrow, default)]
    session_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    status: Option<Text<'a>>,
}

#[derive(Deserialize)]
#[serde(remote = "CallbackStatus")]
struct CallbackStatusFields<'a> {
    #[serde(borrow, default)]
    event_id: Option<Text<'a>>,
    #[serde(borrow)]
    session: SessionStatus<'a>,
}

#[derive(Deserialize)]
#[serde(remote = "CallbackBody")]
struct CallbackBodyFields<'a> {
    #[serde(borrow, default)]
    event_id: Option<Text<'a>>,
    #[serde(borrow)]
    session: SessionBody<'a>,
}

/// A body read field by field from a map.
trait FromFields<'de>: Sized {
    fn from_fields<D: Deserializer<'de>>(fields: D) -> Result<Self, D::Error>;
}

/// `FromFields` through the derived `remote` reader, and `Deserialize` through [`MapOnly`].
macro_rules! map_only {
    ($($body:ident => $fields:ident),*) => {$(
        impl<'de: 'a, 'a> FromFields<'de> for $body<'a> {
            fn from_fields<D: Deserializer<'de>>(fields: D) -> Result<Self, D::Error> {
                $fields::deserialize(fields)
            }
        }

        impl<'de: 'a, 'a> Deserialize<'de> for $body<'a> {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_map(MapOnly(PhantomData))
            }
        }
    )*};
}

map_only!(
    SessionBody => SessionBodyFields,
    CallbackBody => CallbackBodyFields,
    SessionStatus => SessionStatusFields,
    CallbackStatus => CallbackStatusFields
);

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

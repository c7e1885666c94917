//! The bodies of a log line as the replay reads them: the shapes of the library's
//! [`SessionBody`](hpp_session::wire::SessionBody) and
//! [`CallbackBody`](hpp_session::wire::CallbackBody), with small fields.
//!
//! The library's wire types hold each string as a [`Text`], 264 bytes, so that an escaped string
//! is unescaped without an allocator; a line of them is about 4 KB, and moving it through
//! `Option` deserialization and across threads was most of what a replay did (46 % of its cycles
//! in `memmove`). Here a string the line holds as it is stays a borrowed `&str` ([`Field::Line`],
//! 16 bytes), and the rare escaped one (PHP's `json_encode` writes `\/`) is boxed
//! ([`Field::Kept`]). What a string *means* is still decided by the library: each is read by
//! [`Text`]'s own deserializer, and the snapshot is [`SessionFields::snapshot`], the check
//! `SessionBody::snapshot` makes. That the two readers agree on every line, escaped, malformed,
//! or not an object, is checked against the library's types
//! (`a_line_reads_as_the_library_reads_it`, W4).

use std::fmt;

use hpp_session::wire::{SessionFields, Text, Value};
use serde::Deserialize;
use serde::de::value::{BorrowedStrDeserializer, SeqAccessDeserializer, StrDeserializer};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

/// One string of a body: borrowed from the line (`S`), or kept apart when the line spelled it
/// with escapes ([`Text`]: unescaped, so it is in no line). Kept strings are rare and boxed, so
/// that a line stays small while it is parsed, moved and sent across threads.
#[derive(Debug)]
pub(crate) enum Field<S> {
    /// As the line writes it.
    Line(S),
    /// Unescaped, or only the length of one too long to keep.
    Kept(Box<Text<'static>>),
}

impl<'a> Field<&'a str> {
    /// The library's reading of the string, kept small.
    pub(crate) fn of(text: Text<'a>) -> Self {
        match text {
            Text::Borrowed(s) => Self::Line(s),
            Text::Unescaped(s) => Self::Kept(Box::new(Text::Unescaped(s))),
            Text::Overlong(len) => Self::Kept(Box::new(Text::Overlong(len))),
        }
    }

    /// The value, or the length of one too long to keep ([`Text::as_str`]).
    pub(crate) fn value(&self) -> Value<'_> {
        match self {
            Self::Line(s) => Ok(s),
            Self::Kept(text) => text.as_str(),
        }
    }
}

impl<S> Field<S> {
    /// The same string referred to through `f`.
    pub(crate) fn try_map<T, E>(
        self,
        f: &mut impl FnMut(S) -> Result<T, E>,
    ) -> Result<Field<T>, E> {
        Ok(match self {
            Self::Line(s) => Field::Line(f(s)?),
            Self::Kept(text) => Field::Kept(text),
        })
    }
}

/// Reads a string as [`Text`] reads it, whichever way the parser hands it over.
struct FieldVisitor;

impl<'de> Visitor<'de> for FieldVisitor {
    type Value = Field<&'de str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    /// A string borrowed from the line: [`Text`] decides whether it is as it is (a borrowed
    /// string with no escapes, all `serde_json` borrows) or must be unescaped (another
    /// parser's raw text).
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Text::deserialize(BorrowedStrDeserializer::new(v)).map(Field::of)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        let text: Text<'static> = Text::deserialize(StrDeserializer::new(v))?;
        Ok(Field::Kept(Box::new(text)))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Field<&'a str> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(FieldVisitor)
    }
}

/// A session object (`SessionBody`'s shape): its id, which routes the line, and the fields of
/// its snapshot. Unknown fields are ignored.
#[derive(Default)]
pub(crate) struct BodyFields<S> {
    pub(crate) session_id: Option<Field<S>>,
    pub(crate) snapshot: SnapshotFields<S>,
}

/// The fields a snapshot is made of: a session object's but its id (the replay routes by the
/// line's, so only these cross threads).
#[derive(Default)]
pub(crate) struct SnapshotFields<S> {
    pub(crate) status: Option<Field<S>>,
    pub(crate) updated_at: Option<Field<S>>,
    pub(crate) expires_at: Option<Field<S>>,
    pub(crate) authorization_token: Option<Field<S>>,
    pub(crate) order_id: Option<Field<S>>,
    pub(crate) klarna_reference: Option<Field<S>>,
}

/// A field's value, when it is there.
fn value<'t>(field: Option<&'t Field<&str>>) -> Option<Value<'t>> {
    field.map(Field::value)
}

#[cfg(test)]
impl BodyFields<&str> {
    /// The fields' values, the session id's too (the replay routes by the line's, and checks a
    /// snapshot without it: [`SnapshotFields::values`]).
    pub(crate) fn values(&self) -> SessionFields<'_> {
        SessionFields {
            session_id: value(self.session_id.as_ref()),
            ..self.snapshot.values()
        }
    }
}

impl SnapshotFields<&str> {
    /// The fields' values, without a session id.
    pub(crate) fn values(&self) -> SessionFields<'_> {
        SessionFields {
            session_id: None,
            status: value(self.status.as_ref()),
            updated_at: value(self.updated_at.as_ref()),
            expires_at: value(self.expires_at.as_ref()),
            authorization_token: value(self.authorization_token.as_ref()),
            order_id: value(self.order_id.as_ref()),
            klarna_reference: value(self.klarna_reference.as_ref()),
        }
    }
}

impl<S> SnapshotFields<S> {
    /// The same fields with their strings referred to through `f`.
    pub(crate) fn try_map<T, E>(
        self,
        f: &mut impl FnMut(S) -> Result<T, E>,
    ) -> Result<SnapshotFields<T>, E> {
        let mut field = |s: Option<Field<S>>| s.map(|s| s.try_map(&mut *f)).transpose();
        Ok(SnapshotFields {
            status: field(self.status)?,
            updated_at: field(self.updated_at)?,
            expires_at: field(self.expires_at)?,
            authorization_token: field(self.authorization_token)?,
            order_id: field(self.order_id)?,
            klarna_reference: field(self.klarna_reference)?,
        })
    }
}

/// A log line's fields, read in place by [`LineFields::read`]: each value is written once,
/// where it stays, and nothing the size of a line is built and moved while it is parsed (a
/// line of derived `Option`s was, several times, most of what reading one cost).
///
/// It reads what [`LogLine`](crate::log_line::LogLine) of the library's wire types reads: the
/// same keys, the same refusals word for word (`a_line_reads_as_the_library_reads_it`, W4).
#[derive(Default)]
pub(crate) struct LineFields<'a> {
    /// `at`: always there once a line is read.
    pub(crate) at: &'a str,
    /// The line's own `session_id`.
    pub(crate) session_id: Option<&'a str>,
    pub(crate) not_found: Option<bool>,
    /// Whether the line has a callback's body (not `null`).
    pub(crate) callback: bool,
    /// Whether the line has a read's body (not `null`).
    pub(crate) read: bool,
    /// The callback's `event_id`.
    pub(crate) event_id: Option<Field<&'a str>>,
    /// The callback's session object, or the read's. A line with both is refused
    /// ([`LineFields::callback`] and [`LineFields::read`] say so); the second is read, to
    /// refuse what the library refuses in it, and dropped.
    pub(crate) body: BodyFields<&'a str>,
}

/// The keys of a log line, in `LogLine`'s order (its derive names them so in errors).
const LINE_KEYS: &[&str] = &["at", "callback", "read", "not_found", "session_id"];
/// The keys of a session object the replay reads (others are ignored).
const BODY_KEYS: &[&str] = &[
    "session_id",
    "status",
    "updated_at",
    "expires_at",
    "authorization_token",
    "order_id",
    "klarna_reference",
];
/// The keys of a callback's body the replay reads (others are ignored).
const CALLBACK_KEYS: &[&str] = &["event_id", "session"];

/// Finds a key's place in its list.
type Find = fn(&str) -> Option<usize>;

// Each key's place in its list, by `match`: comparisons of known lengths, which the compiler
// writes out (a search of the list called `memcmp` for each, 5 % of a replay).
// `each_key_is_found_at_its_place` holds these to the lists above.

fn line_key(key: &str) -> Option<usize> {
    match key {
        "at" => Some(0),
        "callback" => Some(1),
        "read" => Some(2),
        "not_found" => Some(3),
        "session_id" => Some(4),
        _ => None,
    }
}

fn body_key(key: &str) -> Option<usize> {
    match key {
        "session_id" => Some(0),
        "status" => Some(1),
        "updated_at" => Some(2),
        "expires_at" => Some(3),
        "authorization_token" => Some(4),
        "order_id" => Some(5),
        "klarna_reference" => Some(6),
        _ => None,
    }
}

fn callback_key(key: &str) -> Option<usize> {
    match key {
        "event_id" => Some(0),
        "session" => Some(1),
        _ => None,
    }
}

impl<'a> LineFields<'a> {
    /// Reads `text`, one line of the log, into these fields (new ones: [`Default`]).
    ///
    /// # Errors
    /// What `serde_json::from_str` gives for `LogLine` of the library's wire types.
    pub(crate) fn read(&mut self, text: &'a str) -> Result<(), serde_json::Error> {
        let mut de = serde_json::Deserializer::from_str(text);
        de.deserialize_struct("LogLine", LINE_KEYS, LineVisitor(self))?;
        de.end()
    }
}

/// Reads a line into its fields.
struct LineVisitor<'s, 'a>(&'s mut LineFields<'a>);

impl<'de: 'a, 'a> Visitor<'de> for LineVisitor<'_, 'a> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("struct LogLine")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let line = self.0;
        let keys = Key::refusing_others(LINE_KEYS, line_key);
        let mut seen = [false; LINE_KEYS.len()];
        let mut at = None;
        while let Some(key) = keys.next_in(&mut map, &mut seen)? {
            match key {
                0 => at = Some(map.next_value()?),
                1 | 2 => {
                    // The first body is read in place, a second one (the line is refused)
                    // beside it.
                    let mut second;
                    let (event_id, body) = if line.callback || line.read {
                        second = (None, BodyFields::default());
                        (&mut second.0, &mut second.1)
                    } else {
                        (&mut line.event_id, &mut line.body)
                    };
                    let there = if key == 1 {
                        map.next_value_seed(Optional(Object(CallbackVisitor { event_id, body })))?
                    } else {
                        map.next_value_seed(Optional(Object(BodyVisitor(body))))?
                    };
                    if key == 1 {
                        line.callback = there;
                    } else {
                        line.read = there;
                    }
                }
                3 => line.not_found = map.next_value()?,
                _ => line.session_id = map.next_value()?,
            }
        }
        line.at = at.ok_or_else(|| de::Error::missing_field("at"))?;
        Ok(())
    }

    /// A line written as an array, its values in `LogLine`'s order: read as `LogLine`'s
    /// derive reads it (nobody writes one; this keeps the two readers alike).
    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        let line: crate::log_line::LogLine<'a, CallbackFields<&'a str>, BodyFields<&'a str>> =
            Deserialize::deserialize(SeqAccessDeserializer::new(seq))?;
        let (callback, read) = (line.callback.is_some(), line.read.is_some());
        let (event_id, body) = match (line.callback, line.read) {
            (Some(callback), _) => (callback.event_id, callback.session),
            (None, Some(read)) => (None, read),
            (None, None) => (None, BodyFields::default()),
        };
        *self.0 = LineFields {
            at: line.at,
            session_id: line.session_id,
            not_found: line.not_found,
            callback,
            read,
            event_id,
            body,
        };
        Ok(())
    }
}

/// A callback's body (`CallbackBody`'s shape), in its parts: its `event_id` and its session.
pub(crate) struct CallbackFields<S> {
    pub(crate) event_id: Option<Field<S>>,
    pub(crate) session: BodyFields<S>,
}

/// Reads a callback's body into its places. Accepts a JSON object and nothing else.
struct CallbackVisitor<'s, 'a> {
    event_id: &'s mut Option<Field<&'a str>>,
    body: &'s mut BodyFields<&'a str>,
}

impl<'de: 'a, 'a> Visitor<'de> for CallbackVisitor<'_, 'a> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = [false; CALLBACK_KEYS.len()];
        while let Some(key) =
            map.next_key_seed(Key::ignoring_others(CALLBACK_KEYS, callback_key))?
        {
            let Some(key) = key else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            if std::mem::replace(&mut seen[key], true) {
                return Err(de::Error::duplicate_field(CALLBACK_KEYS[key]));
            }
            if key == 0 {
                *self.event_id = map.next_value()?;
            } else {
                map.next_value_seed(Object(BodyVisitor(&mut *self.body)))?;
            }
        }
        if seen[1] {
            Ok(())
        } else {
            Err(de::Error::missing_field("session"))
        }
    }
}

/// Reads a session object into its places. Accepts a JSON object and nothing else (serde's
/// derive would also read one from a JSON array, by position).
struct BodyVisitor<'s, 'a>(&'s mut BodyFields<&'a str>);

impl<'de: 'a, 'a> Visitor<'de> for BodyVisitor<'_, 'a> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let BodyFields {
            session_id,
            snapshot: s,
        } = self.0;
        let keys = Key::ignoring_others(BODY_KEYS, body_key);
        let mut seen = [false; BODY_KEYS.len()];
        while let Some(key) = keys.next_in(&mut map, &mut seen)? {
            let place = match key {
                0 => &mut *session_id,
                1 => &mut s.status,
                2 => &mut s.updated_at,
                3 => &mut s.expires_at,
                4 => &mut s.authorization_token,
                5 => &mut s.order_id,
                _ => &mut s.klarna_reference,
            };
            *place = map.next_value()?;
        }
        Ok(())
    }
}

/// A JSON object read in place by `V` (`V` refuses anything else).
struct Object<V>(V);

impl<'de, V: Visitor<'de, Value = ()>> DeserializeSeed<'de> for Object<V> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self.0)
    }
}

/// A value that may be `null`, read in place by `V`: `true` when it was there.
struct Optional<V>(V);

impl<'de, V: DeserializeSeed<'de, Value = ()>> DeserializeSeed<'de> for Optional<V> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de, V: DeserializeSeed<'de, Value = ()>> Visitor<'de> for Optional<V> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("option")
    }

    fn visit_none<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        self.0.deserialize(deserializer).map(|()| true)
    }
}

/// A key of an object: its index in `names` (found by `find`), or `None` for another key when
/// those are ignored (as serde's derive reads a struct's field names).
#[derive(Clone, Copy)]
struct Key {
    names: &'static [&'static str],
    find: Find,
    refuse_others: bool,
}

impl Key {
    const fn refusing_others(names: &'static [&'static str], find: Find) -> Self {
        Self {
            names,
            find,
            refuse_others: true,
        }
    }

    const fn ignoring_others(names: &'static [&'static str], find: Find) -> Self {
        Self {
            names,
            find,
            refuse_others: false,
        }
    }

    /// The place of `map`'s next key among the names, skipping the values of other keys
    /// (when they are not refused); a key seen before (`seen`) is refused as serde's derive
    /// refuses it. `None` at the end of the object.
    fn next_in<'de, A: MapAccess<'de>>(
        self,
        map: &mut A,
        seen: &mut [bool],
    ) -> Result<Option<usize>, A::Error> {
        while let Some(found) = map.next_key_seed(self)? {
            let Some(place) = found else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            if std::mem::replace(&mut seen[place], true) {
                return Err(de::Error::duplicate_field(self.names[place]));
            }
            return Ok(Some(place));
        }
        Ok(None)
    }
}

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_identifier(self)
    }
}

impl Visitor<'_> for Key {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field identifier")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<usize>, E> {
        match (self.find)(v) {
            None if self.refuse_others => Err(E::unknown_field(v, self.names)),
            found => Ok(found),
        }
    }
}

// A body read alone (a line written as an array holds its bodies so), through the same
// in-place readers.

impl<'de: 'a, 'a> Deserialize<'de> for BodyFields<&'a str> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut body = BodyFields::default();
        Object(BodyVisitor(&mut body)).deserialize(deserializer)?;
        Ok(body)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for CallbackFields<&'a str> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (mut event_id, mut session) = (None, BodyFields::default());
        Object(CallbackVisitor {
            event_id: &mut event_id,
            body: &mut session,
        })
        .deserialize(deserializer)?;
        Ok(Self { event_id, session })
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use hpp_session::wire::{CallbackBody, SessionBody};
    use proptest::prelude::*;

    use hpp_session::MAX_ID_LEN;

    use super::*;
    use crate::log_line::LogLine;

    /// A value of a body field as a line may write it: absent, `null`, another type, a string
    /// plain or escaped (validly, invalidly, past the length kept), or an object.
    fn field_json() -> impl Strategy<Value = Option<String>> {
        let text = "[a-zA-Z0-9/:. -]{0,40}";
        prop_oneof![
            3 => Just(None),
            1 => Just(Some("null".to_owned())),
            1 => Just(Some("42".to_owned())),
            1 => Just(Some("{\"a\":[1,{\"b\":null}]}".to_owned())),
            6 => text.prop_map(|s| Some(serde_json::to_string(&s).unwrap())),
            2 => text.prop_map(|s| Some(serde_json::to_string(&s).unwrap().replace('/', "\\/"))),
            1 => text.prop_map(|s| {
                let mut units = String::new();
                for u in s.encode_utf16() {
                    write!(units, "\\u{u:04X}").unwrap();
                }
                Some(format!("\"{units}\""))
            }),
            1 => Just(Some("\"\\uD83D\\uDE00 \\uD83D\"".to_owned())),
            1 => Just(Some("\"a\\xb\"".to_owned())),
            1 => (200usize..300).prop_map(|n| Some(format!("\"{}\"", "\\/".repeat(n)))),
            1 => Just(Some("\"COMPLETED\"".to_owned())),
            1 => Just(Some("\"2019-05-13T14:54:04.675Z\"".to_owned())),
            // Escapes of quotes, backslashes and control characters; raw non-ASCII; a value
            // of exactly the bytes kept and one past, both in multi-byte `\u` escapes.
            1 => Just(Some("\"a\\\"b\\\\c\\nd\\u0001\"".to_owned())),
            1 => Just(Some("\"Zoë → 東京\"".to_owned())),
            1 => Just(Some(format!("\"{}\"", "\\u00e9".repeat(MAX_ID_LEN / 2)))),
            1 => Just(Some(format!("\"{}x\"", "\\u00e9".repeat(MAX_ID_LEN / 2)))),
        ]
    }

    const NAMES: [&str; 9] = [
        "session_id",
        "status",
        "updated_at",
        "expires_at",
        "authorization_token",
        "order_id",
        "klarna_reference",
        "customer",
        // A key written with an escape is the key it spells.
        "st\\u0061tus",
    ];

    /// A session object (or, now and then, something that is not one).
    fn body_json() -> impl Strategy<Value = String> {
        (
            proptest::collection::vec(field_json(), NAMES.len()),
            any::<bool>(),
            0u8..20,
        )
            .prop_map(|(values, duplicate, shape)| {
                let mut members: Vec<String> = NAMES
                    .iter()
                    .zip(&values)
                    .filter_map(|(name, v)| v.as_ref().map(|v| format!("\"{name}\":{v}")))
                    .collect();
                if duplicate && let Some(first) = members.first().cloned() {
                    members.push(first);
                }
                match shape {
                    0 => format!("[{}]", members.len()),
                    1 => "\"COMPLETED\"".to_owned(),
                    _ => format!("{{{}}}", members.join(",")),
                }
            })
    }

    /// A log line: a read, a callback, a 404, or a mix the log refuses; now and then with a
    /// key the log does not have, a key twice, or a callback that is not an object.
    fn line_json() -> impl Strategy<Value = String> {
        (body_json(), field_json(), 0u8..7, any::<bool>(), 0u8..12).prop_map(
            |(body, event_id, kind, line_id, odd)| {
                let event = event_id
                    .map(|e| format!("\"event_id\":{e},"))
                    .unwrap_or_default();
                let id = if line_id { ",\"session_id\":\"s\"" } else { "" };
                let extra = match odd {
                    0 => ",\"extra\":1",
                    1 => ",\"at\":\"2019-05-13T14:54:06Z\"",
                    2 => ",\"callback\":[]",
                    3 => ",\"callback\":{\"event_id\":\"e\",\"session\":{},\"x\":[1]}",
                    4 => ",\"read\":null",
                    5 => ",\"callback\":null",
                    _ => "",
                };
                let at = "\"at\":\"2019-05-13T14:54:05Z\"";
                match kind {
                    0 => format!("{{{at},\"read\":{body}{id}{extra}}}"),
                    1 | 2 => {
                        format!("{{{at},\"callback\":{{{event}\"session\":{body}}}{id}{extra}}}")
                    }
                    3 => format!("{{{at},\"not_found\":true{id}{extra}}}"),
                    // A line written as an array, by `LogLine`'s order; and one too long.
                    5 => format!("[\"2019-05-13T14:54:05Z\",null,{body},null,\"s\"]"),
                    6 => format!(
                        "[\"2019-05-13T14:54:05Z\",{{\"session\":{body}}},null,null,\"s\",1]"
                    ),
                    _ => format!(
                        "{{{at},\"read\":{body},\"callback\":{{\"session\":{body}}}{extra}}}"
                    ),
                }
            },
        )
    }

    /// What one line came to in both readers: accepted (with how many of its strings the
    /// replay kept apart, escaped) or refused.
    enum Read {
        Accepted { kept: usize },
        Refused,
    }

    /// W4 on the replay's path for one line: the replay's small fields read it as the
    /// library's wire types read it: the same refusal with the same words, or the same values
    /// of every field (which are all a snapshot is made of: `SessionFields::snapshot`).
    fn read_alike(json: &str) -> Result<Read, TestCaseError> {
        let library = serde_json::from_str::<LogLine<'_, CallbackBody<'_>, SessionBody<'_>>>(json);
        let mut b = LineFields::default();
        let replay = b.read(json);
        let a = match (library, replay) {
            (Err(a), Err(b)) => {
                prop_assert_eq!(a.to_string(), b.to_string(), "{}", json);
                return Ok(Read::Refused);
            }
            (Ok(a), Ok(())) => a,
            (a, b) => {
                let (a, b) = (a.err(), b.err());
                return Err(TestCaseError::fail(format!(
                    "{json}: library {a:?}, replay {b:?}"
                )));
            }
        };
        prop_assert_eq!(a.at, b.at);
        prop_assert_eq!(a.session_id, b.session_id);
        prop_assert_eq!(a.not_found, b.not_found);
        prop_assert_eq!(
            (a.callback.is_some(), a.read.is_some()),
            (b.callback, b.read),
            "{}",
            json
        );
        let mut kept = 0;
        let mut count = |field: Option<&Field<&str>>| {
            kept += usize::from(matches!(field, Some(Field::Kept(_))));
        };
        // The body read in place is the callback's, or else the read's (a line with both is
        // refused: only the first is kept).
        let body = a.callback.as_ref().map(|c| &c.session).or(a.read.as_ref());
        if let Some(a) = body.filter(|_| a.callback.is_some() != a.read.is_some()) {
            prop_assert_eq!(a.fields(), b.body.values(), "{}", json);
            count(b.body.session_id.as_ref());
            let s = &b.body.snapshot;
            for field in [
                &s.status,
                &s.updated_at,
                &s.expires_at,
                &s.authorization_token,
                &s.order_id,
                &s.klarna_reference,
            ] {
                count(field.as_ref());
            }
        }
        if a.callback.is_some() != a.read.is_some() {
            prop_assert_eq!(
                a.callback
                    .as_ref()
                    .map(|c| c.event_id.as_ref().map(Text::as_str)),
                b.callback.then(|| b.event_id.as_ref().map(Field::value))
            );
        }
        Ok(Read::Accepted { kept })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// W4 on the replay's path, over generated lines.
        #[test]
        fn a_line_reads_as_the_library_reads_it(json in line_json()) {
            read_alike(&json)?;
        }
    }

    /// The generated lines are not mostly refused: a fixed draw of 4,096 has accepted lines,
    /// escaped strings among their fields, and refusals (so the test above compares values and
    /// words alike, not one of them only).
    #[test]
    fn the_generated_lines_exercise_values_escapes_and_refusals() {
        use proptest::strategy::ValueTree;
        use proptest::test_runner::TestRunner;

        let mut runner = TestRunner::deterministic();
        let (mut accepted, mut kept, mut refused) = (0, 0, 0);
        for _ in 0..4096 {
            let json = line_json().new_tree(&mut runner).unwrap().current();
            match read_alike(&json).unwrap() {
                Read::Accepted { kept: k } => (accepted, kept) = (accepted + 1, kept + k),
                Read::Refused => refused += 1,
            }
        }
        eprintln!("{accepted} accepted ({kept} escaped strings), {refused} refused");
        assert!(accepted >= 200, "{accepted} accepted");
        assert!(kept >= 50, "{kept} escaped strings in accepted lines");
        assert!(refused >= 1000, "{refused} refused");
    }

    #[test]
    fn each_key_is_found_at_its_place() {
        let lists: [(&[&str], Find); 3] = [
            (LINE_KEYS, line_key),
            (BODY_KEYS, body_key),
            (CALLBACK_KEYS, callback_key),
        ];
        for (names, find) in lists {
            for (place, name) in names.iter().enumerate() {
                assert_eq!(find(name), Some(place), "{name}");
                assert_eq!(find(&name[1..]), None, "{name}");
                assert_eq!(find(&format!("{name}_")), None, "{name}");
            }
        }
    }

    /// A line the replay reads is small: no field of it holds a 264-byte `Text` inline.
    #[test]
    fn a_line_is_small() {
        assert!(
            size_of::<Field<&str>>() <= 16,
            "{}",
            size_of::<Field<&str>>()
        );
        let line = size_of::<LineFields<'_>>();
        eprintln!("a parsed line: {line} bytes");
        assert!(line <= 232, "{line}");
    }
}

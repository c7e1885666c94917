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
use std::marker::PhantomData;

use hpp_session::wire::{SessionFields, Text, Value};
use serde::Deserialize;
use serde::de::value::{BorrowedStrDeserializer, MapAccessDeserializer, StrDeserializer};
use serde::de::{self, Deserializer, MapAccess, Visitor};

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
pub(crate) struct BodyFields<S> {
    pub(crate) session_id: Option<Field<S>>,
    pub(crate) snapshot: SnapshotFields<S>,
}

/// The fields a snapshot is made of: a session object's but its id (the replay routes by the
/// line's, so only these cross threads).
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

/// A callback's body (`CallbackBody`'s shape): its `event_id` and its session.
pub(crate) struct CallbackFields<S> {
    pub(crate) event_id: Option<Field<S>>,
    pub(crate) session: BodyFields<S>,
}

// The derived readers of the two shapes, reached only through `MapOnly` (as the library's are):
// serde's derive would also read a struct from a JSON array, by position.

#[derive(Deserialize)]
struct BodyShape<'a> {
    #[serde(borrow, default)]
    session_id: Option<Field<&'a str>>,
    #[serde(borrow, default)]
    status: Option<Field<&'a str>>,
    #[serde(borrow, default)]
    updated_at: Option<Field<&'a str>>,
    #[serde(borrow, default)]
    expires_at: Option<Field<&'a str>>,
    #[serde(borrow, default)]
    authorization_token: Option<Field<&'a str>>,
    #[serde(borrow, default)]
    order_id: Option<Field<&'a str>>,
    #[serde(borrow, default)]
    klarna_reference: Option<Field<&'a str>>,
}

#[derive(Deserialize)]
struct CallbackShape<'a> {
    #[serde(borrow, default)]
    event_id: Option<Field<&'a str>>,
    #[serde(borrow)]
    session: BodyFields<&'a str>,
}

impl<'a> From<BodyShape<'a>> for BodyFields<&'a str> {
    fn from(b: BodyShape<'a>) -> Self {
        Self {
            session_id: b.session_id,
            snapshot: SnapshotFields {
                status: b.status,
                updated_at: b.updated_at,
                expires_at: b.expires_at,
                authorization_token: b.authorization_token,
                order_id: b.order_id,
                klarna_reference: b.klarna_reference,
            },
        }
    }
}

impl<'a> From<CallbackShape<'a>> for CallbackFields<&'a str> {
    fn from(c: CallbackShape<'a>) -> Self {
        Self {
            event_id: c.event_id,
            session: c.session,
        }
    }
}

/// Accepts a map (a JSON object) and nothing else, read through the derived `Shape`.
struct MapOnly<Shape>(PhantomData<Shape>);

impl<'de, Shape: Deserialize<'de>> Visitor<'de> for MapOnly<Shape> {
    type Value = Shape;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Shape, A::Error> {
        Shape::deserialize(MapAccessDeserializer::new(map))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for BodyFields<&'a str> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let shape: BodyShape<'a> = deserializer.deserialize_map(MapOnly(PhantomData))?;
        Ok(shape.into())
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for CallbackFields<&'a str> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let shape: CallbackShape<'a> = deserializer.deserialize_map(MapOnly(PhantomData))?;
        Ok(shape.into())
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
        (body_json(), field_json(), 0u8..5, any::<bool>(), 0u8..12).prop_map(
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
        let replay =
            serde_json::from_str::<LogLine<'_, CallbackFields<&str>, BodyFields<&str>>>(json);
        let (a, b) = match (library, replay) {
            (Err(a), Err(b)) => {
                prop_assert_eq!(a.to_string(), b.to_string(), "{}", json);
                return Ok(Read::Refused);
            }
            (Ok(a), Ok(b)) => (a, b),
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
        let mut kept = 0;
        let mut count = |field: Option<&Field<&str>>| {
            kept += usize::from(matches!(field, Some(Field::Kept(_))));
        };
        let bodies = [
            (a.read.as_ref(), b.read.as_ref()),
            (
                a.callback.as_ref().map(|c| &c.session),
                b.callback.as_ref().map(|c| &c.session),
            ),
        ];
        for (a, b) in bodies {
            prop_assert_eq!(a.is_some(), b.is_some());
            if let (Some(a), Some(b)) = (a, b) {
                prop_assert_eq!(a.fields(), b.values(), "{}", json);
                count(b.session_id.as_ref());
                let s = &b.snapshot;
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
        }
        prop_assert_eq!(
            a.callback
                .as_ref()
                .map(|c| c.event_id.as_ref().map(Text::as_str)),
            b.callback
                .as_ref()
                .map(|c| c.event_id.as_ref().map(Field::value))
        );
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

    /// A line the replay reads is small: no field of it holds a 264-byte `Text` inline.
    #[test]
    fn a_line_is_small() {
        assert!(
            size_of::<Field<&str>>() <= 16,
            "{}",
            size_of::<Field<&str>>()
        );
        let line = size_of::<LogLine<'_, CallbackFields<&str>, BodyFields<&str>>>();
        eprintln!("a parsed line: {line} bytes");
        assert!(line <= 400, "{line}");
    }
}

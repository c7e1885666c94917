//! A log line as the replay reads it: the fields of the library's
//! [`SessionBody`](hpp_session::wire::SessionBody) and
//! [`CallbackBody`](hpp_session::wire::CallbackBody), read in place, small.
//!
//! The library's wire types hold each string as a [`Text`], 264 bytes, so that an escaped string
//! is unescaped without an allocator; a line of them is about 4 KB, and moving it through
//! `Option` deserialization and across threads was most of what a replay did (46 % of its cycles
//! in `memmove`). Here a line is read in place ([`LineFields::read`]: each value is written
//! once, where it stays), and a string the line holds as it is is kept as where it lies in the
//! line ([`Span`], 8 bytes): a line read ahead is applied with its text, wherever that text was
//! copied, without being moved or changed. The rare escaped string (PHP's `json_encode` writes
//! `\/`) is boxed ([`Field::Kept`]). What a string *means* is still decided by the library: each
//! is read by [`Text`]'s own deserializer, and the snapshot is [`SessionFields::snapshot`], the
//! check `SessionBody::snapshot` makes. That the two readers agree on every line, escaped,
//! malformed, or not an object, is checked against the library's types
//! (`a_line_reads_as_the_library_reads_it`, W4).

use std::fmt;

use hpp_session::wire::{SessionFields, Text, Value};
use serde::Deserialize;
use serde::de::value::{BorrowedStrDeserializer, StrDeserializer};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Where a string lies in its line: a byte range of the line's text. Eight bytes, so that a
/// line read ahead is small to store and to send across threads, and refers to its text
/// wherever that text is copied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// Where `part` lies in `line`; `None` when it is not a slice of it (or lies past 4 GiB).
    pub(crate) fn of(line: &str, part: &str) -> Option<Self> {
        let start = (part.as_ptr() as usize).checked_sub(line.as_ptr() as usize)?;
        let end = start.checked_add(part.len())?;
        if end > line.len() {
            return None;
        }
        Some(Self {
            start: u32::try_from(start).ok()?,
            end: u32::try_from(end).ok()?,
        })
    }

    /// The string in `line`, the text it was read from (or a copy); `None` when it is not there.
    pub(crate) fn get(self, line: &str) -> Option<&str> {
        line.get(self.start as usize..self.end as usize)
    }
}

/// Why a line's string could not be kept as where it lies in the line (never seen: `serde_json`
/// borrows every string it does not unescape from the text it reads).
const NOT_IN_LINE: &str = "internal error: a string of the line was not found in it";

/// One string of a body: where it lies in the line (`S`: a [`Span`], or the string itself as
/// it is read), or kept apart when the line spelled it with escapes ([`Text`]: unescaped, so it
/// is in no line). Kept strings are rare and boxed, so that a line stays small.
#[derive(Debug)]
pub(crate) enum Field<S = Span> {
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

    /// The same string, as where it lies in `line`.
    fn in_line(self, line: &str) -> Option<Field> {
        Some(match self {
            Self::Line(s) => Field::Line(Span::of(line, s)?),
            Self::Kept(text) => Field::Kept(text),
        })
    }
}

impl Field {
    /// The same string, as `line` (the text it was read from) has it; `None` when it is not in
    /// `line`.
    pub(crate) fn in_text(self, line: &str) -> Option<Field<&str>> {
        Some(match self {
            Self::Line(span) => Field::Line(span.get(line)?),
            Self::Kept(text) => Field::Kept(text),
        })
    }

    /// The value, or the length of one too long to keep ([`Text::as_str`]), in `line` (the
    /// text the field was read from); `None` when the field is not in it.
    pub(crate) fn value<'t>(&'t self, line: &'t str) -> Option<Value<'t>> {
        match self {
            Self::Line(span) => span.get(line).map(Ok),
            Self::Kept(text) => Some(text.as_str()),
        }
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
pub(crate) struct BodyFields {
    pub(crate) session_id: Option<Field>,
    pub(crate) snapshot: SnapshotFields,
}

/// The fields a snapshot is made of: a session object's but its id (the replay routes by the
/// line's).
#[derive(Default)]
pub(crate) struct SnapshotFields {
    pub(crate) status: Option<Field>,
    pub(crate) updated_at: Option<Field>,
    pub(crate) expires_at: Option<Field>,
    pub(crate) authorization_token: Option<Field>,
    pub(crate) order_id: Option<Field>,
    pub(crate) klarna_reference: Option<Field>,
}

/// A field that is not in the text it was applied with.
struct NotInLine;

/// A field's value in `line`, when it is there (`Ok(None)` when the field is absent).
fn value<'t>(field: Option<&'t Field>, line: &'t str) -> Result<Option<Value<'t>>, NotInLine> {
    match field {
        None => Ok(None),
        Some(field) => field.value(line).map(Some).ok_or(NotInLine),
    }
}

#[cfg(test)]
impl BodyFields {
    /// The fields' values in `line`, the session id's too (the replay routes by the line's,
    /// and checks a snapshot without it: [`SnapshotFields::values`]).
    pub(crate) fn values<'t>(&'t self, line: &'t str) -> Option<SessionFields<'t>> {
        Some(SessionFields {
            session_id: value(self.session_id.as_ref(), line).ok()?,
            ..self.snapshot.values(line)?
        })
    }
}

impl SnapshotFields {
    /// The fields' values in `line` (the text they were read from, or a copy), without a
    /// session id; `None` when a field is not in `line`.
    pub(crate) fn values<'t>(&'t self, line: &'t str) -> Option<SessionFields<'t>> {
        Some(SessionFields {
            session_id: None,
            status: value(self.status.as_ref(), line).ok()?,
            updated_at: value(self.updated_at.as_ref(), line).ok()?,
            expires_at: value(self.expires_at.as_ref(), line).ok()?,
            authorization_token: value(self.authorization_token.as_ref(), line).ok()?,
            order_id: value(self.order_id.as_ref(), line).ok()?,
            klarna_reference: value(self.klarna_reference.as_ref(), line).ok()?,
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
pub(crate) struct LineFields {
    /// `at`: always there once a line is read.
    pub(crate) at: Span,
    /// The line's own `session_id`.
    pub(crate) session_id: Option<Span>,
    pub(crate) not_found: Option<bool>,
    /// Whether the line has a callback's body (not `null`).
    pub(crate) callback: bool,
    /// Whether the line has a read's body (not `null`).
    pub(crate) read: bool,
    /// The callback's `event_id`.
    pub(crate) event_id: Option<Field>,
    /// The callback's session object, or the read's. A line with both is refused
    /// ([`LineFields::callback`] and [`LineFields::read`] say so); the second is read, to
    /// refuse what the library refuses in it, and dropped.
    pub(crate) body: BodyFields,
}

/// The keys of a log line, in `LogLine`'s order (its derive names them so in errors).
const LINE_KEYS: &[&str] = &["at", "callback", "read", "not_found", "session_id"];
/// What `LogLine`'s derive expects of a line written as an array.
const LINE_ELEMENTS: &str = "struct LogLine with 5 elements";
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

impl LineFields {
    /// Reads `line`, one line of the log, into these fields (new ones: [`Default`]). Its
    /// strings are then where they lie in `line`: read them with it, or with a copy of it.
    ///
    /// # Errors
    /// What `serde_json::from_str` gives for `LogLine` of the library's wire types.
    pub(crate) fn read(&mut self, line: &str) -> Result<(), serde_json::Error> {
        let mut de = serde_json::Deserializer::from_str(line);
        de.deserialize_struct("LogLine", LINE_KEYS, LineVisitor { line, fields: self })?;
        de.end()
    }
}

/// Reads a line into its fields.
struct LineVisitor<'s, 'l> {
    line: &'l str,
    fields: &'s mut LineFields,
}

impl LineVisitor<'_, '_> {
    /// Where `s`, a string borrowed from the line, lies in it.
    fn span<E: de::Error>(&self, s: &str) -> Result<Span, E> {
        Span::of(self.line, s).ok_or_else(|| E::custom(NOT_IN_LINE))
    }

    /// The place for a line's body, `callback` or not: the line's, or for a second body (the
    /// line is refused) one to be dropped, `second`.
    fn body<'p>(
        &'p mut self,
        second: &'p mut Option<(Option<Field>, BodyFields)>,
    ) -> (&'p mut Option<Field>, &'p mut BodyFields) {
        if self.fields.callback || self.fields.read {
            let (event_id, body) = second.insert((None, BodyFields::default()));
            (event_id, body)
        } else {
            (&mut self.fields.event_id, &mut self.fields.body)
        }
    }

    /// Reads a callback's body (`callback`) or a read's, which may be `null`, with `read`.
    fn read_body<E>(
        &mut self,
        callback: bool,
        read: impl FnOnce(Optional<BodyPlace<'_, '_>>) -> Result<Option<bool>, E>,
    ) -> Result<Option<()>, E> {
        let line = self.line;
        let mut second = None;
        let (event_id, body) = self.body(&mut second);
        let place = BodyPlace {
            line,
            event_id: callback.then_some(event_id),
            body,
        };
        let Some(there) = read(Optional(place))? else {
            return Ok(None);
        };
        if callback {
            self.fields.callback = there;
        } else {
            self.fields.read = there;
        }
        Ok(Some(()))
    }
}

impl<'de> Visitor<'de> for LineVisitor<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("struct LogLine")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let keys = Key::refusing_others(LINE_KEYS, line_key);
        let mut seen = [false; LINE_KEYS.len()];
        let mut at = None;
        while let Some(key) = keys.next_in(&mut map, &mut seen)? {
            match key {
                0 => at = Some(self.span(map.next_value()?)?),
                1 | 2 => {
                    self.read_body(key == 1, |seed| map.next_value_seed(seed).map(Some))?;
                }
                3 => self.fields.not_found = map.next_value()?,
                _ => {
                    let id: Option<&str> = map.next_value()?;
                    self.fields.session_id = id.map(|id| self.span(id)).transpose()?;
                }
            }
        }
        self.fields.at = at.ok_or_else(|| de::Error::missing_field("at"))?;
        Ok(())
    }

    /// A line written as an array, its values in `LogLine`'s order, read as `LogLine`'s derive
    /// reads one (nobody writes one; this keeps the two readers alike): `at` must be there, the
    /// others may be left out, and what follows them is the parser's to refuse.
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        let Some(at) = seq.next_element::<&str>()? else {
            return Err(de::Error::invalid_length(0, &LINE_ELEMENTS));
        };
        self.fields.at = self.span(at)?;
        for callback in [true, false] {
            if self
                .read_body(callback, |seed| seq.next_element_seed(seed))?
                .is_none()
            {
                return Ok(());
            }
        }
        let Some(not_found) = seq.next_element()? else {
            return Ok(());
        };
        self.fields.not_found = not_found;
        if let Some(id) = seq.next_element::<Option<&str>>()? {
            self.fields.session_id = id.map(|id| self.span(id)).transpose()?;
        }
        Ok(())
    }
}

/// Where a session object goes: its fields, and a callback's `event_id` when it is a
/// callback's body (`CallbackBody`'s shape: `event_id` and `session`).
struct BodyPlace<'s, 'l> {
    line: &'l str,
    event_id: Option<&'s mut Option<Field>>,
    body: &'s mut BodyFields,
}

impl<'de> Visitor<'de> for BodyPlace<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some(event_id) = self.event_id else {
            return read_session(&mut map, self.line, self.body);
        };
        let keys = Key::ignoring_others(CALLBACK_KEYS, callback_key);
        let mut seen = [false; CALLBACK_KEYS.len()];
        while let Some(key) = keys.next_in(&mut map, &mut seen)? {
            if key == 0 {
                *event_id = next_field(&mut map, self.line)?;
            } else {
                map.next_value_seed(Object(BodyPlace {
                    line: self.line,
                    event_id: None,
                    body: &mut *self.body,
                }))?;
            }
        }
        if seen[1] {
            Ok(())
        } else {
            Err(de::Error::missing_field("session"))
        }
    }
}

/// Reads the fields of a session object into `body`; other keys are ignored.
fn read_session<'de, A: MapAccess<'de>>(
    map: &mut A,
    line: &str,
    body: &mut BodyFields,
) -> Result<(), A::Error> {
    let BodyFields {
        session_id,
        snapshot: s,
    } = body;
    let keys = Key::ignoring_others(BODY_KEYS, body_key);
    let mut seen = [false; BODY_KEYS.len()];
    while let Some(key) = keys.next_in(map, &mut seen)? {
        let place = match key {
            0 => &mut *session_id,
            1 => &mut s.status,
            2 => &mut s.updated_at,
            3 => &mut s.expires_at,
            4 => &mut s.authorization_token,
            5 => &mut s.order_id,
            _ => &mut s.klarna_reference,
        };
        *place = next_field(map, line)?;
    }
    Ok(())
}

/// The next value of `map`, a string field of the line (or `null`), as where it lies in `line`.
fn next_field<'de, A: MapAccess<'de>>(map: &mut A, line: &str) -> Result<Option<Field>, A::Error> {
    let Some(field) = map.next_value::<Option<Field<&str>>>()? else {
        return Ok(None);
    };
    field
        .in_line(line)
        .map(Some)
        .ok_or_else(|| de::Error::custom(NOT_IN_LINE))
}

/// A JSON object read in place by `V` (`V` refuses anything else: serde's derive would also
/// read one from a JSON array, by position).
struct Object<V>(V);

impl<'de, V: Visitor<'de, Value = ()>> DeserializeSeed<'de> for Object<V> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self.0)
    }
}

/// A JSON object that may be `null`, read in place by `V`: `true` when it was there.
struct Optional<V>(V);

impl<'de, V: Visitor<'de, Value = ()>> DeserializeSeed<'de> for Optional<V> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de, V: Visitor<'de, Value = ()>> Visitor<'de> for Optional<V> {
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
        Object(self.0).deserialize(deserializer).map(|()| true)
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
        prop_assert_eq!(Some(a.at), b.at.get(json));
        prop_assert_eq!(a.session_id, b.session_id.and_then(|id| id.get(json)));
        prop_assert_eq!(a.not_found, b.not_found);
        prop_assert_eq!(
            (a.callback.is_some(), a.read.is_some()),
            (b.callback, b.read),
            "{}",
            json
        );
        let mut kept = 0;
        let mut count = |field: Option<&Field>| {
            kept += usize::from(matches!(field, Some(Field::Kept(_))));
        };
        // The body read in place is the callback's, or else the read's (a line with both is
        // refused: only the first is kept).
        let body = a.callback.as_ref().map(|c| &c.session).or(a.read.as_ref());
        if let Some(a) = body.filter(|_| a.callback.is_some() != a.read.is_some()) {
            prop_assert_eq!(Some(a.fields()), b.body.values(json), "{}", json);
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
                b.callback
                    .then(|| b.event_id.as_ref().and_then(|e| e.value(json)))
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
        let line = size_of::<LineFields>();
        eprintln!("a parsed line: {line} bytes");
        assert!(line <= 152, "{line}");
    }
}

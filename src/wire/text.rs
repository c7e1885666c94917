//! One JSON string of a body, in whichever valid spelling it came: borrowed when the input holds
//! it as it is, unescaped into an inline buffer when it has escapes (`\/`, `\uXXXX`, …).

use core::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::ser::{self, Serializer};
use serde::{Deserialize, Serialize};

use crate::id::MAX_ID_LEN;

/// The text of an unescaped string, stored inline: at most [`MAX_ID_LEN`] bytes, the bound of
/// every string Klarna sends.
type Inline = heapless::String<MAX_ID_LEN, u8>;

/// A JSON string of a Klarna body, as its value (escapes undone), without allocating.
///
/// Every valid JSON spelling of a value is that value: `"a\/b"` (PHP's `json_encode` writes `/`
/// so by default) and `"a/b"` are both `a/b`, and `"\u0043OMPLETED"` is `COMPLETED`. A string
/// the input holds as it is stays borrowed from it; one with escapes is unescaped into an inline
/// buffer of [`MAX_ID_LEN`] bytes; a longer unescaped string keeps only its length
/// ([`Text::Overlong`]), which every field reports as too long.
///
/// Equality, ordering and hashing are those of the value: how it was spelled does not count.
#[derive(Clone)]
#[expect(
    clippy::large_enum_variant,
    reason = "unescaped text is stored inline (no heap); a boxed variant would need an allocator"
)]
pub enum Text<'a> {
    /// Borrowed from the input: it had no escapes.
    Borrowed(&'a str),
    /// Unescaped into an inline buffer.
    Unescaped(Inline),
    /// Unescaped, longer than [`MAX_ID_LEN`] bytes: its length in bytes.
    Overlong(usize),
}

impl Text<'_> {
    /// The value, or its length in bytes when it is longer than [`MAX_ID_LEN`] and had escapes.
    ///
    /// # Errors
    /// The length of an [`Text::Overlong`] value.
    pub fn as_str(&self) -> Result<&str, usize> {
        match self {
            Self::Borrowed(s) => Ok(s),
            Self::Unescaped(s) => Ok(s.as_str()),
            Self::Overlong(len) => Err(*len),
        }
    }

    /// The value's length in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.as_str().map_or_else(|len| len, str::len)
    }

    /// Whether the value is the empty string.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value of a string JSON gave as it is (a borrowed string) or unescaped (a transient
    /// one): what a visitor receives.
    fn unescaped(value: &str) -> Self {
        Inline::try_from(value).map_or(Self::Overlong(value.len()), Self::Unescaped)
    }
}

impl<'a> From<&'a str> for Text<'a> {
    fn from(s: &'a str) -> Self {
        Self::Borrowed(s)
    }
}

impl PartialEq for Text<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Text<'_> {}

impl PartialEq<str> for Text<'_> {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == Ok(other)
    }
}

impl PartialEq<&str> for Text<'_> {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == Ok(*other)
    }
}

impl fmt::Debug for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_str() {
            Ok(s) => fmt::Debug::fmt(s, f),
            Err(len) => write!(f, "<{len} bytes>"),
        }
    }
}

/// Reads a JSON string in every way a parser hands it over.
struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    /// A string borrowed from the input. `serde_json` borrows only strings without escapes (it
    /// hands escaped ones over unescaped, through `visit_str`); `serde-json-core`'s `from_str`
    /// borrows every string with its escapes still in, so a `\` here is an escape to undo (a
    /// backslash that is part of the value is itself written `\\` in JSON).
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
        if v.contains('\\') {
            unescape(v).map_err(E::custom)
        } else {
            Ok(Text::Borrowed(v))
        }
    }

    /// A string the parser unescaped into scratch space of its own: copied.
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
        Ok(Text::unescaped(v))
    }
}

/// Writes the value as a JSON string (escaped as the serializer escapes). An
/// [`Text::Overlong`] value was not kept and cannot be written: an error.
impl Serialize for Text<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.as_str() {
            Ok(s) => serializer.serialize_str(s),
            Err(len) => Err(ser::Error::custom(format_args!(
                "a string of {len} bytes that was not kept cannot be written"
            ))),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TextVisitor)
    }
}

/// An escape in a JSON string that is not one (RFC 8259 §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BadEscape;

impl fmt::Display for BadEscape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid escape in a JSON string")
    }
}

/// The value of the JSON string whose text between the quotes is `raw` (RFC 8259 §7): `\"`,
/// `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t`, and `\uXXXX`, with UTF-16 surrogate pairs.
pub(crate) fn unescape(raw: &str) -> Result<Text<'static>, BadEscape> {
    let mut out = Inline::new();
    let mut len = 0usize;
    let mut rest = raw;
    while let Some(at) = rest.find('\\') {
        let (plain, escape) = rest.split_at(at);
        push(&mut out, &mut len, plain);
        let mut chars = escape.chars();
        chars.next(); // the backslash
        let c = match chars.next().ok_or(BadEscape)? {
            '"' => '"',
            '\\' => '\\',
            '/' => '/',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'u' => {
                let (c, after) = unicode_escape(chars.as_str())?;
                chars = after.chars();
                c
            }
            _ => return Err(BadEscape),
        };
        push(&mut out, &mut len, c.encode_utf8(&mut [0; 4]));
        rest = chars.as_str();
    }
    push(&mut out, &mut len, rest);
    Ok(if len > MAX_ID_LEN {
        Text::Overlong(len)
    } else {
        Text::Unescaped(out)
    })
}

/// Appends `s` while it fits, counting every byte.
fn push(out: &mut Inline, len: &mut usize, s: &str) {
    *len = len.saturating_add(s.len());
    if *len <= MAX_ID_LEN {
        // Cannot fail: `len` counts what `out` holds.
        let _ = out.push_str(s);
    }
}

/// The character of the `\u` escape whose four hex digits start `rest` (with the low half of
/// a surrogate pair after it, when it is a high half); and what follows it.
fn unicode_escape(rest: &str) -> Result<(char, &str), BadEscape> {
    let (high, rest) = hex4(rest)?;
    if !(0xD800..0xDC00).contains(&high) {
        return char::from_u32(high).map(|c| (c, rest)).ok_or(BadEscape);
    }
    let rest = rest.strip_prefix("\\u").ok_or(BadEscape)?;
    let (low, rest) = hex4(rest)?;
    if !(0xDC00..0xE000).contains(&low) {
        return Err(BadEscape);
    }
    let c = 0x1_0000 + ((high - 0xD800) << 10) + (low - 0xDC00);
    char::from_u32(c).map(|c| (c, rest)).ok_or(BadEscape)
}

/// Four hex digits at the start of `s`, and what follows.
fn hex4(s: &str) -> Result<(u32, &str), BadEscape> {
    let digits = s.get(..4).ok_or(BadEscape)?;
    if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(BadEscape);
    }
    let value = u32::from_str_radix(digits, 16).map_err(|_| BadEscape)?;
    Ok((value, s.get(4..).ok_or(BadEscape)?))
}

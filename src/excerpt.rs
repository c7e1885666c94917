//! A bounded, `Copy` echo of rejected input, for error values.

use core::fmt;

/// The most bytes of rejected input an error keeps.
pub const EXCERPT_CAPACITY: usize = 32;

/// The first [`EXCERPT_CAPACITY`] bytes (cut at a character boundary) of an input that was
/// rejected, kept inside an error so the caller can see what was wrong without the error
/// borrowing the input or allocating.
///
/// This is an echo for diagnostics, not data: when the input was longer, [`Excerpt::is_cut`]
/// says so and `Display` ends with `…`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Excerpt {
    bytes: [u8; EXCERPT_CAPACITY],
    len: u8,
    cut: bool,
}

impl Excerpt {
    /// Copies at most [`EXCERPT_CAPACITY`] bytes of `input`, never splitting a character.
    #[must_use]
    pub fn new(input: &str) -> Self {
        let mut end = input.len().min(EXCERPT_CAPACITY);
        while !input.is_char_boundary(end) {
            end = end.saturating_sub(1);
        }
        let kept = input.as_bytes().get(..end).unwrap_or_default();
        let mut bytes = [0; EXCERPT_CAPACITY];
        if let Some(slot) = bytes.get_mut(..end) {
            slot.copy_from_slice(kept);
        }
        Self {
            bytes,
            // `end <= EXCERPT_CAPACITY`, which fits a `u8`.
            len: u8::try_from(end).unwrap_or(u8::MAX),
            cut: end < input.len(),
        }
    }

    /// The kept text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        let kept = self.bytes.get(..usize::from(self.len)).unwrap_or_default();
        // Always valid: `new` copied a prefix that ends on a character boundary.
        core::str::from_utf8(kept).unwrap_or_default()
    }

    /// Whether the input was longer than what is kept.
    #[must_use]
    pub const fn is_cut(&self) -> bool {
        self.cut
    }
}

impl fmt::Display for Excerpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())?;
        if self.cut {
            f.write_str("…")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Excerpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())?;
        if self.cut {
            f.write_str("…")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_short_input_whole() {
        let e = Excerpt::new("COMPLETE");
        assert_eq!(e.as_str(), "COMPLETE");
        assert!(!e.is_cut());
    }

    #[test]
    fn cuts_long_input_on_a_char_boundary() {
        // 31 ASCII bytes then a 3-byte character: byte 32 falls inside it.
        let input = "abcdefghijklmnopqrstuvwxyz01234€tail";
        let e = Excerpt::new(input);
        assert_eq!(e.as_str(), "abcdefghijklmnopqrstuvwxyz01234");
        assert!(e.is_cut());
        assert_eq!(alloc_free_display(&e), "abcdefghijklmnopqrstuvwxyz01234…");
    }

    fn alloc_free_display(e: &Excerpt) -> heapless::String<64> {
        use core::fmt::Write;
        let mut s = heapless::String::new();
        let _ = write!(s, "{e}");
        s
    }
}

//! Reading a log line by line with a bounded buffer: memory stays at the longest accepted line,
//! whatever the log's size or its longest line.

use std::io::{self, BufRead};

/// One line of the log, without its `\n` (or `\r\n`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// The line's bytes (not yet checked to be UTF-8).
    Text(&'a [u8]),
    /// A line longer than the limit: skipped without being stored.
    TooLong {
        /// Its length in bytes.
        len: u64,
    },
}

/// Lines of a reader, numbered from 1. A final line without a newline is a line; an empty input
/// has none.
pub struct Lines<R> {
    reader: R,
    buf: Vec<u8>,
    max: usize,
    number: u64,
    drained: bool,
    /// Bytes of the reader's buffer that the last line was read from in place, to consume
    /// before reading on.
    unconsumed: usize,
    /// Where the next line's newline is in the reader's buffer after `unconsumed`, when it was
    /// found there: `drained` looks for it, and the next line need not look again.
    next_newline: Option<usize>,
}

impl<R: BufRead> Lines<R> {
    /// Lines of `reader`, each at most `max` bytes.
    pub fn new(reader: R, max: usize) -> Self {
        Self {
            reader,
            buf: Vec::new(),
            max,
            number: 0,
            drained: true,
            unconsumed: 0,
            next_newline: None,
        }
    }

    /// Whether the reader holds no whole line after the last one: reading the next one may wait
    /// for input.
    #[must_use]
    pub fn drained(&self) -> bool {
        self.drained
    }

    /// The next line and its number, or `None` at the end.
    ///
    /// # Errors
    /// What the reader answers, other than `Interrupted` (retried).
    pub fn next_line(&mut self) -> io::Result<Option<(u64, Line<'_>)>> {
        self.reader.consume(std::mem::take(&mut self.unconsumed));
        // Most lines lie whole in the reader's buffer: read them there, without a copy.
        let whole_line = loop {
            match self.reader.fill_buf() {
                Ok(chunk) => {
                    // The buffer holds what it held when `next_newline` was found: `fill_buf`
                    // reads nothing while bytes are left.
                    let known = self.next_newline.take();
                    let known = known.filter(|&i| chunk.get(i) == Some(&b'\n'));
                    let newline = known.or_else(|| memchr::memchr(b'\n', chunk));
                    let newline = newline.filter(|&i| i <= self.max);
                    break newline.map(|i| (i, newline_in(chunk.get(i + 1..))));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        if let Some((newline, next_newline)) = whole_line {
            // The same buffered bytes again: `fill_buf` reads nothing while some are left.
            let text = self.reader.fill_buf()?.get(..newline).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "the input's buffer shrank")
            })?;
            self.unconsumed = newline + 1;
            self.next_newline = next_newline;
            self.drained = next_newline.is_none();
            self.number += 1;
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            return Ok(Some((
                self.number,
                Line::Text(without_bom(self.number, text)),
            )));
        }
        self.buf.clear();
        let mut len = 0u64;
        let mut too_long = false;
        let mut any = false;
        loop {
            let chunk = match self.reader.fill_buf() {
                Ok(chunk) => chunk,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                self.drained = true;
                break;
            }
            any = true;
            let newline = memchr::memchr(b'\n', chunk);
            let part = &chunk[..newline.unwrap_or(chunk.len())];
            len += part.len() as u64;
            if !too_long {
                if self.buf.len() + part.len() > self.max {
                    too_long = true;
                    self.buf.clear();
                } else {
                    self.buf.extend_from_slice(part);
                }
            }
            let consumed = newline.map_or(chunk.len(), |i| i + 1);
            self.drained = newline_in(chunk.get(consumed..)).is_none();
            self.reader.consume(consumed);
            if newline.is_some() {
                break;
            }
        }
        if !any {
            return Ok(None);
        }
        self.number += 1;
        if too_long {
            return Ok(Some((self.number, Line::TooLong { len })));
        }
        let text = self.buf.strip_suffix(b"\r").unwrap_or(&self.buf);
        Ok(Some((
            self.number,
            Line::Text(without_bom(self.number, text)),
        )))
    }
}

/// The UTF-8 byte-order mark that Windows tools write at the start of a text file.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Line `number`'s text without the byte-order mark that may open the input (line 1 only).
fn without_bom(number: u64, text: &[u8]) -> &[u8] {
    match number {
        1 => text.strip_prefix(BOM).unwrap_or(text),
        _ => text,
    }
}

impl<'a> Line<'a> {
    /// The line's text, or why it has none: too long (`max_line_bytes` is the bound it broke),
    /// or not UTF-8.
    ///
    /// # Errors
    /// What is wrong with the line, in words.
    pub fn text(self, max_line_bytes: usize) -> Result<&'a str, String> {
        match self {
            Line::Text(bytes) => std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}")),
            Line::TooLong { len } => Err(format!(
                "line of {len} bytes is longer than the {max_line_bytes} accepted"
            )),
        }
    }
}

/// Where the first newline of `rest` of a buffer is, if it holds a whole line.
fn newline_in(rest: Option<&[u8]>) -> Option<usize> {
    rest.and_then(|rest| memchr::memchr(b'\n', rest))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_byte_order_mark_opening_the_input_is_not_part_of_line_one() {
        for capacity in [2, 4096] {
            let input =
                std::io::BufReader::with_capacity(capacity, &b"\xEF\xBB\xBFa\n\xEF\xBB\xBFb"[..]);
            let mut lines = super::Lines::new(input, 100);
            let mut seen = Vec::new();
            while let Some((n, line)) = lines.next_line().unwrap() {
                let super::Line::Text(text) = line else {
                    panic!("line {n} too long")
                };
                seen.push((n, text.to_vec()));
            }
            // Only the input's start: a mark inside the input is data (and not UTF-8 text JSON
            // expects, so that line is rejected as it should be).
            assert_eq!(
                seen,
                [(1, b"a".to_vec()), (2, b"\xEF\xBB\xBFb".to_vec())],
                "{capacity}"
            );
        }
    }

    use super::*;

    fn all(input: &[u8], max: usize, capacity: usize) -> Vec<(u64, String)> {
        let reader = io::BufReader::with_capacity(capacity, input);
        let mut lines = Lines::new(reader, max);
        let mut out = Vec::new();
        while let Some((n, line)) = lines.next_line().unwrap() {
            out.push((
                n,
                match line {
                    Line::Text(t) => String::from_utf8_lossy(t).into_owned(),
                    Line::TooLong { len } => format!("<{len} bytes>"),
                },
            ));
        }
        out
    }

    #[test]
    fn lines_end_at_newlines_whatever_the_buffer_size() {
        let input = b"a\r\nbb\n\nccc\r\nlast";
        let expected = [(1, "a"), (2, "bb"), (3, ""), (4, "ccc"), (5, "last")];
        for capacity in [1, 2, 3, 5, 64] {
            let got = all(input, 100, capacity);
            let got: Vec<(u64, &str)> = got.iter().map(|(n, s)| (*n, s.as_str())).collect();
            assert_eq!(got, expected, "capacity {capacity}");
        }
        assert!(all(b"", 100, 8).is_empty());
        assert_eq!(all(b"\n", 100, 8), [(1, String::new())]);
    }

    #[test]
    fn over_long_lines_are_skipped_not_stored() {
        for capacity in [1, 4, 64] {
            let got = all(b"12345\n123456\nok\n1234567", 5, capacity);
            let expected = [
                (1, "12345".to_owned()),
                (2, "<6 bytes>".to_owned()),
                (3, "ok".to_owned()),
                (4, "<7 bytes>".to_owned()),
            ];
            assert_eq!(got, expected, "capacity {capacity}");
        }
    }

    /// A reader that fails once with `kind` before each real read.
    struct Flaky<'a> {
        data: &'a [u8],
        kind: io::ErrorKind,
        fail_next: bool,
    }

    impl io::Read for Flaky<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.fail_next = !self.fail_next;
            if !self.fail_next {
                return Err(io::Error::new(self.kind, "flaky"));
            }
            self.data.read(buf)
        }
    }

    #[test]
    fn an_interrupted_read_is_retried_and_other_errors_are_returned() {
        let flaky = |kind, capacity| {
            let reader = Flaky {
                data: b"one\ntwo\n",
                kind,
                fail_next: true,
            };
            Lines::new(io::BufReader::with_capacity(capacity, reader), 100)
        };
        // Small buffers split lines (the copying path); a large one holds them whole.
        for capacity in [2, 64] {
            let mut lines = flaky(io::ErrorKind::Interrupted, capacity);
            let mut got = Vec::new();
            while let Some((n, Line::Text(t))) = lines.next_line().unwrap() {
                got.push((n, t.to_vec()));
            }
            assert_eq!(got, [(1, b"one".to_vec()), (2, b"two".to_vec())]);
            let mut lines = flaky(io::ErrorKind::BrokenPipe, capacity);
            let e = lines.next_line().err().map(|e| e.kind());
            assert_eq!(e, Some(io::ErrorKind::BrokenPipe), "capacity {capacity}");
        }
    }

    /// Skips a byte more than it is told to consume, the first time it consumes any: its buffer
    /// is then not what it was when the next newline was found there.
    struct Skipping {
        data: &'static [u8],
        skipped: bool,
    }

    impl io::Read for Skipping {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.data.read(buf)
        }
    }

    impl BufRead for Skipping {
        fn fill_buf(&mut self) -> io::Result<&[u8]> {
            Ok(self.data)
        }

        fn consume(&mut self, amount: usize) {
            let extra = usize::from(amount > 0 && !std::mem::replace(&mut self.skipped, true));
            self.data = self.data.get(amount + extra..).unwrap_or_default();
        }
    }

    #[test]
    fn a_remembered_newline_is_used_only_where_the_buffer_still_has_it() {
        let reader = Skipping {
            data: b"ab\ncd\nef\n",
            skipped: false,
        };
        let mut lines = Lines::new(reader, 100);
        let mut got = Vec::new();
        while let Some((_, line)) = lines.next_line().unwrap() {
            let Line::Text(text) = line else {
                panic!("{line:?}")
            };
            got.push(String::from_utf8_lossy(text).into_owned());
        }
        // The reader dropped the `c`; every line still ends at a newline.
        assert_eq!(got, ["ab", "d", "ef"]);
    }

    #[test]
    fn drained_says_whether_the_reader_holds_more() {
        // Whole lines in the buffer: drained after the last one only.
        let mut lines = Lines::new(io::BufReader::with_capacity(64, &b"a\nbb\n"[..]), 100);
        assert!(lines.drained(), "nothing read yet");
        lines.next_line().unwrap();
        assert!(!lines.drained());
        lines.next_line().unwrap();
        assert!(lines.drained());
        // A line split across reads: drained as of the last piece.
        let input = &b"abcdef\ng\n"[..];
        let mut lines = Lines::new(io::BufReader::with_capacity(5, input), 100);
        let first = lines
            .next_line()
            .unwrap()
            .map(|(n, l)| (n, l == Line::Text(b"abcdef")));
        assert_eq!(first, Some((1, true)));
        assert!(!lines.drained(), "\"g\\n\" is buffered");
        lines.next_line().unwrap();
        assert!(lines.drained());
        assert_eq!(lines.next_line().unwrap(), None);
        assert!(lines.drained());
        // Part of a line buffered is not a line: reading it may wait.
        let mut lines = Lines::new(io::BufReader::with_capacity(64, &b"a\nbb"[..]), 100);
        lines.next_line().unwrap();
        assert!(lines.drained());
    }
}

//! Reading and checking lines on a second thread while the calling thread applies them.
//!
//! Reading a line ([`Prepared::of`]: the JSON, its `at`, the session it belongs to) does not
//! depend on the sessions and is about half of a replay's work; applying it (checking its
//! snapshot, observing it, writing the record) must happen in log order. So a reader thread
//! prepares lines in batches, and the calling thread applies them in order. The output is the
//! same, byte for byte, as on one thread (`two_threads_write_what_one_writes_whatever_the_batches`
//! and the CLI tests).
//!
//! A batch ends after [`BATCH_LINES`] lines or [`BATCH_TEXT_BYTES`] of text, or as soon as
//! the input holds no whole line, so that lines arriving slowly (a pipe from a live log) are
//! applied as they come. A line crosses threads copied into the batch once, its strings as
//! ranges of that copy. Applied batches go back to the reader to be filled again: memory stays
//! at a few batches of at most about two MiB each (a MiB, and the longest line accepted),
//! whatever the log's size or its lines.
//!
//! When the output fails, the reader stops at its next hand-over; if it is waiting for input
//! then (a live pipe), it stops when the input gives a line or ends.

use std::io::{self, BufRead};
use std::ops::Range;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::thread;

use crate::lines::{Line, Lines};
use crate::replayer::Prepared;
use crate::{Error, line_text};

/// The most lines in a batch.
const BATCH_LINES: usize = 512;
/// A batch also ends once the text it holds reaches this many bytes: a hostile log of 1 MiB
/// lines would otherwise keep hundreds of MiB in flight, where one thread holds one line.
const BATCH_TEXT_BYTES: usize = 1 << 20;
/// Prepared batches waiting to be applied; the reader waits when they are all full. A few, so
/// that a pause of either thread (this machine's cores are shared) does not stop the other.
const WAITING_BATCHES: usize = 4;
/// Why a line could not cross threads (never seen: every range was made by appending to the
/// text it points into).
const LOST_RANGE: &str = "internal error: a string of the line was not found in it";

/// Lines read and prepared, with the strings they refer to.
#[derive(Default)]
struct Batch {
    /// The lines' text, one after another (a line that is not text adds nothing).
    text: String,
    lines: Vec<PreparedLine>,
}

/// One line of a batch.
struct PreparedLine {
    number: u64,
    /// The line, its strings as byte ranges of the batch's text.
    prepared: Prepared<Range<usize>>,
}

/// Reads every line of `input` on a second thread, prepares it there, and hands it to `apply`
/// on this thread, in order.
///
/// # Errors
/// [`Error::Output`] with what `apply` returns (the reader then stops), else [`Error::Input`]
/// when reading fails (after every line before the failure was applied).
pub(crate) fn for_each_prepared(
    input: impl BufRead + Send,
    max_line_bytes: usize,
    mut apply: impl FnMut(u64, Prepared<&str>) -> io::Result<()>,
) -> Result<(), Error> {
    let (full_tx, full_rx) = mpsc::sync_channel(WAITING_BATCHES);
    let (empty_tx, empty_rx) = mpsc::channel();
    thread::scope(|scope| {
        let reader = scope.spawn(move || read(input, max_line_bytes, &full_tx, &empty_rx));
        let applied = apply_all(&full_rx, &empty_tx, &mut apply);
        // After an output error the reader's next hand-over fails, and it stops.
        drop(full_rx);
        let read = reader
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        applied.map_err(Error::Output)?;
        read.map_err(Error::Input)
    })
}

/// The reader thread: reads and prepares lines, a batch at a time. Stops at the end of the
/// input, on a read error (after handing over the lines before it), or when the applier stops.
fn read(
    input: impl BufRead,
    max_line_bytes: usize,
    full: &SyncSender<Batch>,
    empty: &Receiver<Batch>,
) -> io::Result<()> {
    let mut lines = Lines::new(input, max_line_bytes);
    let mut batch = Batch::default();
    loop {
        let (number, line) = match lines.next_line() {
            Ok(Some(line)) => line,
            end => {
                if !batch.lines.is_empty() {
                    // The applier may have stopped; then it reports why.
                    let _ = full.send(batch);
                }
                return end.map(drop);
            }
        };
        push(&mut batch, number, line, max_line_bytes);
        let full_batch = batch.lines.len() >= BATCH_LINES || batch.text.len() >= BATCH_TEXT_BYTES;
        if full_batch || lines.drained() {
            if full.send(batch).is_err() {
                return Ok(());
            }
            batch = empty.try_recv().unwrap_or_default();
        }
    }
}

/// Prepares one line into `batch`.
///
/// The line is copied into the batch once, whole, and each string the prepared line refers to
/// crosses as its place in that copy: `serde_json` borrows every string from the line, so each
/// is a slice of it. A string found elsewhere (never seen) is copied after the line.
fn push(batch: &mut Batch, number: u64, line: Line<'_>, max_line_bytes: usize) {
    let text = line_text(line, max_line_bytes);
    let (start, whole) = (batch.text.len(), *text.as_ref().unwrap_or(&""));
    batch.text.push_str(whole);
    let prepared = Prepared::of(text).map(|part| {
        if let Some(offset) = offset_in(whole, part) {
            start + offset..start + offset + part.len()
        } else {
            let start = batch.text.len();
            batch.text.push_str(part);
            start..batch.text.len()
        }
    });
    batch.lines.push(PreparedLine { number, prepared });
}

/// Where `part` starts in `whole`, when it is a slice of it.
fn offset_in(whole: &str, part: &str) -> Option<usize> {
    let offset = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (offset.checked_add(part.len())? <= whole.len()).then_some(offset)
}

/// The applying side: every line of every batch, in order; emptied batches go back.
fn apply_all(
    full: &Receiver<Batch>,
    empty: &Sender<Batch>,
    apply: &mut impl FnMut(u64, Prepared<&str>) -> io::Result<()>,
) -> io::Result<()> {
    for mut batch in full {
        for line in batch.lines.drain(..) {
            let text = &batch.text;
            let prepared = line
                .prepared
                .try_map(|range| text.get(range).ok_or(()))
                .unwrap_or_else(|()| Prepared::rejected(LOST_RANGE.to_owned()));
            apply(line.number, prepared)?;
        }
        batch.text.clear();
        // The reader may be done.
        let _ = empty.send(batch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_string_crosses_as_its_place_in_the_line_or_else_as_a_copy() {
        let line = r#"{"at":"2019-05-13T14:51:50.000Z","not_found":true,"session_id":"s1"}"#;
        assert_eq!(offset_in(line, &line[6..30]), Some(6));
        assert_eq!(offset_in(line, &line[line.len()..]), Some(line.len()));
        assert_eq!(offset_in(line, line), Some(0));
        // Equal text elsewhere is not the line's: a place in the line is never guessed.
        let copy = line.to_owned();
        assert_eq!(offset_in(line, &copy[6..30]), None);
        assert_eq!(offset_in(&line[..10], &line[6..30]), None);
        assert_eq!(offset_in(&line[6..], &line[..10]), None);
        // A line crosses once, whole; one that is not text adds nothing.
        let mut batch = Batch::default();
        push(&mut batch, 1, Line::Text(line.as_bytes()), 100);
        push(&mut batch, 2, Line::Text(b"\xff"), 100);
        push(&mut batch, 3, Line::Text(b"x"), 100);
        assert_eq!(batch.text, format!("{line}x"));
    }

    #[test]
    fn a_range_that_is_not_in_the_line_rejects_the_line_instead_of_misrouting_it() {
        let mut batch = Batch::default();
        push(&mut batch, 7, Line::Text(b"x"), 100);
        // A rejection naming a session at a range past the text's end.
        let prepared =
            Prepared::of(Ok(r#"{"at":"bad","read":{"session_id":"s"}}"#)).map(|_| 40..41);
        batch.lines.push(PreparedLine {
            number: 8,
            prepared,
        });
        let (full_tx, full_rx) = mpsc::sync_channel(2);
        let (empty_tx, _empty_rx) = mpsc::channel();
        full_tx.send(batch).unwrap();
        drop(full_tx);
        let mut seen = Vec::new();
        apply_all(&full_rx, &empty_tx, &mut |n, p: Prepared<&str>| {
            seen.push((n, p.error().map(str::to_owned)));
            Ok(())
        })
        .unwrap();
        let not_json = "not a log line: expected value at line 1 column 1".to_owned();
        assert_eq!(
            seen,
            [(7, Some(not_json)), (8, Some(LOST_RANGE.to_owned()))]
        );
    }

    #[test]
    fn batches_fill_up_while_input_is_buffered_and_end_with_it() {
        let line = br#"{"at":"2019-05-13T14:51:50.000Z","not_found":true,"session_id":"s"}"#;
        let mut input = Vec::new();
        for _ in 0..1200 {
            input.extend_from_slice(line);
            input.push(b'\n');
        }
        let sizes = |reader: &mut dyn BufRead| {
            let (full_tx, full_rx) = mpsc::sync_channel(2000);
            let (_empty_tx, empty_rx) = mpsc::channel();
            read(reader, 1 << 20, &full_tx, &empty_rx).unwrap();
            drop(full_tx);
            full_rx.iter().map(|b| b.lines.len()).collect::<Vec<_>>()
        };
        // A slice is all buffered: full batches, then the rest.
        assert_eq!(sizes(&mut &input[..]), [512, 512, 176]);
        assert!(sizes(&mut &[][..]).is_empty());
        // A buffer of three lines and a bit: a batch ends whenever no whole line is left.
        let capacity = 3 * (line.len() + 1) + 10;
        let small = sizes(&mut io::BufReader::with_capacity(capacity, &input[..]));
        assert!(small.iter().all(|&n| (1..=4).contains(&n)), "{small:?}");
        assert_eq!(small.iter().sum::<usize>(), 1200);
        // Long ids end a batch by its bytes: 300 KiB event ids, four to a MiB.
        let long_id = "e".repeat(300 << 10);
        let mut input = Vec::new();
        for _ in 0..10 {
            let callback = format!(
                r#"{{"at":"2019-05-13T14:51:50.000Z","callback":{{"event_id":"{long_id}","session":{{"session_id":"s"}}}}}}"#
            );
            input.extend_from_slice(callback.as_bytes());
            input.push(b'\n');
        }
        assert_eq!(sizes(&mut &input[..]), [4, 4, 2]);
    }

    /// Hands over what it is sent, one message per read; waits when there is none.
    struct Pipe(Receiver<Vec<u8>>);

    impl io::Read for Pipe {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let Ok(data) = self.0.recv() else {
                return Ok(0);
            };
            buf[..data.len()].copy_from_slice(&data);
            Ok(data.len())
        }
    }

    #[test]
    fn a_live_pipe_is_applied_line_by_line() {
        let (lines_tx, lines_rx) = mpsc::channel();
        let (applied_tx, applied_rx) = mpsc::channel();
        // Sends a line only once the one before was applied: if a batch waited for more
        // input, the wait would time out.
        let feeder = thread::spawn(move || {
            for n in 1..=20u64 {
                let line = format!(
                    "{{\"at\":\"2019-05-13T14:51:50.000Z\",\"not_found\":true,\"session_id\":\"s{n}\"}}\n"
                );
                lines_tx.send(line.into_bytes()).unwrap();
                let applied = applied_rx.recv_timeout(std::time::Duration::from_secs(10));
                assert_eq!(
                    applied,
                    Ok(n),
                    "line {n} was not applied before the next came"
                );
            }
        });
        let input = io::BufReader::with_capacity(4096, Pipe(lines_rx));
        for_each_prepared(input, 1 << 20, |n, prepared| {
            assert_eq!(prepared.error(), None);
            let _ = applied_tx.send(n);
            Ok(())
        })
        .ok()
        .unwrap();
        feeder.join().unwrap();
    }
}

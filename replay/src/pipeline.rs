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
//! applied as they come. A line crosses threads copied into the batch once; the prepared line
//! refers to its strings by where they lie in the line ([`Span`](crate::fields::Span)), so it
//! is applied with that copy as it is, never changed or moved again. Applied batches go back to
//! the reader to be filled again: memory stays at a few batches of at most about two MiB each
//! (a MiB, and the longest line accepted), whatever the log's size or its lines.
//!
//! Preparing a line costs the reader a little more than applying it costs the calling thread.
//! So when the calling thread finds no batch waiting, the reader leaves its next batch raw (the
//! lines copied, not prepared) for the calling thread to prepare: the two share the work
//! wherever it falls (about one batch in six here). Which batches are raw changes nothing in
//! the output (`raw_or_prepared_batches_apply_alike`).
//!
//! When the output fails, the reader stops at its next hand-over; if it is waiting for input
//! then (a live pipe), it stops when the input gives a line or ends.

use std::io::{self, BufRead};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TryRecvError};
use std::thread;

use crate::error::Error;
use crate::lines::{Line, Lines};
use crate::replayer::{LOST, Prepared};

/// The most lines in a batch.
const BATCH_LINES: usize = 512;
/// A batch also ends once the text it holds reaches this many bytes: a hostile log of 1 MiB
/// lines would otherwise keep hundreds of MiB in flight, where one thread holds one line.
const BATCH_TEXT_BYTES: usize = 1 << 20;
/// Prepared batches waiting to be applied; the reader waits when they are all full. A few, so
/// that a pause of either thread (this machine's cores are shared) does not stop the other.
const WAITING_BATCHES: usize = 4;

/// Lines read, and prepared unless the batch is raw, with their text.
#[derive(Default)]
struct Batch {
    /// The lines' text, one after another (a line that is not text adds nothing).
    text: String,
    lines: Vec<BatchLine>,
}

/// One line of a batch: its number, where its text is in the batch's (empty when it is not
/// text), and the line prepared, or why it is not text when it is left raw.
struct BatchLine {
    number: u64,
    text: Range<usize>,
    line: Crossing,
}

/// A line as it crosses threads.
enum Crossing {
    /// Prepared by the reader.
    Prepared(Prepared),
    /// Left for the applier to prepare; `Err` says why it is not text.
    Raw(Result<(), String>),
}

/// Reads every line of `input` on a second thread, prepares it there (or here, in the batches
/// the reader leaves raw), and hands it to `apply` on this thread, in order.
///
/// # Errors
/// [`Error::Output`] with what `apply` returns (the reader then stops), else [`Error::Input`]
/// when reading fails (after every line before the failure was applied).
pub(crate) fn for_each_prepared(
    input: impl BufRead + Send,
    max_line_bytes: usize,
    mut apply: impl FnMut(u64, &str, &Prepared) -> io::Result<()>,
) -> Result<(), Error> {
    let (full_tx, full_rx) = mpsc::sync_channel(WAITING_BATCHES);
    let (empty_tx, empty_rx) = mpsc::channel();
    // Set when the calling thread waits for a batch: the reader then leaves the next one raw.
    let idle = AtomicBool::new(false);
    thread::scope(|scope| {
        let idle = &idle;
        let leave_raw = || idle.swap(false, Ordering::Relaxed);
        let reader =
            scope.spawn(move || read(input, max_line_bytes, &full_tx, &empty_rx, leave_raw));
        let applied = apply_all(&full_rx, &empty_tx, &mut apply, idle);
        // After an output error the reader's next hand-over fails, and it stops.
        drop(full_rx);
        let read = reader
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        applied.map_err(Error::Output)?;
        read.map_err(Error::Input)
    })
}

/// The reader thread: reads and prepares lines, a batch at a time, except in the batches it
/// starts when `leave_raw` says so. Stops at the end of the input, on a read error (after
/// handing over the lines before it), or when the applier stops.
fn read(
    input: impl BufRead,
    max_line_bytes: usize,
    full: &SyncSender<Batch>,
    empty: &Receiver<Batch>,
    mut leave_raw: impl FnMut() -> bool,
) -> io::Result<()> {
    let mut lines = Lines::new(input, max_line_bytes);
    let mut batch = Batch::default();
    let mut raw = leave_raw();
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
        push(&mut batch, number, line, max_line_bytes, raw);
        let full_batch = batch.lines.len() >= BATCH_LINES || batch.text.len() >= BATCH_TEXT_BYTES;
        if full_batch || lines.drained() {
            if full.send(batch).is_err() {
                return Ok(());
            }
            batch = empty.try_recv().unwrap_or_default();
            raw = leave_raw();
        }
    }
}

/// Copies one line into `batch`, and prepares it there unless the batch is `raw` (left for the
/// applier to prepare).
fn push(batch: &mut Batch, number: u64, line: Line<'_>, max_line_bytes: usize, raw: bool) {
    let line = line.text(max_line_bytes);
    let text = batch.copy(line.as_ref().map_or("", |line| line));
    let line = if raw {
        Crossing::Raw(line.map(drop))
    } else {
        Crossing::Prepared(Prepared::of(line))
    };
    batch.lines.push(BatchLine { number, text, line });
}

impl Batch {
    /// Appends `s` to the batch's text; returns where it is.
    fn copy(&mut self, s: &str) -> Range<usize> {
        let start = self.text.len();
        self.text.push_str(s);
        start..self.text.len()
    }
}

/// The applying side: every line of every batch, in order, preparing those of raw batches;
/// emptied batches go back. Sets `idle` before waiting for a batch.
fn apply_all(
    full: &Receiver<Batch>,
    empty: &Sender<Batch>,
    apply: &mut impl FnMut(u64, &str, &Prepared) -> io::Result<()>,
    idle: &AtomicBool,
) -> io::Result<()> {
    loop {
        let mut batch = match full.try_recv() {
            Ok(batch) => batch,
            Err(TryRecvError::Empty) => {
                idle.store(true, Ordering::Relaxed);
                match full.recv() {
                    Ok(batch) => batch,
                    Err(_) => return Ok(()),
                }
            }
            Err(TryRecvError::Disconnected) => return Ok(()),
        };
        for line in &batch.lines {
            // Never seen: every range was made by appending to this text.
            let Some(text) = batch.text.get(line.text.clone()) else {
                apply(line.number, "", &Prepared::rejected(LOST.to_owned()))?;
                continue;
            };
            match &line.line {
                Crossing::Prepared(prepared) => apply(line.number, text, prepared)?,
                Crossing::Raw(raw) => {
                    let prepared = Prepared::of(raw.clone().map(|()| text));
                    apply(line.number, text, &prepared)?;
                }
            }
        }
        batch.lines.clear();
        batch.text.clear();
        // The reader may be done.
        let _ = empty.send(batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::write_json;
    use crate::replayer::Replayer;
    use crate::{Format, Options, Threads};
    use hpp_session::TrackerConfig;

    #[test]
    fn a_line_crosses_once_whole_and_one_that_is_not_text_adds_nothing() {
        let line = r#"{"at":"2019-05-13T14:51:50.000Z","not_found":true,"session_id":"s1"}"#;
        let mut batch = Batch::default();
        push(&mut batch, 1, Line::Text(line.as_bytes()), 100, false);
        push(&mut batch, 2, Line::Text(b"\xff"), 100, false);
        push(&mut batch, 3, Line::Text(b"x"), 100, true);
        push(&mut batch, 4, Line::Text(b"\xff"), 100, true);
        assert_eq!(batch.text, format!("{line}x"));
        let texts: Vec<_> = batch.lines.iter().map(|l| l.text.clone()).collect();
        let end = line.len();
        assert_eq!(texts, [0..end, end..end, end..end + 1, end + 1..end + 1]);
    }

    #[test]
    fn a_line_whose_strings_are_not_in_its_text_is_rejected_instead_of_misrouted() {
        let mut batch = Batch::default();
        push(&mut batch, 7, Line::Text(b"x"), 100, false);
        // A line applied with a text that does not hold its strings, and a text past the
        // batch's end, prepared and raw.
        let line = r#"{"at":"2019-05-13T14:51:50.000Z","not_found":true,"session_id":"s1"}"#;
        batch.lines.push(BatchLine {
            number: 8,
            text: 0..1,
            line: Crossing::Prepared(Prepared::of(Ok(line))),
        });
        for (number, line) in [
            (9, Crossing::Prepared(Prepared::of(Ok(line)))),
            (10, Crossing::Raw(Ok(()))),
        ] {
            batch.lines.push(BatchLine {
                number,
                text: 0..2,
                line,
            });
        }
        let (full_tx, full_rx) = mpsc::sync_channel(2);
        let (empty_tx, _empty_rx) = mpsc::channel();
        full_tx.send(batch).unwrap();
        drop(full_tx);
        let mut seen = Vec::new();
        let idle = AtomicBool::new(false);
        let mut replayer = Replayer::new(TrackerConfig::DEFAULT);
        let mut apply = |n, text: &str, p: &Prepared| {
            let record = replayer.apply(n, text, p);
            seen.push((n, record.session_id.is_some(), record.result.err()));
            Ok(())
        };
        apply_all(&full_rx, &empty_tx, &mut apply, &idle).unwrap();
        let not_json = "not a log line: expected value at line 1 column 1".to_owned();
        let lost = Some(LOST.to_owned());
        assert_eq!(
            seen,
            [
                (7, false, Some(not_json)),
                (8, false, lost.clone()),
                (9, false, lost.clone()),
                (10, false, lost)
            ]
        );
    }

    /// The `--json` output of `log` replayed on two threads, each batch raw as `leave_raw`
    /// says, and the number of raw lines.
    fn replayed(log: &[u8], leave_raw: impl FnMut() -> bool + Send) -> (Vec<u8>, usize) {
        let mut replayer = Replayer::new(TrackerConfig::DEFAULT);
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        let (full_tx, full_rx) = mpsc::sync_channel(WAITING_BATCHES);
        let (empty_tx, empty_rx) = mpsc::channel();
        let (counted_tx, counted_rx) = mpsc::channel();
        let idle = AtomicBool::new(false);
        thread::scope(|scope| {
            scope.spawn(move || {
                // Counts the raw lines of each batch on its way.
                let (tx, rx) = mpsc::sync_channel::<Batch>(WAITING_BATCHES);
                thread::scope(|inner| {
                    inner.spawn(move || {
                        for batch in rx {
                            let raw = batch.lines.iter();
                            let raw = raw.filter(|l| matches!(l.line, Crossing::Raw(_))).count();
                            counted_tx.send(raw).unwrap();
                            full_tx.send(batch).unwrap();
                        }
                    });
                    read(log, 256, &tx, &empty_rx, leave_raw).unwrap();
                    drop(tx);
                });
            });
            let mut apply = |n, text: &str, p: &Prepared| {
                write_json(&mut out, &replayer.apply(n, text, p), &mut scratch)
            };
            apply_all(&full_rx, &empty_tx, &mut apply, &idle).unwrap();
        });
        (out, counted_rx.iter().sum())
    }

    #[test]
    fn raw_or_prepared_batches_apply_alike() {
        let log = crate::simulate::hostile_log(40, 3);
        let mut log = log.repeat(2);
        log.extend_from_slice(b"{\"at\":\"\xff\"}\n{\"at\":1}\n");
        log.extend_from_slice(&[b'x'; 300]);
        let mut one = Vec::new();
        let options = Options {
            config: TrackerConfig::DEFAULT.into(),
            format: Format::Json,
            max_line_bytes: 256,
            flush_each_line: false,
            threads: Threads::One,
        };
        crate::replay(&log[..], &mut one, &options).ok().unwrap();
        let lines = memchr::memchr_iter(b'\n', &log).count() + 1;
        let (prepared, raw) = replayed(&log, || false);
        assert!(prepared == one && raw == 0, "{raw} raw lines");
        let (all_raw, raw) = replayed(&log, || true);
        assert!(all_raw == one && raw == lines, "{raw} raw lines of {lines}");
        let mut n = 0;
        let (alternate, raw) = replayed(&log, || {
            n += 1;
            n % 2 == 0
        });
        assert!(
            alternate == one && raw > 0 && raw < lines,
            "{raw} raw lines"
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
            read(reader, 1 << 20, &full_tx, &empty_rx, || false).unwrap();
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
        for_each_prepared(input, 1 << 20, |n, _text, prepared| {
            assert_eq!(prepared.error(), None);
            let _ = applied_tx.send(n);
            Ok(())
        })
        .ok()
        .unwrap();
        feeder.join().unwrap();
    }
}

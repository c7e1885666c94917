//! The engine of `hpp-replay`: replaying a log of what an integrator received from Klarna
//! (status callbacks, reads, 404s; one JSON object a line) through [`hpp_session::Tracker`]s,
//! one per session, and writing what happened: per line (JSON or a timeline) or as a summary.
//!
//! The binary (`src/main.rs`) only parses arguments and opens files; everything here works on
//! any `BufRead` and `Write`, so benchmarks and tests run the same code.

pub mod check;
mod error;
mod fields;
pub mod fleet;
pub mod lines;
pub mod log_line;
pub mod output;
mod pipeline;
pub mod replayer;
mod sessions;
pub mod simulate;
pub mod summary;

use std::io::{self, BufRead, Write};

pub use error::Error;
pub use replayer::{Callbacks, Config, Observed, Record, Replayer};
pub use summary::Summary;

/// The embedded sample log: four sessions interleaved, with a lost callback, duplicates, a late
/// stale read, a typo'd status, 404s before expiry, a forged callback from the future and a
/// forged cancel, every completion outcome, and an expiry.
pub const SAMPLE: &str = include_str!("../sample.jsonl");

/// What to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per input line.
    Json,
    /// A timeline for a person.
    Human,
    /// One JSON object summarizing the log.
    SummaryJson,
    /// A summary for a person.
    SummaryHuman,
}

impl Format {
    /// Whether to flush after every line: only for the timeline, and only when a person is
    /// watching (`watched`: the output is a terminal). Anything else is written in large blocks.
    #[must_use]
    pub fn flush_each_line(self, watched: bool) -> bool {
        watched && self == Self::Human
    }
}

/// How to replay.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// The trackers' configuration, and how they take callbacks.
    pub config: Config,
    /// What to write.
    pub format: Format,
    /// The longest line accepted, in bytes; longer lines are rejected without being stored.
    pub max_line_bytes: usize,
    /// Flush after every line (a person is watching).
    pub flush_each_line: bool,
    /// The threads to use.
    pub threads: Threads,
}

/// The threads a replay uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threads {
    /// Every line is read, checked, applied and written on the calling thread.
    One,
    /// A second thread reads lines (JSON, `at`, routing) while the calling thread applies and
    /// writes them in order: the same output, sooner on two or more cores (the `pipeline`
    /// module).
    Two,
}

impl Threads {
    /// What to use by default: [`Threads::for_machine`] with this machine's cores.
    #[must_use]
    pub fn by_default(flush_each_line: bool) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self::for_machine(cores, flush_each_line)
    }

    /// [`Threads::Two`] on two or more `cores`, unless every line is flushed as it comes (a
    /// person watching a timeline, who gains nothing from a second thread).
    #[must_use]
    pub fn for_machine(cores: usize, flush_each_line: bool) -> Self {
        if cores >= 2 && !flush_each_line {
            Self::Two
        } else {
            Self::One
        }
    }
}

/// Replays every line of `input` and writes what `options.format` asks for to `output`.
/// Returns the replayer, with its trackers and counts.
///
/// # Errors
/// [`Error::Input`] when reading fails, [`Error::Output`] when writing does. A line that is not
/// a valid log line is never an error: it is `rejected` and the replay goes on.
pub fn replay(
    input: impl BufRead + Send,
    output: &mut impl Write,
    options: &Options,
) -> Result<Replayer, Error> {
    let mut replayer = Replayer::new(options.config);
    if options.format != Format::Human {
        // Only the timeline shows when each session is read next.
        replayer = replayer.without_next_reads();
    }
    let mut scratch = Vec::new();
    let (max, threads) = (options.max_line_bytes, options.threads);
    for_each_record(input, &mut replayer, max, threads, |record| {
        match options.format {
            Format::Json => output::write_json(output, record, &mut scratch),
            Format::Human => output::write_human(output, record),
            Format::SummaryJson | Format::SummaryHuman => Ok(()),
        }?;
        if options.flush_each_line {
            output.flush()?;
        }
        Ok(())
    })?;
    let summary = match options.format {
        Format::SummaryJson => Summary::of(&replayer).write_json(output),
        Format::SummaryHuman => Summary::of(&replayer).write_human(output),
        Format::Json | Format::Human => Ok(()),
    };
    summary
        .and_then(|()| output.flush())
        .map_err(Error::Output)?;
    Ok(replayer)
}

/// Replays every line of `input` into `replayer`, handing each line's record to `on_record`.
/// Lines longer than `max_line_bytes` are rejected without being stored.
///
/// # Errors
/// [`Error::Input`] when reading fails, [`Error::Output`] with what `on_record` returns.
pub fn for_each_record(
    input: impl BufRead + Send,
    replayer: &mut Replayer,
    max_line_bytes: usize,
    threads: Threads,
    mut on_record: impl FnMut(&Record<'_>) -> io::Result<()>,
) -> Result<(), Error> {
    if threads == Threads::Two {
        return pipeline::for_each_prepared(input, max_line_bytes, |number, text, prepared| {
            on_record(&replayer.apply(number, text, prepared))
        });
    }
    let mut lines = lines::Lines::new(input, max_line_bytes);
    while let Some((number, line)) = lines.next_line().map_err(Error::Input)? {
        let record = replayer.replay(number, line.text(max_line_bytes));
        on_record(&record).map_err(Error::Output)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use hpp_session::TrackerConfig;

    use super::*;

    /// A simulated hostile log, with lines no replay accepts in between.
    fn hostile_log() -> Vec<u8> {
        let log = simulate::hostile_log(60, 5);
        let mut mixed = Vec::new();
        for (i, line) in log.split_inclusive(|&b| b == b'\n').enumerate() {
            mixed.extend_from_slice(line);
            match i % 97 {
                0 => mixed.extend_from_slice(b"{\"at\":\"\xff\"}\r\n"),
                1 => mixed.extend_from_slice(&[b'x'; 300]),
                2 => mixed.extend_from_slice(b"\n\n"),
                _ => {}
            }
        }
        mixed.extend_from_slice(b"{\"at\":1}"); // no final newline
        mixed
    }

    fn options(format: Format, threads: Threads) -> Options {
        Options {
            config: TrackerConfig::DEFAULT.into(),
            format,
            max_line_bytes: 256,
            flush_each_line: false,
            threads,
        }
    }

    #[test]
    fn two_threads_write_what_one_writes_whatever_the_batches() {
        let log = hostile_log();
        for format in [Format::Json, Format::Human, Format::SummaryJson] {
            let mut one = Vec::new();
            replay(&log[..], &mut one, &options(format, Threads::One))
                .ok()
                .unwrap();
            assert!(one.len() > 500, "{format:?}: {} bytes", one.len());
            // Tiny reader buffers end a batch at almost every line; large ones fill batches.
            for capacity in [7, 300, 1 << 16] {
                let input = io::BufReader::with_capacity(capacity, &log[..]);
                let mut two = Vec::new();
                replay(input, &mut two, &options(format, Threads::Two))
                    .ok()
                    .unwrap();
                assert!(one == two, "{format:?}, capacity {capacity}");
            }
        }
    }

    /// Lines every replay rejects, each naming a session no other line names: a 404 of a session
    /// with no known expiry, a callback stamped past the clock skew, an unreadable line, a
    /// body that is not a session object, and a read of a non-paid body with a numeric field.
    fn rejected_lines(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| match i % 5 {
                0 => format!(
                    r#"{{"at":"2019-05-13T14:54:10Z","not_found":true,"session_id":"ghost-{i}"}}"#
                ),
                1 => format!(
                    r#"{{"at":"2019-05-13T14:54:10Z","callback":{{"event_id":"e","session":{{"session_id":"future-{i}","status":"CANCELLED","updated_at":"2030-01-01T00:00:00Z"}}}}}}"#
                ),
                2 => format!("not json {i}"),
                3 => format!(r#"{{"at":"2019-05-13T14:54:10Z","read":[{i}]}}"#),
                _ => format!(
                    r#"{{"at":"2019-05-13T14:54:10Z","read":{{"session_id":"n-{i}","status":"IN_PROGRESS","updated_at":{i}}}}}"#
                ),
            })
            .collect()
    }

    /// The JSON records of the lines that were not rejected, without their line numbers, and the
    /// summary, of replaying `log`.
    fn accepted_and_summary(log: &[u8]) -> (Vec<serde_json::Value>, Vec<u8>) {
        let mut out = Vec::new();
        replay(log, &mut out, &options(Format::Json, Threads::One))
            .ok()
            .unwrap();
        let records = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice::<serde_json::Value>(l).unwrap())
            .filter(|r| r["outcome"] != "rejected")
            .map(|mut r| {
                r.as_object_mut().unwrap().remove("line");
                r
            })
            .collect();
        let mut summary = Vec::new();
        replay(
            log,
            &mut summary,
            &options(Format::SummaryJson, Threads::One),
        )
        .ok()
        .unwrap();
        (records, summary)
    }

    /// Rejected means no trace: adding rejected lines anywhere in a log changes nothing in the
    /// other lines' records, nor the summary but for its count of lines and rejections.
    #[test]
    fn rejected_lines_anywhere_leave_no_trace() {
        let log = simulate::hostile_log(40, 11);
        let (records, summary) = accepted_and_summary(&log);
        assert!(records.len() > 100);
        let summary: serde_json::Value = serde_json::from_slice(&summary).unwrap();
        for every in [1, 3, 17] {
            let mut mixed = Vec::new();
            let mut bad = rejected_lines(400).into_iter();
            let mut added = 0u64;
            for (i, line) in log.split_inclusive(|&b| b == b'\n').enumerate() {
                if i % every == 0
                    && let Some(b) = bad.next()
                {
                    mixed.extend_from_slice(b.as_bytes());
                    mixed.push(b'\n');
                    added += 1;
                }
                mixed.extend_from_slice(line);
            }
            let (mixed_records, mixed_summary) = accepted_and_summary(&mixed);
            assert_eq!(mixed_records, records, "every {every}");
            let mut mixed_summary: serde_json::Value =
                serde_json::from_slice(&mixed_summary).unwrap();
            for count in ["/lines", "/rejected/count"] {
                let n = mixed_summary.pointer(count).unwrap().as_u64().unwrap();
                let before = summary.pointer(count).unwrap();
                assert_eq!(n, before.as_u64().unwrap() + added, "{count}");
                *mixed_summary.pointer_mut(count).unwrap() = before.clone();
            }
            mixed_summary["rejected"]["first"] = summary["rejected"]["first"].clone();
            assert_eq!(mixed_summary, summary, "every {every}");
        }
    }

    /// A session that settled keeps no tracker: of a log of sessions that ended and one that
    /// did not, only the open one keeps its tracker, and the ended ones' lines read again
    /// (duplicates) ask for nothing and revive none.
    #[test]
    fn settled_sessions_keep_no_tracker() {
        use std::fmt::Write as _;
        let mut log = String::new();
        for i in 0..50 {
            let _ = writeln!(
                log,
                r#"{{"at":"2019-05-13T14:54:10Z","read":{{"session_id":"s{i}","status":"COMPLETED","updated_at":"2019-05-13T14:54:04.675Z","authorization_token":"t{i}"}}}}"#
            );
            let _ = writeln!(
                log,
                r#"{{"at":"2019-05-13T14:54:11Z","read":{{"session_id":"c{i}","status":"CANCELLED","updated_at":"2019-05-13T14:54:04.675Z"}}}}"#
            );
        }
        // One session stays open: its tracker is kept.
        let _ = writeln!(
            log,
            r#"{{"at":"2019-05-13T14:54:12Z","read":{{"session_id":"open","status":"WAITING","updated_at":"2019-05-13T14:54:04.675Z"}}}}"#
        );
        let twice = format!("{log}{log}");
        let replayer = replay(
            twice.as_bytes(),
            &mut Vec::new(),
            &options(Format::SummaryJson, Threads::One),
        )
        .ok()
        .unwrap();
        let open: Vec<&str> = replayer.trackers().map(|(id, _)| id).collect();
        assert_eq!(open, ["open"], "every other session settled");
        assert_eq!(
            replayer.actions[0] + replayer.actions[3],
            100,
            "asked once each"
        );
        let summary = Summary::of(&replayer);
        assert_eq!(summary.sessions, 101);
        assert_eq!(summary.by_status.get("COMPLETED"), Some(&50));
        assert_eq!(summary.by_status.get("CANCELLED"), Some(&50));
    }

    /// Settled sessions stay findable when others come back to life: a paid read after a
    /// cancel revives one in the middle of many, and every other one is still answered by its
    /// stand-in (its duplicate asks nothing and makes no new session).
    #[test]
    fn reviving_one_settled_session_leaves_the_others_found() {
        use std::fmt::Write as _;
        let cancel = |log: &mut String, i: u32| {
            let _ = writeln!(
                log,
                r#"{{"at":"2019-05-13T14:54:10Z","read":{{"session_id":"c{i}","status":"CANCELLED","updated_at":"2019-05-13T14:54:04.675Z"}}}}"#
            );
        };
        let mut log = String::new();
        for i in 0..40 {
            cancel(&mut log, i);
        }
        for i in [3, 17, 39, 0] {
            let _ = writeln!(
                log,
                r#"{{"at":"2019-05-13T14:55:00Z","read":{{"session_id":"c{i}","status":"COMPLETED","updated_at":"2019-05-13T14:54:30.000Z","authorization_token":"t{i}"}}}}"#
            );
        }
        for i in 0..40 {
            cancel(&mut log, i);
        }
        let replayer = replay(
            log.as_bytes(),
            &mut Vec::new(),
            &options(Format::SummaryJson, Threads::One),
        )
        .ok()
        .unwrap();
        let summary = Summary::of(&replayer);
        assert_eq!(summary.sessions, 40);
        assert_eq!(replayer.actions[0], 4, "four orders placed, once each");
        assert_eq!(replayer.actions[3], 40, "forty carts released, once each");
        assert_eq!(summary.conflicts.len(), 4);
    }

    /// Gives `data`, then fails.
    struct FailingAfter<'a>(&'a [u8]);

    impl io::Read for FailingAfter<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Err(io::Error::other("disk gone"));
            }
            self.0.read(buf)
        }
    }

    #[test]
    fn a_read_error_comes_after_every_line_before_it_on_either_side() {
        let log = hostile_log();
        for threads in [Threads::One, Threads::Two] {
            let input = io::BufReader::with_capacity(4096, FailingAfter(&log));
            let mut out = Vec::new();
            let mut replayer = Replayer::new(TrackerConfig::DEFAULT);
            let mut lines = 0;
            let result = for_each_record(input, &mut replayer, 256, threads, |record| {
                output::write_json(&mut out, record, &mut Vec::new())?;
                lines += 1;
                Ok(())
            });
            assert!(matches!(result, Err(Error::Input(e)) if e.to_string() == "disk gone"));
            // Every complete line was applied: all but the last, which has no newline.
            let newlines = memchr::memchr_iter(b'\n', &log).count();
            assert_eq!(lines, newlines, "{threads:?}");
        }
    }

    /// Accepts `room` bytes, then fails.
    struct FullAfter(usize);

    impl io::Write for FullAfter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if buf.len() > self.0 {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "full"));
            }
            self.0 -= buf.len();
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_write_error_stops_the_reader_too() {
        let log = hostile_log().repeat(20);
        for threads in [Threads::One, Threads::Two] {
            let input = io::BufReader::with_capacity(512, &log[..]);
            let result = replay(
                input,
                &mut FullAfter(200_000),
                &options(Format::Json, threads),
            );
            let e = result.err();
            assert!(
                matches!(&e, Some(Error::Output(e)) if e.kind() == io::ErrorKind::StorageFull),
                "{threads:?}: {e:?}"
            );
        }
    }

    #[test]
    fn two_threads_on_two_cores_unless_each_line_is_flushed() {
        assert_eq!(Threads::for_machine(2, false), Threads::Two);
        assert_eq!(Threads::for_machine(16, false), Threads::Two);
        assert_eq!(Threads::for_machine(1, false), Threads::One);
        assert_eq!(Threads::for_machine(2, true), Threads::One);
        assert_eq!(Threads::for_machine(1, true), Threads::One);
    }

    /// Records the threads it is read from.
    struct Watched<'a> {
        data: &'a [u8],
        threads: std::sync::Arc<std::sync::Mutex<Vec<std::thread::ThreadId>>>,
    }

    impl io::Read for Watched<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.threads
                .lock()
                .unwrap()
                .push(std::thread::current().id());
            self.data.read(buf)
        }
    }

    #[test]
    fn two_threads_read_on_the_second_and_apply_on_the_calling_one() {
        let log = hostile_log();
        for threads in [Threads::One, Threads::Two] {
            let read_on = std::sync::Arc::default();
            let input = Watched {
                data: &log,
                threads: std::sync::Arc::clone(&read_on),
            };
            let mut applied_on = Vec::new();
            let mut replayer = Replayer::new(TrackerConfig::DEFAULT);
            for_each_record(
                io::BufReader::new(input),
                &mut replayer,
                256,
                threads,
                |_| {
                    applied_on.push(std::thread::current().id());
                    Ok(())
                },
            )
            .ok()
            .unwrap();
            let here = std::thread::current().id();
            assert!(applied_on.len() > 1000 && applied_on.iter().all(|&t| t == here));
            let read_on = read_on.lock().unwrap();
            assert!(!read_on.is_empty());
            let read_here = read_on.iter().all(|&t| t == here);
            assert_eq!(read_here, threads == Threads::One, "{threads:?}");
        }
    }

    #[test]
    fn only_a_watched_timeline_is_flushed_line_by_line() {
        assert!(Format::Human.flush_each_line(true));
        assert!(!Format::Human.flush_each_line(false));
        for format in [Format::Json, Format::SummaryJson, Format::SummaryHuman] {
            assert!(!format.flush_each_line(true));
            assert!(!format.flush_each_line(false));
        }
    }
}

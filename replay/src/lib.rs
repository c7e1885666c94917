//! The engine of `hpp-replay`: replaying a log of what an integrator received from Klarna
//! (status callbacks, reads, 404s; one JSON object a line) through [`hpp_session::Tracker`]s,
//! one per session, and writing what happened: per line (JSON or a timeline) or as a summary.
//!
//! The binary (`src/main.rs`) only parses arguments and opens files; everything here works on
//! any `BufRead` and `Write`, so benchmarks and tests run the same code.

pub mod check;
pub mod lines;
pub mod output;
pub mod replayer;
pub mod simulate;
pub mod summary;

use std::io::{self, BufRead, Write};

use hpp_session::TrackerConfig;

pub use replayer::{Record, Replayer};
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
    /// The trackers' configuration (trust, reads).
    pub config: TrackerConfig,
    /// What to write.
    pub format: Format,
    /// The longest line accepted, in bytes; longer lines are rejected without being stored.
    pub max_line_bytes: usize,
    /// Flush after every line (a person is watching).
    pub flush_each_line: bool,
}

/// Where a replay failed.
#[derive(Debug)]
pub enum Error {
    /// The input could not be read.
    Input(io::Error),
    /// The output could not be written.
    Output(io::Error),
}

/// Replays every line of `input` and writes what `options.format` asks for to `output`.
/// Returns the replayer, with its trackers and counts.
///
/// # Errors
/// [`Error::Input`] when reading fails, [`Error::Output`] when writing does. A line that is not
/// a valid log line is never an error: it is `rejected` and the replay goes on.
pub fn replay(
    input: impl BufRead,
    output: &mut impl Write,
    options: &Options,
) -> Result<Replayer, Error> {
    let mut replayer = Replayer::new(options.config);
    let mut scratch = Vec::new();
    for_each_record(input, &mut replayer, options.max_line_bytes, |record| {
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
///
/// # Errors
/// [`Error::Input`] when reading fails, [`Error::Output`] with what `on_record` returns.
pub fn for_each_record(
    input: impl BufRead,
    replayer: &mut Replayer,
    max_line_bytes: usize,
    mut on_record: impl FnMut(&Record<'_>) -> io::Result<()>,
) -> Result<(), Error> {
    let mut lines = lines::Lines::new(input, max_line_bytes);
    while let Some((number, line)) = lines.next_line().map_err(Error::Input)? {
        let text = match line {
            lines::Line::Text(bytes) => {
                std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))
            }
            lines::Line::TooLong { len } => Err(format!(
                "line of {len} bytes is longer than the {max_line_bytes} accepted"
            )),
        };
        let record = replayer.replay(number, text);
        on_record(&record).map_err(Error::Output)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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

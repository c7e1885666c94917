//! `hpp-replay check LOG EXPECTED`: replays a log and compares the merchant actions asked for
//! in each session with the expected ones (as `hpp-replay simulate` writes them).

use std::collections::HashMap;
use std::io::{self, BufRead, Write};

use hpp_session::sim::oracle::Expected;
use serde::Deserialize;
use serde_json::Value;

use crate::simulate::action_json;
use crate::{Config, Error, Replayer, Threads, for_each_record};

/// How many differing sessions the report lists.
pub const LISTED: usize = 20;

/// One line of the expected file.
#[derive(Deserialize)]
struct ExpectedLine {
    session_id: String,
    actions: Vec<Value>,
}

/// A session whose actions differ from the expected ones.
#[derive(Debug, PartialEq, Eq)]
pub struct Difference {
    /// The session.
    pub session_id: String,
    /// What was expected.
    pub expected: Vec<Value>,
    /// What the replay asked for.
    pub actual: Vec<Value>,
}

/// What a check found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Sessions in the expected file.
    pub expected: u64,
    /// Sessions whose actions matched, in kind, data and count.
    pub matched: u64,
    /// Sessions that differ (expected ones missing from the log included), and sessions in the
    /// log that were not expected at all; the first [`LISTED`] in full.
    pub differing: u64,
    /// The first differing sessions.
    pub listed: Vec<Difference>,
    /// Log lines rejected by the replay.
    pub rejected_lines: u64,
}

impl CheckReport {
    /// Writes the report for a person.
    ///
    /// # Errors
    /// The writer's.
    pub fn write_human(&self, out: &mut impl Write) -> io::Result<()> {
        writeln!(
            out,
            "{} sessions expected: {} matched, {} differ; {} log lines rejected",
            self.expected, self.matched, self.differing, self.rejected_lines
        )?;
        for d in &self.listed {
            writeln!(out, "  {}", d.session_id)?;
            writeln!(out, "    expected: {}", Value::from(d.expected.clone()))?;
            writeln!(out, "    replayed: {}", Value::from(d.actual.clone()))?;
        }
        Ok(())
    }
}

/// Replays `log` with `config` on `threads` and compares each session's merchant actions with
/// `expected`.
///
/// # Errors
/// [`Error::Input`] when either input cannot be read, or an expected line is not of the form
/// `{"session_id": ..., "actions": [...]}`.
pub fn check(
    log: impl BufRead + Send,
    expected: impl BufRead,
    config: Config,
    max_line_bytes: usize,
    threads: Threads,
) -> Result<CheckReport, Error> {
    let mut want: HashMap<String, Vec<Value>> = HashMap::new();
    for (n, line) in expected.lines().enumerate() {
        let line = line.map_err(Error::Input)?;
        let parsed: ExpectedLine = serde_json::from_str(&line).map_err(|e| {
            Error::Input(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("expected actions, line {}: {e}", n + 1),
            ))
        })?;
        want.insert(parsed.session_id, parsed.actions);
    }
    let mut report = CheckReport {
        expected: want.len() as u64,
        ..CheckReport::default()
    };
    let mut got: HashMap<String, Vec<Value>> = HashMap::new();
    let mut replayer = Replayer::new(config);
    for_each_record(log, &mut replayer, max_line_bytes, threads, |record| {
        let (Ok((r, _)), Some(id)) = (&record.result, record.session_id) else {
            return Ok(());
        };
        let actions = r.actions.iter().filter_map(Expected::of);
        let mut actions = actions.map(|a| action_json(&a)).peekable();
        if actions.peek().is_some() {
            got.entry(id.to_owned()).or_default().extend(actions);
        }
        Ok(())
    })?;
    report.rejected_lines = replayer.rejected;
    let mut differing: Vec<Difference> = Vec::new();
    for (session_id, expected) in want {
        let actual = got.remove(&session_id).unwrap_or_default();
        if actual == expected {
            report.matched += 1;
        } else {
            differing.push(Difference {
                session_id,
                expected,
                actual,
            });
        }
    }
    differing.extend(got.into_iter().map(|(session_id, actual)| Difference {
        session_id,
        expected: Vec::new(),
        actual,
    }));
    report.differing = differing.len() as u64;
    differing.sort_by(|a, b| a.session_id.cmp(&b.session_id));
    differing.truncate(LISTED);
    report.listed = differing;
    Ok(report)
}

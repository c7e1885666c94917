//! `hpp-replay check LOG EXPECTED`: replays a log and compares the merchant actions asked for
//! in each session with the expected ones (as `hpp-replay simulate` writes them).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::io::{self, BufRead, Seek, SeekFrom, Write};

use hashbrown::HashTable;

use hpp_sim::oracle::Expected;
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

/// One session's tally: the digest of its expected actions less that of its replayed ones
/// (equal lists leave zero), and whether the expected file lists it. 16 bytes a session.
struct Tally {
    /// The session's key, with [`EXPECTED`] set when the expected file lists it.
    key: u64,
    digest: u64,
}

/// The bit of [`Tally::key`] that says the expected file lists the session.
const EXPECTED: u64 = 1 << 63;

impl Tally {
    fn expected(&self) -> bool {
        self.key & EXPECTED != 0
    }

    fn differs(&self) -> bool {
        self.digest != 0
    }
}

/// The tallies of a check, by session: a dense vector, and a table of indexes into it.
struct Tallies {
    hasher: RandomState,
    index: HashTable<u32>,
    all: Vec<Tally>,
}

impl Tallies {
    fn with_capacity(sessions: usize) -> Self {
        Self {
            hasher: RandomState::new(),
            index: HashTable::with_capacity(sessions),
            all: Vec::with_capacity(sessions),
        }
    }

    /// The key of session `id`: a 63-bit keyed hash. Two sessions that share one (about one
    /// chance in 2^63 per pair) add their tallies, so that a difference in either still shows.
    fn key(&self, id: &str) -> u64 {
        self.hasher.hash_one(id) & !EXPECTED
    }

    /// The tally of `key`, made when new.
    fn get(&mut self, key: u64) -> &mut Tally {
        let all = &mut self.all;
        let found = self
            .index
            .find(key, |&i| {
                all.get(i as usize)
                    .is_some_and(|t| t.key & !EXPECTED == key)
            })
            .map(|&i| i as usize);
        let i = found.unwrap_or_else(|| {
            let i = all.len();
            all.push(Tally { key, digest: 0 });
            let at = u32::try_from(i).unwrap_or(u32::MAX);
            self.index.insert_unique(key, at, |&j| {
                all.get(j as usize).map_or(0, |t| t.key & !EXPECTED)
            });
            i
        });
        &mut all[i]
    }
}

/// The digest of one action in the form the expected file writes it (FNV-1a, never zero: an
/// action always counts).
fn digest(action: &Value) -> u64 {
    let h = action
        .to_string()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    h.max(1)
}

/// How many lines `input` has; it is read again from its start afterwards.
fn count_lines(input: &mut (impl BufRead + Seek)) -> Result<usize, Error> {
    let mut lines = 0;
    loop {
        let buf = input.fill_buf().map_err(Error::Input)?;
        if buf.is_empty() {
            break;
        }
        lines += memchr::memchr_iter(b'\n', buf).count();
        let n = buf.len();
        input.consume(n);
    }
    input.seek(SeekFrom::Start(0)).map_err(Error::Input)?;
    Ok(lines + 1)
}

/// Reads the expected file, line by line, handing each line's session and actions to `each`.
fn for_each_expected(
    expected: &mut impl BufRead,
    mut each: impl FnMut(ExpectedLine) -> Result<(), Error>,
) -> Result<(), Error> {
    for (n, line) in expected.lines().enumerate() {
        let line = line.map_err(Error::Input)?;
        let parsed: ExpectedLine = serde_json::from_str(&line).map_err(|e| {
            Error::Input(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("expected actions, line {}: {e}", n + 1),
            ))
        })?;
        each(parsed)?;
    }
    Ok(())
}

/// Replays `log`, handing each record's session and merchant actions (in the expected file's
/// form) to `each`. Returns the rejected line count.
fn for_each_replayed(
    log: impl BufRead + Send,
    config: Config,
    max_line_bytes: usize,
    threads: Threads,
    mut each: impl FnMut(&str, Vec<Value>),
) -> Result<u64, Error> {
    let mut replayer = Replayer::new(config);
    for_each_record(log, &mut replayer, max_line_bytes, threads, |record| {
        let (Ok((r, _)), Some(id)) = (&record.result, record.session_id) else {
            return Ok(());
        };
        let actions: Vec<Value> = r
            .actions
            .iter()
            .filter_map(Expected::of)
            .map(|a| action_json(&a))
            .collect();
        if !actions.is_empty() {
            each(id, actions);
        }
        Ok(())
    })?;
    Ok(replayer.rejected)
}

/// Replays `log` with `config` on `threads` and compares each session's merchant actions with
/// `expected`.
///
/// Sessions are compared by digests (16 bytes a session, whatever its actions), so a check of
/// millions of sessions holds little more than the replay's own memory. When sessions differ,
/// both inputs are read a second time for the first [`LISTED`] of them, in full: hence `Seek`.
///
/// # Errors
/// [`Error::Input`] when either input cannot be read, an expected line is not of the form
/// `{"session_id": ..., "actions": [...]}`, or a session is listed twice.
pub fn check(
    mut log: impl BufRead + Seek + Send,
    mut expected: impl BufRead + Seek,
    config: Config,
    max_line_bytes: usize,
    threads: Threads,
) -> Result<CheckReport, Error> {
    // Counted first, so that the tallies are made at their size: growing a table holds the old
    // one and the new one at once.
    let lines = count_lines(&mut expected)?;
    let mut tallies = Tallies::with_capacity(lines);
    let mut report = CheckReport::default();
    for_each_expected(&mut expected, |line| {
        let key = tallies.key(&line.session_id);
        let tally = tallies.get(key);
        if tally.expected() {
            return Err(Error::Input(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "expected actions: session {} is listed twice",
                    line.session_id
                ),
            )));
        }
        tally.key |= EXPECTED;
        for action in &line.actions {
            tally.digest = tally.digest.wrapping_add(digest(action));
        }
        report.expected += 1;
        Ok(())
    })?;
    // Sessions the log asked actions of but the expected file does not list, by id (a log that
    // asks for actions nobody expected is what a check is for: their number stays small).
    let mut unexpected: HashMap<u64, String> = HashMap::new();
    report.rejected_lines =
        for_each_replayed(&mut log, config, max_line_bytes, threads, |id, actions| {
            let key = tallies.key(id);
            let tally = tallies.get(key);
            for action in &actions {
                tally.digest = tally.digest.wrapping_sub(digest(action));
            }
            if !tally.expected() {
                unexpected.entry(key).or_insert_with(|| id.to_owned());
            }
        })?;
    let all = tallies.all.iter();
    report.matched = all.filter(|t| t.expected() && !t.differs()).count() as u64;
    report.differing = tallies.all.iter().filter(|t| t.differs()).count() as u64;
    if report.differing > 0 {
        report.listed = listed(
            &mut log,
            &mut expected,
            &tallies,
            &unexpected,
            config,
            threads,
            max_line_bytes,
        )?;
    }
    Ok(report)
}

/// The first [`LISTED`] differing sessions by id, in full: a second read of both inputs.
fn listed(
    log: &mut (impl BufRead + Seek + Send),
    expected: &mut (impl BufRead + Seek),
    tallies: &Tallies,
    unexpected: &HashMap<u64, String>,
    config: Config,
    threads: Threads,
    max_line_bytes: usize,
) -> Result<Vec<Difference>, Error> {
    let rewind = |r: &mut dyn Seek| r.seek(SeekFrom::Start(0)).map(drop).map_err(Error::Input);
    let differing: std::collections::HashSet<u64> = tallies
        .all
        .iter()
        .filter(|t| t.differs())
        .map(|t| t.key & !EXPECTED)
        .collect();
    let mut ids: Vec<(String, Vec<Value>)> = unexpected
        .iter()
        .filter(|(k, _)| differing.contains(k))
        .map(|(_, id)| (id.clone(), Vec::new()))
        .collect();
    rewind(expected)?;
    for_each_expected(expected, |line| {
        if differing.contains(&tallies.key(&line.session_id)) {
            ids.push((line.session_id, line.actions));
        }
        Ok(())
    })?;
    ids.sort_by(|a, b| a.0.cmp(&b.0));
    ids.truncate(LISTED);
    let mut actual: HashMap<String, Vec<Value>> =
        ids.iter().map(|(id, _)| (id.clone(), Vec::new())).collect();
    rewind(log)?;
    for_each_replayed(log, config, max_line_bytes, threads, |id, actions| {
        if let Some(got) = actual.get_mut(id) {
            got.extend(actions);
        }
    })?;
    Ok(ids
        .into_iter()
        .map(|(session_id, expected)| Difference {
            actual: actual.remove(&session_id).unwrap_or_default(),
            session_id,
            expected,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;
    use std::io::Cursor;

    use hpp_session::TrackerConfig;

    use super::*;

    const PAID: &str = r#"{"at":"2019-05-13T14:54:10Z","read":{"session_id":"paid","status":"COMPLETED","updated_at":"2019-05-13T14:54:04.675Z","authorization_token":"tok"}}
{"at":"2019-05-13T14:54:10Z","read":{"session_id":"stray","status":"CANCELLED","updated_at":"2019-05-13T14:54:04.675Z"}}
{"at":"2019-05-13T14:54:10Z","read":{"session_id":"gone","status":"WAITING","updated_at":"2019-05-13T14:54:04.675Z"}}
"#;

    fn run(expected: &str) -> Result<CheckReport, Error> {
        check(
            Cursor::new(PAID),
            Cursor::new(expected.to_owned()),
            TrackerConfig::DEFAULT.into(),
            1 << 20,
            Threads::One,
        )
    }

    /// Matches, a wrong token, a session nobody expected and one that asked nothing: each found
    /// by its digest, and listed in full from a second read.
    #[test]
    fn differences_are_found_by_digest_and_listed_in_full() {
        let good = r#"{"session_id":"paid","actions":[{"kind":"place_order","authorization_token":"tok","place_by":"2019-05-13T15:54:04.675Z"}]}
{"session_id":"stray","actions":[{"kind":"release","reason":"CANCELLED"}]}
"#;
        let r = run(good).unwrap();
        assert_eq!((r.expected, r.matched, r.differing), (2, 2, 0));
        assert!(r.listed.is_empty());

        let wrong = r#"{"session_id":"paid","actions":[{"kind":"place_order","authorization_token":"other","place_by":"2019-05-13T15:54:04.675Z"}]}
{"session_id":"gone","actions":[{"kind":"release","reason":"EXPIRED"}]}
"#;
        let r = run(wrong).unwrap();
        assert_eq!((r.expected, r.matched, r.differing), (2, 0, 3));
        let ids: Vec<&str> = r.listed.iter().map(|d| d.session_id.as_str()).collect();
        assert_eq!(ids, ["gone", "paid", "stray"]);
        assert_eq!(r.listed[0].actual, Vec::<Value>::new());
        assert_eq!(r.listed[1].expected[0]["authorization_token"], "other");
        assert_eq!(r.listed[1].actual[0]["authorization_token"], "tok");
        assert!(r.listed[2].expected.is_empty());
        assert_eq!(r.listed[2].actual[0]["reason"], "CANCELLED");

        // Far more sessions in the log than the expected file made room for: the tallies grow,
        // and a session's second action still finds its first one's tally.
        let mut log = String::new();
        // Every session's first line, then every session's second: the second ones look up
        // tallies made before the table grew.
        for second in [false, true] {
            for i in 0..200 {
                let body = if second {
                    format!(
                        r#"{{"session_id":"s{i}","status":"COMPLETED","updated_at":"2019-05-13T14:54:05.000Z","authorization_token":"t{i}"}}"#
                    )
                } else {
                    format!(
                        r#"{{"session_id":"s{i}","status":"COMPLETED","updated_at":"2019-05-13T14:54:04.675Z"}}"#
                    )
                };
                let _ = writeln!(log, r#"{{"at":"2019-05-13T14:54:10Z","read":{body}}}"#);
            }
        }
        let r = check(
            Cursor::new(log),
            Cursor::new(String::new()),
            TrackerConfig::DEFAULT.into(),
            1 << 20,
            Threads::One,
        )
        .unwrap();
        assert_eq!((r.expected, r.matched, r.differing), (0, 0, 200));
        assert_eq!(r.listed.len(), LISTED);
        assert_eq!(r.listed[0].actual.len(), 2, "{:?}", r.listed[0]);

        let twice = r#"{"session_id":"paid","actions":[]}
{"session_id":"paid","actions":[]}
"#;
        assert!(matches!(run(twice), Err(Error::Input(e)) if e.to_string().contains("twice")));
    }
}

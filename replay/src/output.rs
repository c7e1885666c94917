//! Writing records: one JSON object per line, or a timeline for a person.

use std::io::{self, Write};

use hpp_session::Action;
use serde::Serialize;
use serde::ser::{SerializeSeq, Serializer};

use crate::replayer::Record;

/// The record's actions as a JSON array.
struct JsonActions<'r, 'a>(&'r Record<'a>);

impl Serialize for JsonActions<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(None)?;
        if let Ok((report, _)) = &self.0.result {
            for action in &report.actions {
                seq.serialize_element(action)?;
            }
        }
        seq.end()
    }
}

/// Writes `record` as one JSON object and a newline:
/// `{"line", "session_id", "outcome", "status", "claim"?, "actions", "error"?}`.
///
/// The object's frame and keys are written as the fixed bytes they are, and every value through
/// `string` (below) or `serde_json`: `serde_json` writes a derived struct in a dozen small writes,
/// each key escaped anew, which cost about a quarter of a replay's instructions. The test
/// `writes_what_serde_json_writes_for_every_record` compares every byte with `serde_json`'s
/// derived form of the same record (`JsonRecord` in the tests).
///
/// The line is built in `scratch` (cleared here; reuse it across lines) and written with one
/// call.
///
/// # Errors
/// The writer's.
pub fn write_json(
    out: &mut impl Write,
    record: &Record<'_>,
    scratch: &mut Vec<u8>,
) -> io::Result<()> {
    let (outcome, error) = match &record.result {
        Ok((report, _)) => (report.outcome.as_str(), None),
        Err(e) => ("rejected", Some(e.as_str())),
    };
    scratch.clear();
    scratch.extend_from_slice(b"{\"line\":");
    serde_json::to_writer(&mut *scratch, &record.line)?;
    scratch.extend_from_slice(b",\"session_id\":");
    optional_string(scratch, record.session_id)?;
    scratch.extend_from_slice(b",\"outcome\":");
    name(scratch, outcome);
    scratch.extend_from_slice(b",\"status\":");
    match record.status {
        Some(status) => name(scratch, status),
        None => scratch.extend_from_slice(b"null"),
    }
    if let Some(claim) = record.claim {
        scratch.extend_from_slice(b",\"claim\":");
        name(scratch, claim);
    }
    scratch.extend_from_slice(b",\"actions\":");
    match &record.result {
        Ok((observed, _)) if !observed.actions.is_empty() => {
            serde_json::to_writer(&mut *scratch, &JsonActions(record))?;
        }
        _ => scratch.extend_from_slice(b"[]"),
    }
    if let Some(error) = error {
        scratch.extend_from_slice(b",\"error\":");
        string(scratch, error)?;
    }
    scratch.extend_from_slice(b"}\n");
    out.write_all(scratch)
}

/// Writes `s` as a JSON string, as `serde_json` writes it: between quotes as it is when no byte
/// needs escaping (ids and wire names, nearly always), else through `serde_json`.
fn string(scratch: &mut Vec<u8>, s: &str) -> io::Result<()> {
    if needs_escaping(s) {
        Ok(serde_json::to_writer(scratch, s)?)
    } else {
        scratch.push(b'"');
        scratch.extend_from_slice(s.as_bytes());
        scratch.push(b'"');
        Ok(())
    }
}

/// Whether `serde_json` writes `s` otherwise than as it is between quotes: when it holds a
/// control character, `"` or `\\` (`needs_escaping_agrees_with_serde_json`).
fn needs_escaping(s: &str) -> bool {
    // Without an early exit, so that the compiler checks many bytes at a time.
    let escaped = |b| b < 0x20 || b == b'"' || b == b'\\';
    s.bytes().fold(0u8, |any, b| any | u8::from(escaped(b))) != 0
}

/// Writes one of the crate's names (an outcome, a wire status, `EXPIRED`) as a JSON string:
/// upper- or lower-case letters and `_`, which JSON writes as they are (`names_need_no_escaping`).
fn name(scratch: &mut Vec<u8>, name: &'static str) {
    debug_assert!(!needs_escaping(name), "{name}");
    scratch.push(b'"');
    scratch.extend_from_slice(name.as_bytes());
    scratch.push(b'"');
}

/// Writes `s` as a JSON string, or `null`.
fn optional_string(scratch: &mut Vec<u8>, s: Option<&str>) -> io::Result<()> {
    if let Some(s) = s {
        string(scratch, s)
    } else {
        scratch.extend_from_slice(b"null");
        Ok(())
    }
}

/// An action as the timeline shows it.
fn describe(action: &Action) -> String {
    match action {
        Action::PlaceOrder {
            authorization_token,
            place_by,
        } => {
            // The timeline is where the merchant reads what to do: the token is shown on purpose.
            let token = authorization_token.expose_secret();
            match place_by {
                Some(at) => format!("PLACE ORDER with {token} by {at}"),
                None => format!("PLACE ORDER with {token} at once"),
            }
        }
        Action::RecordOrder {
            order_id,
            klarna_reference: Some(reference),
        } => format!("RECORD ORDER {order_id} ({reference})"),
        Action::RecordOrder { order_id, .. } => format!("RECORD ORDER {order_id}"),
        Action::ReviewCompletion { problem } => {
            format!("REVIEW: paid, but the data cannot be acted on ({problem})")
        }
        Action::Release { reason } => format!("RELEASE CART ({reason})"),
        other => other.to_string().to_uppercase(),
    }
}

/// Writes `record` as the timeline's lines: number, session, status, what happened, then the
/// actions and when to read next.
///
/// # Errors
/// The writer's.
pub fn write_human(out: &mut impl Write, record: &Record<'_>) -> io::Result<()> {
    let id = record
        .session_id
        .map_or("-", |id| id.get(..8).unwrap_or(id));
    let status = record.status.unwrap_or("-");
    let pad = "";
    match &record.result {
        Err(e) => writeln!(
            out,
            "{:>3}  {id:<8}  {status:<15}  rejected: {e}",
            record.line
        )?,
        Ok((report, _)) => writeln!(
            out,
            "{:>3}  {id:<8}  {status:<15}  {}",
            record.line, report.outcome
        )?,
    }
    if let Some(claim) = record.claim {
        writeln!(out, "{pad:>30}   claimed, unconfirmed: {claim}")?;
    }
    if let Ok((report, _)) = &record.result {
        for action in &report.actions {
            writeln!(out, "{pad:>30}-> {}", describe(action))?;
        }
        match report.next_read {
            Some(at) => writeln!(out, "{pad:>30}   next read at {at}")?,
            None => writeln!(out, "{pad:>30}   no more reads needed")?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replayer::Replayer;
    use hpp_session::{Status, TrackerConfig};
    use proptest::prelude::*;

    /// The names written without a look at their bytes: every wire status, every outcome's
    /// name (`Outcome::as_str`), and the replay's own.
    #[test]
    fn names_need_no_escaping() {
        let outcomes = [
            "advanced",
            "claimed",
            "duplicate",
            "stale",
            "conflict",
            "refuted",
            "expired",
            "redirected",
            "disable_refused",
        ];
        let statuses = Status::ALL.map(Status::as_str);
        for name in outcomes
            .iter()
            .chain(&statuses)
            .chain(&["EXPIRED", "rejected"])
        {
            assert!(!needs_escaping(name), "{name}");
            assert_eq!(serde_json::to_string(name).unwrap(), format!("\"{name}\""));
        }
    }

    /// The oracle: a record as `serde_json` writes a derived struct.
    #[derive(Serialize)]
    struct JsonRecord<'r, 'a> {
        line: u64,
        session_id: Option<&'a str>,
        outcome: &'static str,
        status: Option<&'static str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        claim: Option<&'static str>,
        actions: JsonActions<'r, 'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'r str>,
    }

    fn oracle(record: &Record<'_>) -> Vec<u8> {
        let (outcome, error) = match &record.result {
            Ok((report, _)) => (report.outcome.as_str(), None),
            Err(e) => ("rejected", Some(e.as_str())),
        };
        let json = JsonRecord {
            line: record.line,
            session_id: record.session_id,
            outcome,
            status: record.status,
            claim: record.claim,
            actions: JsonActions(record),
            error,
        };
        let mut line = serde_json::to_vec(&json).unwrap();
        line.push(b'\n');
        line
    }

    fn written(record: &Record<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        // A dirty scratch buffer: `write_json` clears it.
        write_json(&mut out, record, &mut b"left over".to_vec()).unwrap();
        out
    }

    /// A simulated log with forged callbacks and failed reads, and lines of every kind the
    /// replay rejects, with quotes, backslashes and control characters in their errors.
    fn log() -> Vec<u8> {
        let mut log = crate::simulate::hostile_log(80, 9);
        log.extend_from_slice(
            br#"{"at":"2019-05-13T14:51:43.507Z","not_found":true,"session_id":"a\"b"}
{"at":"2019-05-13T14:51:43.507Z","not_found":true,"session_id":"x","extra":"\\\u0001"}
{"at":"2019-05-13T14:51:43.507Z","read":{"session_id":"x","status":"WAITING"}}
{"at":"yesterday","not_found":true,"session_id":"\u00e9\u2028"}
{"at":"2019-05-13T14:51:43.507Z","read":{"session_id":"s","status":"DONE\t"}}
not json "at all" \ here
{"at":"2019-05-13T14:51:43.507Z","session_id":"a","read":{"session_id":"b","status":"WAITING"}}
{"at":"2019-05-13T14:51:43.507Z","session_id":"\"q\"","read":{"session_id":"b"}}
{"at":"2019-05-13T14:51:43.507Z","session_id":"q","read":{"session_id":"\\"}}
"#,
        );
        log
    }

    #[test]
    fn writes_what_serde_json_writes_for_every_record() {
        let log = log();
        let mut replayer = Replayer::new(TrackerConfig::DEFAULT);
        let (mut actions, mut claims, mut errors, mut escaped) = (0, 0, 0, 0);
        for (i, line) in log.split(|&b| b == b'\n').enumerate() {
            let text = std::str::from_utf8(line).map_err(|e| e.to_string());
            let record = replayer.replay(i as u64 + 1, text);
            actions += usize::from(matches!(&record.result, Ok((r, _)) if !r.actions.is_empty()));
            claims += usize::from(record.claim.is_some());
            errors += usize::from(record.result.is_err());
            let expected = oracle(&record);
            escaped += usize::from(expected.contains(&b'\\'));
            assert_eq!(
                String::from_utf8_lossy(&written(&record)),
                String::from_utf8_lossy(&expected),
                "line {}",
                i + 1
            );
        }
        // Every part of the object was written, and strings that need escaping.
        assert!(
            actions > 50 && claims > 50,
            "{actions} actions, {claims} claims"
        );
        assert!(
            errors > 5 && escaped > 5,
            "{errors} errors, {escaped} escaped"
        );
    }

    /// Any strings, printable ASCII, and mostly ASCII with control characters, quotes and
    /// backslashes, Latin-1 and U+2028.
    fn strings() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[ -~]{0,40}",
            "[\\x00-\\x7f\u{80}-\u{ff}\u{2028}]{0,40}"
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5_000))]

        #[test]
        fn a_string_is_written_as_serde_json_writes_it(
            s in strings()
        ) {
            let mut scratch = b"x".to_vec();
            string(&mut scratch, &s).unwrap();
            let mut expected = b"x".to_vec();
            serde_json::to_writer(&mut expected, &s).unwrap();
            prop_assert_eq!(scratch, expected);
        }

        #[test]
        fn needs_escaping_agrees_with_serde_json(
            s in strings()
        ) {
            let as_it_is = format!("\"{s}\"");
            let written = serde_json::to_string(&s).unwrap();
            prop_assert_eq!(needs_escaping(&s), written != as_it_is, "{}", written);
        }

        #[test]
        fn a_rejected_record_is_written_as_serde_json_writes_it(
            line: u64,
            session_id in proptest::option::of(any::<String>()),
            error: String,
            status in proptest::option::of("[A-Z_]{1,15}"),
        ) {
            let status = status.map(|s| &*s.leak());
            let record = Record {
                line,
                session_id: session_id.as_deref(),
                result: Err(error),
                status,
                claim: status,
            };
            prop_assert_eq!(written(&record), oracle(&record));
        }
    }
}

//! Writing records: one JSON object per line, or a timeline for a person.

use std::io::{self, Write};

use hpp_session::Action;
use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};

use crate::replayer::Record;

/// An action as the replay tool's JSON shows it: `{"kind": ..., fields}`.
struct JsonAction<'a>(Action<'a>);

impl Serialize for JsonAction<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("kind", self.0.kind().as_str())?;
        match self.0 {
            Action::PlaceOrder {
                authorization_token,
                place_by,
            } => {
                map.serialize_entry("authorization_token", authorization_token.as_str())?;
                map.serialize_entry("place_by", &place_by)?;
            }
            Action::RecordOrder {
                order_id,
                klarna_reference,
            } => {
                map.serialize_entry("order_id", order_id.as_str())?;
                if let Some(reference) = klarna_reference {
                    map.serialize_entry("klarna_reference", reference.as_str())?;
                }
            }
            Action::ReviewCompletion { problem } => {
                map.serialize_entry("problem", &problem.to_string())?;
            }
            Action::Release { reason } => map.serialize_entry("reason", reason.as_str())?,
            Action::ReadSession => {}
        }
        map.end()
    }
}

/// The record's actions as a JSON array.
struct JsonActions<'r, 'a>(&'r Record<'a>);

impl Serialize for JsonActions<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(None)?;
        if let Ok((report, _)) = &self.0.result {
            for action in report.actions() {
                seq.serialize_element(&JsonAction(action))?;
            }
        }
        seq.end()
    }
}

/// One line of `--json` output.
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

/// Writes `record` as one JSON object and a newline:
/// `{"line", "session_id", "outcome", "status", "claim"?, "actions", "error"?}`.
///
/// The line is first built in `scratch` (cleared here; reuse it across lines) and then written
/// with one call: `serde_json` writes a record in a dozen small pieces, and handing each to a
/// buffered writer costs more than building the line in memory (about 15 % of a replay).
///
/// # Errors
/// The writer's.
pub fn write_json(
    out: &mut impl Write,
    record: &Record<'_>,
    scratch: &mut Vec<u8>,
) -> io::Result<()> {
    let (outcome, error) = match &record.result {
        Ok((report, _)) => (report.outcome().as_str(), None),
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
    scratch.clear();
    serde_json::to_writer(&mut *scratch, &json)?;
    scratch.push(b'\n');
    out.write_all(scratch)
}

/// An action as the timeline shows it.
fn describe(action: Action<'_>) -> String {
    match action {
        Action::PlaceOrder {
            authorization_token,
            place_by,
        } => format!("PLACE ORDER with {authorization_token} by {place_by}"),
        Action::RecordOrder {
            order_id,
            klarna_reference: Some(reference),
        } => format!("RECORD ORDER {order_id} ({reference})"),
        Action::RecordOrder { order_id, .. } => format!("RECORD ORDER {order_id}"),
        Action::ReviewCompletion { problem } => {
            format!("REVIEW: paid, but the data cannot be acted on ({problem})")
        }
        Action::Release { reason } => format!("RELEASE CART ({reason})"),
        Action::ReadSession => "READ SESSION now (confirm the callback)".to_owned(),
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
            record.line,
            report.outcome()
        )?,
    }
    if let Some(claim) = record.claim {
        writeln!(out, "{pad:>30}   claimed, unconfirmed: {claim}")?;
    }
    if let Ok((report, now)) = &record.result {
        for action in report.actions() {
            writeln!(out, "{pad:>30}-> {}", describe(action))?;
        }
        match report.next_read(*now) {
            Some(at) => writeln!(out, "{pad:>30}   next read at {at}")?,
            None => writeln!(out, "{pad:>30}   no more reads needed")?,
        }
    }
    Ok(())
}

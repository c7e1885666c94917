//! Replays a log of what an integrator received from Klarna and prints the timeline: per line,
//! what happened, the resulting status, the actions to take, and when to read next.
//!
//! ```text
//! cargo run --example replay -- [FILE] [--json] [--trust hint|verified]
//! cargo run --example replay -- --diagram
//! ```
//!
//! Without FILE it replays the embedded sample (`examples/sample.jsonl`): two sessions
//! interleaved, with a lost callback, duplicates, a late stale read, a typo'd status, a 404
//! before expiry, completion and cancellation, and a third session that expires.
//!
//! The log has one JSON object per line, `at` being when the integrator received it:
//! `{"at": RFC3339, "callback": <callback body>}`, `{"at": RFC3339, "read": <session body>}`, or
//! `{"at": RFC3339, "not_found": true, "session_id": ID}`. One tracker per `session_id`; a line
//! may give `session_id` next to a body that has none (Klarna's own fixtures omit it), and is
//! rejected when both give one and they differ. A line that is not valid JSON or not of this
//! format is `rejected` and the replay goes on. The exit status is 0 unless FILE cannot be read.
//!
//! `--trust verified` treats callbacks as evidence, for integrators who check a per-session
//! callback secret; by default (`hint`) they are unsigned claims that only ask for a read.

use std::collections::HashMap;
use std::process::ExitCode;

use hpp_session::diagram::Mermaid;
use hpp_session::wire::{CallbackBody, SessionBody};
use hpp_session::{Action, CallbackTrust, Status, Timestamp, Tracker, TrackerConfig};
use serde::{Deserialize, Serialize};

const SAMPLE: &str = include_str!("sample.jsonl");

/// One line of the log.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line<'a> {
    #[serde(borrow)]
    at: &'a str,
    #[serde(borrow, default)]
    callback: Option<CallbackBody<'a>>,
    #[serde(borrow, default)]
    read: Option<SessionBody<'a>>,
    #[serde(default)]
    not_found: Option<bool>,
    #[serde(borrow, default)]
    session_id: Option<&'a str>,
}

/// One line of `--json` output.
#[derive(Serialize)]
struct Out<'a> {
    line: usize,
    session_id: Option<&'a str>,
    outcome: &'static str,
    status: Option<&'static str>,
    /// A newer status unsigned callbacks claim, awaiting confirmation.
    #[serde(skip_serializing_if = "Option::is_none")]
    claim: Option<&'static str>,
    actions: Vec<OutAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Not in the JSON: for the human timeline.
    #[serde(skip)]
    detail: String,
    #[serde(skip)]
    next_read: Option<Timestamp>,
}

#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum OutAction {
    PlaceOrder {
        authorization_token: String,
        place_by: String,
    },
    RecordOrder {
        order_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        klarna_reference: Option<String>,
    },
    ReviewCompletion {
        problem: String,
    },
    Release {
        reason: &'static str,
    },
    ReadSession,
}

impl From<Action<'_>> for OutAction {
    fn from(a: Action<'_>) -> Self {
        match a {
            Action::PlaceOrder {
                authorization_token,
                place_by,
            } => Self::PlaceOrder {
                authorization_token: authorization_token.to_string(),
                place_by: place_by.to_string(),
            },
            Action::RecordOrder {
                order_id,
                klarna_reference,
            } => Self::RecordOrder {
                order_id: order_id.to_string(),
                klarna_reference: klarna_reference.map(ToString::to_string),
            },
            Action::ReviewCompletion { problem } => Self::ReviewCompletion {
                problem: problem.to_string(),
            },
            Action::Release { reason } => Self::Release {
                reason: reason.as_str(),
            },
            Action::ReadSession => Self::ReadSession,
        }
    }
}

impl std::fmt::Display for OutAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::PlaceOrder {
                authorization_token,
                place_by,
            } => {
                write!(f, "PLACE ORDER with {authorization_token} by {place_by}")
            }
            Self::RecordOrder {
                order_id,
                klarna_reference,
            } => {
                write!(f, "RECORD ORDER {order_id}")?;
                match klarna_reference {
                    Some(reference) => write!(f, " ({reference})"),
                    None => Ok(()),
                }
            }
            Self::ReviewCompletion { problem } => {
                write!(
                    f,
                    "REVIEW: paid, but the data cannot be acted on ({problem})"
                )
            }
            Self::Release { reason } => write!(f, "RELEASE CART ({reason})"),
            Self::ReadSession => f.write_str("READ SESSION now (confirm the callback)"),
        }
    }
}

/// What the tracker shows as its (confirmed) status: the wire name, or EXPIRED once a session
/// that was not paid expired.
fn shown_status(t: &Tracker) -> Option<&'static str> {
    if t.is_expired() && t.status() != Some(Status::Completed) {
        return Some("EXPIRED");
    }
    t.status().map(Status::as_str)
}

/// Replays one line. `trackers` holds one tracker per session.
fn replay<'a>(
    n: usize,
    text: &'a str,
    config: TrackerConfig,
    trackers: &mut HashMap<String, Tracker>,
) -> Out<'a> {
    let mut out = Out {
        line: n,
        session_id: None,
        outcome: "rejected",
        status: None,
        claim: None,
        actions: Vec::new(),
        error: None,
        detail: String::new(),
        next_read: None,
    };
    if let Err(e) = observe(text, config, trackers, &mut out) {
        out.outcome = "rejected";
        out.actions.clear();
        out.detail = format!("rejected: {e}");
        out.error = Some(e);
    }
    if let Some(t) = out.session_id.and_then(|id| trackers.get(id)) {
        out.status = shown_status(t);
        out.claim = t.claim().map(|c| c.status().as_str());
    }
    out
}

fn observe<'a>(
    text: &'a str,
    config: TrackerConfig,
    trackers: &mut HashMap<String, Tracker>,
    out: &mut Out<'a>,
) -> Result<(), String> {
    let line: Line<'a> = serde_json::from_str(text).map_err(|e| format!("not a log line: {e}"))?;
    let now = Timestamp::parse(line.at).map_err(|e| format!("at: {e}"))?;
    let (event_id, body, not_found) = match (line.callback, line.read, line.not_found) {
        (Some(cb), None, None) => (Some(cb.event_id), Some(cb.session), false),
        (None, Some(read), None) => (None, Some(read), false),
        (None, None, Some(true)) => (None, None, true),
        _ => return Err("a line has exactly one of callback, read, or not_found: true".into()),
    };
    let session_id = match (body.and_then(|b| b.session_id), line.session_id) {
        (Some(body_id), Some(line_id)) if body_id != line_id => {
            return Err(format!(
                "the line's session_id {line_id:?} differs from the body's {body_id:?}"
            ));
        }
        (Some(id), _) | (None, Some(id)) => id,
        (None, None) => return Err("no session_id: the line cannot be routed to a session".into()),
    };
    out.session_id = Some(session_id);
    if let Some(b) = body {
        // Checks the id's length; the tracker does not keep it.
        b.session_id().map_err(|e| e.to_string())?;
    }
    let snapshot = body
        .map(|b| b.snapshot())
        .transpose()
        .map_err(|e| e.to_string())?;
    let tracker = trackers
        .entry(session_id.to_owned())
        .or_insert_with(|| Tracker::new(config));
    let report = match (&snapshot, event_id) {
        (Some(s), Some(event_id)) => tracker
            .observe_callback(event_id, s, now)
            .map_err(|e| e.to_string())?,
        (Some(s), None) => tracker.observe_read(s, now),
        (None, _) => {
            debug_assert!(not_found);
            tracker.observe_not_found(now).map_err(|e| e.to_string())?
        }
    };
    out.outcome = report.outcome().as_str();
    out.detail = report.outcome().to_string();
    out.actions = report.actions().map(OutAction::from).collect();
    out.next_read = tracker.next_read(now);
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--diagram") {
        print!("{Mermaid}");
        return ExitCode::SUCCESS;
    }
    let json = args.iter().any(|a| a == "--json");
    let trust = match args.iter().position(|a| a == "--trust") {
        None => CallbackTrust::Hint,
        Some(i) => match args.get(i + 1).map(String::as_str) {
            Some("hint") => CallbackTrust::Hint,
            Some("verified") => CallbackTrust::Verified,
            _ => {
                eprintln!("replay: --trust takes hint or verified");
                return ExitCode::from(2);
            }
        },
    };
    let config = TrackerConfig {
        trust,
        ..TrackerConfig::default()
    };
    let file = args
        .iter()
        .enumerate()
        .find(|(i, a)| !a.starts_with("--") && (*i == 0 || args[i - 1] != "--trust"))
        .map(|(_, a)| a);
    let text = match file {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => {
                eprintln!("replay: cannot read {path}: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => SAMPLE.to_owned(),
    };
    if !json {
        let source = file.map_or(
            "the embedded sample (examples/sample.jsonl)",
            String::as_str,
        );
        println!("Replaying {source}\n");
    }
    let mut trackers = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let out = replay(i + 1, line, config, &mut trackers);
        if json {
            match serde_json::to_string(&out) {
                Ok(s) => println!("{s}"),
                Err(e) => eprintln!("replay: line {}: {e}", out.line),
            }
            continue;
        }
        let id = out.session_id.map_or("-", |id| id.get(..8).unwrap_or(id));
        let status = out.status.unwrap_or("-");
        println!("{:>3}  {id:<8}  {status:<15}  {}", out.line, out.detail);
        if let Some(claim) = out.claim {
            println!("{:>30}   claimed, unconfirmed: {claim}", "");
        }
        for action in &out.actions {
            println!("{:>30}-> {action}", "");
        }
        match (out.outcome, out.next_read) {
            ("rejected", _) => {}
            (_, Some(at)) => println!("{:>30}   next read at {at}", ""),
            (_, None) => println!("{:>30}   no more reads needed", ""),
        }
    }
    ExitCode::SUCCESS
}

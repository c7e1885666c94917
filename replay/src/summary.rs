//! What a whole log came to: sessions by status, actions by kind, conflicts, rejected lines,
//! and the sessions still open with when to read each next.

use std::collections::BTreeMap;
use std::io::{self, Write};

use hpp_session::{ActionKind, Timestamp};
use serde::Serialize;

use crate::replayer::{Replayer, shown_status};

/// How many open sessions the human-readable summary lists (`--json` lists them all).
pub const OPEN_LISTED: usize = 20;

/// A session that still needs reads at the end of the log.
#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct Open<'r> {
    /// The session.
    pub session_id: &'r str,
    /// Its confirmed status (`null` when only callbacks spoke of it).
    pub status: Option<&'static str>,
    /// What callbacks claim, awaiting confirmation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claim: Option<&'static str>,
    /// When to read it next.
    pub next_read: Timestamp,
}

/// A rejected line.
#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct Rejected<'r> {
    /// Its number.
    pub line: u64,
    /// Why.
    pub error: &'r str,
}

/// The rejected lines: how many, and the first few.
#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct RejectedLines<'r> {
    /// How many lines were rejected.
    pub count: u64,
    /// The first ones, by number.
    pub first: Vec<Rejected<'r>>,
}

/// The summary of a replay. Serializes as the `--summary --json` object.
#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct Summary<'r> {
    /// Lines read.
    pub lines: u64,
    /// Sessions seen.
    pub sessions: usize,
    /// Sessions by shown status (`EXPIRED` for an unpaid expired session, `UNCONFIRMED` when
    /// only callbacks spoke of it).
    pub by_status: BTreeMap<&'static str, u64>,
    /// Actions asked for, by kind.
    pub actions: BTreeMap<&'static str, u64>,
    /// Sessions with a conflict (a person should look), sorted.
    pub conflicts: Vec<&'r str>,
    /// The rejected lines.
    pub rejected: RejectedLines<'r>,
    /// The end of the log: the latest `at` of an accepted line.
    pub as_of: Option<Timestamp>,
    /// Sessions that still need reads at `as_of`, soonest first.
    pub open: Vec<Open<'r>>,
}

impl<'r> Summary<'r> {
    /// The summary of what `replayer` has seen.
    #[must_use]
    pub fn of(replayer: &'r Replayer) -> Self {
        let mut by_status = BTreeMap::new();
        let mut conflicts = Vec::new();
        let mut open = Vec::new();
        let mut sessions = 0;
        for (id, session) in replayer.sessions() {
            sessions += 1;
            let status = shown_status(session);
            *by_status
                .entry(status.unwrap_or("UNCONFIRMED"))
                .or_default() += 1;
            if session.has_conflict()
                && let Some(id) = id
            {
                conflicts.push(id);
            }
            let config = &replayer.config().tracker;
            let next = replayer
                .latest
                .and_then(|now| session.next_read(config, now));
            if let (Some(next_read), Some(id)) = (next, id) {
                open.push(Open {
                    session_id: id,
                    status,
                    claim: session.claim().map(|c| c.status().as_str()),
                    next_read,
                });
            }
        }
        conflicts.sort_unstable();
        open.sort_by(|a, b| (a.next_read, a.session_id).cmp(&(b.next_read, b.session_id)));
        let actions = ActionKind::ALL
            .iter()
            .zip(replayer.actions)
            .map(|(kind, n)| (kind.as_str(), n))
            .collect();
        let first = replayer
            .first_rejected
            .iter()
            .map(|(line, error)| Rejected { line: *line, error })
            .collect();
        Self {
            lines: replayer.lines,
            sessions,
            by_status,
            actions,
            conflicts,
            rejected: RejectedLines {
                count: replayer.rejected,
                first,
            },
            as_of: replayer.latest,
            open,
        }
    }

    /// Writes the summary as one JSON object and a newline.
    ///
    /// # Errors
    /// The writer's.
    pub fn write_json(&self, out: &mut impl Write) -> io::Result<()> {
        serde_json::to_writer(&mut *out, self)?;
        out.write_all(b"\n")
    }

    /// Writes the summary for a person.
    ///
    /// # Errors
    /// The writer's.
    pub fn write_human(&self, out: &mut impl Write) -> io::Result<()> {
        writeln!(
            out,
            "Replayed {} lines: {} sessions, {} lines rejected.",
            self.lines, self.sessions, self.rejected.count
        )?;
        writeln!(out, "\nSessions by status:")?;
        for (status, n) in &self.by_status {
            writeln!(out, "  {status:<20}{n:>8}")?;
        }
        writeln!(out, "\nActions asked for:")?;
        for kind in ActionKind::ALL {
            let n = self.actions.get(kind.as_str()).copied().unwrap_or(0);
            writeln!(out, "  {:<20}{n:>8}", kind.as_str())?;
        }
        if self.conflicts.is_empty() {
            writeln!(out, "\nConflicts: none")?;
        } else {
            writeln!(
                out,
                "\nConflicts ({}): a person should look at",
                self.conflicts.len()
            )?;
            for id in &self.conflicts {
                writeln!(out, "  {id}")?;
            }
        }
        if self.rejected.count == 0 {
            writeln!(out, "\nRejected lines: none")?;
        } else {
            writeln!(
                out,
                "\nRejected lines: {} (the first {} listed)",
                self.rejected.count,
                self.rejected.first.len()
            )?;
            for r in &self.rejected.first {
                writeln!(out, "  line {}: {}", r.line, r.error)?;
            }
        }
        match self.as_of {
            Some(as_of) if !self.open.is_empty() => {
                writeln!(
                    out,
                    "\nOpen sessions at {as_of} ({}), soonest read first:",
                    self.open.len()
                )?;
                for o in self.open.iter().take(OPEN_LISTED) {
                    let status = o.status.unwrap_or("UNCONFIRMED");
                    write!(
                        out,
                        "  {}  {status:<15}  read at {}",
                        o.session_id, o.next_read
                    )?;
                    match o.claim {
                        Some(claim) => writeln!(out, "  (claimed: {claim})")?,
                        None => writeln!(out)?,
                    }
                }
                if self.open.len() > OPEN_LISTED {
                    writeln!(
                        out,
                        "  … and {} more (--json lists them all)",
                        self.open.len() - OPEN_LISTED
                    )?;
                }
            }
            _ => writeln!(out, "\nOpen sessions: none")?,
        }
        Ok(())
    }
}

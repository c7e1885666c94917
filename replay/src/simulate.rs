//! `hpp-replay simulate`: a log in the replay format from the crate's simulator, with the
//! oracle's expected action per session beside it.
//!
//! Each session runs in the closed loop ([`hpp_sim::drive::drive`]): the integrator's
//! tracker decides when to read, and the log holds what it received: every callback (forged ones
//! too; an integrator cannot tell them apart), every read answered 200 or 404. Failed reads
//! (429, 5xx) are retried and leave no line. Sessions are simulated in blocks of
//! [`BLOCK`] and each block's lines are written sorted by arrival, so memory stays bounded by a
//! block while the log interleaves sessions as a real one does.

use std::io::{self, Write};

use hpp_session::Timestamp;
use hpp_session::wire::CallbackBody;
use hpp_sim::drive::{Integrator, Step, drive};
use hpp_sim::oracle::{Expected, expected};
use hpp_sim::{ReadAnswer, Simulator};
use serde_json::{Value, json};

use crate::log_line::LogLine;

/// Sessions simulated together and sorted by arrival.
pub const BLOCK: u64 = 1_000;

/// An action as the replay tool's JSON shows it (`{"kind": ..., fields}`), for comparing what
/// a replay asked for with what the oracle expects.
#[must_use]
pub fn action_json(action: &Expected) -> Value {
    let kind = action.kind().as_str();
    match action {
        Expected::PlaceOrder {
            authorization_token,
            place_by,
        } => json!({"kind": kind, "authorization_token": authorization_token.as_str(),
                    "place_by": place_by.map(|at| at.to_string())}),
        Expected::RecordOrder {
            order_id,
            klarna_reference,
        } => {
            let mut v = json!({"kind": kind, "order_id": order_id.as_str()});
            if let Some(r) = klarna_reference {
                v["klarna_reference"] = json!(r.as_str());
            }
            v
        }
        Expected::ReviewCompletion => json!({ "kind": kind }),
        Expected::Release(reason) => json!({"kind": kind, "reason": reason.as_str()}),
    }
}

/// What a simulation wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Sessions simulated.
    pub sessions: u64,
    /// Log lines written.
    pub lines: u64,
    /// Callbacks delivered (forged ones included).
    pub callbacks: u64,
    /// Forged callbacks delivered.
    pub forged: u64,
    /// Reads made (failed ones included).
    pub reads: u64,
    /// Sessions whose closed-loop run did not settle or did not match the oracle (0 when the
    /// tracker is right).
    pub mismatched: u64,
}

/// Simulates `sessions` sessions and writes the log to `log` and, per session in order, one
/// line `{"session_id", "actions": [...]}` of expected merchant actions to `expected_out`.
///
/// # Errors
/// The writers'.
pub fn simulate(
    simulator: &Simulator,
    sessions: u64,
    integrator: impl Into<Integrator>,
    log: &mut impl Write,
    expected_out: &mut impl Write,
) -> io::Result<Stats> {
    let integrator = integrator.into();
    let verified = matches!(
        integrator.callbacks,
        hpp_sim::drive::Callbacks::Verified { .. }
    );
    let mut stats = Stats::default();
    let mut block: Vec<(Timestamp, u64, String)> = Vec::new();
    for start in (0..sessions).step_by(usize::try_from(BLOCK).unwrap_or(usize::MAX)) {
        block.clear();
        for index in start..sessions.min(start + BLOCK) {
            let mut scenario = simulator.scenario(index);
            let session_id = scenario.history.session_id.clone();
            let mut failed = None;
            let (_, run) = drive(&mut scenario, integrator, |step| {
                let (at, text) = match step {
                    // An integrator that checks secrets refuses the adversary's callbacks and
                    // logs only the checked ones (replay them with `--trust verified`).
                    Step::Callback(d) if d.forged && verified => {
                        stats.forged += 1;
                        return;
                    }
                    Step::Callback(d) => {
                        stats.forged += u64::from(d.forged);
                        let at = d.at.to_string();
                        let body = CallbackBody {
                            event_id: Some(d.event_id.as_str().into()),
                            session: d.body.session_body(),
                        };
                        (d.at, serde_json::to_string(&LogLine::callback(&at, body)))
                    }
                    Step::Read {
                        at,
                        answer: ReadAnswer::Session(body),
                    } => (
                        at,
                        serde_json::to_string(&LogLine::read(&at.to_string(), body.session_body())),
                    ),
                    Step::Read {
                        at,
                        answer: ReadAnswer::NotFound,
                    } => (
                        at,
                        serde_json::to_string(&LogLine::not_found(
                            &at.to_string(),
                            session_id.as_str(),
                        )),
                    ),
                    // Failed reads leave no line; redirects and disables are not in the log
                    // format (neither decides anything: the reads they bring are there).
                    Step::Read {
                        answer: ReadAnswer::Failed(_),
                        ..
                    }
                    | Step::Redirect(_)
                    | Step::Disable { .. } => return,
                };
                match text {
                    Ok(text) => block.push((at, index, text)),
                    // Never seen: the simulator's bodies hold every string they name.
                    Err(e) => failed = failed.take().or(Some(e)),
                }
            });
            if let Some(e) = failed {
                return Err(io::Error::other(e));
            }
            // After the run: a disable the tracker asked for is part of the history.
            let want = expected(&scenario.history);
            stats.sessions += 1;
            stats.callbacks += u64::from(run.callbacks);
            stats.reads += u64::from(run.reads);
            stats.mismatched +=
                u64::from(!run.settled || run.actions.as_slice() != std::slice::from_ref(&want));
            let actions: Vec<Value> = [&want].into_iter().map(action_json).collect();
            serde_json::to_writer(
                &mut *expected_out,
                &json!({"session_id": session_id.as_str(), "actions": actions}),
            )?;
            expected_out.write_all(b"\n")?;
        }
        // Stable: a session's lines that arrive at the same instant keep the order it saw them.
        block.sort_by_key(|&(at, index, _)| (at, index));
        for (_, _, line) in &block {
            log.write_all(line.as_bytes())?;
            log.write_all(b"\n")?;
            stats.lines += 1;
        }
    }
    log.flush()?;
    expected_out.flush()?;
    Ok(stats)
}

/// A simulated log of `sessions` sessions with forged callbacks and failing reads, for tests.
#[cfg(test)]
pub(crate) fn hostile_log(sessions: u64, seed: u64) -> Vec<u8> {
    let config = hpp_sim::SimConfig {
        forged: 300,
        read_failure: 100,
        ..hpp_sim::SimConfig::DEFAULT
    };
    let mut log = Vec::new();
    let simulator = Simulator::new(config, seed);
    simulate(
        &simulator,
        sessions,
        hpp_session::TrackerConfig::DEFAULT,
        &mut log,
        &mut io::sink(),
    )
    .unwrap();
    log
}

#[cfg(test)]
mod tests {
    use hpp_session::TrackerConfig;
    use hpp_sim::SimConfig;
    use hpp_sim::drive::Callbacks;

    use super::*;

    #[test]
    fn the_counts_are_what_the_log_and_the_scenarios_hold() {
        let config = SimConfig {
            forged: 400,
            ..SimConfig::DEFAULT
        };
        let simulator = Simulator::new(config, 5);
        let (mut log, mut want) = (Vec::new(), Vec::new());
        let sessions = BLOCK + 7;
        let tracker = TrackerConfig::DEFAULT;
        let stats = simulate(&simulator, sessions, tracker, &mut log, &mut want).unwrap();
        let log = String::from_utf8(log).unwrap();
        let count = |needle: &str| log.lines().filter(|l| l.contains(needle)).count() as u64;
        // Counted independently: forged deliveries from the scenarios, lines from the log.
        let forged: usize = (0..sessions)
            .map(|i| {
                simulator
                    .scenario(i)
                    .deliveries()
                    .iter()
                    .filter(|d| d.forged)
                    .count()
            })
            .sum();
        assert_eq!(stats.sessions, sessions);
        assert_eq!(stats.lines, log.lines().count() as u64);
        assert_eq!(stats.callbacks, count(r#""callback":"#));
        assert_eq!(stats.forged, forged as u64);
        assert!(stats.forged > 0);
        // No read fails in this configuration: every read is a line.
        assert_eq!(
            stats.reads,
            count(r#""read":"#) + count(r#""not_found":true"#)
        );
        assert_eq!(stats.mismatched, 0);
        assert_eq!(
            String::from_utf8(want).unwrap().lines().count() as u64,
            sessions
        );
        // Every session of both blocks is in the log, and each block is sorted by arrival.
        assert!(log.contains(simulator.scenario(sessions - 1).history.session_id.as_str()));
    }

    #[test]
    fn a_wrong_tracker_shows_as_mismatched() {
        // Trusting forged callbacks breaks exactly-once; the count says so.
        let simulator = Simulator::new(
            SimConfig {
                forged: 1000,
                ..SimConfig::DEFAULT
            },
            9,
        );
        // An integrator that checks secrets, against an adversary who knows them.
        let naive = Integrator {
            tracker: TrackerConfig::DEFAULT,
            callbacks: Callbacks::Verified { leaked: true },
        };
        let stats = simulate(&simulator, 300, naive, &mut io::sink(), &mut io::sink()).unwrap();
        assert!(stats.mismatched > 10 && stats.mismatched < 300, "{stats:?}");
    }
}

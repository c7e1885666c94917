//! Non-interference (`SPEC.md` N1) over arbitrary input: any authenticated evidence (reads and
//! 404s, contradictory ones included) with any forged callbacks slipped in anywhere. Under the
//! default trust the forged callbacks change none of the money and release decisions, nor their
//! data, nor when they are made, nor the confirmed state; they never make a read due later than
//! the reads alone would, and a refused one (stamped in the future) changes nothing at all. The
//! same for forged redirects (anyone can open the merchant's redirect URLs).
#![no_main]

use hpp_session::{
    Action, Completion, CompletionProblem, Redirect, Report, SessionId, Snapshot, State,
    Status, Timestamp, Tracker, TrackerConfig,
};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Body {
    status: u8,
    updated_at: u16,
    expires_at: Option<u16>,
    completion: u8,
}

#[derive(Arbitrary, Debug)]
enum Input {
    Read(Body),
    NotFound(u16),
    Forged { body: Body, event_id: Option<u8> },
    ForgedRedirect(u8),
}

/// Seconds after a base instant; arrivals run from `ARRIVALS` on, so bodies are stamped before,
/// around and after them.
fn t(s: u16) -> Timestamp {
    Timestamp::from_unix(1_557_759_177 + i64::from(s), 0).unwrap()
}

const ARRIVALS: u16 = 30_000;

fn snapshot(b: &Body) -> Snapshot {
    let status = Status::ALL[usize::from(b.status) % Status::COUNT];
    let completion = (status == Status::Completed).then(|| match b.completion % 5 {
        0 => Completion::authorized("token-a").unwrap(),
        1 => Completion::authorized("token-b").unwrap(),
        2 => Completion::order_placed("order", "REF").unwrap(),
        3 => Completion::from_fields(Some("token-a"), Some("order"), None).unwrap(),
        _ => Completion::Unusable(CompletionProblem::Missing),
    });
    Snapshot::new(status, t(b.updated_at), b.expires_at.map(t), completion).unwrap()
}

/// The money and release decisions one step asked for, with their data (serialized: `Debug`
/// hides the token, and a forged token must show as a different decision).
fn decisions(tracker: &Tracker, report: &Report) -> Vec<String> {
    report
        .newly_owed()
        .iter()
        .filter_map(|k| tracker.action(k))
        .map(|a: Action| serde_json::to_string(&a).expect("an action serializes"))
        .collect()
}

/// The merchant's policy, held next to the trackers.
const CONFIG: TrackerConfig = TrackerConfig::DEFAULT;

fn confirmed(state: State<'_>) -> State<'_> {
    State {
        claim: None,
        ..state
    }
}

fuzz_target!(|inputs: Vec<Input>| {
    let mut reads_only = Tracker::default();
    let mut attacked = Tracker::default();
    for (i, input) in inputs.iter().enumerate() {
        let now = t(ARRIVALS.saturating_add(u16::try_from(i).unwrap_or(u16::MAX)));
        match input {
            Input::Read(body) => {
                let s = snapshot(body);
                let r = reads_only
                    .observe_read(&CONFIG, &s, now)
                    .expect("no session ids here");
                let expected = decisions(&reads_only, &r);
                let r = attacked
                    .observe_read(&CONFIG, &s, now)
                    .expect("no session ids here");
                let actual = decisions(&attacked, &r);
                assert_eq!(actual, expected, "a forged callback changed a decision");
            }
            Input::NotFound(at) => {
                let at = t(*at);
                let expected = reads_only
                    .observe_not_found(at)
                    .map(|r| decisions(&reads_only, &r));
                let actual = attacked
                    .observe_not_found(at)
                    .map(|r| decisions(&attacked, &r));
                assert_eq!(
                    actual, expected,
                    "a forged callback changed what a 404 means"
                );
            }
            Input::ForgedRedirect(which) => {
                let redirect = Redirect::ALL[usize::from(*which) % Redirect::ALL.len()];
                let before = attacked.clone();
                let id = SessionId::new("any-session").expect("a session id");
                let report = attacked
                    .observe_redirect(&id, redirect, now)
                    .expect("no session bound here");
                assert!(
                    report.newly_owed().is_empty(),
                    "a redirect asked for something"
                );
                assert_eq!(confirmed(attacked.state()), confirmed(before.state()));
                assert_eq!(attacked.asked(), before.asked());
            }
            Input::Forged { body, event_id } => {
                let s = snapshot(body);
                let id = event_id.map(|e| format!("event-{e}"));
                let before = attacked.clone();
                match attacked.observe_callback(&CONFIG, id.as_deref(), &s, now) {
                    Ok(report) => {
                        assert_eq!(decisions(&attacked, &report), Vec::<String>::new());
                    }
                    Err(e) => {
                        let hpp_session::Refused::FutureHint(e) = e else {
                            panic!("refused for another reason: {e}");
                        };
                        assert!(e.updated_at > now);
                        assert_eq!(attacked, before, "a refused callback changed the tracker");
                    }
                }
                assert_eq!(confirmed(attacked.state()), confirmed(before.state()));
                assert_eq!(attacked.owed(), before.owed());
            }
        }
        assert_eq!(confirmed(attacked.state()), confirmed(reads_only.state()));
        assert_eq!(attacked.is_confirmed(), reads_only.is_confirmed());
        assert_eq!(attacked.owed(), reads_only.owed());
        // Forged claims page no one: only confirmed evidence against confirmed evidence does.
        assert_eq!(attacked.has_conflict(), reads_only.has_conflict());
        let due = |t: &Tracker| t.next_read(&CONFIG, now).map(|r| r.at);
        let (a, r) = (due(&attacked), due(&reads_only));
        assert_eq!(
            a.is_none(),
            r.is_none(),
            "reads stopped or started by a forged callback"
        );
        assert!(
            a <= r,
            "a forged callback delayed a read: {a:?} after {r:?}"
        );
    }
});

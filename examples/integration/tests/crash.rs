//! The reference integration end to end, against the crate's simulator, with the process killed
//! at random points: between any two steps, inside transactions, and between performing an
//! action and marking it done.
//!
//! Figures are printed (`cargo test -p hpp-integration-example -- --nocapture`). Sessions:
//! `HPP_CRASH_SESSIONS` (default 10,000); crash probability per crash point:
//! `HPP_CRASH_PERMILLE` (default 20).

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::path::PathBuf;
use std::time::Duration;

use hpp_integration_example::{
    Callbacks, Crash, CrashPoint, Faults, Handled, NoFaults, ReadResult, Service, ServiceError,
    StoredAction, action_id,
};
use hpp_session::{Timestamp, TrackerConfig};
use hpp_sim::klarna::Body;
use hpp_sim::oracle::{Expected, expected};
use hpp_sim::rng::Rng;
use hpp_sim::{ReadAnswer, Scenario, SimConfig, Simulator};
use serde_json::{Value, json};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Kills the process at each crash point with the same probability.
struct RandomCrashes {
    rng: Rng,
    permille: u16,
    crashes: BTreeMap<String, u64>,
}

impl Faults for RandomCrashes {
    fn check(&mut self, point: CrashPoint) -> Result<(), Crash> {
        if self.rng.chance(self.permille) {
            *self.crashes.entry(format!("{point:?}")).or_default() += 1;
            return Err(Crash(point));
        }
        Ok(())
    }
}

fn body_json(b: &Body) -> Value {
    let mut v = json!({
        "session_id": b.session_id.as_str(), "status": b.status.as_str(),
        "updated_at": b.updated_at.as_str(), "expires_at": b.expires_at.as_str(),
    });
    let c = &b.completion;
    for (k, f) in [
        ("authorization_token", &c.authorization_token),
        ("order_id", &c.order_id),
        ("klarna_reference", &c.klarna_reference),
    ] {
        if let Some(f) = f {
            v[k] = json!(f.as_str());
        }
    }
    v
}

/// The action data the service stores, for the oracle's action (a review's problem text is the
/// tracker's wording, so only its kind is compared).
fn expected_json(e: &Expected) -> (String, Option<Value>) {
    let kind = e.kind().as_str().to_owned();
    let data = match e {
        Expected::PlaceOrder {
            authorization_token,
            place_by,
        } => Some(
            json!({"kind": kind, "authorization_token": authorization_token.as_str(),
                         "place_by": place_by.map(|at| at.to_string())}),
        ),
        Expected::RecordOrder {
            order_id,
            klarna_reference,
        } => Some(match klarna_reference {
            Some(r) => {
                json!({"kind": kind, "order_id": order_id.as_str(), "klarna_reference": r.as_str()})
            }
            None => json!({"kind": kind, "order_id": order_id.as_str()}),
        }),
        Expected::ReviewCompletion => None,
        Expected::Release(reason) => Some(json!({"kind": kind, "reason": reason.as_str()})),
    };
    (kind, data)
}

/// The merchant's systems the executor acts on: they count every call, and de-duplicate by the
/// action id as an idempotency key.
#[derive(Default)]
struct Merchant {
    /// Calls per action id (at least once: more after a crash between performing and marking).
    calls: HashMap<String, u64>,
    /// Effects, by session: one per distinct action id.
    effects: HashMap<String, Vec<StoredAction>>,
}

impl Merchant {
    /// Performs `a` (an executor's `perform` that fails leaves the action pending; this one
    /// never fails).
    fn perform(&mut self, a: &StoredAction) {
        let calls = self.calls.entry(a.action_id.clone()).or_default();
        *calls += 1;
        if *calls == 1 {
            self.effects
                .entry(a.session_id.clone())
                .or_default()
                .push(a.clone());
        }
    }

    /// `perform` as the executor takes it.
    fn performer(&mut self) -> impl FnMut(&StoredAction) -> Result<(), Infallible> + '_ {
        |a| {
            self.perform(a);
            Ok(())
        }
    }
}

struct Figures {
    sessions: usize,
    crashes: BTreeMap<String, u64>,
    steps: u64,
    lost: usize,
    duplicated_effects: usize,
    repeated_calls: u64,
    unsettled: usize,
    wrong: usize,
    forged_refused: u64,
}

/// A hostile simulator, and trackers with the default read schedule (an abandoned session costs
/// about 66 reads).
fn setup() -> (Simulator, TrackerConfig) {
    let sim = Simulator::new(
        SimConfig {
            call_loss: 200,
            slow_ack: 200,
            event_loss: 50,
            max_delay: Duration::from_secs(30),
            forged: 300,
            read_failure: 50,
            ..SimConfig::DEFAULT
        },
        20_261_123,
    );
    (sim, TrackerConfig::DEFAULT)
}

fn run(sessions: u64, crash_permille: u16, trust: Callbacks, forged_knows_secret: bool) -> Figures {
    let (sim, config) = setup();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("crash-{}-{trust:?}.sqlite", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let mut service = Service::open(&path, config, trust).unwrap();
    let (mut scenarios, secrets, mut arrivals) = create_sessions(&sim, sessions, &mut service);
    arrivals.sort();
    let mut faults = RandomCrashes {
        rng: Rng::new(99),
        permille: crash_permille,
        crashes: BTreeMap::new(),
    };
    let mut merchant = Merchant::default();
    let mut forged_refused = 0;
    let mut steps = 0;
    let mut next_arrival = 0;
    let reopen = |e: ServiceError| match e {
        ServiceError::Crashed(_) => Service::open(&path, config, trust).unwrap(),
        ServiceError::Db(e) => panic!("database: {e}"),
    };
    let mut clock = Timestamp::MIN;
    loop {
        let read_at = service.next_read().unwrap();
        let arrival = arrivals.get(next_arrival);
        // A read that fell due stays due (the poll reads 64 at a time): the clock never goes
        // back to it.
        let now: Timestamp = match (read_at, arrival) {
            (None, None) => break,
            (Some(r), Some(a)) => r.max(clock).min(a.0),
            (Some(r), None) => r.max(clock),
            (None, Some(a)) => a.0,
        };
        clock = now;
        steps += 1;
        let result = match arrival {
            Some((at, id, k)) if *at == now => {
                next_arrival += 1;
                let d = &scenarios[id].deliveries()[*k];
                let body = json!({"event_id": d.event_id.as_str(), "session": body_json(&d.body)});
                // An adversary who learned the URL also knows the secret; one who did not
                // guesses.
                let secret = if d.forged && !forged_knows_secret {
                    "guessed"
                } else {
                    &secrets[id]
                };
                service
                    .handle_callback(id, secret, body.to_string().as_bytes(), now, &mut faults)
                    .map(|h| forged_refused += u64::from(d.forged && h == Handled::Forbidden))
            }
            _ => service
                .poll(
                    now,
                    64,
                    |id, at| match scenarios.get_mut(id).map(|s| s.read(at)) {
                        Some(ReadAnswer::Session(b)) => ReadResult::Body(body_json(&b).to_string()),
                        Some(ReadAnswer::NotFound) | None => ReadResult::NotFound,
                        Some(ReadAnswer::Failed(_)) => ReadResult::Failed,
                    },
                    &mut faults,
                )
                .map(drop),
        };
        if let Err(e) = result {
            service = reopen(e);
        }
        // The executor runs after every step, and is killed too.
        loop {
            match service.execute(64, merchant.performer(), &mut faults) {
                Ok(_) => break,
                Err(e) => service = reopen(e),
            }
        }
    }
    // Everything still pending is performed.
    service
        .execute(u32::MAX, merchant.performer(), &mut NoFaults)
        .unwrap();
    let (lost, duplicated_effects, wrong) = tally(&scenarios, &merchant);
    let repeated_calls = merchant.calls.values().map(|&c| c - 1).sum();
    let unsettled =
        service.pending().unwrap().len() + usize::from(service.next_read().unwrap().is_some());
    Figures {
        sessions: scenarios.len(),
        crashes: faults.crashes,
        steps,
        lost,
        duplicated_effects,
        repeated_calls,
        unsettled,
        wrong,
        forged_refused,
    }
}

/// Scenarios by session id, their secrets, and every callback arrival (time, session, index).
type Arrivals = Vec<(Timestamp, String, usize)>;

fn create_sessions(
    sim: &Simulator,
    sessions: u64,
    service: &mut Service,
) -> (HashMap<String, Scenario>, HashMap<String, String>, Arrivals) {
    let mut scenarios: HashMap<String, Scenario> = HashMap::new();
    let mut secrets = HashMap::new();
    let mut arrivals = Vec::new();
    let mut rng = Rng::new(7);
    for i in 0..sessions {
        let s = sim.scenario(i);
        let id = s.history.session_id.to_string();
        let secret = rng.uuid().to_string();
        service
            .create_session(&id, &secret, s.history.created_at)
            .unwrap();
        for (k, d) in s.deliveries().iter().enumerate() {
            arrivals.push((d.at, id.clone(), k));
        }
        secrets.insert(id.clone(), secret);
        scenarios.insert(id, s);
    }
    (scenarios, secrets, arrivals)
}

/// Per session, against the oracle: (no effect, more than one effect, one wrong effect).
fn tally(scenarios: &HashMap<String, Scenario>, merchant: &Merchant) -> (usize, usize, usize) {
    let (mut lost, mut duplicated_effects, mut wrong) = (0, 0, 0);
    for (id, s) in scenarios {
        let (kind, data) = expected_json(&expected(&s.history));
        let effects = merchant.effects.get(id).map_or(&[][..], Vec::as_slice);
        for a in effects {
            let kind = hpp_session::ActionKind::ALL
                .into_iter()
                .find(|k| k.as_str() == a.kind);
            assert_eq!(Some(a.action_id.clone()), kind.map(|k| action_id(id, k)));
        }
        match effects {
            [] => lost += 1,
            [one] => {
                let data_ok = data.as_ref().is_none_or(|d| *d == one.data);
                wrong += usize::from(one.kind != kind || !data_ok);
            }
            _ => duplicated_effects += 1,
        }
    }
    (lost, duplicated_effects, wrong)
}

fn report(name: &str, f: &Figures) {
    let crashes: u64 = f.crashes.values().sum();
    eprintln!(
        "{name}: {} sessions, {} steps, {crashes} crashes {:?}; lost {}, duplicated effects {}, \
         wrong {}, unsettled {}; repeated calls (at least once) {}; forged refused {}",
        f.sessions,
        f.steps,
        f.crashes,
        f.lost,
        f.duplicated_effects,
        f.wrong,
        f.unsettled,
        f.repeated_calls,
        f.forged_refused
    );
}

/// Verified: the handler checks the secret, so forged callbacks (without it) are refused, and
/// callbacks are evidence.
#[test]
fn verified_callbacks_exactly_once_effects_under_crashes() {
    let sessions = env("HPP_CRASH_SESSIONS", 10_000);
    let permille = u16::try_from(env("HPP_CRASH_PERMILLE", 20)).unwrap();
    let f = run(sessions, permille, Callbacks::Verified, false);
    report("verified", &f);
    assert_eq!(
        (f.lost, f.duplicated_effects, f.wrong, f.unsettled),
        (0, 0, 0, 0)
    );
    assert!(f.forged_refused > 0);
    assert!(f.crashes.get("AfterPerform").copied().unwrap_or(0) > 0);
    // Crashes between performing and marking done make the executor call again: at least
    // once, de-duplicated by the action id.
    assert!(f.repeated_calls > 0);
}

/// Hint: even an adversary who knows the callback URL's secret moves no money.
#[test]
fn hints_with_a_leaked_secret_still_exactly_once_under_crashes() {
    let sessions = env("HPP_CRASH_SESSIONS", 10_000) / 2;
    let permille = u16::try_from(env("HPP_CRASH_PERMILLE", 20)).unwrap();
    let f = run(sessions, permille, Callbacks::Hints, true);
    report("hint, leaked secret", &f);
    assert_eq!(
        (f.lost, f.duplicated_effects, f.wrong, f.unsettled),
        (0, 0, 0, 0)
    );
    assert_eq!(f.forged_refused, 0);
}

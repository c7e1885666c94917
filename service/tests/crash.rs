//! The service's store end to end, against the crate's simulator, with the process killed at
//! random points: after a claim before its outcome is stored, between a read's answer and its
//! storing, after an action's attempt was recorded, between performing an action and marking
//! it done, and after every commit. A crash drops the [`Store`] and everything claimed from it,
//! and opens the SQLite file again, as a restarted process does.
//!
//! The judge is independent of the store's tables: the oracle
//! ([`hpp_sim::oracle::expected`]) computes the one merchant action each history calls for, and
//! the merchant counts its calls by action id and keeps one effect per distinct id (the id is
//! its idempotency key). Every session must end with exactly one effect, the expected one.
//!
//! A crash "inside a transaction" is the crash just before the store's call: every call of the
//! store is one transaction, all or nothing.
//!
//! Three runs: forged callbacks without the secret (what the crash test of the former
//! `examples/integration` crate checked, on its own schema, until issue 23), abandoned sessions
//! disabled at Klarna, and an adversary who knows the secret.
//!
//! Figures are printed (`cargo test -p hpp-service --test crash -- --nocapture`). Sessions:
//! `HPP_CRASH_SESSIONS` (default 1,000; the two other runs take a quarter); crash probability
//! per crash point: `HPP_CRASH_PERMILLE` (default 20). A debug build runs the defaults in about
//! 15 s on two cores.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hpp_service::observe::{self, CallbackOutcome, Done, ReadAnswer};
use hpp_service::store::{Finished, NewSession, Options, PendingAction, Store};
use hpp_session::{Action, ActionKind, SessionId, Timestamp, Tracker, TrackerConfig};
use hpp_sim::klarna::Body;
use hpp_sim::oracle::{Expected, expected};
use hpp_sim::rng::Rng;
use hpp_sim::{Delivery, Scenario, SimConfig, Simulator};
use serde_json::{Value, json};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Where the process may die.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum CrashPoint {
    /// A callback arrived; the process dies before its transaction commits (Klarna gets no
    /// 2xx).
    BeforeObserve,
    /// A callback's observation committed, before the 2xx is sent.
    AfterObserve,
    /// Due reads claimed (each started on its tracker), none answered yet.
    AfterClaimReads,
    /// A read answered, before its answer is stored.
    AfterRead,
    /// A read's answer stored.
    AfterFinishRead,
    /// Pending actions claimed, none attempted.
    AfterClaimActions,
    /// An action's attempt recorded, before it is performed.
    AfterAttempt,
    /// An action performed, before it is marked done.
    AfterPerform,
    /// An action marked done.
    AfterFinishAction,
}

/// Kills the process at each crash point with the same probability.
struct RandomCrashes {
    rng: Rng,
    permille: u16,
    crashes: BTreeMap<CrashPoint, u64>,
}

impl RandomCrashes {
    /// Whether the process dies at `point`.
    fn at(&mut self, point: CrashPoint) -> bool {
        let dies = self.rng.chance(self.permille);
        if dies {
            *self.crashes.entry(point).or_default() += 1;
        }
        dies
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

/// One effect the merchant's systems keep.
struct Effect {
    action_id: String,
    kind: ActionKind,
    /// What it did, as the oracle writes it (a review's problem text is the tracker's wording:
    /// only its kind is compared).
    did: Option<Expected>,
}

/// The merchant's systems the executor acts on: they count every call, and de-duplicate by the
/// action id as an idempotency key. Disables go to Klarna (the scenario), and are no effect.
#[derive(Default)]
struct Merchant {
    /// Calls per action id (at least once: more after a crash between performing and marking).
    calls: HashMap<String, u64>,
    /// Effects, by session: one per distinct action id.
    effects: HashMap<String, Vec<Effect>>,
    /// Disables made at Klarna (calls, repeated ones included).
    disables: u64,
}

impl Merchant {
    /// Performs `action` for `pending` at `now` (this merchant never fails); a disable is made
    /// at Klarna, and its answer is what the executor reports.
    fn perform(
        &mut self,
        pending: &PendingAction,
        action: &Action,
        scenario: &mut Scenario,
        now: Timestamp,
    ) -> Done {
        let calls = self.calls.entry(pending.action_id.clone()).or_default();
        *calls += 1;
        let first = *calls == 1;
        if *action == Action::Disable {
            self.disables += 1;
            return Done::Disable(scenario.disable(now));
        }
        if first {
            self.effects
                .entry(pending.session_id.clone())
                .or_default()
                .push(Effect {
                    action_id: pending.action_id.clone(),
                    kind: action.kind(),
                    did: Expected::of(action),
                });
        }
        Done::Kind(action.kind())
    }
}

#[derive(Debug, Default)]
struct Figures {
    sessions: usize,
    steps: u64,
    crashes: BTreeMap<CrashPoint, u64>,
    lost: usize,
    duplicated_effects: usize,
    wrong: usize,
    unsettled: usize,
    repeated_calls: u64,
    /// Actions the tracker owed no more when claimed: done without being performed.
    retired: u64,
    /// Disables made at Klarna (repeated calls included).
    disables: u64,
    /// Forged callbacks observed as a hint (the secret did not match): a claim that may make a
    /// read sooner, never evidence.
    forged_hints: u64,
    /// Forged callbacks the tracker refused (another session's, from the future...).
    forged_refused: u64,
    /// Forged callbacks observed as evidence (the secret matched).
    forged_verified: u64,
    /// Klarna's callbacks observed as a hint: never, with the right secret.
    genuine_unverified: u64,
    /// Sessions that took a forged callback for evidence (a leaked secret), and of them, those
    /// whose effects are not exactly the oracle's one (left out of `lost`, `duplicated_effects`
    /// and `wrong`).
    compromised: usize,
    damaged: usize,
}

/// What a run varies.
#[derive(Clone, Copy, Debug)]
struct Run {
    sessions: u64,
    crash_permille: u16,
    /// The adversary knows each session's callback secret (it leaked with the URL).
    forged_knows_secret: bool,
    /// The trackers ask to disable a session idle this long ([`TrackerConfig::abandon_after`]).
    abandon_after: Option<Duration>,
}

/// A hostile simulator. Trackers keep the default read schedule (a session left open costs about
/// 66 reads until it expires).
fn simulator() -> Simulator {
    Simulator::new(
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
    )
}

/// A fresh directory for one run's database: in memory (`/dev/shm`) where there is one. The
/// crashes are the process's, never the machine's, so what the store committed is in the OS's
/// cache either way; and the store's `synchronous = FULL` syncs every commit, which on a disk
/// makes the run several times slower.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("hpp-crash-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn open(path: &Path, config: TrackerConfig) -> Store {
    Store::open(path.to_str().expect("a UTF-8 path"), Options::new(config))
        .await
        .expect("the store opens")
}

/// When the earliest read is due, if any session has one.
async fn next_read(store: &Store) -> Option<Timestamp> {
    store.next_read().await.expect("the next read")
}

/// Scenarios by session id, their secrets, and every callback arrival (time, session, the
/// delivery), sorted.
struct Sessions {
    scenarios: HashMap<String, Scenario>,
    secrets: HashMap<String, String>,
    arrivals: Vec<(Timestamp, String, Delivery)>,
}

/// Makes `sessions` scenarios and inserts each session in the store as the checkout does.
async fn create_sessions(
    sim: &Simulator,
    sessions: u64,
    store: &Store,
    config: &TrackerConfig,
) -> Sessions {
    let mut out = Sessions {
        scenarios: HashMap::new(),
        secrets: HashMap::new(),
        arrivals: Vec::new(),
    };
    let mut rng = Rng::new(7);
    let mut new = Vec::new();
    for i in 0..sessions {
        let s = sim.scenario(i);
        let id = s.history.session_id.to_string();
        let secret = rng.uuid().to_string();
        let created_at = s.history.created_at;
        let tracker = Tracker::created(SessionId::new(&id).expect("a session id"), created_at);
        new.push(NewSession {
            session_id: id.clone(),
            secret: secret.clone(),
            payment_session_id: format!("ps-{i}"),
            next: tracker.next_read(config, created_at),
            tracker,
        });
        for d in s.deliveries() {
            out.arrivals.push((d.at, id.clone(), d.clone()));
        }
        out.secrets.insert(id.clone(), secret);
        out.scenarios.insert(id, s);
    }
    for session in new {
        store.insert(session).await.expect("inserted");
    }
    out.arrivals.sort_by_key(|a| a.0);
    out
}

/// Everything but the process: Klarna's sessions, the merchant, where the process dies, and
/// what was seen.
struct World {
    scenarios: HashMap<String, Scenario>,
    merchant: Merchant,
    crashes: RandomCrashes,
    f: Figures,
    /// Sessions that took a forged callback for evidence.
    compromised: HashSet<String>,
}

/// Delivers `d` to session `id`'s callback URL with `presented` as the secret at `now`, as the
/// HTTP handler does, and counts what became of it. `false`: the process died.
async fn deliver(
    store: &Store,
    config: TrackerConfig,
    w: &mut World,
    (id, presented): (&str, String),
    d: &Delivery,
    now: Timestamp,
) -> bool {
    if w.crashes.at(CrashPoint::BeforeObserve) {
        return false;
    }
    let body = json!({"event_id": d.event_id.as_str(), "session": body_json(&d.body)})
        .to_string()
        .into_bytes();
    let url_session = id.to_owned();
    let observed = store
        .observe(id, now, move |row| {
            observe::callback(
                &mut row.tracker,
                &config,
                &url_session,
                &row.secret,
                &presented,
                &body,
                now,
            )
        })
        .await
        .expect("observed")
        .expect("a stored session");
    let f = &mut w.f;
    match (observed, d.forged) {
        (CallbackOutcome::Observed { verified: true }, true) => {
            f.forged_verified += 1;
            w.compromised.insert(id.to_owned());
        }
        (CallbackOutcome::Observed { verified: false }, true) => f.forged_hints += 1,
        (CallbackOutcome::Refused(_), true) => f.forged_refused += 1,
        (CallbackOutcome::Observed { verified: false }, false) => f.genuine_unverified += 1,
        (_, false) => {}
    }
    !w.crashes.at(CrashPoint::AfterObserve)
}

/// Claims due reads at `now`, answers each from its scenario and stores the answer, as the
/// poller does. `Err(())`: the process died.
async fn poll(store: &Store, w: &mut World, now: Timestamp) -> Result<(), ()> {
    let claim = store.claim_reads(now, 64).await.expect("reads claimed");
    if w.crashes.at(CrashPoint::AfterClaimReads) {
        return Err(());
    }
    for claim in claim.into_each() {
        let id = claim.ids().first().expect("one session a claim").clone();
        let answer = match w.scenarios.get_mut(&id).map(|s| s.read(now)) {
            Some(hpp_sim::ReadAnswer::Session(b)) => ReadAnswer::Body(body_json(&b).to_string()),
            Some(hpp_sim::ReadAnswer::NotFound) | None => ReadAnswer::NotFound,
            Some(hpp_sim::ReadAnswer::Failed(f)) => ReadAnswer::Failed(f),
        };
        if w.crashes.at(CrashPoint::AfterRead) {
            return Err(());
        }
        store
            .finish_reads(&claim, vec![(id, answer)], now)
            .await
            .expect("read stored");
        drop(claim);
        if w.crashes.at(CrashPoint::AfterFinishRead) {
            return Err(());
        }
    }
    Ok(())
}

/// Claims up to 64 pending actions and performs each on the merchant, as the executor does:
/// the attempt recorded first, then performed, then marked done. Returns how many were claimed;
/// `Err(())`: the process died.
async fn execute(store: &Store, w: &mut World, now: Timestamp) -> Result<usize, ()> {
    let claim = store.claim_actions(64).await.expect("actions claimed");
    let claimed = claim.actions().len();
    if claimed > 0 && w.crashes.at(CrashPoint::AfterClaimActions) {
        return Err(());
    }
    for (claim, pending) in claim.into_each() {
        let done = if pending.retired {
            // The tracker owes it no more: done, and nothing performed.
            w.f.retired += 1;
            let kind = pending
                .action_id
                .rsplit('/')
                .next()
                .and_then(ActionKind::from_name)
                .expect("the action id names its kind");
            Done::Kind(kind)
        } else {
            let action: Action =
                serde_json::from_value(pending.data.clone()).expect("an action the crate reads");
            assert!(
                store
                    .attempt(&pending, Duration::from_secs(10))
                    .await
                    .expect("attempt recorded"),
                "one process: no other took the claim or attempted first"
            );
            if w.crashes.at(CrashPoint::AfterAttempt) {
                return Err(());
            }
            let scenario = w
                .scenarios
                .get_mut(&pending.session_id)
                .expect("a simulated session");
            let done = w.merchant.perform(&pending, &action, scenario, now);
            if w.crashes.at(CrashPoint::AfterPerform) {
                return Err(());
            }
            done
        };
        let finished = Finished::Done(done, "done".to_owned());
        store
            .finish_actions(&claim, vec![(pending.action_id.clone(), finished)], now)
            .await
            .expect("action stored");
        // Let go of the claim once the outcome is stored, as the worker does.
        drop(claim);
        if w.crashes.at(CrashPoint::AfterFinishAction) {
            return Err(());
        }
    }
    Ok(claimed)
}

async fn run(name: &str, r: Run) -> Figures {
    let config = TrackerConfig {
        abandon_after: r.abandon_after,
        ..TrackerConfig::DEFAULT
    };
    let dir = TempDir::new(name);
    let path = dir.0.join("hpp.sqlite");
    let mut store = open(&path, config).await;
    let Sessions {
        scenarios,
        secrets,
        arrivals,
    } = create_sessions(&simulator(), r.sessions, &store, &config).await;
    let mut w = World {
        f: Figures {
            sessions: scenarios.len(),
            ..Figures::default()
        },
        scenarios,
        merchant: Merchant::default(),
        crashes: RandomCrashes {
            rng: Rng::new(99),
            permille: r.crash_permille,
            crashes: BTreeMap::new(),
        },
        compromised: HashSet::new(),
    };
    let mut next_arrival = 0;
    let mut clock = Timestamp::MIN;
    loop {
        let read_at = next_read(&store).await;
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
        w.f.steps += 1;
        assert!(
            w.f.steps < 200 * r.sessions + 10_000,
            "no progress: the clock stays at {now}"
        );
        let alive = match arrival {
            Some((at, id, d)) if *at == now => {
                next_arrival += 1;
                // An adversary who learned the URL also knows the secret; one who did not
                // guesses. After a disable at Klarna the consumer's later changes never
                // happened: their callbacks are not sent (the scenario keeps those that are).
                let presented = if d.forged && !r.forged_knows_secret {
                    "guessed".to_owned()
                } else {
                    secrets[id].clone()
                };
                !w.scenarios[id].deliveries().contains(d)
                    || deliver(&store, config, &mut w, (id, presented), d, now).await
            }
            _ => poll(&store, &mut w, now).await.is_ok(),
        };
        if !alive {
            drop(store);
            store = open(&path, config).await;
        }
        // The executor runs after every step, and is killed too.
        while execute(&store, &mut w, clock).await.is_err() {
            drop(store);
            store = open(&path, config).await;
        }
    }
    // Everything still pending is performed (in a round or two: what is left after a hundred
    // is never finished, and counts as unsettled).
    w.crashes.permille = 0;
    for _ in 0..100 {
        if execute(&store, &mut w, clock).await.expect("no crash") == 0 {
            break;
        }
    }
    let (_, pending) = store.counts().await.expect("counts");
    let unsettled =
        usize::try_from(pending).expect("a count") + usize::from(next_read(&store).await.is_some());
    settle(w, unsettled)
}

/// The figures of a run that ended with `unsettled` sessions or actions left.
fn settle(w: World, unsettled: usize) -> Figures {
    let t = tally(&w.scenarios, &w.merchant, &w.compromised);
    Figures {
        lost: t.lost,
        duplicated_effects: t.duplicated,
        wrong: t.wrong,
        damaged: t.damaged,
        compromised: w.compromised.len(),
        repeated_calls: w.merchant.calls.values().map(|&c| c - 1).sum(),
        disables: w.merchant.disables,
        unsettled,
        crashes: w.crashes.crashes,
        ..w.f
    }
}

/// Sessions whose effects are not the oracle's one.
struct Tally {
    /// No effect.
    lost: usize,
    /// More than one.
    duplicated: usize,
    /// One, not the expected one.
    wrong: usize,
    /// Any of those, among the compromised sessions (counted there only).
    damaged: usize,
}

/// Per session, against the oracle; `compromised` sessions (a forged callback taken for
/// evidence) are counted apart.
fn tally(
    scenarios: &HashMap<String, Scenario>,
    merchant: &Merchant,
    compromised: &HashSet<String>,
) -> Tally {
    let mut t = Tally {
        lost: 0,
        duplicated: 0,
        wrong: 0,
        damaged: 0,
    };
    for (id, s) in scenarios {
        let want = expected(&s.history);
        let effects = merchant.effects.get(id).map_or(&[][..], Vec::as_slice);
        for e in effects {
            assert_eq!(e.action_id, format!("{id}/{}", e.kind.as_str()));
        }
        let count = match effects {
            [] => &mut t.lost,
            [one] if one.did.as_ref() == Some(&want) => continue,
            [_] => &mut t.wrong,
            _ => &mut t.duplicated,
        };
        if compromised.contains(id) {
            t.damaged += 1;
        } else {
            *count += 1;
        }
    }
    t
}

fn report(name: &str, f: &Figures, took: Duration) {
    let crashes: u64 = f.crashes.values().sum();
    eprintln!(
        "{name}: {} sessions, {} steps, {crashes} crashes {:?}; lost {}, duplicated effects {}, \
         wrong {}, unsettled {}; repeated calls (at least once) {}; retired {}; disables {}; \
         forged callbacks: {} hints, {} refused, {} verified; genuine unverified {}; \
         compromised sessions {} (damaged {}); {:.1} s",
        f.sessions,
        f.steps,
        f.crashes,
        f.lost,
        f.duplicated_effects,
        f.wrong,
        f.unsettled,
        f.repeated_calls,
        f.retired,
        f.disables,
        f.forged_hints,
        f.forged_refused,
        f.forged_verified,
        f.genuine_unverified,
        f.compromised,
        f.damaged,
        took.as_secs_f64()
    );
}

/// Sessions of the main run (the others run a quarter of them).
fn sessions() -> u64 {
    env("HPP_CRASH_SESSIONS", 1_000)
}

fn permille() -> u16 {
    u16::try_from(env("HPP_CRASH_PERMILLE", 20)).expect("HPP_CRASH_PERMILLE in per mille")
}

/// Callbacks with the session's secret are evidence; forged ones (the secret guessed) are
/// hints at most, and move nothing: every session gets exactly its one effect.
#[tokio::test]
async fn verified_callbacks_exactly_once_effects_under_crashes() {
    let started = std::time::Instant::now();
    let f = run(
        "verified",
        Run {
            sessions: sessions(),
            crash_permille: permille(),
            forged_knows_secret: false,
            abandon_after: None,
        },
    )
    .await;
    report("verified", &f, started.elapsed());
    assert_eq!(
        (f.lost, f.duplicated_effects, f.wrong, f.unsettled),
        (0, 0, 0, 0)
    );
    // Forged callbacks were posted, and none was taken for evidence; every one of Klarna's
    // was.
    assert!(f.forged_hints > 0);
    assert_eq!((f.forged_verified, f.genuine_unverified), (0, 0));
    assert!(
        f.crashes
            .get(&CrashPoint::AfterPerform)
            .copied()
            .unwrap_or(0)
            > 0
    );
    // Crashes between performing and marking done make the executor call again: at least
    // once, de-duplicated by the action id.
    assert!(f.repeated_calls > 0);
}

/// Sessions idle for two hours are disabled at Klarna: the disable's answer (a 204 releases
/// the cart; a 400 when the consumer ended it meanwhile) is stored with the action's
/// completion, and a disable performed again after a crash is answered 400 and read.
#[tokio::test]
async fn abandoned_sessions_disabled_exactly_once_under_crashes() {
    let started = std::time::Instant::now();
    let f = run(
        "disabled",
        Run {
            sessions: sessions() / 4,
            crash_permille: permille(),
            forged_knows_secret: false,
            abandon_after: Some(Duration::from_hours(2)),
        },
    )
    .await;
    report("abandoned, disabled", &f, started.elapsed());
    assert_eq!(
        (f.lost, f.duplicated_effects, f.wrong, f.unsettled),
        (0, 0, 0, 0)
    );
    assert_eq!((f.forged_verified, f.genuine_unverified), (0, 0));
    assert!(f.disables > 0);
}

/// The old integration's `Callbacks::Hints` mode (a callback is a hint even with the right
/// secret, so a leaked secret moves no money) has no counterpart here: the service takes a
/// callback whose secret matches for evidence, as a read. An adversary who knows a session's
/// secret can make it confirm any status and data: those sessions are compromised, and their
/// effects are whatever the forgeries said (reported as `damaged`, not asserted). What still
/// holds, and is asserted: every other session gets exactly its one effect, under crashes, and
/// every session settles.
#[tokio::test]
async fn leaked_secret_compromises_only_its_sessions_under_crashes() {
    let started = std::time::Instant::now();
    let f = run(
        "leaked",
        Run {
            sessions: sessions() / 4,
            crash_permille: permille(),
            forged_knows_secret: true,
            abandon_after: None,
        },
    )
    .await;
    report("leaked secret", &f, started.elapsed());
    assert_eq!(
        (f.lost, f.duplicated_effects, f.wrong, f.unsettled),
        (0, 0, 0, 0)
    );
    assert!(f.forged_verified > 0 && f.compromised > 0);
    assert_eq!(f.genuine_unverified, 0);
}

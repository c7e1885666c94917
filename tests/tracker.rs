//! The tracker against generated server histories, delivered as Klarna would (callbacks 1–4
//! times, reads at random times, a 404 after expiry) with loss, duplication and reordering.
//!
//! The oracle reads the expected result off the history and the set of delivered snapshots
//! (the newest delivered confirmed change wins and decides money; the newest delivered hint
//! after it is the claim), not off the tracker. A second property adds forged callbacks and
//! stray 404s to the same deliveries and checks that no decision changes (non-interference);
//! a third checks over arbitrary input that a paid cart is never released.

mod common;

use core::time::Duration;

use common::{CFG, at, new_actions, oracle};
use hpp_session::{
    Action, ActionId, ActionSet, Claim, Completion, CompletionProblem, Event, Outcome, Redirect,
    Refused, ReleaseReason, SessionId, Snapshot, State, Status, Timestamp, Tracker,
};
use proptest::prelude::*;

/// How the integrator of a run takes callbacks: as hints ([`Tracker::observe_callback`]), or,
/// having checked each one's secret, as evidence ([`Tracker::observe_verified_callback`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CallbackTrust {
    Hint,
    Verified,
}

/// Observes a callback as the integrator of `trust` does.
fn callback(
    tracker: &mut Tracker,
    trust: CallbackTrust,
    event_id: Option<&str>,
    s: &Snapshot,
    now: Timestamp,
) -> Result<hpp_session::Report, Refused> {
    match trust {
        CallbackTrust::Hint => tracker.observe_callback(&CFG, event_id, s, now),
        CallbackTrust::Verified => {
            let checked =
                hpp_session::callback_secret_matches(&s1(), b"secret", b"secret").unwrap();
            tracker.observe_verified_callback(checked, event_id, s, now)
        }
    }
}

const HOUR_MS: u64 = 3_600_000;
const EXPIRES_MS: u64 = 48 * HOUR_MS;

/// One status change of the server's history.
#[derive(Clone, Debug)]
struct Change {
    snapshot: Snapshot,
    /// Merchant changes (disable) send no callback.
    by_consumer: bool,
    event_id: String,
}

/// A consistent history: walk the spec's oracle table from WAITING with increasing times.
fn history() -> impl Strategy<Value = Vec<Change>> {
    prop::collection::vec((any::<prop::sample::Index>(), 1u64..120_000, 0u8..4), 0..12).prop_map(
        |steps| {
            let expires = Some(at(EXPIRES_MS));
            let mut changes = vec![Change {
                snapshot: Snapshot::new(Status::Waiting, at(0), expires, None).unwrap(),
                by_consumer: false,
                event_id: String::new(),
            }];
            let (mut status, mut t) = (Status::Waiting, 0u64);
            for (n, (pick, dt, shape)) in steps.into_iter().enumerate() {
                let allowed: Vec<Event> = Event::ALL
                    .into_iter()
                    .filter(|&e| oracle::next(status, e).is_some())
                    .collect();
                if allowed.is_empty() {
                    break;
                }
                let event = *pick.get(&allowed);
                status = oracle::next(status, event).unwrap();
                t += dt;
                // Every completion shape Klarna sends: a token, an order with or without its
                // reference, and data the crate cannot act on.
                let completion = (status == Status::Completed).then(|| {
                    let order = format!("order-{n}");
                    let token = format!("token-{n}");
                    match shape {
                        0 => Completion::from_fields(Some(&token), None, None),
                        1 => Completion::from_fields(Some(&token), Some(&order), Some("X438HG0Q")),
                        2 => Completion::from_fields(None, Some(&order), None),
                        _ => Completion::from_fields(None, None, Some("X438HG0Q")),
                    }
                    .unwrap()
                });
                changes.push(Change {
                    snapshot: Snapshot::new(status, at(t), expires, completion).unwrap(),
                    by_consumer: event != Event::Disable,
                    event_id: format!("event-{n}"),
                });
            }
            changes
        },
    )
}

#[derive(Clone, Debug)]
enum Delivery {
    Callback {
        event_id: String,
        snapshot: Snapshot,
    },
    Read(Snapshot),
}

impl Delivery {
    fn snapshot(&self) -> &Snapshot {
        match self {
            Delivery::Callback { snapshot, .. } | Delivery::Read(snapshot) => snapshot,
        }
    }
    fn is_read(&self) -> bool {
        matches!(self, Delivery::Read(_))
    }
}

/// What Klarna sends: each consumer change as a callback 1–4 times, and reads at random times
/// (each returns the latest change at that time). `keep` drops deliveries (loss).
fn deliveries(changes: &[Change], copies: &[u8], reads: &[u64], keep: &[bool]) -> Vec<Delivery> {
    let mut out = Vec::new();
    for (i, c) in changes.iter().enumerate().filter(|(_, c)| c.by_consumer) {
        for _ in 0..=copies[i % copies.len()] % 4 {
            out.push(Delivery::Callback {
                event_id: c.event_id.clone(),
                snapshot: c.snapshot.clone(),
            });
        }
    }
    let end = changes.last().unwrap().snapshot.updated_at().unwrap();
    for &r in reads {
        let read_at = at(r % (end.duration_since(at(0)).unwrap().as_millis() as u64 + 60_000));
        let latest = changes
            .iter()
            .rev()
            .find(|c| c.snapshot.updated_at().unwrap() <= read_at)
            .unwrap();
        out.push(Delivery::Read(latest.snapshot.clone()));
    }
    out.into_iter()
        .zip(keep.iter().cycle())
        .filter_map(|(d, &k)| k.then_some(d))
        .collect()
}

/// An action with its data, owned, for comparing runs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Asked {
    Place(String, Option<Timestamp>),
    Record(String, Option<String>),
    Review(CompletionProblem),
    Release(ReleaseReason),
}

/// The claim a dated hint makes (every generated snapshot is dated).
fn claim_of(s: &Snapshot) -> Claim {
    Claim::new(s.status(), s.updated_at().unwrap())
}

fn own(a: Action) -> Asked {
    match a {
        Action::PlaceOrder {
            authorization_token,
            place_by,
        } => Asked::Place(authorization_token.expose_secret().to_owned(), place_by),
        Action::RecordOrder {
            order_id,
            klarna_reference,
        } => Asked::Record(
            order_id.to_string(),
            klarna_reference.map(|r| r.to_string()),
        ),
        Action::ReviewCompletion { problem } => Asked::Review(problem),
        Action::Release { reason } => Asked::Release(reason),
        other => panic!("an action the oracle does not know: {other:?}"),
    }
}

/// Whether `d` is confirmed evidence under `trust`.
fn confirms(d: &Delivery, trust: CallbackTrust) -> bool {
    d.is_read() || trust == CallbackTrust::Verified
}

/// When the `i`-th delivery of a run arrives: a day after the history, well before expiry.
fn arrival(i: usize) -> Timestamp {
    at(EXPIRES_MS / 2 + i as u64 * 1_000)
}

/// Delivers `order` (then the 404s) to a new tracker, checking the per-step invariants, and
/// returns the tracker and everything it asked for.
fn run(
    trust: CallbackTrust,
    order: &[Delivery],
    not_found: usize,
) -> Result<(Tracker, Vec<Asked>), TestCaseError> {
    let mut tracker = Tracker::for_session(s1());
    let mut asked = Vec::new();
    let mut final_status = None;
    let mut taken: Vec<&str> = Vec::new();
    for (i, d) in order.iter().enumerate() {
        let now = arrival(i);
        let before = tracker.clone();
        let (outcome, new) = deliver(&mut tracker, trust, d, now)?;
        // A callback delivered again after it was taken is a duplicate (histories have fewer
        // changes than the tracker remembers).
        if let Delivery::Callback { event_id, .. } = d {
            if taken.contains(&event_id.as_str()) {
                prop_assert_eq!(outcome, Outcome::Duplicate);
            } else if outcome.changed() {
                taken.push(event_id);
            }
        }
        match outcome {
            Outcome::Confirmed(status) => {
                // Exactly the claimed change, now confirmed.
                prop_assert_eq!(before.claim(), Some(claim_of(d.snapshot())));
                prop_assert_eq!(tracker.status(), Some(status));
                prop_assert_eq!(tracker.claim(), None);
            }
            Outcome::Claimed(status) => {
                // A claim moves nothing confirmed.
                prop_assert_eq!(tracker.claim().map(|c| c.status()), Some(status));
                prop_assert_eq!(confirmed(tracker.state()), confirmed(before.state()));
                prop_assert!(new.is_empty(), "{:?}", new);
            }
            _ => {}
        }
        let unchanged = matches!(outcome, Outcome::Duplicate | Outcome::Stale);
        if unchanged {
            // A read that changes nothing is still a read: only the schedule counts it.
            prop_assert_eq!(tracker.state(), before.state());
            prop_assert_eq!(tracker.asked(), before.asked());
            if !d.is_read() {
                prop_assert_eq!(
                    &tracker,
                    &before,
                    "a {:?} observation changed the tracker",
                    outcome
                );
            }
            prop_assert!(new.is_empty());
        }
        prop_assert!(
            !matches!(outcome, Outcome::Conflict { .. }),
            "conflict in a consistent history"
        );
        if let Outcome::Advanced {
            from: Some(from),
            to,
            skipped,
        } = outcome
        {
            let one_edge = Event::ALL
                .into_iter()
                .any(|e| oracle::next(from, e) == Some(to));
            // Histories keep one `expires_at`, so an advance is always a new status change: a
            // skip exactly when it is not one edge (a status after itself is never one edge).
            prop_assert_eq!(skipped, !one_edge, "{} -> {}", from, to);
        }
        // A confirmed final status never changes.
        if let Some(f) = final_status {
            prop_assert_eq!(tracker.status(), Some(f));
        }
        if tracker.status().is_some_and(Status::is_final) {
            final_status = tracker.status();
        }
        // The read schedule: after a read, the next is later (a poller never spins); none once
        // a final is confirmed.
        let next = tracker.next_read(&CFG, now);
        let done = tracker.status().is_some_and(Status::is_final);
        prop_assert_eq!(next.is_none(), done);
        if d.is_read() {
            prop_assert!(next.is_none_or(|r| r.at > now));
        }
        if matches!(outcome, Outcome::Claimed(s) if s.is_final()) {
            let r = next.unwrap();
            prop_assert_eq!(r.urgency, hpp_session::Urgency::Confirm);
            // At once, or a hint gap after the read before it.
            prop_assert!(r.at <= now.checked_add(CFG.reads.hint_gap()).unwrap());
        }
        asked.extend(new);
    }
    for k in 0..not_found {
        let now = at(EXPIRES_MS + k as u64 * 1_000);
        let before = tracker.clone();
        let report = tracker
            .observe_not_found(now)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let outcome = report.outcome();
        asked.extend(new_actions(&tracker, &report).map(own));
        if k > 0 {
            prop_assert_eq!(outcome, Outcome::Duplicate);
            prop_assert_eq!(&tracker, &before);
        }
        prop_assert_eq!(tracker.next_read(&CFG, now), None);
    }
    Ok((tracker, asked))
}

/// The expected result, from the history and the delivered set only.
struct Expected {
    status: Option<Status>,
    updated_at: Option<Timestamp>,
    claim: Option<Claim>,
    decisions: Vec<Asked>,
}

fn expect(delivered: &[Delivery], trust: CallbackTrust, expired: bool) -> Expected {
    // In one history later changes have later stamps, and a final status is the last change.
    let newest = |confirmed: bool| {
        delivered
            .iter()
            .filter(|d| confirms(d, trust) == confirmed)
            .map(Delivery::snapshot)
            .max_by_key(|s| s.updated_at())
    };
    let (known, hinted) = (newest(true), newest(false));
    let mut decisions = Vec::new();
    if let Some(n) = known {
        match n.completion() {
            Some(Completion::Authorized {
                authorization_token,
            }) => decisions.push(Asked::Place(
                authorization_token.expose_secret().to_owned(),
                n.updated_at()
                    .map(|at| at.checked_add(Duration::from_secs(3600)).unwrap()),
            )),
            Some(Completion::OrderPlaced {
                order_id,
                klarna_reference,
            }) => decisions.push(Asked::Record(
                order_id.to_string(),
                klarna_reference.as_ref().map(ToString::to_string),
            )),
            Some(Completion::Unusable(problem)) => decisions.push(Asked::Review(*problem)),
            Some(other) => panic!("a completion shape the oracle does not know: {other:?}"),
            None => {}
        }
        match n.status() {
            Status::Cancelled => decisions.push(Asked::Release(ReleaseReason::Cancelled)),
            Status::Disabled => decisions.push(Asked::Release(ReleaseReason::Disabled)),
            Status::Completed => {}
            _ if expired => decisions.push(Asked::Release(ReleaseReason::Expired)),
            _ => {}
        }
    }
    let claim = hinted
        .filter(|h| known.is_none_or(|k| h.updated_at() > k.updated_at()))
        .map(claim_of);
    Expected {
        status: known.map(Snapshot::status),
        updated_at: known.and_then(Snapshot::updated_at),
        claim,
        decisions,
    }
}

fn check_run(tracker: &Tracker, asked: &[Asked], expected: &Expected) -> Result<(), TestCaseError> {
    let state = tracker.state();
    prop_assert_eq!(state.status, expected.status);
    prop_assert_eq!(state.updated_at, expected.updated_at);
    prop_assert_eq!(state.claim, expected.claim);
    prop_assert!(!tracker.has_conflict());
    // One history: no claim of it is false.
    prop_assert_eq!(tracker.refuted_claims(), 0);
    prop_assert_eq!(asked, expected.decisions.as_slice(), "money and release");
    // Owed until done: nothing was reported done here.
    prop_assert_eq!(tracker.owed(), tracker.asked());
    Ok(())
}

fn trust() -> impl Strategy<Value = CallbackTrust> {
    prop_oneof![3 => Just(CallbackTrust::Hint), 1 => Just(CallbackTrust::Verified)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_048))]

    #[test]
    fn two_trackers_agree_whatever_the_delivery(
        changes in history(),
        copies in prop::collection::vec(any::<u8>(), 1..8),
        reads in prop::collection::vec(any::<u64>(), 0..6),
        keep in prop::collection::vec(prop::bool::weighted(0.8), 1..16),
        dup in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        order_a in any::<u64>(),
        order_b in any::<u64>(),
        not_found in 0usize..3,
        trust in trust(),
    ) {
        let mut delivered = deliveries(&changes, &copies, &reads, &keep);
        if !delivered.is_empty() {
            for i in &dup {
                delivered.push(i.get(&delivered).clone());
            }
        }
        // A 404 says the session expired; it only counts once confirmed evidence told the
        // expiry.
        let told = delivered.iter().any(|d| confirms(d, trust));
        let not_found = if told { not_found } else { 0 };
        let expected = expect(&delivered, trust, not_found > 0);
        let mut results = Vec::new();
        for seed in [order_a, order_b] {
            let mut order = delivered.clone();
            shuffle(&mut order, seed);
            let (tracker, asked) = run(trust, &order, not_found)?;
            check_run(&tracker, &asked, &expected)?;
            results.push(tracker);
        }
        prop_assert_eq!(results[0].state(), results[1].state());
    }

    /// A tracker stored and restored midway behaves exactly as one that was not.
    #[cfg(feature = "serde")]
    #[test]
    fn persisting_midway_changes_nothing(
        changes in history(),
        reads in prop::collection::vec(any::<u64>(), 0..6),
        seed in any::<u64>(),
        split in any::<prop::sample::Index>(),
    ) {
        let mut order = deliveries(&changes, &[1], &reads, &[true]);
        shuffle(&mut order, seed);
        let split = if order.is_empty() { 0 } else { split.index(order.len() + 1) };
        let (mut straight, _) = run(CallbackTrust::Hint, &order[..split], 0)?;
        let json = serde_json::to_string(&straight).unwrap();
        let mut restored: Tracker = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&restored, &straight);
        let mut buf = [0u8; 2048];
        let n = serde_json_core::to_slice(&straight, &mut buf).unwrap();
        prop_assert_eq!(&serde_json_core::from_slice::<Tracker>(&buf[..n]).unwrap().0, &straight);
        for (i, d) in order[split..].iter().enumerate() {
            let now = arrival(split + i);
            let a = deliver(&mut straight, CallbackTrust::Hint, d, now)?;
            let b = deliver(&mut restored, CallbackTrust::Hint, d, now)?;
            prop_assert_eq!(a, b);
        }
        prop_assert_eq!(restored, straight);
    }
}

/// What an adversary can post to the callback URL: any status, token, order id, reference,
/// `updated_at` (in the history's range, around the arrival times, or days ahead), `expires_at`
/// (past or future), and any event id, the genuine ones included.
fn forged() -> impl Strategy<Value = Delivery> {
    let completion = prop_oneof![
        Just(Completion::authorized("ffffffff-0000-0000-0000-000000000000").unwrap()),
        Just(Completion::authorized("token-1").unwrap()),
        Just(Completion::order_placed("forged-order", "FORGED").unwrap()),
        Just(Completion::from_fields(None, Some("order-2"), None).unwrap()),
        Just(Completion::Unusable(CompletionProblem::Missing)),
    ];
    let updated_at = prop_oneof![
        0u64..2_000_000,
        EXPIRES_MS / 2 - 120_000..EXPIRES_MS / 2 + 200_000,
        0u64..3 * EXPIRES_MS,
    ];
    let expires_at = prop::option::of(prop_oneof![0u64..2_000_000, 0u64..3 * EXPIRES_MS]);
    let event_id = prop_oneof![
        (0u32..12).prop_map(|n| format!("event-{n}")),
        "[a-z0-9-]{1,12}",
    ];
    (
        0..Status::COUNT,
        updated_at,
        expires_at,
        completion,
        event_id,
    )
        .prop_map(|(s, t, e, c, event_id)| {
            let status = Status::ALL[s];
            let completion = (status == Status::Completed).then_some(c);
            Delivery::Callback {
                event_id,
                snapshot: Snapshot::new(status, at(t), e.map(at), completion).unwrap(),
            }
        })
}

/// One arrival of a run with forged input: a genuine delivery (by index), a forged callback, or
/// a 404 before expiry (wrong credentials, or an attacker's proxy).
#[derive(Clone, Debug)]
enum Arrival {
    Genuine(usize),
    Forged(Box<Delivery>),
    StrayNotFound,
    /// Anyone can open the merchant's redirect URLs, for any session id.
    ForgedRedirect(Redirect, String),
}

/// A redirect anyone can open: any URL, this session's id or another's.
fn forged_redirect() -> impl Strategy<Value = Arrival> {
    (
        prop::sample::select(Redirect::ALL.to_vec()),
        prop_oneof![Just("s-1".to_owned()), "[a-z0-9-]{1,12}"],
    )
        .prop_map(|(r, id)| Arrival::ForgedRedirect(r, id))
}

/// The confirmed part of a state: everything but the claim.
fn confirmed(state: State<'_>) -> State<'_> {
    State {
        claim: None,
        ..state
    }
}

/// A step's decisions (money and release), for comparing runs.
fn decisions(actions: &[Asked]) -> Vec<Asked> {
    actions.to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_240))]

    /// Non-interference (`SPEC.md` N1): under the default trust, forged callbacks, forged
    /// redirects and stray 404s anywhere in a schedule change none of the money and release
    /// decisions, nor their data, nor the confirmed state, nor when they are made; at most they
    /// ask for reads earlier than the confirmed schedule would.
    #[test]
    fn forged_callbacks_change_no_decision(
        changes in history(),
        copies in prop::collection::vec(any::<u8>(), 1..8),
        reads in prop::collection::vec(any::<u64>(), 0..6),
        keep in prop::collection::vec(prop::bool::weighted(0.8), 1..16),
        seed in any::<u64>(),
        forgeries in prop::collection::vec((any::<prop::sample::Index>(), prop_oneof![4 => forged().prop_map(|d| Arrival::Forged(Box::new(d))), 1 => Just(Arrival::StrayNotFound), 2 => forged_redirect()]), 1..12),
        not_found in 0usize..3,
    ) {
        let mut genuine = deliveries(&changes, &copies, &reads, &keep);
        shuffle(&mut genuine, seed);
        // The attacked schedule: the genuine deliveries in order, forgeries slipped in anywhere.
        let mut attacked: Vec<Arrival> = (0..genuine.len()).map(Arrival::Genuine).collect();
        for (at_index, forgery) in &forgeries {
            attacked.insert(at_index.index(attacked.len() + 1), forgery.clone());
        }
        let told = genuine.iter().any(Delivery::is_read);
        let not_found = if told { not_found } else { 0 };

        let mut clean = Tracker::new();
        let mut under_attack = Tracker::new();
        // The confirmed schedule alone: the same reads, no callbacks at all.
        let mut reads_only = Tracker::new();
        // Arrival times are shared: the genuine `i`-th arrival of the attacked schedule comes at
        // the same time in every run, so the runs can be compared step by step.
        for (k, arrival_k) in attacked.iter().enumerate() {
            let now = arrival(k);
            match arrival_k {
                Arrival::Genuine(i) => {
                    let d = &genuine[*i];
                    let (_, expected) = deliver(&mut clean, CallbackTrust::Hint, d, now)?;
                    let (_, actual) = deliver(&mut under_attack, CallbackTrust::Hint, d, now)?;
                    if d.is_read() {
                        deliver(&mut reads_only, CallbackTrust::Hint, d, now)?;
                    }
                    prop_assert_eq!(decisions(&actual), decisions(&expected), "decisions at step {}", k);
                }
                Arrival::Forged(d) => {
                    let before = under_attack.clone();
                    let (_, actual) = deliver(&mut under_attack, CallbackTrust::Hint, d, now)?;
                    prop_assert_eq!(decisions(&actual), vec![], "a forged callback decided something");
                    prop_assert_eq!(confirmed(under_attack.state()), confirmed(before.state()));
                    prop_assert_eq!(under_attack.owed(), before.owed());
                    // A forged claim never pages a person.
                    prop_assert!(!under_attack.has_conflict());
                }
                Arrival::StrayNotFound => {
                    let before = under_attack.clone();
                    prop_assert!(under_attack.observe_not_found(now).is_err(), "a 404 before expiry counted");
                    prop_assert_eq!(&under_attack, &before);
                }
                Arrival::ForgedRedirect(redirect, id) => {
                    let before = under_attack.clone();
                    let id = SessionId::new(id).unwrap();
                    match under_attack.observe_redirect(&id, *redirect, now) {
                        Ok(report) => {
                            prop_assert_eq!(report.newly_owed(), ActionSet::EMPTY);
                            prop_assert_eq!(under_attack.state(), before.state());
                        }
                        Err(Refused::OtherSession(_)) => {
                            prop_assert_eq!(&under_attack, &before, "a refused redirect changed the tracker");
                        }
                        Err(e) => prop_assert!(false, "refused for another reason: {}", e),
                    }
                }
            }
            prop_assert_eq!(confirmed(under_attack.state()), confirmed(clean.state()));
            prop_assert_eq!(under_attack.is_confirmed(), clean.is_confirmed());
            // Never later than the confirmed schedule, never stopped while it goes on.
            let (attacked_next, scheduled) = (under_attack.next_read(&CFG, now), reads_only.next_read(&CFG, now));
            prop_assert_eq!(attacked_next.is_none(), scheduled.is_none());
            let at = |r: Option<hpp_session::NextRead>| r.map(|r| r.at);
            prop_assert!(at(attacked_next) <= at(scheduled), "{:?} after {:?}", attacked_next, scheduled);
        }
        for k in 0..not_found {
            let now = at(EXPIRES_MS + k as u64 * 1_000);
            let expected = clean.observe_not_found(now).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let expected: Vec<Asked> = new_actions(&clean, &expected).map(own).collect();
            let actual = under_attack.observe_not_found(now).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let actual: Vec<Asked> = new_actions(&under_attack, &actual).map(own).collect();
            prop_assert_eq!(decisions(&actual), decisions(&expected));
        }
        prop_assert_eq!(confirmed(under_attack.state()), confirmed(clean.state()));
        prop_assert_eq!(under_attack.owed(), clean.owed());
        prop_assert!(!under_attack.has_conflict(), "forgeries flagged the session for a person");
    }
}

/// Any snapshots at all, contradictory ones included, from small domains so that they collide.
fn any_snapshot() -> impl Strategy<Value = (bool, Snapshot)> {
    let completion = prop_oneof![
        Just(Completion::authorized("token-a").unwrap()),
        Just(Completion::authorized("token-b").unwrap()),
        Just(Completion::order_placed("order-a", "REF").unwrap()),
        Just(Completion::from_fields(None, Some("order-a"), None).unwrap()),
        Just(Completion::Unusable(CompletionProblem::Missing)),
    ];
    (
        any::<bool>(),
        0..Status::COUNT,
        0u64..6,
        prop::option::of(0u64..3),
        completion,
    )
        .prop_map(|(read, s, t, e, c)| {
            let status = Status::ALL[s];
            let completion = (status == Status::Completed).then_some(c);
            let expires = e.map(|e| at(EXPIRES_MS + e));
            (
                read,
                Snapshot::new(status, at(t), expires, completion).unwrap(),
            )
        })
}

/// Observes `s` as a read or a callback; the outcome and the actions, or `None` when refused.
fn observe(
    tracker: &mut Tracker,
    trust: CallbackTrust,
    read: bool,
    s: &Snapshot,
    now: Timestamp,
) -> Option<(Outcome, Vec<Asked>)> {
    let report = if read {
        tracker.observe_read(&CFG, s, now).unwrap()
    } else {
        callback(tracker, trust, None, s, now).ok()?
    };
    // Whatever the input, everything owed has its data.
    assert!(tracker.owed().iter().all(|k| tracker.action(k).is_some()));
    Some((
        report.outcome(),
        new_actions(tracker, &report).map(own).collect(),
    ))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4_096))]

    /// The state depends only on the set of snapshots, even when they contradict each other;
    /// repetition and order never matter, and nothing panics.
    #[test]
    fn any_snapshot_set_reconciles_the_same_in_any_order(
        set in prop::collection::vec(any_snapshot(), 1..10),
        repeat in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        seed in any::<u64>(),
        trust in trust(),
    ) {
        let mut forward = Tracker::for_session(s1());
        for (i, (read, s)) in set.iter().enumerate() {
            prop_assert!(observe(&mut forward, trust, *read, s, at(i as u64)).is_some());
        }
        let mut order: Vec<_> = set.clone();
        for r in &repeat {
            order.push(r.get(&set).clone());
        }
        shuffle(&mut order, seed);
        let mut shuffled = Tracker::for_session(s1());
        let mut money = 0;
        for (i, (read, s)) in order.iter().enumerate() {
            let before = shuffled.clone();
            let (outcome, actions) = observe(&mut shuffled, trust, *read, s, at(i as u64)).unwrap();
            money += actions.iter().filter(|a| matches!(a, Asked::Place(..) | Asked::Record(..) | Asked::Review(_))).count();
            if !outcome.changed() {
                // A read that changes nothing is still a read: only the schedule counts it.
                prop_assert_eq!(shuffled.state(), before.state());
                prop_assert_eq!(shuffled.asked(), before.asked());
                if !*read {
                    prop_assert_eq!(&shuffled, &before);
                }
            }
        }
        prop_assert_eq!(forward.state(), shuffled.state());
        // The winner among confirmed evidence, by an oracle written here: an authorization above
        // any other final, a final above anything else, then the latest `updated_at`.
        let rank = |s: Status| match s {
            Status::Completed => 2,
            s if s.is_final() => 1,
            _ => 0,
        };
        let evidence: Vec<&Snapshot> = set.iter().filter(|(read, _)| *read || trust == CallbackTrust::Verified).map(|(_, s)| s).collect();
        let top = evidence.iter().map(|s| rank(s.status())).max();
        let latest = evidence.iter().filter(|s| Some(rank(s.status())) == top).filter_map(|s| s.updated_at()).max();
        let state = shuffled.state();
        prop_assert_eq!(state.status.map(rank), top);
        prop_assert_eq!(state.updated_at, latest);
        // Money comes only from confirmed evidence (one per kind at most).
        prop_assert!(money <= 3);
        if evidence.is_empty() {
            prop_assert_eq!(money, 0);
            prop_assert!(!shuffled.is_confirmed());
        }
    }

    /// `SPEC.md` N2: over any input at all (contradictory snapshots, reads and callbacks under
    /// either trust, 404s at any time), once confirmed evidence showed `COMPLETED` the cart is
    /// never released; and no session gets both a release and a money action unless a conflict
    /// was reported.
    #[test]
    fn a_paid_cart_is_never_released(
        inputs in prop::collection::vec(prop_oneof![6 => any_snapshot().prop_map(Some), 1 => Just(None)], 1..14),
        not_found_at in prop::collection::vec(0u64..3, 0..14),
        trust in trust(),
    ) {
        let mut tracker = Tracker::default();
        let mut paid = false;
        let mut asked = Vec::new();
        for (i, input) in inputs.iter().enumerate() {
            let actions = match input {
                Some((read, s)) => {
                    let now = at(i as u64);
                    let Some((_, actions)) = observe(&mut tracker, trust, *read, s, now) else { continue };
                    paid |= s.status() == Status::Completed && (*read || trust == CallbackTrust::Verified);
                    actions
                }
                None => {
                    // A 404 before, at or after the expiry the snapshots tell.
                    let now = at(EXPIRES_MS + not_found_at.get(i).copied().unwrap_or(1));
                    match tracker.observe_not_found(now) {
                        Ok(report) => new_actions(&tracker, &report).map(own).collect(),
                        Err(_) => continue,
                    }
                }
            };
            if paid {
                prop_assert!(!actions.iter().any(|a| matches!(a, Asked::Release(_))), "released a paid cart: {:?}", actions);
                // Nor is a release asked before the payment was confirmed still owed.
                prop_assert!(!tracker.owed().contains(hpp_session::ActionKind::Release), "a paid cart is still owed a release");
            }
            asked.extend(actions);
        }
        let money = asked.iter().any(|a| matches!(a, Asked::Place(..) | Asked::Record(..) | Asked::Review(_)));
        let release = asked.iter().any(|a| matches!(a, Asked::Release(_)));
        if money && release {
            prop_assert!(tracker.has_conflict(), "money and a release without a conflict: {:?}", asked);
        }
    }
}

/// Delivers `d` at `now`; returns the outcome and the actions asked for. A genuine callback is
/// never refused as coming from the future.
fn deliver(
    tracker: &mut Tracker,
    trust: CallbackTrust,
    d: &Delivery,
    now: Timestamp,
) -> Result<(Outcome, Vec<Asked>), TestCaseError> {
    let report = match d {
        Delivery::Callback { event_id, snapshot } => {
            match callback(tracker, trust, Some(event_id), snapshot, now) {
                Ok(report) => report,
                // Only a forged callback can be stamped in the future: it changes nothing.
                Err(e) => {
                    let Refused::FutureHint(e) = e else {
                        return Err(TestCaseError::fail(format!("refused: {e}")));
                    };
                    prop_assert!(e.updated_at > now);
                    return Ok((Outcome::Stale, Vec::new()));
                }
            }
        }
        Delivery::Read(snapshot) => tracker.observe_read(&CFG, snapshot, now).unwrap(),
    };
    let actions: Vec<Asked> = new_actions(tracker, &report).map(own).collect();
    prop_assert_eq!(
        actions.len(),
        report.newly_owed().iter().count(),
        "every new kind has its action"
    );
    prop_assert!(
        tracker.owed().iter().all(|k| tracker.action(k).is_some()),
        "an owed action without its data"
    );
    Ok((report.outcome(), actions))
}

/// Fisher–Yates with SplitMix64, so a seed names an order.
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        items.swap(i, (z % (i as u64 + 1)) as usize);
    }
}

/// A session as a service or a replay keeps it: a whole tracker while it is open, its
/// [`Settled`] stand-in once it settled, revived when confirmed evidence outranks that.
enum Kept {
    Live(Box<Tracker>),
    Settled(hpp_session::Settled),
}

impl Kept {
    /// Observes one input; the kinds newly asked for, or `None` when refused.
    fn observe(
        &mut self,
        input: &Option<(bool, Snapshot)>,
        now: Timestamp,
    ) -> Option<hpp_session::ActionSet> {
        use hpp_session::ActionSet;
        let asked = match self {
            Kept::Live(t) => observe_input(t, input, now)?,
            Kept::Settled(s) => {
                let answered = match input {
                    Some((true, snap)) => s.observe_read(snap),
                    Some((false, snap)) => s.observe_callback(snap, now, &CFG).ok()?,
                    None => {
                        s.observe_not_found(not_found_time(now)).ok()?;
                        Some(Outcome::Duplicate)
                    }
                };
                if answered.is_some() {
                    ActionSet::EMPTY
                } else {
                    let mut t = s.revive(Some(s1()));
                    let asked = observe_input(&mut t, input, now)?;
                    *self = Kept::Live(Box::new(t));
                    asked
                }
            }
        };
        if let Kept::Live(t) = self
            && let Some(settled) = t.settled()
        {
            *self = Kept::Settled(settled);
        }
        Some(asked)
    }

    fn has_conflict(&self) -> bool {
        match self {
            Kept::Live(t) => t.has_conflict(),
            Kept::Settled(s) => s.has_conflict(),
        }
    }

    fn status_and_expired(&self) -> (Option<Status>, bool) {
        match self {
            Kept::Live(t) => (t.status(), t.is_expired()),
            Kept::Settled(s) => (Some(s.status()), s.is_expired()),
        }
    }
}

/// When a 404 of step `now` comes: after expiry for even steps, before it for odd ones.
fn not_found_time(now: Timestamp) -> Timestamp {
    let step = now.duration_since(at(0)).unwrap().as_millis() as u64;
    at(EXPIRES_MS + 1 + step % 3)
}

/// Observes a read, a hint or (for `None`) a 404 on a whole tracker: the kinds newly asked for.
fn observe_input(
    t: &mut Tracker,
    input: &Option<(bool, Snapshot)>,
    now: Timestamp,
) -> Option<hpp_session::ActionSet> {
    let asked = match input {
        Some((true, s)) => t.observe_read(&CFG, s, now).ok()?.newly_owed(),
        Some((false, s)) => t.observe_callback(&CFG, None, s, now).ok()?.newly_owed(),
        None => t.observe_not_found(not_found_time(now)).ok()?.newly_owed(),
    };
    // The executor performs what is owed, and reports it done.
    perform_all(t);
    Some(asked)
}

/// The session the whole-tracker properties follow (their snapshots name none).
fn s1() -> SessionId {
    SessionId::new("s-1").unwrap()
}

/// Reports everything `t` owes done, as an executor that performed it does.
fn perform_all(t: &mut Tracker) {
    assert!(t.owed().iter().all(|k| t.action(k).is_some()));
    let id = s1();
    for kind in t.owed().iter() {
        t.done(ActionId::new(&id, kind)).unwrap();
    }
    assert!(t.owed().is_empty());
}

/// Snapshots of every shape, undated `COMPLETED` ones too.
fn any_snapshot_or_undated() -> impl Strategy<Value = (bool, Snapshot)> {
    prop_oneof![
        5 => any_snapshot(),
        1 => (any::<bool>(), 0u64..2).prop_map(|(read, t)| {
            let c = [Completion::authorized("token-a").unwrap(), Completion::Unusable(CompletionProblem::Missing)];
            (read, Snapshot::paid_undated(c[t as usize].clone(), Some(at(EXPIRES_MS))))
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8_192))]

    /// `SPEC.md` R10: a session kept as its [`Settled`] stand-in once it settled (revived when
    /// confirmed evidence outranks it) asks, step by step, for exactly what the whole tracker
    /// asks, refuses what it refuses, and ends with the same status, expiry and conflict flag,
    /// over any input: contradictory snapshots, reads and hints, 404s before and after expiry.
    #[test]
    fn a_settled_session_asks_exactly_what_the_whole_tracker_asks(
        inputs in prop::collection::vec(prop_oneof![6 => any_snapshot_or_undated().prop_map(Some), 1 => Just(None)], 1..16),
    ) {
        let mut whole = Tracker::for_session(s1());
        let mut kept = Kept::Live(Box::new(Tracker::for_session(s1())));
        for (i, input) in inputs.iter().enumerate() {
            let now = at(1_000 + i as u64);
            let want = observe_input(&mut whole, input, now);
            let got = kept.observe(input, now);
            prop_assert_eq!(got, want, "step {} ({:?})", i, input);
            prop_assert_eq!(kept.has_conflict(), whole.has_conflict(), "step {}", i);
            prop_assert_eq!(kept.status_and_expired(), (whole.status(), whole.is_expired()), "step {}", i);
        }
    }
}

//! The tracker against generated server histories, delivered as Klarna would (callbacks 1–4
//! times, reads at random times, a 404 after expiry) with loss, duplication and reordering.
//!
//! The oracle reads the expected result off the history and the set of delivered snapshots
//! (the newest delivered change wins; money only from a delivered read of it), not off the
//! tracker.

mod common;

use core::time::Duration;

use common::{at, oracle};
use hpp_session::{
    Action, CallbackTrust, Completion, Event, Outcome, ReleaseReason, Snapshot, Status, Timestamp,
    Tracker, TrackerConfig,
};
use proptest::prelude::*;

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
    prop::collection::vec(
        (any::<prop::sample::Index>(), 1u64..120_000, any::<bool>()),
        0..12,
    )
    .prop_map(|steps| {
        let expires = Some(at(EXPIRES_MS));
        let mut changes = vec![Change {
            snapshot: Snapshot::new(Status::Waiting, at(0), expires, None).unwrap(),
            by_consumer: false,
            event_id: String::new(),
        }];
        let (mut status, mut t) = (Status::Waiting, 0u64);
        for (n, (pick, dt, by_order)) in steps.into_iter().enumerate() {
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
            let completion = (status == Status::Completed).then(|| {
                if by_order {
                    Completion::order_placed(&format!("order-{n}"), "X438HG0Q").unwrap()
                } else {
                    Completion::authorized(&format!("token-{n}")).unwrap()
                }
            });
            changes.push(Change {
                snapshot: Snapshot::new(status, at(t), expires, completion).unwrap(),
                by_consumer: event != Event::Disable,
                event_id: format!("event-{n}"),
            });
        }
        changes
    })
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
    let end = changes.last().unwrap().snapshot.updated_at();
    for &r in reads {
        let read_at = at(r % (end.duration_since(at(0)).unwrap().as_millis() as u64 + 60_000));
        let latest = changes
            .iter()
            .rev()
            .find(|c| c.snapshot.updated_at() <= read_at)
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
    Place(String, Timestamp),
    Record(String, String),
    Release(ReleaseReason),
    Read,
}

fn own(a: Action<'_>) -> Asked {
    match a {
        Action::PlaceOrder {
            authorization_token,
            place_by,
        } => Asked::Place(authorization_token.to_string(), place_by),
        Action::RecordOrder {
            order_id,
            klarna_reference,
        } => Asked::Record(order_id.to_string(), klarna_reference.to_string()),
        Action::Release { reason } => Asked::Release(reason),
        Action::ReadSession => Asked::Read,
    }
}

/// Delivers `order` (then the 404s) to a new tracker, checking the per-step invariants, and
/// returns the tracker and everything it asked for.
fn run(
    config: TrackerConfig,
    order: &[Delivery],
    not_found: usize,
) -> Result<(Tracker, Vec<Asked>), TestCaseError> {
    let mut tracker = Tracker::new(config);
    let mut asked = Vec::new();
    let mut final_status = None;
    let mut taken: Vec<&str> = Vec::new();
    for (i, d) in order.iter().enumerate() {
        let now = at(EXPIRES_MS / 2 + i as u64 * 1_000);
        let before = tracker.clone();
        let (outcome, new) = deliver(&mut tracker, d, now);
        // A callback delivered again after it was taken is a duplicate (histories have fewer
        // changes than the tracker remembers).
        if let Delivery::Callback { event_id, .. } = d {
            if taken.contains(&event_id.as_str()) {
                prop_assert_eq!(outcome, Outcome::Duplicate);
            } else if outcome.changed() {
                taken.push(event_id);
            }
        }
        if let Outcome::Confirmed(status) = outcome {
            prop_assert!(!before.is_confirmed() && tracker.is_confirmed());
            prop_assert_eq!(tracker.status(), Some(status));
        }
        let unchanged = matches!(outcome, Outcome::Duplicate | Outcome::Stale);
        if unchanged {
            prop_assert_eq!(
                &tracker,
                &before,
                "a {:?} observation changed the tracker",
                outcome
            );
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
        // A final status never changes.
        if let Some(f) = final_status {
            prop_assert_eq!(tracker.status(), Some(f));
        }
        if tracker.status().is_some_and(Status::is_final) {
            final_status = tracker.status();
        }
        // The read schedule: never before now; none once a final is confirmed.
        let next = tracker.next_read(now);
        let done = tracker.is_confirmed() && tracker.status().is_some_and(Status::is_final);
        prop_assert_eq!(next.is_none(), done);
        prop_assert!(next.is_none_or(|t| t >= now));
        if matches!(outcome, Outcome::Advanced { to, .. } if to.is_final())
            && !tracker.is_confirmed()
        {
            prop_assert_eq!(
                next,
                Some(now),
                "an unconfirmed final asks for a read at once"
            );
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
        asked.extend(report.actions().map(own));
        if k > 0 {
            prop_assert_eq!(outcome, Outcome::Duplicate);
            prop_assert_eq!(&tracker, &before);
        }
        prop_assert_eq!(tracker.next_read(now), None);
    }
    Ok((tracker, asked))
}

/// The expected result, from the history and the delivered set only.
struct Expected {
    status: Option<Status>,
    updated_at: Option<Timestamp>,
    confirmed: bool,
    money: Vec<Asked>,
    release: Option<ReleaseReason>,
}

fn expect(delivered: &[Delivery], trust: CallbackTrust, expired: bool) -> Expected {
    let newest = delivered
        .iter()
        .map(|d| d.snapshot())
        .max_by_key(|s| s.updated_at());
    let confirmed = newest.is_some_and(|n| {
        delivered.iter().any(|d| {
            (d.is_read() || trust == CallbackTrust::Verified)
                && d.snapshot().updated_at() == n.updated_at()
        })
    });
    let mut money = Vec::new();
    let mut release = None;
    if let Some(n) = newest {
        if confirmed {
            match n.completion() {
                Some(Completion::Authorized {
                    authorization_token,
                }) => money.push(Asked::Place(
                    authorization_token.to_string(),
                    n.updated_at()
                        .checked_add(Duration::from_secs(3600))
                        .unwrap(),
                )),
                Some(Completion::OrderPlaced {
                    order_id,
                    klarna_reference,
                }) => money.push(Asked::Record(
                    order_id.to_string(),
                    klarna_reference.to_string(),
                )),
                None => {}
            }
            release = match n.status() {
                Status::Cancelled => Some(ReleaseReason::Cancelled),
                Status::Disabled => Some(ReleaseReason::Disabled),
                _ => None,
            };
        }
        if release.is_none() && expired && n.status() != Status::Completed {
            release = Some(ReleaseReason::Expired);
        }
    }
    Expected {
        status: newest.map(Snapshot::status),
        updated_at: newest.map(Snapshot::updated_at),
        confirmed,
        money,
        release,
    }
}

fn check_run(
    tracker: &Tracker,
    asked: &[Asked],
    order: &[Delivery],
    expected: &Expected,
    trust: CallbackTrust,
) -> Result<(), TestCaseError> {
    let state = tracker.state();
    prop_assert_eq!(state.status, expected.status);
    prop_assert_eq!(state.updated_at, expected.updated_at);
    prop_assert_eq!(state.confirmed, expected.confirmed);
    prop_assert!(!tracker.has_conflict());
    let money: Vec<Asked> = asked
        .iter()
        .filter(|a| matches!(a, Asked::Place(..) | Asked::Record(..)))
        .cloned()
        .collect();
    prop_assert_eq!(&money, &expected.money, "money actions");
    let releases: Vec<ReleaseReason> = asked
        .iter()
        .filter_map(|a| match a {
            Asked::Release(r) => Some(*r),
            _ => None,
        })
        .collect();
    prop_assert_eq!(
        releases,
        expected.release.into_iter().collect::<Vec<_>>(),
        "releases"
    );
    // A confirming read is asked for exactly when the first final this tracker saw came from an
    // unsigned callback.
    let first_final = order.iter().find(|d| d.snapshot().status().is_final());
    let wants_read = trust == CallbackTrust::Hint && first_final.is_some_and(|d| !d.is_read());
    let reads = asked.iter().filter(|a| **a == Asked::Read).count();
    prop_assert_eq!(
        reads,
        usize::from(wants_read),
        "read_session asked {} times",
        reads
    );
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
        // A 404 says the session expired; it only counts once a snapshot told the expiry.
        let not_found = if delivered.is_empty() { 0 } else { not_found };
        let expected = expect(&delivered, trust, not_found > 0);
        let config = TrackerConfig { trust, ..TrackerConfig::default() };
        let mut results = Vec::new();
        for seed in [order_a, order_b] {
            let mut order = delivered.clone();
            shuffle(&mut order, seed);
            let (tracker, asked) = run(config, &order, not_found)?;
            check_run(&tracker, &asked, &order, &expected, trust)?;
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
        let (mut straight, _) = run(TrackerConfig::default(), &order[..split], 0)?;
        let json = serde_json::to_string(&straight).unwrap();
        let mut restored: Tracker = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&restored, &straight);
        let mut buf = [0u8; 2048];
        let n = serde_json_core::to_slice(&straight, &mut buf).unwrap();
        prop_assert_eq!(&serde_json_core::from_slice::<Tracker>(&buf[..n]).unwrap().0, &straight);
        for (i, d) in order[split..].iter().enumerate() {
            let now = at(EXPIRES_MS / 2 + (split + i) as u64 * 1_000);
            let a = deliver(&mut straight, d, now);
            let b = deliver(&mut restored, d, now);
            prop_assert_eq!(a, b);
        }
        prop_assert_eq!(restored, straight);
    }
}

/// Any snapshots at all, contradictory ones included, from small domains so that they collide.
fn any_snapshot() -> impl Strategy<Value = (bool, Snapshot)> {
    let completion = prop_oneof![
        Just(Completion::authorized("token-a").unwrap()),
        Just(Completion::authorized("token-b").unwrap()),
        Just(Completion::order_placed("order-a", "REF").unwrap()),
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
        let config = TrackerConfig { trust, ..TrackerConfig::default() };
        let mut forward = Tracker::new(config);
        for (i, (read, s)) in set.iter().enumerate() {
            let now = at(i as u64);
            let _ = if *read { forward.observe_read(s, now) } else { forward.observe_callback(None, s, now) };
        }
        let mut order: Vec<_> = set.clone();
        for r in &repeat {
            order.push(r.get(&set).clone());
        }
        shuffle(&mut order, seed);
        let mut shuffled = Tracker::new(config);
        let mut money = 0;
        for (i, (read, s)) in order.iter().enumerate() {
            let now = at(i as u64);
            let before = shuffled.clone();
            let report = if *read { shuffled.observe_read(s, now) } else { shuffled.observe_callback(None, s, now) };
            money += report.actions().filter(|a| matches!(a, Action::PlaceOrder { .. } | Action::RecordOrder { .. })).count();
            if !report.outcome().changed() {
                prop_assert_eq!(&shuffled, &before);
            }
        }
        prop_assert_eq!(forward.state(), shuffled.state());
        // The winner, by an oracle written here: an authorization above any other final, a final
        // above anything else, then the latest `updated_at`.
        let rank = |s: &Snapshot| match s.status() {
            Status::Completed => 2,
            s if s.is_final() => 1,
            _ => 0,
        };
        let top = set.iter().map(|(_, s)| rank(s)).max().unwrap();
        let latest = set.iter().filter(|(_, s)| rank(s) == top).map(|(_, s)| s.updated_at()).max();
        let state = shuffled.state();
        prop_assert_eq!(state.status.map(|s| rank(&Snapshot::new(s, at(0), None, (s == Status::Completed).then(|| Completion::authorized("t").unwrap())).unwrap())), Some(top));
        prop_assert_eq!(state.updated_at, latest);
        // Money comes only from a confirmed completion (one per kind at most), and an unsigned
        // callback alone never confirms.
        prop_assert!(money <= 2);
        if trust == CallbackTrust::Hint && set.iter().all(|(read, _)| !read) {
            prop_assert_eq!(money, 0);
            prop_assert!(!shuffled.is_confirmed());
        }
    }
}

/// Delivers `d` at `now`; returns the outcome and the actions asked for.
fn deliver(tracker: &mut Tracker, d: &Delivery, now: Timestamp) -> (Outcome, Vec<Asked>) {
    let report = match d {
        Delivery::Callback { event_id, snapshot } => {
            tracker.observe_callback(Some(event_id), snapshot, now)
        }
        Delivery::Read(snapshot) => tracker.observe_read(snapshot, now),
    };
    let actions: Vec<Asked> = report.actions().map(own).collect();
    assert_eq!(
        actions.len(),
        report.action_kinds().iter().count(),
        "every new kind has its action"
    );
    (report.outcome(), actions)
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

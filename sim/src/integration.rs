//! Your own integration in the closed loop: your callback handler, redirect handler, poller and
//! executor, driven by one scenario and judged by the oracle.
//!
//! [`drive`](crate::drive::drive) runs the crate's own integrator (one [`Tracker`](hpp_session::Tracker)).
//! To test yours, implement [`Integration`] over whatever your shop keeps, and hand it to
//! [`drive_integration`]: the loop delivers each callback and redirect as it arrives, wakes your
//! poller when it asks, answers its reads and disables as Klarna would ([`Klarna`]), records what
//! it does to money and carts, and judges the run by the oracle on the history, never by your
//! state: each action exactly once, an order only within the token's hour.

use core::fmt;

use super::Scenario;
use super::drive::{MAX_RUN_ACTIONS, SETTLE_WITHIN};
use super::klarna::{Delivery, ReadAnswer, Visit, token_accepted};
use super::oracle::{self, Expected};
use core::time::Duration;

use hpp_session::{DisableAnswer, ReleaseReason, Timestamp};

const MILLISECOND: Duration = Duration::from_millis(1);

/// Your integration, as the closed loop drives it. Every method gets the loop's clock.
pub trait Integration {
    /// A status callback reached your endpoint. `secret_matches`: the secret in the URL was the
    /// one you issued (Klarna's calls; an adversary's call does not know it). What you do with
    /// it is yours: the safe use takes a callback whose secret does not match as a hint at most.
    fn callback(&mut self, now: Timestamp, delivery: &Delivery, secret_matches: bool);

    /// The consumer's browser (or an adversary) opened one of your redirect URLs.
    fn redirect(&mut self, now: Timestamp, visit: &Visit);

    /// When your poller wants to run next, asked at `now` (`None`: not until something
    /// arrives). A time in the past means now; the loop wakes it at most once a millisecond.
    fn next_wake(&self, now: Timestamp) -> Option<Timestamp>;

    /// Your poller and executor at `now`: read, disable, place the order, and report to the
    /// shop through `klarna`.
    fn wake(&mut self, now: Timestamp, klarna: &mut Klarna<'_>);
}

/// Klarna's side of one session, and the merchant's shop, as your integration calls them at
/// one instant. Everything it is asked is recorded for the judge.
#[derive(Debug)]
pub struct Klarna<'a> {
    scenario: &'a mut Scenario,
    record: &'a mut Record,
    now: Timestamp,
}

/// What create-order answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderAnswer {
    /// 200: the order was created.
    Created,
    /// 404: the token is not this session's, not issued yet, or past its hour; or the order
    /// exists already (a successful order closes the payment session).
    Refused,
}

impl Klarna<'_> {
    /// `GET` the session (Klarna's read).
    pub fn read(&mut self) -> ReadAnswer {
        self.record.reads = self.record.reads.saturating_add(1);
        self.scenario.read(self.now)
    }

    /// `DELETE` the session (the merchant's disable).
    pub fn disable(&mut self) -> DisableAnswer {
        self.record.disables = self.record.disables.saturating_add(1);
        self.scenario.disable(self.now)
    }

    /// Create-order with `token`: created once, within the token's hour
    /// ([`token_accepted`]); every call is recorded.
    pub fn create_order(&mut self, token: &str) -> OrderAnswer {
        let history = &self.scenario.history;
        let ours = history
            .completion
            .authorization_token
            .as_ref()
            .is_some_and(|t| t.as_str() == token);
        self.record.orders_asked = self.record.orders_asked.saturating_add(1);
        if ours && self.record.orders_created == 0 && token_accepted(history, self.now) {
            self.record.orders_created = 1;
            OrderAnswer::Created
        } else {
            OrderAnswer::Refused
        }
    }

    /// The shop records the order Klarna placed.
    pub fn record_order(&mut self, order_id: &str) {
        let mut text = crate::Text::new();
        let _ = text.push_str(order_id.get(..text.capacity()).unwrap_or(order_id));
        self.shop(Expected::RecordOrder {
            order_id: text,
            klarna_reference: None,
        });
    }

    /// The shop hands the paid session to a person.
    pub fn review(&mut self) {
        self.shop(Expected::ReviewCompletion);
    }

    /// The shop releases the cart.
    pub fn release(&mut self, reason: ReleaseReason) {
        self.shop(Expected::Release(reason));
    }

    fn shop(&mut self, effect: Expected) {
        // Past the bound is far past "exactly once" already: counted, not kept.
        if self.record.shop.push(effect).is_err() {
            self.record.shop_overflow = true;
        }
    }
}

/// Everything the integration asked of Klarna and the shop.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// Reads made.
    pub reads: u32,
    /// Disables made.
    pub disables: u32,
    /// Create-order calls.
    pub orders_asked: u32,
    /// Orders created (at most one: a successful order closes the payment session).
    pub orders_created: u32,
    /// The shop's calls, in order (Klarna's order recorded, a review, a release).
    pub shop: heapless::Vec<Expected, MAX_RUN_ACTIONS>,
    /// More shop calls than [`MAX_RUN_ACTIONS`] were made.
    pub shop_overflow: bool,
}

/// What went wrong in a run, by the oracle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// The expected action did not happen (by [`SETTLE_WITHIN`] after expiry).
    NotDone,
    /// It happened more than once (an order asked again, a release made twice).
    DoneTwice,
    /// Something else happened: a paid cart released, an order beside Klarna's, the wrong
    /// reason, another order id.
    Wrong,
    /// The order was asked only after the token's hour: the money is lost.
    TokenDead,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotDone => "the expected action did not happen",
            Self::DoneTwice => "the action happened more than once",
            Self::Wrong => "something other than the expected action happened",
            Self::TokenDead => "the order was asked after the token's hour",
        })
    }
}

/// The judge's verdict on one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Judgement {
    /// What the history calls for, after the run (the merchant's disables included).
    pub expected: Expected,
    /// What the integration did.
    pub record: Record,
    /// What went wrong; `None`: the expected action, exactly once, and nothing else.
    pub problem: Option<Problem>,
}

impl Judgement {
    /// The run did the expected action exactly once and nothing else.
    #[must_use]
    pub const fn ok(&self) -> bool {
        self.problem.is_none()
    }
}

/// The oracle's verdict on `record` for a history calling for `expected`.
fn judge(expected: &Expected, record: &Record) -> Option<Problem> {
    let shop = record.shop.as_slice();
    if record.shop_overflow {
        return Some(Problem::DoneTwice);
    }
    match expected {
        Expected::PlaceOrder { .. } => match (record.orders_created, record.orders_asked) {
            _ if !shop.is_empty() => Some(Problem::Wrong),
            (1, 1) => None,
            (1, _) => Some(Problem::DoneTwice),
            (_, 0) => Some(Problem::NotDone),
            _ => Some(Problem::TokenDead),
        },
        _ if record.orders_asked > 0 => Some(Problem::Wrong),
        Expected::RecordOrder { order_id, .. } => match shop {
            [] => Some(Problem::NotDone),
            [Expected::RecordOrder { order_id: got, .. }] if got == order_id => None,
            [_] => Some(Problem::Wrong),
            _ => Some(Problem::DoneTwice),
        },
        other => match shop {
            [] => Some(Problem::NotDone),
            [got] if got == other => None,
            [_] => Some(Problem::Wrong),
            _ => Some(Problem::DoneTwice),
        },
    }
}

/// What the loop does next.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Next {
    Callback,
    Visit,
    Wake,
}

/// Runs `scenario` against your `integration` and judges it.
///
/// From the session's creation, in time order: each callback (`secret_matches` is `false` for
/// the adversary's), each redirect, and your poller whenever [`Integration::next_wake`] asks;
/// ties go callback, redirect, then your poller. The loop ends when nothing is left to arrive
/// and your poller asks for nothing, or [`SETTLE_WITHIN`] after expiry.
pub fn drive_integration(scenario: &mut Scenario, integration: &mut impl Integration) -> Judgement {
    let deadline = scenario.history.expires_at.saturating_add(SETTLE_WITHIN);
    let mut record = Record::default();
    let mut now = scenario.history.created_at;
    let (mut next_delivery, mut next_visit) = (0, 0);
    // A poller that always wants to run "now" still lets the clock move.
    let mut last_wake: Option<Timestamp> = None;
    loop {
        let earliest = last_wake.map_or(now, |w| now.max(w.saturating_add(MILLISECOND)));
        let wake = integration.next_wake(now).map(|at| at.max(earliest));
        let delivery = scenario.deliveries().get(next_delivery).map(|d| d.at);
        let visit = scenario.visits.get(next_visit).map(|v| v.at);
        let next = [
            (delivery, Next::Callback),
            (visit, Next::Visit),
            (wake, Next::Wake),
        ]
        .into_iter()
        .filter_map(|(at, next)| at.map(|at| (at, next)))
        .min();
        let Some((at, next)) = next.filter(|&(at, _)| at <= deadline) else {
            break;
        };
        now = at;
        match next {
            Next::Callback => {
                if let Some(d) = scenario.deliveries().get(next_delivery) {
                    integration.callback(now, d, !d.forged);
                }
                next_delivery += 1;
            }
            Next::Visit => {
                if let Some(v) = scenario.visits.get(next_visit) {
                    integration.redirect(now, v);
                }
                next_visit += 1;
            }
            Next::Wake => {
                last_wake = Some(now);
                let mut klarna = Klarna {
                    scenario,
                    record: &mut record,
                    now,
                };
                integration.wake(now, &mut klarna);
            }
        }
    }
    // After the run: the merchant's disables are part of the history.
    let expected = oracle::expected(&scenario.history);
    let problem = judge(&expected, &record);
    Judgement {
        expected,
        record,
        problem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> crate::Text {
        let mut t = crate::Text::new();
        t.push_str(s).unwrap();
        t
    }

    fn record(orders: (u32, u32), shop: &[Expected]) -> Record {
        Record {
            orders_created: orders.0,
            orders_asked: orders.1,
            shop: heapless::Vec::from_slice(shop).unwrap(),
            ..Record::default()
        }
    }

    /// Each verdict of the judge, case by case, written out from "the expected action exactly
    /// once and nothing else, the order within the token's hour".
    #[test]
    fn the_judge_says_what_went_wrong() {
        let place = Expected::PlaceOrder {
            authorization_token: text("t"),
            place_by: None,
        };
        let recorded = |id: &str| Expected::RecordOrder {
            order_id: text(id),
            klarna_reference: None,
        };
        let klarnas = Expected::RecordOrder {
            order_id: text("o"),
            klarna_reference: Some(text("REF")),
        };
        let cancelled = Expected::Release(ReleaseReason::Cancelled);
        let disabled = Expected::Release(ReleaseReason::Disabled);
        let cases: [(&Expected, Record, Option<Problem>); 16] = [
            (&place, record((1, 1), &[]), None),
            (&place, record((1, 2), &[]), Some(Problem::DoneTwice)),
            (&place, record((0, 0), &[]), Some(Problem::NotDone)),
            (&place, record((0, 1), &[]), Some(Problem::TokenDead)),
            (
                &place,
                record((1, 1), core::slice::from_ref(&cancelled)),
                Some(Problem::Wrong),
            ),
            (&klarnas, record((0, 0), &[recorded("o")]), None),
            (
                &klarnas,
                record((0, 0), &[recorded("x")]),
                Some(Problem::Wrong),
            ),
            (&klarnas, record((0, 0), &[]), Some(Problem::NotDone)),
            (
                &klarnas,
                record((0, 1), &[recorded("o")]),
                Some(Problem::Wrong),
            ),
            (
                &klarnas,
                record((0, 0), &[recorded("o"), recorded("o")]),
                Some(Problem::DoneTwice),
            ),
            (
                &klarnas,
                record((0, 0), core::slice::from_ref(&cancelled)),
                Some(Problem::Wrong),
            ),
            (
                &cancelled,
                record((0, 0), core::slice::from_ref(&cancelled)),
                None,
            ),
            (
                &cancelled,
                record((0, 0), core::slice::from_ref(&disabled)),
                Some(Problem::Wrong),
            ),
            (&cancelled, record((0, 0), &[]), Some(Problem::NotDone)),
            (
                &cancelled,
                record((0, 0), &[cancelled.clone(), cancelled.clone()]),
                Some(Problem::DoneTwice),
            ),
            (
                &Expected::ReviewCompletion,
                record((0, 1), &[Expected::ReviewCompletion]),
                Some(Problem::Wrong),
            ),
        ];
        for (n, (expected, record, problem)) in cases.iter().enumerate() {
            assert_eq!(judge(expected, record), *problem, "case {n}");
        }
        let mut overflow = record((0, 0), core::slice::from_ref(&cancelled));
        overflow.shop_overflow = true;
        assert_eq!(judge(&cancelled, &overflow), Some(Problem::DoneTwice));
        let judgement = Judgement {
            expected: cancelled.clone(),
            record: record((0, 0), &[]),
            problem: Some(Problem::NotDone),
        };
        assert!(!judgement.ok());
    }

    #[test]
    fn problems_say_what_went_wrong_in_words() {
        let all = [
            Problem::NotDone,
            Problem::DoneTwice,
            Problem::Wrong,
            Problem::TokenDead,
        ];
        let say = |p: &Problem| {
            let mut s = heapless::String::<80>::new();
            core::fmt::Write::write_fmt(&mut s, format_args!("{p}")).unwrap();
            s
        };
        for (i, a) in all.iter().enumerate() {
            let said = say(a);
            assert!(said.len() > 10, "{said}");
            for b in &all[i + 1..] {
                assert_ne!(said, say(b));
            }
        }
    }

    /// The adversary does not know the secret: its callbacks, and only those, arrive with
    /// `secret_matches` false.
    #[test]
    fn only_the_adversarys_callbacks_carry_a_wrong_secret() {
        struct Counts(u32, u32);
        impl Integration for Counts {
            fn callback(&mut self, _: Timestamp, d: &Delivery, secret_matches: bool) {
                assert_eq!(secret_matches, !d.forged);
                self.0 += u32::from(!secret_matches);
                self.1 += 1;
            }
            fn redirect(&mut self, _: Timestamp, _: &Visit) {}
            fn next_wake(&self, _: Timestamp) -> Option<Timestamp> {
                None
            }
            fn wake(&mut self, _: Timestamp, _: &mut Klarna<'_>) {}
        }
        let simulator = crate::Simulator::new(
            crate::SimConfig {
                forged: 1_000,
                ..crate::SimConfig::DEFAULT
            },
            3,
        );
        let mut counts = Counts(0, 0);
        for i in 0..50 {
            let mut scenario = simulator.scenario(i);
            let judgement = drive_integration(&mut scenario, &mut counts);
            assert_eq!(judgement.problem, Some(Problem::NotDone), "it never acts");
        }
        assert!(
            counts.0 > 0 && counts.0 < counts.1,
            "{} of {}",
            counts.0,
            counts.1
        );
    }
}

//! Your own integration in the closed loop: your callback handler, redirect handler, poller and
//! executor, driven by one scenario and judged by the oracle.
//!
//! [`drive`](crate::drive::drive) runs the crate's own integrator (one [`Tracker`](hpp_session::Tracker)).
//! To test yours, implement [`Integration`] over whatever your shop keeps, and hand it to
//! [`drive_integration`]: the loop delivers each callback and redirect as it arrives, wakes your
//! poller when it asks, answers its reads and disables as Klarna would ([`Klarna`]), records what
//! it does to money and carts, and judges the run by the oracle on the history, never by your
//! state: each action exactly once, an order only within the token's hour.

use super::Scenario;
use super::drive::{MAX_RUN_ACTIONS, SETTLE_WITHIN};
use super::judge::{Conduct, judge};
use super::klarna::{Delivery, ReadAnswer, Visit};
use super::money::{Money, payment_of};
use super::oracle::{self, Expected};

pub use super::judge::{Problem, Problems};
pub use super::money::OrderAnswer;
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

    /// Create-order with `token`, answered as Klarna answers it ([`Money::create_order`]: once,
    /// within the token's hour); every call is recorded.
    pub fn create_order(&mut self, token: &str) -> OrderAnswer {
        let history = &self.scenario.history;
        let payment = payment_of(history, self.now);
        self.record
            .money
            .create_order(history, token, self.now, payment)
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
    /// Create-order calls, as Klarna answered them.
    pub money: Money,
    /// The shop's calls, in order (Klarna's order recorded, a review, a release).
    pub shop: heapless::Vec<Expected, MAX_RUN_ACTIONS>,
    /// More shop calls than [`MAX_RUN_ACTIONS`] were made.
    pub shop_overflow: bool,
}

/// The judge's verdict on one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Judgement {
    /// What the history calls for, after the run (the merchant's disables included).
    pub expected: Expected,
    /// What the integration did.
    pub record: Record,
    /// Everything that went wrong ([`judge`] at the end of the run).
    pub problems: Problems,
    /// The first of them, money first ([`Problems::first`]); `None`: the expected action,
    /// exactly once, and nothing else.
    pub problem: Option<Problem>,
}

impl Judgement {
    /// The run did the expected action exactly once and nothing else.
    #[must_use]
    pub const fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The judge's verdict on `record` at `end`, the end of the run.
fn verdict(expected: &Expected, record: &Record, end: Timestamp) -> Problems {
    let conduct = Conduct {
        money: &record.money,
        paid_elsewhere: false,
        shop: &record.shop,
    };
    let problems = judge(expected, &conduct, end).at_end().problems;
    if record.shop_overflow {
        // Past the bound is far past "exactly once" already.
        return problems.with(Problem::DoneTwice);
    }
    problems
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
    let problems = verdict(&expected, &record, deadline);
    Judgement {
        expected,
        record,
        problems,
        problem: problems.first(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// More shop calls than the record holds is doing something twice, whatever they were.
    #[test]
    fn a_shop_told_past_the_bound_did_something_twice() {
        let cancelled = Expected::Release(ReleaseReason::Cancelled);
        let mut record = Record::default();
        record.shop.push(cancelled.clone()).unwrap();
        let end = Timestamp::from_unix(1_700_000_000, 0).unwrap();
        assert_eq!(verdict(&cancelled, &record, end), Problems::NONE);
        record.shop_overflow = true;
        let twice = Problems::NONE.with(Problem::DoneTwice);
        assert_eq!(verdict(&cancelled, &record, end), twice);
        let nothing = Record::default();
        let not_done = Problems::NONE.with(Problem::NotDone);
        assert_eq!(verdict(&cancelled, &nothing, end), not_done);
        let judgement = Judgement {
            expected: cancelled,
            record: nothing,
            problems: not_done,
            problem: not_done.first(),
        };
        assert!(!judgement.ok());
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
            let never_acted = match judgement.expected {
                Expected::PlaceOrder { .. } => Problem::TokenDead,
                _ => Problem::NotDone,
            };
            assert_eq!(judgement.problem, Some(never_acted), "it never acts");
        }
        assert!(
            counts.0 > 0 && counts.0 < counts.1,
            "{} of {}",
            counts.0,
            counts.1
        );
    }
}

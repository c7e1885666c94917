//! The judge: what one HPP session's history calls for ([`oracle::expected`]), against what
//! the merchant did to money at Klarna ([`Money`]) and to the cart in its shop. The double's
//! truth (SPEC E7), the fleet's verdict (G7) and
//! [`drive_integration`](crate::integration::drive_integration) all judge with [`judge`].
//!
//! The rule: the expected action exactly once and nothing else; an order only within the
//! token's hour, and one per payment session. Two ways of settling a paid session without its
//! own order are right: another HPP session of the same payment session has the order (only
//! one can), or the merchant cancelled the authorization (it decided not to fulfil).
//!
//! [`oracle::expected`]: crate::oracle::expected

use core::fmt;

use hpp_session::Timestamp;

use super::money::Money;
use super::oracle::Expected;

/// What the merchant did about one HPP session.
#[derive(Clone, Copy, Debug)]
pub struct Conduct<'a> {
    /// Its money calls at Klarna.
    pub money: &'a Money,
    /// Another HPP session of the same payment session has the order.
    pub paid_elsewhere: bool,
    /// What the shop was told, once per call the shop applied (an idempotent repeat is one):
    /// Klarna's order recorded, a review, a release. A [`Expected::PlaceOrder`] here is
    /// ignored: orders are in `money`.
    pub shop: &'a [Expected],
}

/// What went wrong in one session. The variants are in the order a one-line report names
/// them (money first): [`Problems::first`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Problem {
    /// The order was asked for twice (created, or refused because it existed or its token had
    /// been used).
    OrderTwice,
    /// An order was asked for beside the one Klarna placed.
    OrderBesideKlarnas,
    /// A paid cart was released.
    PaidReleased,
    /// The token's hour ended with no order: the money is lost.
    TokenDead,
    /// An unpaid session was treated as paid: an order asked, an order recorded, a review.
    UnpaidTreatedAsPaid,
    /// Another order id than Klarna's was recorded.
    OtherOrderRecorded,
    /// The cart was released for another reason than the history's.
    WrongReason,
    /// The shop was told the same thing twice (a release, a record, a review).
    DoneTwice,
    /// The shop was told something the history does not call for (a record or a review of a
    /// session to be ordered, a review of Klarna's order, a record of a session to review).
    OtherAction,
    /// The session is over and the action its history calls for never happened (reported by
    /// a judge whose run has ended; the double's truth counts it as unsettled instead).
    NotDone,
}

impl Problem {
    /// Every problem, in [`Problem`]'s order.
    pub const ALL: [Self; 10] = [
        Self::OrderTwice,
        Self::OrderBesideKlarnas,
        Self::PaidReleased,
        Self::TokenDead,
        Self::UnpaidTreatedAsPaid,
        Self::OtherOrderRecorded,
        Self::WrongReason,
        Self::DoneTwice,
        Self::OtherAction,
        Self::NotDone,
    ];

    /// Whether it moved or lost money: an order twice or beside Klarna's, a paid cart
    /// released, a token dead.
    #[must_use]
    pub const fn is_money(self) -> bool {
        matches!(
            self,
            Self::OrderTwice | Self::OrderBesideKlarnas | Self::PaidReleased | Self::TokenDead
        )
    }

    /// An order asked for twice, or beside Klarna's.
    #[must_use]
    pub const fn is_order_twice(self) -> bool {
        matches!(self, Self::OrderTwice | Self::OrderBesideKlarnas)
    }

    const fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotDone => "the action the history calls for never happened",
            Self::OrderTwice => "an order was asked twice",
            Self::OrderBesideKlarnas => "an order was asked beside Klarna's",
            Self::PaidReleased => "a paid cart was released",
            Self::TokenDead => "the token expired unused",
            Self::OtherOrderRecorded => "another order id was recorded",
            Self::UnpaidTreatedAsPaid => "an unpaid session was treated as paid",
            Self::DoneTwice => "the shop was told the same thing twice",
            Self::WrongReason => "the cart was released for another reason",
            Self::OtherAction => "the shop was told something the history does not call for",
        })
    }
}

/// Every problem found in one session: a session may have several (a token dead and its cart
/// released), and each is counted. `Debug` lists them.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Problems(u16);

impl fmt::Debug for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl Problems {
    /// None.
    pub const NONE: Self = Self(0);

    /// These and `problem`.
    #[must_use]
    pub const fn with(self, problem: Problem) -> Self {
        Self(self.0 | problem.bit())
    }

    /// These and `problem` when `when`.
    #[must_use]
    const fn with_if(self, problem: Problem, when: bool) -> Self {
        if when { self.with(problem) } else { self }
    }

    /// Whether `problem` is one of them.
    #[must_use]
    pub const fn contains(self, problem: Problem) -> bool {
        self.0 & problem.bit() != 0
    }

    /// No problem.
    #[must_use]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Each, in [`Problem`]'s order.
    pub fn iter(self) -> impl Iterator<Item = Problem> {
        Problem::ALL.into_iter().filter(move |p| self.contains(*p))
    }

    /// The first, in [`Problem`]'s order (money first): the one a one-line report names.
    #[must_use]
    pub fn first(self) -> Option<Problem> {
        self.iter().next()
    }
}

/// How a paid session was settled without an order of its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PaidOtherwise {
    /// It was not (or it has its own order).
    #[default]
    No,
    /// Another HPP session of the same payment session has the order.
    ByAnotherSession,
    /// The merchant cancelled the authorization.
    AuthorizationCancelled,
}

/// The judge's verdict on one session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The expected action happened (or, for a paid session, one of the right ways of settling
    /// it without an order of its own).
    pub settled: bool,
    /// What went wrong so far. [`Problem::NotDone`] only from [`Verdict::at_end`].
    pub problems: Problems,
    /// How a paid session was settled without an order of its own.
    pub paid_otherwise: PaidOtherwise,
}

impl Verdict {
    /// Settled, and nothing wrong.
    #[must_use]
    pub const fn ok(&self) -> bool {
        self.settled && self.problems.is_empty()
    }

    /// The first problem, money first ([`Problems::first`]).
    #[must_use]
    pub fn problem(&self) -> Option<Problem> {
        self.problems.first()
    }

    /// The verdict of a run that has ended: unsettled is [`Problem::NotDone`].
    #[must_use]
    pub const fn at_end(self) -> Self {
        Self {
            problems: self.problems.with_if(Problem::NotDone, !self.settled),
            ..self
        }
    }
}

/// Judges `conduct` at `now` against `expected`, the action the session's history calls for
/// (after the merchant's disables).
#[must_use]
pub fn judge(expected: &Expected, conduct: &Conduct<'_>, now: Timestamp) -> Verdict {
    let count = |f: fn(&Expected) -> bool| conduct.shop.iter().filter(|e| f(e)).count();
    let releases = count(|e| matches!(e, Expected::Release(_)));
    let recorded = count(|e| matches!(e, Expected::RecordOrder { .. }));
    let reviews = count(|e| matches!(e, Expected::ReviewCompletion));
    let money = conduct.money;
    let asked = money.orders_asked();
    let none = Problems::NONE;
    let mut paid_otherwise = PaidOtherwise::No;
    let (settled, problems) = match expected {
        Expected::PlaceOrder { place_by, .. } => {
            if money.orders_created == 0 {
                if money.authorization_cancelled {
                    paid_otherwise = PaidOtherwise::AuthorizationCancelled;
                } else if conduct.paid_elsewhere {
                    paid_otherwise = PaidOtherwise::ByAnotherSession;
                }
            }
            let settled = money.orders_created >= 1 || paid_otherwise != PaidOtherwise::No;
            // Asked again: refused because the order exists (own or Klarna's), or, after the
            // order, because the token was used or its hour had ended by then.
            let resent = money.orders_created == 1 && money.refused_invalid > 0;
            let twice = money.orders_created > 1 || money.refused_again > 0 || resent;
            let problems = none
                .with_if(Problem::OrderTwice, twice)
                .with_if(
                    Problem::PaidReleased,
                    releases > 0 && paid_otherwise == PaidOtherwise::No,
                )
                .with_if(Problem::DoneTwice, releases > 1)
                .with_if(Problem::OtherAction, recorded > 0 || reviews > 0)
                .with_if(
                    Problem::TokenDead,
                    !settled && place_by.is_some_and(|by| now >= by),
                );
            (settled, problems)
        }
        Expected::RecordOrder { order_id, .. } => {
            let other_id = conduct.shop.iter().any(
                |e| matches!(e, Expected::RecordOrder { order_id: got, .. } if got != order_id),
            );
            let problems = none
                .with_if(Problem::OrderBesideKlarnas, asked > 0)
                .with_if(Problem::PaidReleased, releases > 0)
                .with_if(Problem::OtherOrderRecorded, other_id)
                .with_if(Problem::DoneTwice, recorded > 1)
                .with_if(Problem::OtherAction, reviews > 0);
            (recorded >= 1, problems)
        }
        Expected::ReviewCompletion => {
            let problems = none
                .with_if(Problem::PaidReleased, releases > 0)
                .with_if(Problem::OtherAction, asked > 0 || recorded > 0)
                .with_if(Problem::DoneTwice, reviews > 1);
            (reviews >= 1, problems)
        }
        Expected::Release(reason) => {
            let wrong_reason = conduct
                .shop
                .iter()
                .any(|e| matches!(e, Expected::Release(r) if r != reason));
            let problems = none
                .with_if(
                    Problem::UnpaidTreatedAsPaid,
                    asked > 0 || recorded > 0 || reviews > 0,
                )
                .with_if(Problem::DoneTwice, releases > 1)
                .with_if(Problem::WrongReason, wrong_reason);
            (releases >= 1, problems)
        }
    };
    Verdict {
        settled,
        problems,
        paid_otherwise,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hpp_session::ReleaseReason;

    fn text(s: &str) -> crate::Text {
        let mut t = crate::Text::new();
        t.push_str(s).unwrap();
        t
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix(1_700_000_000 + secs, 0).unwrap()
    }

    /// Money with `created` orders and `again` refusals of a second.
    fn money(created: u8, again: u8) -> Money {
        Money {
            orders_created: created,
            refused_again: again,
            ..Money::default()
        }
    }

    /// Each verdict, case by case, written out from "the expected action exactly once and
    /// nothing else, the order within the token's hour, one per payment session".
    #[test]
    fn the_judge_says_what_went_wrong() {
        let place = Expected::PlaceOrder {
            authorization_token: text("t"),
            place_by: Some(at(3_600)),
        };
        let record = |id: &str| Expected::RecordOrder {
            order_id: text(id),
            klarna_reference: None,
        };
        let review = Expected::ReviewCompletion;
        let cancelled = Expected::Release(ReleaseReason::Cancelled);
        let expired = Expected::Release(ReleaseReason::Expired);
        let none = money(0, 0);
        let one = money(1, 0);
        let invalid = Money {
            refused_invalid: 1,
            ..none
        };
        let closed = Money {
            refused_closed: 1,
            ..none
        };
        let cancel = Money {
            authorization_cancelled: true,
            ..none
        };
        let (early, late) = (at(60), at(3_600));
        type Case<'a> = (
            &'a Expected,
            Money,
            bool,
            &'a [Expected],
            Timestamp,
            bool,
            Option<Problem>,
        );
        let cases: [Case<'_>; 31] = [
            // A session to be ordered.
            (&place, one, false, &[], early, true, None),
            (&place, none, false, &[], early, false, None),
            (
                &place,
                none,
                false,
                &[],
                late,
                false,
                Some(Problem::TokenDead),
            ),
            (
                &place,
                invalid,
                false,
                &[],
                late,
                false,
                Some(Problem::TokenDead),
            ),
            (
                &place,
                money(1, 1),
                false,
                &[],
                early,
                true,
                Some(Problem::OrderTwice),
            ),
            (
                &place,
                money(2, 0),
                false,
                &[],
                early,
                true,
                Some(Problem::OrderTwice),
            ),
            (&place, none, true, &[], late, true, None),
            (&place, closed, true, &[], late, true, None),
            (&place, cancel, false, &[], late, true, None),
            (
                &place,
                one,
                false,
                core::slice::from_ref(&cancelled),
                early,
                true,
                Some(Problem::PaidReleased),
            ),
            (
                &place,
                none,
                true,
                core::slice::from_ref(&cancelled),
                late,
                true,
                None,
            ),
            (
                &place,
                one,
                false,
                core::slice::from_ref(&review),
                early,
                true,
                Some(Problem::OtherAction),
            ),
            // Klarna placed the order.
            (&record("o"), none, false, &[record("o")], early, true, None),
            (&record("o"), none, false, &[], early, false, None),
            (
                &record("o"),
                none,
                false,
                &[record("x")],
                early,
                true,
                Some(Problem::OtherOrderRecorded),
            ),
            (
                &record("o"),
                invalid,
                false,
                &[record("o")],
                early,
                true,
                Some(Problem::OrderBesideKlarnas),
            ),
            (
                &record("o"),
                closed,
                false,
                &[record("o")],
                early,
                true,
                Some(Problem::OrderBesideKlarnas),
            ),
            (
                &record("o"),
                none,
                false,
                &[record("o"), record("o")],
                early,
                true,
                Some(Problem::DoneTwice),
            ),
            (
                &record("o"),
                none,
                false,
                &[record("o"), cancelled.clone()],
                early,
                true,
                Some(Problem::PaidReleased),
            ),
            (
                &record("o"),
                none,
                false,
                &[record("o"), review.clone()],
                early,
                true,
                Some(Problem::OtherAction),
            ),
            // A person must look.
            (
                &review,
                none,
                false,
                core::slice::from_ref(&review),
                early,
                true,
                None,
            ),
            (
                &review,
                none,
                false,
                &[review.clone(), review.clone()],
                early,
                true,
                Some(Problem::DoneTwice),
            ),
            (
                &review,
                invalid,
                false,
                core::slice::from_ref(&review),
                early,
                true,
                Some(Problem::OtherAction),
            ),
            // A cart to release.
            (
                &cancelled,
                none,
                false,
                core::slice::from_ref(&cancelled),
                late,
                true,
                None,
            ),
            (
                &cancelled,
                none,
                false,
                core::slice::from_ref(&expired),
                late,
                true,
                Some(Problem::WrongReason),
            ),
            (
                &cancelled,
                none,
                false,
                &[cancelled.clone(), cancelled.clone()],
                late,
                true,
                Some(Problem::DoneTwice),
            ),
            (
                &cancelled,
                invalid,
                false,
                core::slice::from_ref(&cancelled),
                late,
                true,
                Some(Problem::UnpaidTreatedAsPaid),
            ),
            (
                &place,
                one,
                false,
                &[record("o")],
                early,
                true,
                Some(Problem::OtherAction),
            ),
            (
                &cancelled,
                none,
                false,
                &[cancelled.clone(), review.clone()],
                late,
                true,
                Some(Problem::UnpaidTreatedAsPaid),
            ),
            (
                &review,
                none,
                false,
                &[review.clone(), record("o")],
                early,
                true,
                Some(Problem::OtherAction),
            ),
            (
                &review,
                none,
                false,
                &[review.clone(), cancelled.clone()],
                early,
                true,
                Some(Problem::PaidReleased),
            ),
        ];
        for (n, (expected, money, paid_elsewhere, shop, now, settled, problem)) in
            cases.iter().enumerate()
        {
            let conduct = Conduct {
                money,
                paid_elsewhere: *paid_elsewhere,
                shop,
            };
            let verdict = judge(expected, &conduct, *now);
            assert_eq!(
                (verdict.settled, verdict.problem()),
                (*settled, *problem),
                "case {n}"
            );
        }
        let recorded_for_release = Conduct {
            money: &none,
            paid_elsewhere: false,
            shop: &[record("o")],
        };
        assert_eq!(
            judge(&cancelled, &recorded_for_release, late).problem(),
            Some(Problem::UnpaidTreatedAsPaid)
        );
    }

    #[test]
    fn a_paid_session_settled_otherwise_says_how() {
        let place = Expected::PlaceOrder {
            authorization_token: text("t"),
            place_by: Some(at(3_600)),
        };
        let shop: &[Expected] = &[];
        let by = |money: &Money, paid_elsewhere| {
            judge(
                &place,
                &Conduct {
                    money,
                    paid_elsewhere,
                    shop,
                },
                at(0),
            )
            .paid_otherwise
        };
        let cancel = Money {
            authorization_cancelled: true,
            ..Money::default()
        };
        assert_eq!(by(&Money::default(), true), PaidOtherwise::ByAnotherSession);
        assert_eq!(by(&cancel, true), PaidOtherwise::AuthorizationCancelled);
        assert_eq!(by(&money(1, 0), true), PaidOtherwise::No);
        assert_eq!(by(&Money::default(), false), PaidOtherwise::No);
    }

    #[test]
    fn at_the_end_unsettled_is_not_done() {
        let v = Verdict {
            settled: false,
            problems: Problems::NONE,
            paid_otherwise: PaidOtherwise::No,
        };
        assert!(!v.ok());
        assert_eq!(v.at_end().problem(), Some(Problem::NotDone));
        let wrong = Verdict {
            problems: Problems::NONE.with(Problem::TokenDead),
            ..v
        };
        assert_eq!(
            wrong
                .at_end()
                .problems
                .iter()
                .collect::<heapless::Vec<_, 4>>(),
            [Problem::TokenDead, Problem::NotDone]
        );
        let done = Verdict { settled: true, ..v };
        assert!(done.ok());
        assert_eq!(done.at_end(), done);
    }

    /// Each problem is counted, not only the first: a token dead and the cart released, an
    /// order twice and a review, a release twice and for the wrong reason.
    #[test]
    fn every_problem_of_a_session_is_found() {
        let place = Expected::PlaceOrder {
            authorization_token: text("t"),
            place_by: Some(at(3_600)),
        };
        let cancelled = Expected::Release(ReleaseReason::Cancelled);
        let expired = Expected::Release(ReleaseReason::Expired);
        let found = |expected: &Expected, money: &Money, shop: &[Expected]| {
            let conduct = Conduct {
                money,
                paid_elsewhere: false,
                shop,
            };
            let verdict = judge(expected, &conduct, at(3_600));
            verdict.problems.iter().collect::<heapless::Vec<_, 10>>()
        };
        let released = core::slice::from_ref(&cancelled);
        assert_eq!(
            found(&place, &Money::default(), released),
            [Problem::PaidReleased, Problem::TokenDead]
        );
        assert_eq!(
            found(&place, &money(1, 1), &[Expected::ReviewCompletion]),
            [Problem::OrderTwice, Problem::OtherAction]
        );
        assert_eq!(
            found(&cancelled, &Money::default(), &[cancelled.clone(), expired]),
            [Problem::WrongReason, Problem::DoneTwice]
        );
        // A resend after the order, refused for the token's hour, is asking twice; a call with
        // another session's token before it is not.
        let resent = Money {
            refused_invalid: 1,
            ..money(1, 0)
        };
        assert_eq!(found(&place, &resent, &[]), [Problem::OrderTwice]);
        let foreign = Money {
            refused_foreign: 1,
            ..money(1, 0)
        };
        assert_eq!(found(&place, &foreign, &[]), []);
        // Cancelled, then released once: settled, nothing wrong; released twice: done twice.
        let cancel = Money {
            authorization_cancelled: true,
            ..Money::default()
        };
        assert_eq!(found(&place, &cancel, released), []);
        assert_eq!(
            found(&place, &cancel, &[cancelled.clone(), cancelled.clone()]),
            [Problem::DoneTwice]
        );
    }

    #[test]
    fn problems_say_what_went_wrong_in_words() {
        let say = |p: &Problem| {
            let mut s = heapless::String::<80>::new();
            core::fmt::Write::write_fmt(&mut s, format_args!("{p}")).unwrap();
            s
        };
        for (i, a) in Problem::ALL.iter().enumerate() {
            let said = say(a);
            assert!(said.len() > 10, "{said}");
            for b in &Problem::ALL[i + 1..] {
                assert_ne!(said, say(b));
            }
        }
        let money: [bool; 10] = Problem::ALL.map(Problem::is_money);
        let (t, f) = (true, false);
        assert_eq!(money, [t, t, t, t, f, f, f, f, f, f]);
        let twice: [bool; 10] = Problem::ALL.map(Problem::is_order_twice);
        assert_eq!(twice, [t, t, f, f, f, f, f, f, f, f]);
        let mut listed = heapless::String::<64>::new();
        let two = Problems::NONE
            .with(Problem::TokenDead)
            .with(Problem::PaidReleased);
        core::fmt::Write::write_fmt(&mut listed, format_args!("{two:?}")).unwrap();
        assert_eq!(listed, "{PaidReleased, TokenDead}");
        let twice_told = Problems::NONE
            .with(Problem::DoneTwice)
            .with(Problem::DoneTwice);
        assert!(twice_told.contains(Problem::DoneTwice), "with is a union");
        let all = Problem::ALL
            .into_iter()
            .fold(Problems::NONE, Problems::with);
        assert!(all.iter().eq(Problem::ALL), "each its own bit");
        assert_eq!(all.first(), Some(Problem::OrderTwice));
        assert_eq!(Problems::NONE.first(), None);
    }
}

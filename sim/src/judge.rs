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

/// What went wrong in one session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Problem {
    /// The session is over and the action its history calls for never happened (reported by
    /// a judge whose run has ended; the double's truth counts it as unsettled instead).
    NotDone,
    /// The order was asked for twice (created, or refused because it existed).
    OrderTwice,
    /// An order was asked for beside the one Klarna placed.
    OrderBesideKlarnas,
    /// A paid cart was released.
    PaidReleased,
    /// The token's hour ended with no order: the money is lost.
    TokenDead,
    /// Another order id than Klarna's was recorded.
    OtherOrderRecorded,
    /// An unpaid session was treated as paid: an order asked, an order recorded, a review.
    UnpaidTreatedAsPaid,
    /// The shop was told the same thing twice (a release, a record, a review).
    DoneTwice,
    /// The cart was released for another reason than the history's.
    WrongReason,
    /// The shop was told something the history does not call for (a record or a review of a
    /// session to be ordered, a review of Klarna's order, a record of a session to review).
    OtherAction,
}

impl Problem {
    /// Every problem, for reports that count them.
    pub const ALL: [Self; 10] = [
        Self::NotDone,
        Self::OrderTwice,
        Self::OrderBesideKlarnas,
        Self::PaidReleased,
        Self::TokenDead,
        Self::OtherOrderRecorded,
        Self::UnpaidTreatedAsPaid,
        Self::DoneTwice,
        Self::WrongReason,
        Self::OtherAction,
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
    pub problem: Option<Problem>,
    /// How a paid session was settled without an order of its own.
    pub paid_otherwise: PaidOtherwise,
}

impl Verdict {
    /// Settled, and nothing wrong.
    #[must_use]
    pub const fn ok(&self) -> bool {
        self.settled && self.problem.is_none()
    }

    /// The verdict of a run that has ended: unsettled is [`Problem::NotDone`].
    #[must_use]
    pub const fn at_end(self) -> Self {
        match (self.problem, self.settled) {
            (None, false) => Self {
                problem: Some(Problem::NotDone),
                ..self
            },
            _ => self,
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
    let mut paid_otherwise = PaidOtherwise::No;
    let (settled, problem) = match expected {
        Expected::PlaceOrder { place_by, .. } => {
            if money.orders_created == 0 {
                if money.authorization_cancelled {
                    paid_otherwise = PaidOtherwise::AuthorizationCancelled;
                } else if conduct.paid_elsewhere {
                    paid_otherwise = PaidOtherwise::ByAnotherSession;
                }
            }
            let settled = money.orders_created >= 1 || paid_otherwise != PaidOtherwise::No;
            let problem = if money.orders_created > 1 || money.refused_again > 0 {
                Some(Problem::OrderTwice)
            } else if releases > 0 && paid_otherwise == PaidOtherwise::No {
                Some(Problem::PaidReleased)
            } else if recorded + reviews > 0 {
                Some(Problem::OtherAction)
            } else if !settled && place_by.is_some_and(|by| now >= by) {
                Some(Problem::TokenDead)
            } else {
                None
            };
            (settled, problem)
        }
        Expected::RecordOrder { order_id, .. } => {
            let other_id = conduct.shop.iter().any(
                |e| matches!(e, Expected::RecordOrder { order_id: got, .. } if got != order_id),
            );
            let problem = if asked > 0 {
                Some(Problem::OrderBesideKlarnas)
            } else if releases > 0 {
                Some(Problem::PaidReleased)
            } else if other_id {
                Some(Problem::OtherOrderRecorded)
            } else if recorded > 1 {
                Some(Problem::DoneTwice)
            } else if reviews > 0 {
                Some(Problem::OtherAction)
            } else {
                None
            };
            (recorded >= 1, problem)
        }
        Expected::ReviewCompletion => {
            let problem = if releases > 0 {
                Some(Problem::PaidReleased)
            } else if asked + u32::try_from(recorded).unwrap_or(u32::MAX) > 0 {
                Some(Problem::OtherAction)
            } else if reviews > 1 {
                Some(Problem::DoneTwice)
            } else {
                None
            };
            (reviews >= 1, problem)
        }
        Expected::Release(reason) => {
            let first = conduct.shop.iter().find_map(|e| match e {
                Expected::Release(r) => Some(*r),
                _ => None,
            });
            let problem = if asked > 0 || recorded + reviews > 0 {
                Some(Problem::UnpaidTreatedAsPaid)
            } else if releases > 1 {
                Some(Problem::DoneTwice)
            } else if first.is_some_and(|r| r != *reason) {
                Some(Problem::WrongReason)
            } else {
                None
            };
            (releases >= 1, problem)
        }
    };
    Verdict {
        settled,
        problem,
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
        let cases: [Case<'_>; 27] = [
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
                (verdict.settled, verdict.problem),
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
            judge(&cancelled, &recorded_for_release, late).problem,
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
            problem: None,
            paid_otherwise: PaidOtherwise::No,
        };
        assert!(!v.ok());
        assert_eq!(v.at_end().problem, Some(Problem::NotDone));
        let wrong = Verdict {
            problem: Some(Problem::TokenDead),
            ..v
        };
        assert_eq!(wrong.at_end(), wrong);
        let done = Verdict { settled: true, ..v };
        assert!(done.ok());
        assert_eq!(done.at_end(), done);
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
        assert_eq!(
            money,
            [
                false, true, true, true, true, false, false, false, false, false
            ]
        );
    }
}

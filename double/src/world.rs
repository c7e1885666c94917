//! What the double knows: its sessions (each a simulated consumer's history), payment sessions,
//! tokens, orders, and the ground truth of what the merchant did.

use std::collections::{BTreeSet, HashMap};

use hpp_session::{DisableAnswer, ReleaseReason, Status, Timestamp};
use hpp_sim::Scenario;
use hpp_sim::judge::{self, PaidOtherwise, Problem};
use hpp_sim::money::{self, Money};
use hpp_sim::oracle::{self, Expected};

pub use hpp_sim::money::OrderAnswer;
use serde::Serialize;

/// The merchant's URLs from the create request, placeholders unsubstituted.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct MerchantUrls {
    /// Status callbacks.
    pub status_update: Option<String>,
    /// Redirect after an authorization.
    pub success: Option<String>,
    /// Redirect after a decline.
    pub failure: Option<String>,
    /// Redirect after Back.
    pub back: Option<String>,
    /// Redirect after Cancel.
    pub cancel: Option<String>,
    /// Redirect after an error.
    pub error: Option<String>,
}

/// One HPP session and everything the merchant did about it.
#[derive(Debug)]
pub struct Session {
    /// The consumer's history, the callbacks and the redirects (from the simulator).
    pub scenario: Scenario,
    /// The merchant's URLs.
    pub urls: MerchantUrls,
    /// The payment session it pays.
    pub payment_session_id: String,
    /// The simulator's configuration and the session's index, to make its history again when
    /// the page is opened.
    pub simulator: (hpp_sim::SimConfig, u64),
    /// When the consumer first opened the page (only then is the history played).
    pub opened_at: Option<Timestamp>,
    /// The merchant's create-order and cancel calls with the token, as Klarna answered them
    /// (the one rule of money, [`hpp_sim::money`]).
    pub money: Money,
    /// `DELETE` calls answered 204.
    pub disables: u32,
    /// What the merchant's shop was told, by kind, with the idempotency keys seen.
    pub shop: Shop,
}

/// The merchant's side effects as its shop recorded them (calls, and distinct idempotency
/// keys: a repeated call with the same key is the documented at-least-once, applied once).
#[derive(Debug, Default)]
pub struct Shop {
    /// Carts released: key → reason.
    pub releases: HashMap<String, ReleaseReason>,
    /// Orders Klarna placed that the merchant recorded: key → order id.
    pub recorded: HashMap<String, String>,
    /// Paid sessions handed to a person.
    pub reviews: BTreeSet<String>,
    /// Calls in all (repeats included).
    pub calls: u32,
}

impl Shop {
    /// What the shop was told, once per idempotency key, as the judge reads it.
    #[must_use]
    pub fn as_told(&self) -> Vec<Expected> {
        let releases = self.releases.values().map(|r| Expected::Release(*r));
        let recorded = self.recorded.values().map(|id| {
            let mut order_id = hpp_sim::Text::new();
            // An id longer than the simulator's ids is another id: cut, it still differs.
            let cut = (0..=id.len().min(order_id.capacity()))
                .rev()
                .find(|&i| id.is_char_boundary(i))
                .unwrap_or(0);
            let _ = order_id.push_str(id.get(..cut).unwrap_or(""));
            Expected::RecordOrder {
                order_id,
                klarna_reference: None,
            }
        });
        let reviews = self.reviews.iter().map(|_| Expected::ReviewCompletion);
        releases.chain(recorded).chain(reviews).collect()
    }
}

/// A payment session (Klarna Payments) the HPP session pays for.
#[derive(Debug)]
pub struct PaymentSession {
    /// The HPP sessions created for it: Klarna allows several (calling it bad practice), and
    /// only one order per payment session succeeds.
    pub hpp_sessions: Vec<String>,
    /// When it was created (the double has no update call): it expires
    /// [`PAYMENT_SESSION_LIFETIME`] later.
    pub created_at: Timestamp,
}

pub use hpp_sim::money::PAYMENT_SESSION_LIFETIME;

impl PaymentSession {
    /// A payment session created at `now`.
    #[must_use]
    pub fn new(now: Timestamp) -> Self {
        Self {
            hpp_sessions: Vec::new(),
            created_at: now,
        }
    }

    /// Whether it has expired at `now`.
    #[must_use]
    pub fn expired(&self, now: Timestamp) -> bool {
        now >= money::payment_expires_at(self.created_at)
    }
}

/// Requests refused over the limit, by what they were.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct OverLimit {
    /// Session reads.
    pub reads: u32,
    /// Create-order calls.
    pub orders: u32,
    /// Disables.
    pub disables: u32,
    /// Session creations.
    pub creates: u32,
    /// Payment-session reads.
    pub payment_reads: u32,
}

/// Everything the double holds.
#[derive(Debug, Default)]
pub struct World {
    /// HPP sessions by id.
    pub sessions: HashMap<String, Session>,
    /// Payment sessions by id.
    pub payment_sessions: HashMap<String, PaymentSession>,
    /// Authorization tokens → HPP session id.
    pub tokens: HashMap<String, String>,
    /// Sessions created so far (the next simulator index).
    pub created: u64,
    /// Requests refused over the limit.
    pub over_limit: OverLimit,
    /// Reads answered.
    pub reads: u64,
    /// Reads answered 429 on demand.
    pub throttled: u64,
    /// Callback calls made (forged ones included) and those the merchant answered 2xx.
    pub callbacks: (u64, u64),
    /// Wall-clock milliseconds of each callback the merchant answered with a 2xx.
    pub callback_ms: Vec<f64>,
    /// Redirects the consumers' browsers (or an adversary) opened.
    pub redirects: u64,
}

impl World {
    /// Creates an order with `token` at `now`, as Klarna answers it ([`Money::create_order`]):
    /// only one order per payment session succeeds ("several authorizations may exist, only
    /// one can create an order").
    pub fn create_order(&mut self, token: &str, now: Timestamp) -> OrderAnswer {
        let Some(id) = self.tokens.get(token).cloned() else {
            return OrderAnswer::InvalidToken;
        };
        let payment = self.payment_for(&id, now);
        let Some(session) = self.sessions.get_mut(&id) else {
            return OrderAnswer::InvalidToken;
        };
        let history = &session.scenario.history;
        session.money.create_order(history, token, now, payment)
    }

    /// What Klarna knows at `now` of the payment session HPP session `id` pays: whether it
    /// expired, whether another of its HPP sessions has the order.
    fn payment_for(&self, id: &str, now: Timestamp) -> money::PaymentSession {
        let payment = self
            .sessions
            .get(id)
            .and_then(|s| self.payment_sessions.get(&s.payment_session_id));
        money::PaymentSession {
            expired: payment.is_none_or(|p| p.expired(now)),
            ordered_elsewhere: payment.is_some_and(|p| {
                p.hpp_sessions
                    .iter()
                    .filter(|other| *other != id)
                    .filter_map(|other| self.sessions.get(other))
                    .any(|s| s.money.ordered(&s.scenario.history, now))
            }),
        }
    }

    /// Whether the payment session has its order at `now`: one the merchant created with any of
    /// its HPP sessions' tokens, or one Klarna placed itself (a session `COMPLETED` with an
    /// `order_id`). A successful order closes the payment session.
    #[must_use]
    pub fn payment_ordered(&self, payment_session_id: &str, now: Timestamp) -> bool {
        self.payment_sessions
            .get(payment_session_id)
            .is_some_and(|p| {
                p.hpp_sessions
                    .iter()
                    .filter_map(|id| self.sessions.get(id))
                    .any(|s| s.money.ordered(&s.scenario.history, now))
            })
    }

    /// The merchant cancels the authorization `token` at `now`
    /// (`DELETE /payments/v1/authorizations/{token}`), as Klarna answers it
    /// ([`Money::cancel_authorization`]): `true` (204) for a token that could still create an
    /// order; `false` (404) for one unknown, dead, used or cancelled already.
    pub fn cancel_authorization(&mut self, token: &str, now: Timestamp) -> bool {
        let Some(id) = self.tokens.get(token).cloned() else {
            return false;
        };
        let payment = self.payment_for(&id, now);
        let Some(session) = self.sessions.get_mut(&id) else {
            return false;
        };
        let history = &session.scenario.history;
        session.money.cancel_authorization(history, now, payment)
    }

    /// The merchant's `DELETE` at `now`.
    pub fn disable(&mut self, session_id: &str, now: Timestamp) -> Option<DisableAnswer> {
        let session = self.sessions.get_mut(session_id)?;
        let answer = session.scenario.disable(now);
        if answer == DisableAnswer::Disabled {
            session.disables += 1;
        }
        Some(answer)
    }

    /// The ground truth at `now`, with the oracle's verdict on every session.
    #[must_use]
    pub fn truth(&self, now: Timestamp, with_sessions: bool) -> Truth {
        let mut truth = Truth {
            now: now.to_string(),
            sessions: u64::try_from(self.sessions.len()).unwrap_or(u64::MAX),
            over_limit: self.over_limit,
            reads: self.reads,
            throttled: self.throttled,
            callbacks: self.callbacks.0,
            callbacks_acknowledged: self.callbacks.1,
            redirects: self.redirects,
            ..Truth::default()
        };
        let mut verdicts = Vec::new();
        let mut delays = Vec::new();
        for (id, session) in &self.sessions {
            let paid_elsewhere = self.payment_for(id, now).ordered_elsewhere;
            let verdict = Verdict::of(session, paid_elsewhere, now);
            // A session nobody opened owes its release once it ended: disabled, or expired.
            let history = &session.scenario.history;
            let opened = session.opened_at.is_some();
            let due = opened || history.status_at(now).is_final() || now >= history.expires_at;
            truth.count(&verdict, opened, due);
            truth.second_orders_refused += u64::from(session.money.refused_closed);
            delays.extend(verdict.order_delay_s);
            if with_sessions {
                verdicts.push((id.clone(), verdict));
            }
        }
        verdicts.sort_by(|a, b| a.0.cmp(&b.0));
        truth.order_delay_s = percentiles(&mut delays);
        truth.callback_ms = percentiles(&mut self.callback_ms.clone());
        truth.verdicts = verdicts
            .into_iter()
            .map(|(session_id, verdict)| SessionVerdict {
                session_id,
                verdict,
            })
            .collect();
        truth
    }
}

/// The oracle's verdict on one session: what its history calls for, what the merchant did.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    /// What the history calls for (the simulator's oracle), as text.
    pub expected: String,
    /// Orders the merchant created with the token.
    pub orders: u32,
    /// Distinct releases (by idempotency key), and the reasons given.
    pub releases: Vec<String>,
    /// Orders recorded.
    pub recorded: u32,
    /// Reviews.
    pub reviews: u32,
    /// Simulated seconds from the authorization to the order the merchant created.
    pub order_delay_s: Option<f64>,
    /// Simulated seconds from the session's creation to its page first opened (none: never).
    pub opened_after_s: Option<f64>,
    /// The expected action happened.
    pub settled: bool,
    /// Settled, and nothing else happened (no second order, no release of a paid cart, the
    /// right reason).
    pub ok: bool,
    /// What went wrong, when not `ok`.
    pub problem: Option<String>,
    #[serde(skip)]
    kind: Kind,
    /// The judge's verdict.
    #[serde(skip)]
    judged: judge::Verdict,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Kind {
    Paid,
    #[default]
    Released,
    Recorded,
    Review,
}

impl Verdict {
    /// `paid_elsewhere`: another HPP session of its payment session has the order.
    fn of(session: &Session, paid_elsewhere: bool, now: Timestamp) -> Self {
        let expected = oracle::expected(&session.scenario.history);
        let shop = session.shop.as_told();
        let conduct = judge::Conduct {
            money: &session.money,
            paid_elsewhere,
            shop: &shop,
        };
        let judged = judge::judge(&expected, &conduct, now);
        let kind = match expected {
            Expected::PlaceOrder { .. } => Kind::Paid,
            Expected::RecordOrder { .. } => Kind::Recorded,
            Expected::ReviewCompletion => Kind::Review,
            Expected::Release(_) => Kind::Released,
        };
        let authorized = session
            .scenario
            .history
            .changes
            .iter()
            .find(|c| c.status == Status::Completed)
            .map(|c| c.at);
        let order_delay_s = authorized
            .zip(session.money.ordered_at)
            .and_then(|(from, to)| to.duration_since(from))
            .map(|d| d.as_secs_f64());
        let created = session.scenario.history.created_at;
        let opened_after_s = session
            .opened_at
            .and_then(|at| at.duration_since(created))
            .map(|d| d.as_secs_f64());
        Self {
            expected: expected.to_string(),
            order_delay_s,
            opened_after_s,
            orders: u32::from(session.money.orders_created),
            releases: session
                .shop
                .releases
                .values()
                .map(|r| r.as_str().to_owned())
                .collect(),
            recorded: u32::try_from(session.shop.recorded.len()).unwrap_or(u32::MAX),
            reviews: u32::try_from(session.shop.reviews.len()).unwrap_or(u32::MAX),
            settled: judged.settled,
            ok: judged.ok(),
            problem: judged.problem().map(|_| {
                let said: Vec<String> = judged.problems.iter().map(|p| p.to_string()).collect();
                said.join("; ")
            }),
            kind,
            judged,
        }
    }
}

/// p50, p99 and max of `values` (zeros when empty).
fn percentiles(values: &mut [f64]) -> [f64; 3] {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let i = ((values.len() as f64 - 1.0) * q).round() as usize;
        values.get(i).copied().unwrap_or(0.0)
    };
    [at(0.5), at(0.99), at(1.0)]
}

/// One session's verdict, by id.
#[derive(Clone, Debug, Serialize)]
pub struct SessionVerdict {
    /// The HPP session id.
    pub session_id: String,
    /// Its verdict.
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// The double's ground truth: what the admin endpoint returns.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Truth {
    /// The double's clock.
    pub now: String,
    /// Sessions created.
    pub sessions: u64,
    /// ...of which no consumer opened (the merchant never handed the page over, or the person
    /// never came): judged like the others, and unsettled only once it ended (the merchant
    /// disabled it, or it expired) without its cart released.
    pub not_opened: u64,
    /// ...of those, carts released once, for the right reason.
    pub not_opened_released: u64,
    /// Sessions whose history calls for an order placed with the token.
    pub paid: u64,
    /// ...of which have exactly one order.
    pub paid_with_one_order: u64,
    /// ...of which another HPP session of the same payment session has the order (only one
    /// can succeed: the other authorization is no dead token).
    pub paid_by_another_session: u64,
    /// ...of which the merchant cancelled the authorization (it decided not to fulfil).
    pub authorizations_cancelled: u64,
    /// Sessions with more than one order asked with their token (or an order beside Klarna's
    /// own).
    pub orders_twice: u64,
    /// Create-order calls refused because another HPP session of the payment session has the
    /// order (only one can create it; no money moved): not wrong.
    pub second_orders_refused: u64,
    /// Paid sessions (any completion) whose cart was released.
    pub paid_released: u64,
    /// Tokens that expired with no order.
    pub tokens_expired_unused: u64,
    /// Sessions whose history calls for a release (cancelled, disabled, abandoned).
    pub to_release: u64,
    /// ...of which were released exactly once, for the right reason.
    pub released_once: u64,
    /// Sessions Klarna placed the order for, and those recorded.
    pub klarna_orders: (u64, u64),
    /// Sessions a person must look at, and those handed over.
    pub reviews: (u64, u64),
    /// Sessions whose expected action has not happened yet.
    pub unsettled: u64,
    /// Sessions with a problem.
    pub wrong: u64,
    /// Requests refused over Klarna's limit.
    pub over_limit: OverLimit,
    /// Simulated seconds from an authorization to the merchant's order: p50, p99, max.
    pub order_delay_s: [f64; 3],
    /// Wall-clock milliseconds the merchant took to answer a callback with a 2xx: p50, p99,
    /// max (Klarna waits 3 s).
    pub callback_ms: [f64; 3],
    /// Reads answered.
    pub reads: u64,
    /// Reads answered 429 on demand (`--throttled`).
    pub throttled: u64,
    /// Callback calls made.
    pub callbacks: u64,
    /// Callback calls answered 2xx.
    pub callbacks_acknowledged: u64,
    /// Redirects opened.
    pub redirects: u64,
    /// Per session, when asked for (`?sessions=true`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub verdicts: Vec<SessionVerdict>,
}

impl Truth {
    /// `due`: the session's expected action is owed now (opened, or ended without a consumer).
    fn count(&mut self, v: &Verdict, opened: bool, due: bool) {
        let problems = v.judged.problems;
        let ok = u64::from(problems.is_empty());
        if opened {
            match v.kind {
                Kind::Paid => {
                    self.paid += 1;
                    self.paid_with_one_order += u64::from(v.orders == 1) * ok;
                    let otherwise = v.judged.paid_otherwise;
                    self.paid_by_another_session +=
                        u64::from(otherwise == PaidOtherwise::ByAnotherSession) * ok;
                    self.authorizations_cancelled +=
                        u64::from(otherwise == PaidOtherwise::AuthorizationCancelled) * ok;
                }
                Kind::Released => {
                    self.to_release += 1;
                    self.released_once += u64::from(v.settled) * ok;
                }
                Kind::Recorded => {
                    self.klarna_orders.0 += 1;
                    self.klarna_orders.1 += u64::from(v.settled) * ok;
                }
                Kind::Review => {
                    self.reviews.0 += 1;
                    self.reviews.1 += u64::from(v.settled) * ok;
                }
            }
            self.unsettled += u64::from(!v.settled);
        } else {
            self.not_opened += 1;
            self.not_opened_released += u64::from(v.settled) * ok;
            self.unsettled += u64::from(!v.settled && due);
        }
        self.orders_twice += u64::from(problems.iter().any(Problem::is_order_twice));
        self.paid_released += u64::from(problems.contains(Problem::PaidReleased));
        self.tokens_expired_unused += u64::from(problems.contains(Problem::TokenDead));
        self.wrong += 1 - ok;
    }

    /// Every session settled and none wrong, and no money call was refused over the limit.
    #[must_use]
    pub fn all_ok(&self) -> bool {
        self.unsettled == 0 && self.wrong == 0 && self.over_limit.orders == 0
    }

    /// The verdict as one line, for a run whose consumers pressed the checkout button and got
    /// no page `checkouts_failed` times: every paying consumer by how they were paid, what went
    /// wrong with money, the money calls refused over the limit, and what is not settled. It
    /// ends `ok` only if [`Truth::all_ok`] and no checkout failed.
    #[must_use]
    pub fn line(&self, checkouts_failed: u64) -> String {
        let paying = self.paid + self.klarna_orders.0 + self.reviews.0;
        let ok = self.all_ok() && checkouts_failed == 0;
        let over = &self.over_limit;
        format!(
            "{} sessions ({} not opened, {} checkouts failed): {paying} paid \
             (by token {}: one order {}, ordered in another session {}, authorization \
             cancelled {}; Klarna's order {}, recorded {}; to review {}, handed over {}); \
             {} not paid (released once {}); money wrong: orders twice {}, paid carts \
             released {}, tokens dead {}; money calls refused {}; over the limit: reads {}, \
             disables {}, creates {}; unsettled {}, wrong {}: {}",
            self.sessions,
            self.not_opened,
            checkouts_failed,
            self.paid,
            self.paid_with_one_order,
            self.paid_by_another_session,
            self.authorizations_cancelled,
            self.klarna_orders.0,
            self.klarna_orders.1,
            self.reviews.0,
            self.reviews.1,
            self.to_release,
            self.released_once,
            self.orders_twice,
            self.paid_released,
            self.tokens_expired_unused,
            over.orders,
            over.reads + over.payment_reads,
            over.disables,
            over.creates,
            self.unsettled,
            self.wrong,
            if ok { "ok" } else { "NOT OK" },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hpp_session::ReleaseReason;
    use hpp_sim::{SimConfig, Simulator};
    use std::time::Duration;

    /// `scenario` as an opened session of the payment session `p`.
    fn opened_in_p(scenario: hpp_sim::Scenario) -> Session {
        Session {
            scenario,
            urls: MerchantUrls::default(),
            payment_session_id: "p".to_owned(),
            simulator: (SimConfig::DEFAULT, 0),
            opened_at: Some(Timestamp::UNIX_EPOCH),
            money: Money::default(),
            disables: 0,
            shop: Shop::default(),
        }
    }

    /// The first scenario whose oracle says `wanted`, as an opened session of a world.
    fn world_with(wanted: impl Fn(&Expected) -> bool) -> (World, String) {
        let simulator = Simulator::new(SimConfig::DEFAULT, 5);
        let scenario = (0..10_000)
            .map(|i| simulator.scenario(i))
            .find(|s| wanted(&oracle::expected(&s.history)))
            .expect("such a scenario");
        let id = scenario.history.session_id.to_string();
        let created_at = scenario.history.created_at;
        let mut world = World::default();
        if let Some(token) = &scenario.history.completion.authorization_token {
            world.tokens.insert(token.to_string(), id.clone());
        }
        world.sessions.insert(id.clone(), opened_in_p(scenario));
        world
            .payment_sessions
            .insert("p".to_owned(), PaymentSession::new(created_at));
        world
            .payment_sessions
            .get_mut("p")
            .expect("p")
            .hpp_sessions
            .push(id.clone());
        (world, id)
    }

    fn authorized(world: &World, id: &str) -> (Timestamp, String) {
        let s = &world.sessions[id];
        let at = s
            .scenario
            .history
            .changes
            .iter()
            .find(|c| c.status == Status::Completed)
            .expect("authorized")
            .at;
        let token = s.scenario.history.completion.authorization_token.clone();
        (at, token.expect("a token").to_string())
    }

    const MINUTE: Duration = Duration::from_mins(1);

    #[test]
    fn one_order_in_the_tokens_hour_settles_a_paid_session() {
        let (mut world, id) = world_with(|e| matches!(e, Expected::PlaceOrder { .. }));
        let (at, token) = authorized(&world, &id);
        let before = world.truth(at, false);
        assert_eq!((before.paid, before.unsettled), (1, 1));
        assert_eq!(
            world.create_order(&token, at.saturating_add(MINUTE)),
            OrderAnswer::Created
        );
        let t = world.truth(at.saturating_add(2 * MINUTE), true);
        assert_eq!((t.paid_with_one_order, t.unsettled, t.wrong), (1, 0, 0));
        assert!(t.all_ok());
        assert!((t.order_delay_s[0] - 60.0).abs() < 1e-9);
    }

    #[test]
    fn a_second_order_is_refused_and_counted_never_hidden() {
        let (mut world, id) = world_with(|e| matches!(e, Expected::PlaceOrder { .. }));
        let (at, token) = authorized(&world, &id);
        assert_eq!(
            world.create_order(&token, at.saturating_add(MINUTE)),
            OrderAnswer::Created
        );
        assert_eq!(
            world.create_order(&token, at.saturating_add(MINUTE)),
            OrderAnswer::PaymentSessionClosed,
            "a successful order closes the payment session"
        );
        assert_eq!(world.sessions[&id].money.orders_created, 1);
        let t = world.truth(at.saturating_add(2 * MINUTE), false);
        assert_eq!((t.orders_twice, t.paid_with_one_order, t.wrong), (1, 0, 1));
        assert!(!t.all_ok());
    }

    /// A second HPP session of the same payment session (Klarna allows it, as bad practice):
    /// its consumer authorizes too, and the order made with the first's token settles both.
    /// Its own token is refused an order, and is no dead token.
    #[test]
    fn money_is_judged_per_payment_session() {
        let (mut world, first) = world_with(|e| matches!(e, Expected::PlaceOrder { .. }));
        let (at, token) = authorized(&world, &first);
        // The second: another paid history, in the same payment session.
        let (other_world, second) = {
            let simulator = Simulator::new(SimConfig::DEFAULT, 6);
            let scenario = (0..10_000)
                .map(|i| simulator.scenario(i))
                .find(|s| matches!(oracle::expected(&s.history), Expected::PlaceOrder { .. }))
                .expect("a paid scenario");
            let id = scenario.history.session_id.to_string();
            let mut w = World::default();
            w.sessions.insert(id.clone(), opened_in_p(scenario));
            (w, id)
        };
        for (id, session) in other_world.sessions {
            if let Some(t) = &session.scenario.history.completion.authorization_token {
                world.tokens.insert(t.to_string(), id.clone());
            }
            world.sessions.insert(id, session);
        }
        world
            .payment_sessions
            .get_mut("p")
            .expect("p")
            .hpp_sessions
            .push(second.clone());
        let (second_at, second_token) = authorized(&world, &second);
        assert_eq!(world.create_order(&token, at), OrderAnswer::Created);
        assert!(world.payment_ordered("p", at));
        let late = at.max(second_at).saturating_add(2 * 60 * MINUTE);
        let t = world.truth(late, true);
        assert_eq!(
            (t.paid, t.paid_with_one_order, t.paid_by_another_session),
            (2, 1, 1)
        );
        assert_eq!((t.tokens_expired_unused, t.unsettled, t.wrong), (0, 0, 0));
        assert!(t.all_ok());
        assert_eq!(
            world.create_order(&second_token, second_at),
            OrderAnswer::PaymentSessionClosed,
            "only one order per payment session"
        );
        let t = world.truth(late, false);
        assert_eq!(
            (t.orders_twice, t.second_orders_refused, t.wrong),
            (0, 1, 0),
            "another authorization refused, as Klarna documents: no money moved"
        );
        assert_eq!(
            world.create_order(&token, at),
            OrderAnswer::PaymentSessionClosed
        );
        let t = world.truth(late, false);
        assert_eq!(
            (t.orders_twice, t.wrong),
            (1, 1),
            "the same token again: whether Klarna de-duplicates is not documented"
        );
    }

    /// Klarna placed the order itself (a completion with an `order_id`): the payment session is
    /// closed, its token creates no order (and asking is wrong), and it cannot be cancelled.
    #[test]
    fn klarnas_own_order_closes_the_payment_session() {
        let (mut world, id) = world_with(|e| matches!(e, Expected::RecordOrder { .. }));
        let history = &world.sessions[&id].scenario.history;
        let done = history.changes.last().expect("completed").at;
        let token = history.completion.authorization_token.clone();
        assert!(
            !world.payment_ordered("p", Timestamp::UNIX_EPOCH),
            "not yet"
        );
        assert!(world.payment_ordered("p", done));
        let Some(token) = token else {
            return;
        };
        assert!(!world.cancel_authorization(&token, done));
        assert_eq!(
            world.create_order(&token, done),
            OrderAnswer::PaymentSessionClosed
        );
        let t = world.truth(done, false);
        assert_eq!(
            (t.orders_twice, t.wrong),
            (1, 1),
            "an order beside Klarna's"
        );
    }

    #[test]
    fn a_cancelled_authorization_settles_a_paid_session_and_refuses_its_order() {
        let (mut world, id) = world_with(|e| matches!(e, Expected::PlaceOrder { .. }));
        let (at, token) = authorized(&world, &id);
        assert!(!world.cancel_authorization("unknown", at));
        assert!(
            !world.cancel_authorization(&token, at.saturating_add(60 * MINUTE)),
            "a dead token"
        );
        assert!(world.cancel_authorization(&token, at.saturating_add(MINUTE)));
        assert!(
            !world.cancel_authorization(&token, at.saturating_add(MINUTE)),
            "twice"
        );
        assert_eq!(
            world.create_order(&token, at.saturating_add(2 * MINUTE)),
            OrderAnswer::InvalidToken
        );
        let t = world.truth(at.saturating_add(120 * MINUTE), false);
        assert_eq!(
            (
                t.authorizations_cancelled,
                t.tokens_expired_unused,
                t.unsettled,
                t.wrong
            ),
            (1, 0, 0, 0),
            "the merchant decided not to fulfil: no dead token"
        );
        let (mut world, id) = world_with(|e| matches!(e, Expected::PlaceOrder { .. }));
        let (at, token) = authorized(&world, &id);
        assert_eq!(world.create_order(&token, at), OrderAnswer::Created);
        assert!(!world.cancel_authorization(&token, at), "a used token");
    }

    #[test]
    fn a_token_dies_after_its_hour_and_the_truth_says_so() {
        let (mut world, id) = world_with(|e| matches!(e, Expected::PlaceOrder { .. }));
        let (at, token) = authorized(&world, &id);
        let late = at.saturating_add(61 * MINUTE);
        assert_eq!(world.create_order(&token, late), OrderAnswer::InvalidToken);
        assert_eq!(
            world.create_order(&token, Timestamp::UNIX_EPOCH),
            OrderAnswer::InvalidToken,
            "not issued yet"
        );
        assert_eq!(world.create_order("unknown", at), OrderAnswer::InvalidToken);
        let t = world.truth(late, false);
        assert_eq!((t.tokens_expired_unused, t.unsettled), (1, 1));
    }

    #[test]
    fn a_release_is_judged_on_the_history_after_the_disable() {
        let (mut world, id) =
            world_with(|e| matches!(e, Expected::Release(ReleaseReason::Expired)));
        let created = world.sessions[&id].scenario.history.created_at;
        let at = created.saturating_add(MINUTE);
        assert_eq!(world.disable(&id, at), Some(DisableAnswer::Disabled));
        assert_eq!(world.disable(&id, at), Some(DisableAnswer::AlreadyFinal));
        let shop = &mut world.sessions.get_mut(&id).expect("the session").shop;
        shop.releases
            .insert("k".to_owned(), ReleaseReason::Cancelled);
        let t = world.truth(at, true);
        assert_eq!(
            (t.to_release, t.released_once, t.wrong),
            (1, 0, 1),
            "the wrong reason"
        );
        let shop = &mut world.sessions.get_mut(&id).expect("the session").shop;
        shop.releases
            .insert("k".to_owned(), ReleaseReason::Disabled);
        let t = world.truth(at, false);
        assert_eq!((t.released_once, t.wrong, t.unsettled), (1, 0, 0));
        let shop = &mut world.sessions.get_mut(&id).expect("the session").shop;
        shop.releases.insert("k".to_owned(), ReleaseReason::Expired);
        let t = world.truth(at, false);
        assert_eq!(
            (t.released_once, t.wrong),
            (0, 1),
            "a disabled cart released as expired has the wrong reason"
        );
        let shop = &mut world.sessions.get_mut(&id).expect("the session").shop;
        shop.releases
            .insert("k2".to_owned(), ReleaseReason::Disabled);
        assert_eq!(world.truth(at, false).wrong, 1, "released twice");
    }

    #[test]
    fn a_paid_cart_released_is_wrong() {
        let (mut world, id) = world_with(|e| matches!(e, Expected::RecordOrder { .. }));
        let now = world.sessions[&id].scenario.history.expires_at;
        let session = world.sessions.get_mut(&id).expect("the session");
        session
            .shop
            .releases
            .insert("k".to_owned(), ReleaseReason::Expired);
        let t = world.truth(now, false);
        assert_eq!((t.paid_released, t.wrong), (1, 1));
    }

    /// A session nobody opened is counted and judged for what the merchant did, and owes its
    /// release once it ended: disabled by the merchant, or expired.
    #[test]
    fn an_unopened_session_owes_its_release_once_it_ended() {
        let unopened = |index| {
            let config = SimConfig {
                merchant_disables: false,
                ..SimConfig::DEFAULT
            };
            let scenario = Simulator::new(config, 5).scenario_opened(index, None);
            let id = scenario.history.session_id.to_string();
            let mut world = World::default();
            let mut session = opened_in_p(scenario);
            session.opened_at = None;
            world.sessions.insert(id.clone(), session);
            (world, id)
        };
        let (mut world, id) = unopened(0);
        let history = &world.sessions[&id].scenario.history;
        let (created, now) = (history.created_at, history.expires_at);
        let t = world.truth(created.saturating_add(3 * 60 * MINUTE), false);
        assert_eq!(
            (t.not_opened, t.unsettled, t.wrong, t.to_release),
            (1, 0, 0, 0)
        );
        let t = world.truth(now, false);
        assert_eq!((t.unsettled, t.wrong), (1, 0), "expired, not released");
        let shop = &mut world.sessions.get_mut(&id).expect("the session").shop;
        shop.releases.insert("k".to_owned(), ReleaseReason::Expired);
        let t = world.truth(now, false);
        assert_eq!((t.not_opened_released, t.unsettled, t.wrong), (1, 0, 0));
        let shop = &mut world.sessions.get_mut(&id).expect("the session").shop;
        shop.releases
            .insert("k2".to_owned(), ReleaseReason::Expired);
        let t = world.truth(now, false);
        assert_eq!((t.not_opened_released, t.wrong), (0, 1), "released twice");
        // Disabled by the merchant before anyone came: the release is owed at once.
        let (mut world, id) = unopened(1);
        let at = world.sessions[&id]
            .scenario
            .history
            .created_at
            .saturating_add(MINUTE);
        assert_eq!(world.disable(&id, at), Some(DisableAnswer::Disabled));
        assert_eq!(world.truth(at, false).unsettled, 1);
        let shop = &mut world.sessions.get_mut(&id).expect("the session").shop;
        shop.releases
            .insert("k".to_owned(), ReleaseReason::Disabled);
        let t = world.truth(at, false);
        assert_eq!((t.unsettled, t.not_opened_released, t.wrong), (0, 1, 0));
    }

    #[test]
    fn the_line_says_ok_only_when_no_money_is_wrong_nothing_is_unsettled_and_no_checkout_failed() {
        let (mut world, id) = world_with(|e| matches!(e, Expected::PlaceOrder { .. }));
        let (at, token) = authorized(&world, &id);
        let line = world.truth(at, false).line(0);
        assert!(line.ends_with("unsettled 1, wrong 0: NOT OK"), "{line}");
        assert_eq!(world.create_order(&token, at), OrderAnswer::Created);
        let t = world.truth(at, false);
        let line = t.line(0);
        assert!(
            line.starts_with(
                "1 sessions (0 not opened, 0 checkouts failed): 1 paid (by token 1: one order 1,"
            ),
            "{line}"
        );
        assert!(line.ends_with(": ok"), "{line}");
        assert!(t.line(1).ends_with("NOT OK"), "a failed checkout");
        world.over_limit.orders = 1;
        let line = world.truth(at, false).line(0);
        assert!(
            line.contains("money calls refused 1;") && line.ends_with("NOT OK"),
            "{line}"
        );
    }

    /// What the merchant did for one session, and what the truth must count for it, written
    /// out case by case from the rules in the issue (not from `Verdict::of`).
    struct Case {
        expected: fn(&Expected) -> bool,
        orders: u32,
        releases: &'static [ReleaseReason],
        recorded: Option<&'static str>,
        reviewed: bool,
        after_the_hour: bool,
        /// The counts: paid with one order, orders twice, paid released, tokens expired unused,
        /// released once, Klarna's orders recorded, reviews, unsettled, wrong.
        counts: [u64; 9],
    }

    fn place(e: &Expected) -> bool {
        matches!(e, Expected::PlaceOrder { .. })
    }
    fn record(e: &Expected) -> bool {
        matches!(e, Expected::RecordOrder { .. })
    }
    fn review(e: &Expected) -> bool {
        matches!(e, Expected::ReviewCompletion)
    }
    fn cancelled(e: &Expected) -> bool {
        matches!(e, Expected::Release(ReleaseReason::Cancelled))
    }

    #[test]
    #[allow(clippy::too_many_lines, reason = "a table of cases")]
    fn the_truth_counts_each_behaviour_as_the_issue_defines_it() {
        let cases = [
            // Place the order.
            Case {
                expected: place,
                orders: 0,
                releases: &[],
                recorded: None,
                reviewed: false,
                after_the_hour: false,
                counts: [0, 0, 0, 0, 0, 0, 0, 1, 0],
            },
            Case {
                expected: place,
                orders: 0,
                releases: &[],
                recorded: None,
                reviewed: false,
                after_the_hour: true,
                counts: [0, 0, 0, 1, 0, 0, 0, 1, 1],
            },
            Case {
                expected: place,
                orders: 1,
                releases: &[],
                recorded: None,
                reviewed: false,
                after_the_hour: true,
                counts: [1, 0, 0, 0, 0, 0, 0, 0, 0],
            },
            Case {
                expected: place,
                orders: 2,
                releases: &[],
                recorded: None,
                reviewed: false,
                after_the_hour: false,
                counts: [0, 1, 0, 0, 0, 0, 0, 0, 1],
            },
            Case {
                expected: place,
                orders: 1,
                releases: &[ReleaseReason::Expired],
                recorded: None,
                reviewed: false,
                after_the_hour: false,
                counts: [0, 0, 1, 0, 0, 0, 0, 0, 1],
            },
            Case {
                expected: place,
                orders: 0,
                releases: &[ReleaseReason::Expired],
                recorded: None,
                reviewed: false,
                after_the_hour: false,
                counts: [0, 0, 1, 0, 0, 0, 0, 1, 1],
            },
            // Record Klarna's order.
            Case {
                expected: record,
                orders: 0,
                releases: &[],
                recorded: None,
                reviewed: false,
                after_the_hour: false,
                counts: [0, 0, 0, 0, 0, 0, 0, 1, 0],
            },
            Case {
                expected: record,
                orders: 0,
                releases: &[],
                recorded: Some("right"),
                reviewed: false,
                after_the_hour: false,
                counts: [0, 0, 0, 0, 0, 1, 0, 0, 0],
            },
            Case {
                expected: record,
                orders: 0,
                releases: &[],
                recorded: Some("other"),
                reviewed: false,
                after_the_hour: false,
                counts: [0, 0, 0, 0, 0, 0, 0, 0, 1],
            },
            Case {
                expected: record,
                orders: 1,
                releases: &[],
                recorded: Some("right"),
                reviewed: false,
                after_the_hour: false,
                counts: [0, 1, 0, 0, 0, 0, 0, 0, 1],
            },
            Case {
                expected: record,
                orders: 0,
                releases: &[ReleaseReason::Cancelled],
                recorded: Some("right"),
                reviewed: false,
                after_the_hour: false,
                counts: [0, 0, 1, 0, 0, 0, 0, 0, 1],
            },
            // A person must look.
            Case {
                expected: review,
                orders: 0,
                releases: &[],
                recorded: None,
                reviewed: true,
                after_the_hour: false,
                counts: [0, 0, 0, 0, 0, 0, 1, 0, 0],
            },
            Case {
                expected: review,
                orders: 0,
                releases: &[],
                recorded: None,
                reviewed: false,
                after_the_hour: false,
                counts: [0, 0, 0, 0, 0, 0, 0, 1, 0],
            },
            Case {
                expected: review,
                orders: 0,
                releases: &[ReleaseReason::Expired],
                recorded: None,
                reviewed: true,
                after_the_hour: false,
                counts: [0, 0, 1, 0, 0, 0, 0, 0, 1],
            },
            // Release the cart.
            Case {
                expected: cancelled,
                orders: 0,
                releases: &[],
                recorded: None,
                reviewed: false,
                after_the_hour: false,
                counts: [0, 0, 0, 0, 0, 0, 0, 1, 0],
            },
            Case {
                expected: cancelled,
                orders: 0,
                releases: &[ReleaseReason::Cancelled],
                recorded: None,
                reviewed: false,
                after_the_hour: false,
                counts: [0, 0, 0, 0, 1, 0, 0, 0, 0],
            },
            Case {
                expected: cancelled,
                orders: 0,
                releases: &[ReleaseReason::Expired],
                recorded: None,
                reviewed: false,
                after_the_hour: false,
                counts: [0, 0, 0, 0, 0, 0, 0, 0, 1],
            },
            Case {
                expected: cancelled,
                orders: 0,
                releases: &[ReleaseReason::Cancelled, ReleaseReason::Cancelled],
                recorded: None,
                reviewed: false,
                after_the_hour: false,
                // Released twice: done (settled), and wrong.
                counts: [0, 0, 0, 0, 0, 0, 0, 0, 1],
            },
            Case {
                expected: cancelled,
                orders: 1,
                releases: &[ReleaseReason::Cancelled],
                recorded: None,
                reviewed: false,
                after_the_hour: false,
                counts: [0, 0, 0, 0, 0, 0, 0, 0, 1],
            },
            Case {
                expected: cancelled,
                orders: 0,
                releases: &[ReleaseReason::Cancelled],
                recorded: Some("x"),
                reviewed: false,
                after_the_hour: false,
                counts: [0, 0, 0, 0, 0, 0, 0, 0, 1],
            },
            Case {
                expected: cancelled,
                orders: 0,
                releases: &[ReleaseReason::Cancelled],
                recorded: None,
                reviewed: true,
                after_the_hour: false,
                counts: [0, 0, 0, 0, 0, 0, 0, 0, 1],
            },
        ];
        for (n, case) in cases.iter().enumerate() {
            let (mut world, id) = world_with(case.expected);
            let history = &world.sessions[&id].scenario.history;
            let start = history.changes.last().map_or(history.created_at, |c| c.at);
            let now = start.saturating_add(if case.after_the_hour {
                61 * MINUTE
            } else {
                MINUTE
            });
            let right = history
                .completion
                .order_id
                .as_ref()
                .map(ToString::to_string);
            let session = world.sessions.get_mut(&id).expect("the session");
            session.money.orders_created = u8::try_from(case.orders).expect("a few");
            session.money.ordered_at = (case.orders > 0).then_some(start);
            for (i, reason) in case.releases.iter().enumerate() {
                session.shop.releases.insert(format!("k{i}"), *reason);
            }
            if let Some(order) = case.recorded {
                let order = if order == "right" {
                    right.clone().expect("an order id")
                } else {
                    order.to_owned()
                };
                session.shop.recorded.insert("r".to_owned(), order);
            }
            if case.reviewed {
                session.shop.reviews.insert("v".to_owned());
            }
            let t = world.truth(now, true);
            let fine = case.counts[7] + case.counts[8] == 0;
            assert_eq!(t.verdicts[0].verdict.ok, fine, "case {n}");
            let got = [
                t.paid_with_one_order,
                t.orders_twice,
                t.paid_released,
                t.tokens_expired_unused,
                t.released_once,
                t.klarna_orders.1,
                t.reviews.1,
                t.unsettled,
                t.wrong,
            ];
            assert_eq!(got, case.counts, "case {n}");
            assert_eq!(t.all_ok(), case.counts[7] + case.counts[8] == 0, "case {n}");
            let kinds = [t.paid, t.klarna_orders.0, t.reviews.0, t.to_release];
            assert_eq!(kinds.iter().sum::<u64>(), 1, "case {n}: one kind");
        }
    }

    #[test]
    fn the_token_is_good_from_the_authorization_to_just_before_its_hour() {
        let (mut world, id) = world_with(|e| matches!(e, Expected::PlaceOrder { .. }));
        let (at, token) = authorized(&world, &id);
        assert_eq!(
            world.create_order(&token, at.saturating_add(60 * MINUTE)),
            OrderAnswer::InvalidToken
        );
        assert_eq!(world.create_order(&token, at), OrderAnswer::Created);
        let (mut world, id) =
            world_with(|e| matches!(e, Expected::Release(ReleaseReason::Expired)));
        world.tokens.insert("t".to_owned(), id);
        assert_eq!(
            world.create_order("t", at),
            OrderAnswer::InvalidToken,
            "never authorized"
        );
    }

    #[test]
    fn the_truth_reports_the_counters_and_a_refused_money_call_fails_it() {
        let (mut world, id) =
            world_with(|e| matches!(e, Expected::Release(ReleaseReason::Expired)));
        let at = world.sessions[&id]
            .scenario
            .history
            .created_at
            .saturating_add(MINUTE);
        assert_eq!(world.disable(&id, at), Some(DisableAnswer::Disabled));
        assert_eq!(world.sessions[&id].disables, 1);
        assert_eq!(world.disable(&id, at), Some(DisableAnswer::AlreadyFinal));
        assert_eq!(world.sessions[&id].disables, 1, "a 400 disables nothing");
        assert_eq!(world.disable("unknown", at), None);
        let shop = &mut world.sessions.get_mut(&id).expect("the session").shop;
        shop.releases
            .insert("k".to_owned(), ReleaseReason::Disabled);
        world.reads = 3;
        world.callbacks = (5, 4);
        world.redirects = 2;
        let t = world.truth(at, false);
        assert!(t.all_ok());
        assert_eq!((t.now.as_str(), t.sessions), (at.to_string().as_str(), 1));
        assert_eq!(
            (t.reads, t.callbacks, t.callbacks_acknowledged, t.redirects),
            (3, 5, 4, 2)
        );
        world.over_limit.orders = 1;
        let t = world.truth(at, false);
        assert_eq!(t.over_limit.orders, 1);
        assert!(
            !t.all_ok(),
            "a money call refused over the limit fails the run"
        );
    }

    /// The shop as the judge reads it: once per idempotency key; an order id longer than the
    /// simulator's is cut and still differs; a second record or review under another key, or a
    /// review of a session to be ordered, is wrong.
    #[test]
    fn the_shop_is_judged_once_per_key_and_strictly() {
        let (mut world, id) = world_with(|e| matches!(e, Expected::RecordOrder { .. }));
        let now = world.sessions[&id].scenario.history.expires_at;
        let right = world.sessions[&id]
            .scenario
            .history
            .completion
            .order_id
            .clone()
            .expect("Klarna's order")
            .to_string();
        let shop = &mut world.sessions.get_mut(&id).expect("the session").shop;
        shop.recorded.insert("r".to_owned(), right.clone());
        assert_eq!(shop.as_told().len(), 1);
        assert!(world.truth(now, false).all_ok());
        let shop = &mut world.sessions.get_mut(&id).expect("the session").shop;
        shop.recorded.insert("r2".to_owned(), right.clone());
        let t = world.truth(now, true);
        assert_eq!(t.wrong, 1, "recorded twice under two keys");
        assert_eq!(
            t.verdicts[0].verdict.problem.as_deref(),
            Some("the shop was told the same thing twice")
        );
        let shop = &mut world.sessions.get_mut(&id).expect("the session").shop;
        shop.recorded.remove("r2");
        shop.recorded
            .insert("r".to_owned(), format!("{right}{}", "x".repeat(20)));
        assert!(matches!(
            shop.as_told()[..],
            [Expected::RecordOrder { ref order_id, .. }] if order_id.len() == order_id.capacity()
        ));
        let t = world.truth(now, true);
        assert_eq!(
            t.verdicts[0].verdict.problem.as_deref(),
            Some("another order id was recorded"),
            "cut, still another id"
        );
        // A session to be ordered, ordered, and handed to a person too.
        let (mut world, id) = world_with(|e| matches!(e, Expected::PlaceOrder { .. }));
        let (at, token) = authorized(&world, &id);
        assert_eq!(world.create_order(&token, at), OrderAnswer::Created);
        let shop = &mut world.sessions.get_mut(&id).expect("the session").shop;
        shop.reviews.insert("v".to_owned());
        let t = world.truth(at, false);
        assert_eq!((t.wrong, t.paid_with_one_order), (1, 0), "{}", t.line(0));
    }

    /// A session can be wrong in several ways at once, and each is counted: a token dead and
    /// the cart released.
    #[test]
    fn every_problem_of_a_session_is_counted() {
        let (mut world, id) = world_with(|e| matches!(e, Expected::PlaceOrder { .. }));
        let (at, _) = authorized(&world, &id);
        let shop = &mut world.sessions.get_mut(&id).expect("the session").shop;
        shop.releases.insert("k".to_owned(), ReleaseReason::Expired);
        let t = world.truth(at.saturating_add(61 * MINUTE), false);
        assert_eq!(
            (t.paid_released, t.tokens_expired_unused, t.wrong),
            (1, 1, 1)
        );
    }

    #[test]
    fn percentiles_are_the_nearest_ranks() {
        let mut values: Vec<f64> = (1..=100).map(f64::from).collect();
        let bits = |p: [f64; 3]| p.map(f64::to_bits);
        assert_eq!(bits(percentiles(&mut values)), bits([51.0, 99.0, 100.0]));
        assert_eq!(bits(percentiles(&mut [])), bits([0.0; 3]));
    }
}

//! What the double knows: its sessions (each a simulated consumer's history), payment sessions,
//! tokens, orders, and the ground truth of what the merchant did.

use std::collections::{BTreeSet, HashMap};

use hpp_session::DisableAnswer;
use hpp_session::{Status, Timestamp};
use hpp_sim::Scenario;
use hpp_sim::oracle::{self, Expected};
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
    /// The consumer opened the page (only then is the history played, and judged).
    pub opened: bool,
    /// Orders created by the merchant with the token, and when.
    pub orders: Vec<Timestamp>,
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
    pub releases: HashMap<String, String>,
    /// Orders Klarna placed that the merchant recorded: key → order id.
    pub recorded: HashMap<String, String>,
    /// Paid sessions handed to a person.
    pub reviews: BTreeSet<String>,
    /// Calls in all (repeats included).
    pub calls: u32,
}

/// A payment session (Klarna Payments) the HPP session pays for.
#[derive(Debug, Default)]
pub struct PaymentSession {
    /// The HPP session created for it.
    pub hpp_session_id: Option<String>,
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
    /// Redirects the consumers' browsers (or an adversary) opened.
    pub redirects: u64,
}

/// What create-order answers.
#[derive(Debug, PartialEq, Eq)]
pub enum OrderAnswer {
    /// 200: an order was created.
    Created,
    /// 404: the token is unknown, not yet issued, or older than its 60 minutes.
    InvalidToken,
}

impl World {
    /// Creates an order with `token` at `now`. A token whose payment session already has an
    /// order creates another one: Klarna does not document de-duplicating create-order, so the
    /// double takes the harsher reading and the ground truth counts it.
    pub fn create_order(&mut self, token: &str, now: Timestamp) -> OrderAnswer {
        let Some(session) = self
            .tokens
            .get(token)
            .and_then(|id| self.sessions.get_mut(id))
        else {
            return OrderAnswer::InvalidToken;
        };
        if hpp_sim::token_accepted(&session.scenario.history, now) {
            session.orders.push(now);
            OrderAnswer::Created
        } else {
            OrderAnswer::InvalidToken
        }
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
            if !session.opened {
                truth.not_opened += 1;
                continue;
            }
            let verdict = Verdict::of(session, now);
            truth.count(&verdict);
            delays.extend(verdict.order_delay_s);
            if with_sessions {
                verdicts.push((id.clone(), verdict));
            }
        }
        verdicts.sort_by(|a, b| a.0.cmp(&b.0));
        truth.order_delay_s = percentiles(&mut delays);
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
    /// The expected action happened.
    pub settled: bool,
    /// Settled, and nothing else happened (no second order, no release of a paid cart, the
    /// right reason).
    pub ok: bool,
    /// What went wrong, when not `ok`.
    pub problem: Option<String>,
    #[serde(skip)]
    kind: Kind,
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
    fn of(session: &Session, now: Timestamp) -> Self {
        let expected = oracle::expected(&session.scenario.history);
        let orders = u32::try_from(session.orders.len()).unwrap_or(u32::MAX);
        let releases: Vec<String> = session.shop.releases.values().cloned().collect();
        let recorded = u32::try_from(session.shop.recorded.len()).unwrap_or(u32::MAX);
        let reviews = u32::try_from(session.shop.reviews.len()).unwrap_or(u32::MAX);
        let paid_elsewhere = recorded + reviews;
        let (kind, settled, problem) = match &expected {
            Expected::PlaceOrder { place_by, .. } => {
                let problem = if orders > 1 {
                    Some("an order was created twice".to_owned())
                } else if !releases.is_empty() {
                    Some("a paid cart was released".to_owned())
                } else if orders == 0 && place_by.is_some_and(|by| now >= by) {
                    Some("the token expired unused".to_owned())
                } else {
                    None
                };
                (Kind::Paid, orders >= 1, problem)
            }
            Expected::RecordOrder { order_id, .. } => {
                let problem = if orders > 0 {
                    Some("an order was created beside Klarna's".to_owned())
                } else if !releases.is_empty() {
                    Some("a paid cart was released".to_owned())
                } else if session
                    .shop
                    .recorded
                    .values()
                    .any(|o| o != order_id.as_str())
                {
                    Some("another order id was recorded".to_owned())
                } else {
                    None
                };
                (Kind::Recorded, recorded >= 1, problem)
            }
            Expected::ReviewCompletion => {
                let problem = (!releases.is_empty()).then(|| "a paid cart was released".to_owned());
                (Kind::Review, reviews >= 1, problem)
            }
            Expected::Release(reason) => {
                let problem = if orders > 0 || paid_elsewhere > 0 {
                    Some("an unpaid session was treated as paid".to_owned())
                } else if releases.len() > 1 {
                    Some("the cart was released twice".to_owned())
                } else if releases.first().is_some_and(|r| r != reason.as_str()) {
                    Some(format!(
                        "released as {}, not {}",
                        releases[0],
                        reason.as_str()
                    ))
                } else {
                    None
                };
                (Kind::Released, releases.len() == 1, problem)
            }
        };
        let authorized = session
            .scenario
            .history
            .changes
            .iter()
            .find(|c| c.status == Status::Completed)
            .map(|c| c.at);
        let order_delay_s = authorized
            .zip(session.orders.first())
            .and_then(|(from, to)| to.duration_since(from))
            .map(|d| d.as_secs_f64());
        Self {
            expected: expected.to_string(),
            order_delay_s,
            orders,
            releases,
            recorded,
            reviews,
            settled,
            ok: settled && problem.is_none(),
            problem,
            kind,
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
    /// ...of which no consumer opened (the merchant never handed the page over): not judged.
    pub not_opened: u64,
    /// Sessions whose history calls for an order placed with the token.
    pub paid: u64,
    /// ...of which have exactly one order.
    pub paid_with_one_order: u64,
    /// Sessions with more than one order (or an order beside Klarna's own).
    pub orders_twice: u64,
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
    fn count(&mut self, v: &Verdict) {
        let ok = u64::from(v.problem.is_none());
        match v.kind {
            Kind::Paid => {
                self.paid += 1;
                self.paid_with_one_order += u64::from(v.orders == 1 && v.problem.is_none());
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
        let problem = v.problem.as_deref().unwrap_or("");
        self.orders_twice += u64::from(problem.starts_with("an order was created"));
        self.paid_released += u64::from(problem == "a paid cart was released");
        self.tokens_expired_unused += u64::from(problem == "the token expired unused");
        self.unsettled += u64::from(!v.settled);
        self.wrong += 1 - ok;
    }

    /// Every session settled and none wrong, and no money call was refused over the limit.
    #[must_use]
    pub fn all_ok(&self) -> bool {
        self.unsettled == 0 && self.wrong == 0 && self.over_limit.orders == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hpp_session::ReleaseReason;
    use hpp_sim::{SimConfig, Simulator};
    use std::time::Duration;

    /// The first scenario whose oracle says `wanted`, as an opened session of a world.
    fn world_with(wanted: impl Fn(&Expected) -> bool) -> (World, String) {
        let simulator = Simulator::new(SimConfig::DEFAULT, 5);
        let scenario = (0..10_000)
            .map(|i| simulator.scenario(i))
            .find(|s| wanted(&oracle::expected(&s.history)))
            .expect("such a scenario");
        let id = scenario.history.session_id.to_string();
        let mut world = World::default();
        if let Some(token) = &scenario.history.completion.authorization_token {
            world.tokens.insert(token.to_string(), id.clone());
        }
        world.sessions.insert(
            id.clone(),
            Session {
                scenario,
                urls: MerchantUrls::default(),
                payment_session_id: "p".to_owned(),
                simulator: (SimConfig::DEFAULT, 0),
                opened: true,
                orders: Vec::new(),
                disables: 0,
                shop: Shop::default(),
            },
        );
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
    fn a_second_order_is_counted_never_hidden() {
        let (mut world, id) = world_with(|e| matches!(e, Expected::PlaceOrder { .. }));
        let (at, token) = authorized(&world, &id);
        assert_eq!(
            world.create_order(&token, at.saturating_add(MINUTE)),
            OrderAnswer::Created
        );
        assert_eq!(
            world.create_order(&token, at.saturating_add(MINUTE)),
            OrderAnswer::Created
        );
        let t = world.truth(at.saturating_add(2 * MINUTE), false);
        assert_eq!((t.orders_twice, t.paid_with_one_order, t.wrong), (1, 0, 1));
        assert!(!t.all_ok());
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
        shop.releases.insert("k".to_owned(), "CANCELLED".to_owned());
        let t = world.truth(at, true);
        assert_eq!(
            (t.to_release, t.released_once, t.wrong),
            (1, 0, 1),
            "the wrong reason"
        );
        let shop = &mut world.sessions.get_mut(&id).expect("the session").shop;
        shop.releases.insert("k".to_owned(), "DISABLED".to_owned());
        let t = world.truth(at, false);
        assert_eq!((t.released_once, t.wrong, t.unsettled), (1, 0, 0));
        let shop = &mut world.sessions.get_mut(&id).expect("the session").shop;
        shop.releases.insert("k".to_owned(), "EXPIRED".to_owned());
        let t = world.truth(at, false);
        assert_eq!(
            (t.released_once, t.wrong),
            (0, 1),
            "a disabled cart released as expired has the wrong reason"
        );
        let shop = &mut world.sessions.get_mut(&id).expect("the session").shop;
        shop.releases.insert("k2".to_owned(), "DISABLED".to_owned());
        assert_eq!(world.truth(at, false).wrong, 1, "released twice");
    }

    #[test]
    fn a_paid_cart_released_is_wrong_and_an_unopened_session_is_not_judged() {
        let (mut world, id) = world_with(|e| matches!(e, Expected::RecordOrder { .. }));
        let now = world.sessions[&id].scenario.history.expires_at;
        let session = world.sessions.get_mut(&id).expect("the session");
        session
            .shop
            .releases
            .insert("k".to_owned(), "EXPIRED".to_owned());
        let t = world.truth(now, false);
        assert_eq!((t.paid_released, t.wrong), (1, 1));
        world.sessions.get_mut(&id).expect("the session").opened = false;
        let t = world.truth(now, false);
        assert_eq!((t.not_opened, t.wrong, t.unsettled), (1, 0, 0));
    }

    /// What the merchant did for one session, and what the truth must count for it, written
    /// out case by case from the rules in the issue (not from `Verdict::of`).
    struct Case {
        expected: fn(&Expected) -> bool,
        orders: u32,
        releases: &'static [&'static str],
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
                releases: &["EXPIRED"],
                recorded: None,
                reviewed: false,
                after_the_hour: false,
                counts: [0, 0, 1, 0, 0, 0, 0, 0, 1],
            },
            Case {
                expected: place,
                orders: 0,
                releases: &["EXPIRED"],
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
                releases: &["CANCELLED"],
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
                releases: &["EXPIRED"],
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
                releases: &["CANCELLED"],
                recorded: None,
                reviewed: false,
                after_the_hour: false,
                counts: [0, 0, 0, 0, 1, 0, 0, 0, 0],
            },
            Case {
                expected: cancelled,
                orders: 0,
                releases: &["EXPIRED"],
                recorded: None,
                reviewed: false,
                after_the_hour: false,
                counts: [0, 0, 0, 0, 0, 0, 0, 0, 1],
            },
            Case {
                expected: cancelled,
                orders: 0,
                releases: &["CANCELLED", "CANCELLED"],
                recorded: None,
                reviewed: false,
                after_the_hour: false,
                counts: [0, 0, 0, 0, 0, 0, 0, 1, 1],
            },
            Case {
                expected: cancelled,
                orders: 1,
                releases: &["CANCELLED"],
                recorded: None,
                reviewed: false,
                after_the_hour: false,
                counts: [0, 0, 0, 0, 0, 0, 0, 0, 1],
            },
            Case {
                expected: cancelled,
                orders: 0,
                releases: &["CANCELLED"],
                recorded: Some("x"),
                reviewed: false,
                after_the_hour: false,
                counts: [0, 0, 0, 0, 0, 0, 0, 0, 1],
            },
            Case {
                expected: cancelled,
                orders: 0,
                releases: &["CANCELLED"],
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
            session.orders = vec![start; case.orders as usize];
            for (i, reason) in case.releases.iter().enumerate() {
                session
                    .shop
                    .releases
                    .insert(format!("k{i}"), (*reason).to_owned());
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
        shop.releases.insert("k".to_owned(), "DISABLED".to_owned());
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

    #[test]
    fn percentiles_are_the_nearest_ranks() {
        let mut values: Vec<f64> = (1..=100).map(f64::from).collect();
        let bits = |p: [f64; 3]| p.map(f64::to_bits);
        assert_eq!(bits(percentiles(&mut values)), bits([51.0, 99.0, 100.0]));
        assert_eq!(bits(percentiles(&mut [])), bits([0.0; 3]));
    }
}

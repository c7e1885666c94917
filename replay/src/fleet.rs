//! `hpp-replay simulate --rate`: many sessions on one clock, against Klarna's rate limiter.
//!
//! The per-session simulator cannot show a shared budget: every read, every order placed and
//! every disable of one merchant count against one limit. Here sessions arrive at a steady rate
//! and live their simulated histories side by side. Klarna's limiter is modelled as documented:
//! per merchant, 1-second windows, and once a window is over the limit **every** request in it
//! is answered 429, money calls included. The integrator counts its requests in each window (as
//! Klarna's `X-Ratelimit-Remaining` lets it): money calls (placing orders, disabling sessions)
//! go first, then reads by the trackers' urgency, up to a share of the limit and never past what
//! the window has left. A money call refused with 429 is retried in the next window.
//!
//! Everything judged comes from ground truth the trackers do not write: when the consumer
//! really paid (the simulator's history), and what the modelled Klarna accepted (orders created,
//! with the token's 60 minutes checked, and requests over the limit).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;
use std::time::Duration;

use hpp_session::{
    Action, ActionKind, ReleaseReason, SessionId, Status, Timestamp, Tracker, TrackerConfig,
    Urgency,
};
use hpp_sim::drive::SETTLE_WITHIN;
use hpp_sim::judge::{Conduct, Problem, judge};
use hpp_sim::limiter::RateWindow;
use hpp_sim::money::{Money, payment_of};
use hpp_sim::oracle::{Expected, expected};
use hpp_sim::{ReadAnswer, Scenario, Simulator};
use serde::Serialize;

/// What the fleet runs.
#[derive(Clone, Copy, Debug)]
pub struct FleetConfig {
    /// Sessions created, one every `arrival_gap` of the simulator's configuration.
    pub sessions: u64,
    /// Klarna's per-merchant limit on "other operations" (reads, order placement, disable) a
    /// second: 200 live, 50 in the playground.
    pub limit: u32,
    /// The most of `limit` the integrator spends on reads in a window.
    pub read_share: f64,
    /// Whether money calls go first in each window and reads take what is left, so that the
    /// integrator never exceeds the limit (the default); otherwise money calls are sent as they
    /// come, on top of the reads (a careless integrator, for the counter-check).
    pub money_first: bool,
    /// Every consumer opens the page at once; otherwise as people do
    /// ([`hpp_sim::people::Opening`]: later, twice, or never too).
    pub all_open_at_once: bool,
    /// The trackers' configuration.
    pub tracker: TrackerConfig,
}

/// How a session ended, by the oracle of its history (with the integrator's disable in it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// Paid with a token: the merchant placed the order.
    PlacedOrder,
    /// Paid, Klarna placed the order: the merchant recorded it.
    RecordedOrder,
    /// Paid, data unusable: a person reviews it.
    Review,
    /// The consumer cancelled.
    Cancelled,
    /// The merchant disabled it (its own reasons, not the time limit).
    Disabled,
    /// Abandoned, disabled after the merchant's time limit.
    AbandonedDisabled,
    /// Abandoned, released at expiry.
    AbandonedExpired,
}

impl Ending {
    const ALL: [Self; 7] = [
        Self::PlacedOrder,
        Self::RecordedOrder,
        Self::Review,
        Self::Cancelled,
        Self::Disabled,
        Self::AbandonedDisabled,
        Self::AbandonedExpired,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::PlacedOrder => "placed order (token)",
            Self::RecordedOrder => "recorded order",
            Self::Review => "paid, review",
            Self::Cancelled => "cancelled",
            Self::Disabled => "disabled by the merchant",
            Self::AbandonedDisabled => "abandoned, disabled at the limit",
            Self::AbandonedExpired => "abandoned, released at expiry",
        }
    }

    fn is_paid(self) -> bool {
        matches!(self, Self::PlacedOrder | Self::RecordedOrder | Self::Review)
    }
}

/// Mean, 99th percentile and maximum of a count per session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Spread {
    /// Sessions.
    pub sessions: u64,
    /// Mean.
    pub mean: f64,
    /// 99th percentile.
    pub p99: u32,
    /// Maximum.
    pub max: u32,
}

impl Spread {
    fn of(mut values: Vec<u32>) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        values.sort_unstable();
        let n = values.len();
        let sum: u64 = values.iter().map(|&v| u64::from(v)).sum();
        #[expect(clippy::cast_precision_loss, reason = "counts far under 2^52")]
        let mean = sum as f64 / n as f64;
        Self {
            sessions: n as u64,
            mean,
            p99: values[(n * 99 / 100).min(n - 1)],
            max: values[n - 1],
        }
    }
}

/// What a fleet run came to.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FleetReport {
    /// Sessions simulated.
    pub sessions: u64,
    /// Reads per session, by how the session ended.
    pub reads_by_ending: Vec<(Ending, Spread)>,
    /// Reads per paid session whose `COMPLETED` callback or success redirect reached the
    /// merchant.
    pub reads_paid_hinted: Spread,
    /// Reads per paid session whose every callback and redirect was lost.
    pub reads_paid_unhinted: Spread,
    /// Reads per second over the run (from the first session to the last settled), mean.
    pub reads_per_second_mean: f64,
    /// The most reads in one second.
    pub reads_per_second_peak: u32,
    /// Requests answered 429 (over Klarna's limit in their window).
    pub rate_limited: u64,
    /// Of those, money calls (placing an order, disabling a session).
    pub rate_limited_money: u64,
    /// Seconds from a `COMPLETED`'s `updated_at` to the read that confirmed it: maximum.
    pub detection_max_secs: f64,
    /// … and 99th percentile.
    pub detection_p99_secs: f64,
    /// Slack between an order placed and its token's end (`place_by`), minimum, seconds.
    pub place_by_slack_min_secs: f64,
    /// … first percentile.
    pub place_by_slack_p1_secs: f64,
    /// Paid-by-token sessions with no order created while the token lived (Klarna's record).
    pub dead_tokens: u64,
    /// Sessions whose order was asked for twice (created twice, or refused as existing or its
    /// token used), or beside the one Klarna placed: the one judge's `OrderTwice`.
    pub orders_twice: u64,
    /// Sessions whose merchant actions differ from the oracle's (exactly once, by the history).
    pub mismatched: u64,
    /// Sessions still open when the run ended.
    pub unsettled: u64,
    /// The most sessions open at once: the trackers the run held (each
    /// `size_of::<Tracker>()` bytes, boxed with what the judge needs of an open session).
    pub live_peak: u64,
    /// The longest a due read waited for budget, seconds.
    pub max_read_wait_secs: f64,
    /// The policy's guarantee, seconds.
    pub detect_within_secs: f64,
    /// The wait for budget the policy allows for (its `poll_lag`), seconds.
    pub poll_lag_secs: f64,
}

impl FleetReport {
    /// Whether the run kept the money guarantee: every `COMPLETED` confirmed within
    /// `detect_within`, no due read waited longer than the policy allows for, no token died, no
    /// money call refused, no order twice, every session as the oracle says and settled.
    #[must_use]
    pub fn kept_the_guarantee(&self) -> bool {
        self.detection_max_secs <= self.detect_within_secs
            && self.max_read_wait_secs <= self.poll_lag_secs
            && self.dead_tokens == 0
            && self.rate_limited_money == 0
            && self.orders_twice == 0
            && self.mismatched == 0
            && self.unsettled == 0
    }
}

/// One session, as the vector of every session of the run holds it: 16 bytes. What an open
/// session needs is boxed in its [`Live`], which is judged and dropped once it settled, so that
/// a run holds the open sessions' records and little else: an ended session costs these 16
/// bytes and its figures for the report's spreads (`Verdicts`: 4 to 44 bytes), where it kept
/// its tracker's box and its record to the end before.
struct Session {
    /// The open session (`None` once it settled and was judged).
    live: Option<Box<Live>>,
    /// The generation of the queued read: older queue entries are stale.
    generation: u32,
    reads: u32,
}

/// An open session: its tracker and what the judge needs of its life.
struct Live {
    tracker: Tracker,
    disabled_at: Option<Timestamp>,
    paid_confirmed_at: Option<Timestamp>,
    /// The create-order calls, as Klarna answered them.
    money: Money,
    /// What the tracker asked for, in order: almost always one action, so a boxed slice (16
    /// bytes, not a `Vec`'s 24: a million sessions are held at once).
    asked: Option<Box<[Expected]>>,
    /// The money calls queued for a window (they stay owed until answered).
    queued: hpp_session::ActionSet,
}

/// When sessions are judged.
enum Judging {
    /// Each when it settles, its box then dropped: what [`run`] does.
    WhenSettled,
    /// All at the end, the settled ones kept aside as they were: how the fleet judged before it
    /// dropped them, the oracle a test holds [`Judging::WhenSettled`] against.
    #[cfg(test)]
    AtEnd(std::collections::HashMap<u32, Box<Live>>),
}

/// The verdicts' figures, gathered as sessions are judged (each once, when it settled or at the
/// end): the spreads and percentiles of the report.
#[derive(Default)]
struct Verdicts {
    /// Reads of each session, by how it ended ([`Ending::ALL`]'s order).
    reads: [Vec<u32>; Ending::ALL.len()],
    hinted: Vec<u32>,
    unhinted: Vec<u32>,
    /// From a `COMPLETED`'s change to the read that confirmed it.
    detection: Vec<Duration>,
    /// From an order placed to its token's end.
    slack: Vec<Duration>,
}

/// The tracker asked for `action` (none: an action the oracle does not know).
fn ask(asked: &mut Option<Box<[Expected]>>, action: Option<Expected>) {
    let Some(action) = action else {
        return;
    };
    let mut all = asked.take().map(Vec::from).unwrap_or_default();
    all.push(action);
    *asked = Some(all.into_boxed_slice());
}

/// A money call waiting for a window with room.
#[derive(Clone, Copy)]
enum MoneyCall {
    PlaceOrder(u32),
    Disable(u32),
}

/// A due read in the queue: the most urgent first, then the longest due.
type DueKey = (Urgency, Reverse<Timestamp>, Reverse<u32>, u32);

struct Fleet<'s> {
    simulator: &'s Simulator,
    config: FleetConfig,
    sessions: Vec<Session>,
    hints: BinaryHeap<Reverse<(Timestamp, u32, bool, u16)>>,
    timed: BinaryHeap<Reverse<(Timestamp, u32, u32, Urgency)>>,
    due: BinaryHeap<DueKey>,
    money: VecDeque<MoneyCall>,
    report: FleetReport,
    verdicts: Verdicts,
    judging: Judging,
    /// Open sessions now (the most at once is the report's `live_peak`).
    live: u64,
    /// Klarna's limiter for the merchant's reads and money calls, on the simulated clock.
    limiter: RateWindow,
    max_wait: Duration,
}

impl Fleet<'_> {
    /// The scenario of session `sid`, its page opened as people do (or at once). Returned
    /// straight from the simulator: a scenario is large, and a hint makes one.
    fn fresh(&self, sid: u32) -> Scenario {
        if self.config.all_open_at_once {
            self.simulator.scenario(u64::from(sid))
        } else {
            self.simulator.scenario_as_people(u64::from(sid))
        }
    }

    /// Session `sid` while it is open; `None` once it settled, when nothing more happens to it.
    fn open(&self, sid: u32) -> Option<&Live> {
        self.sessions[sid as usize].live.as_deref()
    }

    /// Time since the simulation's start, which Klarna's 1-second windows count from.
    fn elapsed(&self, at: Timestamp) -> Duration {
        at.duration_since(self.simulator.config().start)
            .unwrap_or_default()
    }

    /// [`Fleet::fresh`] as it is after the integrator's disable, if it made one.
    fn scenario(&self, sid: u32, disabled_at: Option<Timestamp>) -> Scenario {
        let mut s = self.fresh(sid);
        if let Some(at) = disabled_at {
            let _ = s.disable(at);
        }
        s
    }

    /// Queues the tracker's next read of `sid`.
    fn schedule(&mut self, sid: u32, now: Timestamp) {
        let session = &mut self.sessions[sid as usize];
        let Some(live) = &session.live else {
            return;
        };
        session.generation += 1;
        match live.tracker.next_read(&self.config.tracker, now) {
            Some(next) => {
                self.timed
                    .push(Reverse((next.at, sid, session.generation, next.urgency)));
            }
            None if live.tracker.owed().is_empty() => {
                // Settled: nothing of the session changes any more. It is judged now, and only
                // its count of reads is kept.
                let reads = session.reads;
                if let Some(live) = session.live.take() {
                    self.live -= 1;
                    match &mut self.judging {
                        Judging::WhenSettled => self.judge(sid, &live, reads, false),
                        #[cfg(test)]
                        Judging::AtEnd(settled) => {
                            settled.insert(sid, live);
                        }
                    }
                }
            }
            // No more reads, but a money call is owed: the tracker waits for its answer.
            None => {}
        }
    }

    /// Performs what the tracker of `sid` owes: the calls to the shop at once (they
    /// spend no Klarna budget), the money calls (placing the order, disabling) queued for a
    /// window with room. Each is reported done once it happened.
    fn perform(&mut self, sid: u32) {
        let Some(live) = self.sessions[sid as usize].live.as_deref_mut() else {
            return;
        };
        let Live {
            tracker,
            asked,
            queued,
            ..
        } = live;
        let Some(id) = tracker.session_id().cloned() else {
            return;
        };
        for action in tracker.actions().collect::<Vec<_>>() {
            match action.kind() {
                ActionKind::PlaceOrder | ActionKind::Disable => {
                    // Queued once: it stays owed until its answer comes.
                    if !queued.contains(action.kind()) {
                        *queued = queued.with(action.kind());
                        self.money.push_back(match action.kind() {
                            ActionKind::PlaceOrder => MoneyCall::PlaceOrder(sid),
                            _ => MoneyCall::Disable(sid),
                        });
                    }
                }
                _ => {
                    ask(asked, Expected::of(&action));
                    let _ = tracker.done(action.id(&id));
                }
            }
        }
    }

    fn create(&mut self, sid: u32) {
        let s = self.fresh(sid);
        let id = SessionId::new(s.history.session_id.as_str()).ok();
        let tracker = match id {
            Some(id) => Tracker::created(id, s.history.created_at),
            None => Tracker::new(),
        };
        for (i, d) in s.deliveries.iter().enumerate() {
            self.hints
                .push(Reverse((d.at, sid, false, u16::try_from(i).unwrap_or(0))));
        }
        for (i, v) in s.visits.iter().enumerate() {
            self.hints
                .push(Reverse((v.at, sid, true, u16::try_from(i).unwrap_or(0))));
        }
        self.sessions.push(Session {
            live: Some(Box::new(Live {
                tracker,
                disabled_at: None,
                paid_confirmed_at: None,
                money: Money::default(),
                asked: None,
                queued: hpp_session::ActionSet::EMPTY,
            })),
            generation: 0,
            reads: 0,
        });
        self.live += 1;
        self.report.live_peak = self.report.live_peak.max(self.live);
        self.schedule(sid, s.history.created_at);
    }

    /// A callback or redirect reaches the integrator at `at`.
    fn hint(&mut self, at: Timestamp, sid: u32, redirect: bool, index: u16) {
        let Some(disabled_at) = self.open(sid).map(|live| live.disabled_at) else {
            // Settled: hints change nothing.
            return;
        };
        let s = self.fresh(sid);
        let kept = |change_at: Timestamp, forged: bool| {
            forged || disabled_at.is_none_or(|d| change_at <= d)
        };
        let Some(Live { tracker, .. }) = self.sessions[sid as usize].live.as_deref_mut() else {
            return;
        };
        if redirect {
            let Some(v) = s.visits.get(usize::from(index)) else {
                return;
            };
            if !kept(v.change_at, v.forged) {
                return;
            }
            if let Ok(id) = SessionId::new(s.history.session_id.as_str()) {
                let _ = tracker.observe_redirect(&id, v.redirect, at);
            }
        } else {
            let Some(d) = s.deliveries.get(usize::from(index)) else {
                return;
            };
            let change_at = Timestamp::parse(&d.body.updated_at).unwrap_or(Timestamp::MIN);
            if !kept(change_at, d.forged) {
                return;
            }
            if let Ok(snapshot) = d.body.session_body().snapshot() {
                // Hints never ask for money (only for a read).
                let config = &self.config.tracker;
                let _ = tracker.observe_callback(config, Some(d.event_id.as_str()), &snapshot, at);
            }
        }
        self.schedule(sid, at);
    }

    /// Reads session `sid` at `at`.
    fn read(&mut self, sid: u32, at: Timestamp) {
        let Some(disabled_at) = self.open(sid).map(|live| live.disabled_at) else {
            return;
        };
        let mut s = self.scenario(sid, disabled_at);
        let answer = s.read(at);
        let session = &mut self.sessions[sid as usize];
        let Some(Live {
            tracker,
            paid_confirmed_at,
            ..
        }) = session.live.as_deref_mut()
        else {
            return;
        };
        session.reads += 1;
        let config = &self.config.tracker;
        let _ = tracker.start_read(config, at);
        let unusable = hpp_session::ReadFailure::Unexpected;
        match &answer {
            ReadAnswer::Session(body) => match body.session_body().snapshot() {
                Ok(snapshot) => {
                    if tracker.observe_read(config, &snapshot, at).is_err() {
                        tracker.observe_read_failure(unusable, at);
                    }
                }
                Err(_) => tracker.observe_read_failure(unusable, at),
            },
            ReadAnswer::NotFound => {
                if tracker.observe_not_found(at).is_err() {
                    // No confirmed expiry to judge the 404 by.
                    tracker.observe_read_failure(unusable, at);
                }
            }
            ReadAnswer::Failed(failure) => tracker.observe_read_failure(*failure, at),
        }
        if paid_confirmed_at.is_none() && tracker.status() == Some(Status::Completed) {
            *paid_confirmed_at = Some(at);
        }
        self.perform(sid);
        self.schedule(sid, at);
    }

    /// One window up to `end`: the money calls waiting (at its start), the hints that arrive in
    /// it, then the reads due by its end, most urgent first, under `budget` and what the window
    /// has left; returns the reads made. The money calls the reads ask for wait for the next
    /// window (a careless integrator sends them at once).
    fn window(&mut self, start: Timestamp, end: Timestamp, budget: u32) -> u32 {
        if self.config.money_first {
            self.money_calls(start);
        }
        let budget = budget.min(self.limiter.remaining(self.elapsed(start)));
        while let Some(&Reverse((at, sid, redirect, index))) = self.hints.peek() {
            if at >= end {
                break;
            }
            self.hints.pop();
            self.hint(at, sid, redirect, index);
        }
        while let Some(&Reverse((at, sid, generation, urgency))) = self.timed.peek() {
            if at >= end {
                break;
            }
            self.timed.pop();
            if self.sessions[sid as usize].generation == generation {
                self.due
                    .push((urgency, Reverse(at), Reverse(sid), generation));
            }
        }
        // The reads are made at the window's end.
        let read_at = before(end);
        let mut reads = 0;
        while reads < budget {
            let Some((_, Reverse(due_at), Reverse(sid), generation)) = self.due.pop() else {
                break;
            };
            if self.sessions[sid as usize].generation != generation {
                continue;
            }
            let waited = read_at.duration_since(due_at).unwrap_or_default();
            self.max_wait = self.max_wait.max(waited);
            self.read(sid, read_at);
            reads += 1;
        }
        let elapsed = self.elapsed(read_at);
        self.limiter.count(elapsed, reads);
        if !self.config.money_first {
            self.money_calls(read_at);
        }
        reads
    }

    /// Sends the money calls waiting, at `at`, while the window has room; a call over the
    /// limit is answered 429 and waits for the next window.
    fn money_calls(&mut self, at: Timestamp) {
        let waiting = self.money.len();
        for _ in 0..waiting {
            let elapsed = self.elapsed(at);
            if self.config.money_first && self.limiter.remaining(elapsed) == 0 {
                // The window is full: the rest wait for the next one, unrefused.
                break;
            }
            let Some(call) = self.money.pop_front() else {
                break;
            };
            if !self.limiter.admit(elapsed).allowed {
                self.report.rate_limited += 1;
                self.report.rate_limited_money += 1;
                self.money.push_back(call);
                continue;
            }
            match call {
                MoneyCall::PlaceOrder(sid) => {
                    // A session can settle with its call still queued (Klarna placed the
                    // order, and the token's call is owed no more): it is not made.
                    let Some(disabled_at) = self.open(sid).map(|live| live.disabled_at) else {
                        continue;
                    };
                    // Klarna answers from the history as the merchant's disable left it.
                    let s = match disabled_at {
                        None => self.fresh(sid),
                        disabled_at => self.scenario(sid, disabled_at),
                    };
                    // Placed, or refused for good (Klarna's rule, `Money`): done either way.
                    if let Some(Live {
                        tracker,
                        money,
                        asked,
                        ..
                    }) = self.sessions[sid as usize].live.as_deref_mut()
                    {
                        if let Some(action) = tracker.action(ActionKind::PlaceOrder) {
                            if let Action::PlaceOrder {
                                authorization_token,
                                ..
                            } = &action
                            {
                                let token = authorization_token.expose_secret();
                                let payment = payment_of(&s.history, at);
                                let _ = money.create_order(&s.history, token, at, payment);
                            }
                            ask(asked, Expected::of(&action));
                        }
                        if let Some(id) = tracker.session_id().cloned() {
                            let _ = tracker.done(action_id(&id, ActionKind::PlaceOrder));
                        }
                    }
                    self.schedule(sid, at);
                }
                MoneyCall::Disable(sid) => {
                    // A disable stays owed until answered, and is dropped only when the session
                    // ended (a confirmed final status, or expiry), which Klarna would answer
                    // 400 or 404: nothing to make for a settled session. (Before, the call was
                    // made and its answer kept; `Judging::AtEnd` still does, and the test
                    // `judging_when_settled_reports_what_judging_at_the_end_did` holds the two
                    // alike.)
                    let Some(disabled_at) = self.open(sid).map(|live| live.disabled_at) else {
                        #[cfg(test)]
                        if let Judging::AtEnd(settled) = &self.judging
                            && let Some(disabled_at) = settled.get(&sid).map(|l| l.disabled_at)
                        {
                            let answer = self.scenario(sid, disabled_at).disable(at);
                            if answer == hpp_session::DisableAnswer::Disabled
                                && let Judging::AtEnd(settled) = &mut self.judging
                                && let Some(live) = settled.get_mut(&sid)
                            {
                                live.disabled_at = Some(at);
                            }
                        }
                        continue;
                    };
                    let mut s = self.scenario(sid, disabled_at);
                    let answer = s.disable(at);
                    if let Some(live) = self.sessions[sid as usize].live.as_deref_mut() {
                        if answer == hpp_session::DisableAnswer::Disabled {
                            live.disabled_at = Some(at);
                        }
                        if let Some(id) = live.tracker.session_id().cloned() {
                            let _ = live.tracker.observe_disable_answer(&id, answer, at);
                        }
                    }
                    // A 204 asks for the release; a 400 for a read at once.
                    self.perform(sid);
                    self.schedule(sid, at);
                }
            }
        }
    }
}

/// A fleet that cannot end: with no read in any window, due reads wait forever.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoReadBudget {
    /// The limit a second.
    pub limit: u32,
    /// The share of it for reads, in per mille.
    pub read_share_permille: u32,
}

impl fmt::Display for NoReadBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a read share of {}.{:03} of a limit of {} a second leaves no read a second: \
             due reads would wait forever (raise --limit or --read-share)",
            self.read_share_permille / 1000,
            self.read_share_permille % 1000,
            self.limit
        )
    }
}

impl std::error::Error for NoReadBudget {}

impl FleetConfig {
    /// The reads a window may make: the read share of the limit, rounded down.
    #[must_use]
    pub fn read_budget(&self) -> u32 {
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "a share in 0..=1 of a u32 limit"
        )]
        let budget = (f64::from(self.limit) * self.read_share).floor() as u32;
        budget
    }
}

/// Runs the fleet: `config.sessions` sessions from `simulator` (which sets when they arrive;
/// its reads must not fail on their own: the limiter here answers 429).
///
/// # Errors
/// [`NoReadBudget`] when the read budget rounds to 0 a second: such a fleet could never end.
pub fn run(simulator: &Simulator, config: FleetConfig) -> Result<FleetReport, NoReadBudget> {
    run_judging(simulator, config, Judging::WhenSettled)
}

/// [`run`], judging sessions as `judging` says.
fn run_judging(
    simulator: &Simulator,
    config: FleetConfig,
    judging: Judging,
) -> Result<FleetReport, NoReadBudget> {
    let read_budget = config.read_budget();
    if read_budget == 0 {
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "a share in 0..=1, in per mille"
        )]
        let read_share_permille = (config.read_share * 1000.0).round() as u32;
        return Err(NoReadBudget {
            limit: config.limit,
            read_share_permille,
        });
    }
    let gap = simulator.config().arrival_gap;
    let start = simulator.config().start;
    let sessions = u32::try_from(config.sessions).unwrap_or(u32::MAX);
    let mut fleet = Fleet {
        simulator,
        config,
        sessions: Vec::with_capacity(sessions as usize),
        hints: BinaryHeap::new(),
        timed: BinaryHeap::new(),
        due: BinaryHeap::new(),
        money: VecDeque::new(),
        verdicts: Verdicts::default(),
        judging,
        live: 0,
        report: FleetReport {
            sessions: u64::from(sessions),
            detect_within_secs: config.tracker.reads.detect_within().as_secs_f64(),
            poll_lag_secs: config.tracker.reads.poll_lag().as_secs_f64(),
            ..FleetReport::default()
        },
        limiter: RateWindow::new(config.limit),
        max_wait: Duration::ZERO,
    };
    let second = Duration::from_secs(1);
    let mut window = start;
    let mut created = 0u32;
    let (mut windows, mut total_reads) = (0u64, 0u64);
    let created_at = |i: u32| start.saturating_add(gap.saturating_mul(i));
    loop {
        let end = window.saturating_add(second);
        while created < sessions && created_at(created) < end {
            fleet.create(created);
            created += 1;
        }
        let reads = fleet.window(window, end, read_budget);
        total_reads += u64::from(reads);
        windows += 1;
        fleet.report.reads_per_second_peak = fleet.report.reads_per_second_peak.max(reads);
        // The next window with something to do.
        let next = [
            (created < sessions).then(|| created_at(created)),
            fleet.hints.peek().map(|Reverse((at, ..))| *at),
            fleet.timed.peek().map(|Reverse((at, ..))| *at),
            (!fleet.due.is_empty() || !fleet.money.is_empty()).then_some(end),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else {
            break;
        };
        if next >= end {
            // Idle windows in between count for the mean.
            let idle = next.duration_since(end).unwrap_or_default().as_secs();
            windows += idle;
            window = end.saturating_add(Duration::from_secs(idle));
        } else {
            window = end;
        }
    }
    #[expect(clippy::cast_precision_loss, reason = "counts far under 2^52")]
    {
        fleet.report.reads_per_second_mean = total_reads as f64 / windows.max(1) as f64;
    }
    fleet.report.max_read_wait_secs = fleet.max_wait.as_secs_f64();
    judge_all(&mut fleet);
    Ok(fleet.report)
}

/// The id of session `id`'s action of `kind`.
const fn action_id(id: &SessionId, kind: ActionKind) -> hpp_session::ActionId<'_> {
    hpp_session::ActionId::new(id, kind)
}

/// One nanosecond before `t`.
fn before(t: Timestamp) -> Timestamp {
    match t.subsec_nanos() {
        0 => Timestamp::from_unix(t.unix_seconds() - 1, 999_999_999).unwrap_or(t),
        n => Timestamp::from_unix(t.unix_seconds(), n - 1).unwrap_or(t),
    }
}

impl Fleet<'_> {
    /// Judges session `sid` against its history and Klarna's record: once, when it settled
    /// (nothing of it changes after), or at the end while still open (`unsettled`).
    fn judge(&mut self, sid: u32, live: &Live, reads: u32, unsettled: bool) {
        let s = self.scenario(sid, live.disabled_at);
        let want = expected(&s.history);
        let ending = match want {
            Expected::PlaceOrder { .. } => Ending::PlacedOrder,
            Expected::RecordOrder { .. } => Ending::RecordedOrder,
            Expected::ReviewCompletion => Ending::Review,
            Expected::Release(ReleaseReason::Cancelled) => Ending::Cancelled,
            Expected::Release(ReleaseReason::Disabled) if live.disabled_at.is_some() => {
                Ending::AbandonedDisabled
            }
            Expected::Release(ReleaseReason::Disabled) => Ending::Disabled,
            Expected::Release(_) => Ending::AbandonedExpired,
        };
        let verdicts = &mut self.verdicts;
        let by_ending = Ending::ALL.iter().position(|e| *e == ending).unwrap_or(0);
        verdicts.reads[by_ending].push(reads);
        // The one judge (the double's too): what Klarna recorded and what the shop was told
        // (the judge reads no order from the shop's list: those are in `money`).
        let asked = live.asked.as_deref().unwrap_or_default();
        let conduct = Conduct {
            money: &live.money,
            paid_elsewhere: false,
            shop: asked,
        };
        let end = s.history.expires_at.saturating_add(SETTLE_WITHIN);
        let problems = judge(&want, &conduct, end).at_end().problems;
        let report = &mut self.report;
        report.dead_tokens += u64::from(problems.contains(Problem::TokenDead));
        report.orders_twice += u64::from(problems.iter().any(Problem::is_order_twice));
        // Any other problem, or what the tracker asked not exactly the oracle's action.
        let other = problems
            .iter()
            .any(|p| p != Problem::TokenDead && !p.is_order_twice());
        report.mismatched += u64::from(other || asked != std::slice::from_ref(&want));
        report.unsettled += u64::from(unsettled);
        if ending.is_paid() {
            let told = s
                .deliveries
                .iter()
                .any(|d| !d.forged && d.body.status == Status::Completed)
                || s.visits
                    .iter()
                    .any(|v| !v.forged && v.redirect == hpp_session::Redirect::Success);
            if told {
                verdicts.hinted.push(reads);
            } else {
                verdicts.unhinted.push(reads);
            }
            if let (Some(end), Some(confirmed)) = (s.history.ending(), live.paid_confirmed_at) {
                let detected = confirmed.duration_since(end.at).unwrap_or_default();
                verdicts.detection.push(detected);
            }
        }
        if let (Expected::PlaceOrder { place_by, .. }, Some(at)) = (&want, live.money.ordered_at)
            && let Some(by) = place_by
        {
            verdicts
                .slack
                .push(by.duration_since(at).unwrap_or_default());
        }
    }
}

/// Judges the sessions still open at the end, and makes the report's spreads and percentiles.
fn judge_all(fleet: &mut Fleet<'_>) {
    #[cfg(test)]
    if let Judging::AtEnd(settled) = std::mem::replace(&mut fleet.judging, Judging::WhenSettled) {
        for (sid, live) in settled {
            let reads = fleet.sessions[sid as usize].reads;
            fleet.judge(sid, &live, reads, false);
        }
    }
    for sid in 0..fleet.sessions.len() {
        let session = &mut fleet.sessions[sid];
        let reads = session.reads;
        if let Some(live) = session.live.take() {
            let sid = u32::try_from(sid).unwrap_or(u32::MAX);
            fleet.judge(sid, &live, reads, true);
        }
    }
    let Verdicts {
        reads,
        hinted,
        unhinted,
        mut detection,
        mut slack,
    } = std::mem::take(&mut fleet.verdicts);
    let report = &mut fleet.report;
    report.reads_by_ending = Ending::ALL
        .into_iter()
        .zip(reads)
        .map(|(e, r)| (e, Spread::of(r)))
        .filter(|(_, s)| s.sessions > 0)
        .collect();
    report.reads_paid_hinted = Spread::of(hinted);
    report.reads_paid_unhinted = Spread::of(unhinted);
    detection.sort_unstable();
    slack.sort_unstable();
    let pick = |v: &[Duration], per_mille: usize| {
        v.get((v.len() * per_mille / 1000).min(v.len().saturating_sub(1)))
            .map_or(0.0, Duration::as_secs_f64)
    };
    report.detection_max_secs = detection.last().map_or(0.0, Duration::as_secs_f64);
    report.detection_p99_secs = pick(&detection, 990);
    report.place_by_slack_min_secs = slack.first().map_or(0.0, Duration::as_secs_f64);
    report.place_by_slack_p1_secs = pick(&slack, 10);
}

impl fmt::Display for FleetReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} sessions", self.sessions)?;
        writeln!(f, "\nReads per session, by how it ended:")?;
        writeln!(
            f,
            "  {:<34} {:>8} {:>7} {:>5} {:>5}",
            "ending", "sessions", "mean", "p99", "max"
        )?;
        let mut row = |label: &str, s: &Spread| {
            writeln!(
                f,
                "  {:<34} {:>8} {:>7.2} {:>5} {:>5}",
                label, s.sessions, s.mean, s.p99, s.max
            )
        };
        for (ending, spread) in &self.reads_by_ending {
            row(ending.label(), spread)?;
        }
        row("paid, a callback or redirect came", &self.reads_paid_hinted)?;
        row("paid, every hint lost", &self.reads_paid_unhinted)?;
        writeln!(
            f,
            "\nReads a second: mean {:.2}, peak {}; longest wait for budget {:.1} s",
            self.reads_per_second_mean, self.reads_per_second_peak, self.max_read_wait_secs
        )?;
        writeln!(
            f,
            "Sessions open at once: at most {} (each a tracker of {} bytes, {} with the rest of its record)",
            self.live_peak,
            size_of::<Tracker>(),
            size_of::<Live>()
        )?;
        writeln!(
            f,
            "429s: {} ({} on money calls)",
            self.rate_limited, self.rate_limited_money
        )?;
        writeln!(
            f,
            "COMPLETED confirmed after its updated_at: p99 {:.0} s, max {:.0} s",
            self.detection_p99_secs, self.detection_max_secs
        )?;
        writeln!(
            f,
            "Order placed before place_by by: min {:.0} s, p1 {:.0} s",
            self.place_by_slack_min_secs, self.place_by_slack_p1_secs
        )?;
        writeln!(
            f,
            "Tokens died unused: {}; orders created twice: {}; sessions off the oracle: {}; unsettled: {}",
            self.dead_tokens, self.orders_twice, self.mismatched, self.unsettled
        )?;
        writeln!(
            f,
            "Guarantee (COMPLETED within {:.0} min, reads waiting at most {:.0} s): {}",
            self.detect_within_secs / 60.0,
            self.poll_lag_secs,
            if self.kept_the_guarantee() {
                "kept"
            } else {
                "BROKEN"
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use hpp_sim::SimConfig;

    use super::*;

    /// A fleet of 100 sessions, one window of one request, and a paid session whose tracker
    /// owes its order: the session and when the consumer paid.
    fn owing_an_order(simulator: &Simulator) -> (Fleet<'_>, u32, Timestamp) {
        let config = FleetConfig {
            sessions: 100,
            limit: 1,
            read_share: 0.8,
            money_first: true,
            all_open_at_once: false,
            tracker: TrackerConfig::DEFAULT,
        };
        let mut fleet = Fleet {
            simulator,
            config,
            sessions: Vec::new(),
            hints: BinaryHeap::new(),
            timed: BinaryHeap::new(),
            due: BinaryHeap::new(),
            money: VecDeque::new(),
            verdicts: Verdicts::default(),
            judging: Judging::WhenSettled,
            live: 0,
            report: FleetReport::default(),
            limiter: RateWindow::new(config.limit),
            max_wait: Duration::ZERO,
        };
        for sid in 0..100 {
            fleet.create(sid);
        }
        let (sid, paid_at) = (0..100)
            .find_map(|sid| {
                let s = fleet.fresh(sid);
                matches!(expected(&s.history), Expected::PlaceOrder { .. })
                    .then(|| (sid, s.history.ending().map(|c| c.at)))
            })
            .unwrap();
        let paid_at = paid_at.unwrap();
        let ReadAnswer::Session(body) = fleet.fresh(sid).read(paid_at) else {
            panic!("a read at the payment");
        };
        let snapshot = body.session_body().snapshot().unwrap();
        let tracker = &mut fleet.sessions[sid as usize]
            .live
            .as_deref_mut()
            .unwrap()
            .tracker;
        tracker
            .observe_read(&config.tracker, &snapshot, paid_at)
            .unwrap();
        assert!(tracker.action(ActionKind::PlaceOrder).is_some());
        (fleet, sid, paid_at)
    }

    /// Judging each session when it settles (and dropping it) reports what judging every
    /// session at the end did, the settled ones kept as they were: on the default fleet, with a
    /// time limit (disables), with money calls sent on top of a full budget (429s), and with
    /// every page opened at once.
    #[test]
    fn judging_when_settled_reports_what_judging_at_the_end_did() {
        let fleet = |seed, rate: f64, config: FleetConfig| {
            let sim = SimConfig {
                arrival_gap: Duration::from_secs_f64(1.0 / rate),
                ..SimConfig::DEFAULT
            };
            let simulator = Simulator::new(sim, seed);
            let now = run_judging(&simulator, config, Judging::WhenSettled).unwrap();
            let before = run_judging(
                &simulator,
                config,
                Judging::AtEnd(std::collections::HashMap::default()),
            );
            let (now, before) = (
                serde_json::to_value(now),
                serde_json::to_value(before.unwrap()),
            );
            assert_eq!(now.unwrap(), before.unwrap(), "seed {seed}");
        };
        let base = FleetConfig {
            sessions: 1_500,
            limit: 50,
            read_share: 0.8,
            money_first: true,
            all_open_at_once: false,
            tracker: TrackerConfig::DEFAULT,
        };
        let limited = TrackerConfig {
            abandon_after: Some(Duration::from_secs(7_200)),
            ..TrackerConfig::DEFAULT
        };
        fleet(3, 1.16, base);
        fleet(
            4,
            11.6,
            FleetConfig {
                limit: 20,
                tracker: limited,
                ..base
            },
        );
        fleet(
            5,
            5.0,
            FleetConfig {
                limit: 5,
                read_share: 1.0,
                money_first: false,
                ..base
            },
        );
        fleet(
            6,
            2.0,
            FleetConfig {
                all_open_at_once: true,
                ..base
            },
        );
    }

    /// A session that ended costs the run 16 bytes (and its judged figures): everything else of
    /// it was boxed with its tracker and dropped.
    #[test]
    fn an_ended_session_is_small() {
        assert_eq!(size_of::<Session>(), 16);
    }

    /// Klarna's side of placing an order (`Money`): the token lives 60 minutes after the
    /// authorization, and a window over the limit refuses the call (it waits, still owed).
    #[test]
    fn an_order_is_created_only_while_the_token_lives() {
        let simulator = Simulator::new(SimConfig::DEFAULT, 3);
        // At the token's 60 minutes exactly: dead (Klarna refuses it), and done for good.
        let (mut fleet, sid, paid_at) = owing_an_order(&simulator);
        let late = paid_at.saturating_add(hpp_session::AUTHORIZATION_VALIDITY);
        fleet.money.push_back(MoneyCall::PlaceOrder(sid));
        fleet.money_calls(late);
        // Done for good: the session settled, and its judge (the one session judged) found the
        // token dead.
        assert!(fleet.sessions[sid as usize].live.is_none());
        assert_eq!(
            (fleet.report.dead_tokens, fleet.report.orders_twice),
            (1, 0)
        );
        assert!(fleet.verdicts.slack.is_empty(), "no order was created");
        // In time, but the window is full: it waits, unrefused, for the next one.
        let (mut fleet, sid, paid_at) = owing_an_order(&simulator);
        fleet.limiter.count(fleet.elapsed(paid_at), 1);
        fleet.money.push_back(MoneyCall::PlaceOrder(sid));
        fleet.money_calls(paid_at);
        assert_eq!(fleet.money.len(), 1);
        assert_eq!(fleet.report.rate_limited, 0, "it waited, unrefused");
        // The next second is a new window.
        let next = paid_at.saturating_add(Duration::from_secs(1));
        fleet.money_calls(next);
        // Created at `next`: the session settled with its order, a second inside the token's
        // hour.
        assert!(fleet.sessions[sid as usize].live.is_none());
        let report = &fleet.report;
        assert_eq!(
            (report.dead_tokens, report.orders_twice, report.mismatched),
            (0, 0, 0)
        );
        let slack = hpp_session::AUTHORIZATION_VALIDITY.checked_sub(Duration::from_secs(1));
        assert_eq!(fleet.verdicts.slack, [slack.unwrap()]);
    }
}

//! "Testing your integration" from the README: a shop's own handler, poller and executor (one
//! stored tracker per session) plugged into the simulator's closed loop
//! ([`hpp_sim::integration::drive_integration`]) and judged by the oracle on each history, not
//! by the shop's state. Two sabotaged executors must fail the judge: one that does an action
//! twice, one that drops it.

#[path = "readme/integration.rs"]
mod integration;

use hpp_session::{Action, SessionId, Timestamp, Tracker, TrackerConfig};
use hpp_sim::integration::{Integration, Judgement, Klarna, Problem, drive_integration};
use hpp_sim::oracle::Expected;
use hpp_sim::{Delivery, SimConfig, Simulator, Visit};
use integration::{MyShop, perform};

/// The simulator's harsh mix: lost and late callbacks, forged ones, failing reads.
const HARSH: SimConfig = SimConfig {
    forged: 200,
    read_failure: 50,
    late: 100,
    ..SimConfig::DEFAULT
};

fn shop_for(scenario: &hpp_sim::Scenario) -> MyShop {
    let id = SessionId::new(scenario.history.session_id.as_str()).unwrap();
    MyShop {
        tracker: Tracker::created(id.clone(), scenario.history.created_at),
        id,
        config: TrackerConfig::default(),
    }
}

/// The sabotaged executor's judgement on each of `sessions` scenarios.
fn judge_sabotaged(sabotage: Sabotage, sessions: u64) -> Vec<Judgement> {
    let simulator = Simulator::new(HARSH, 11);
    (0..sessions)
        .map(|i| {
            let mut scenario = simulator.scenario(i);
            let shop = shop_for(&scenario);
            drive_integration(&mut scenario, &mut Sabotaged { shop, sabotage })
        })
        .collect()
}

#[test]
fn the_readme_integration_passes_the_judge_on_every_scenario() {
    let simulator = Simulator::new(HARSH, 11);
    let mut reads = 0;
    for i in 0..3_000 {
        let mut scenario = simulator.scenario(i);
        let mut shop = shop_for(&scenario);
        let judgement = drive_integration(&mut scenario, &mut shop);
        assert!(judgement.ok(), "scenario {i}: {judgement:?}");
        reads += judgement.record.reads;
    }
    // Not a bound to pass: a figure to see the loop really read.
    assert!(reads > 3_000, "{reads} reads");
}

/// A sabotaged executor around the README's shop.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sabotage {
    /// Performs each action, then performs it again before reporting it done.
    Twice,
    /// Reports each action done without performing it (a dropped return value).
    Drops,
    /// Its poller wakes two hours after it asked to: tokens die.
    Late,
}

struct Sabotaged {
    shop: MyShop,
    sabotage: Sabotage,
}

impl Integration for Sabotaged {
    fn callback(&mut self, now: Timestamp, d: &Delivery, secret_matches: bool) {
        self.shop.callback(now, d, secret_matches);
    }

    fn redirect(&mut self, now: Timestamp, v: &Visit) {
        self.shop.redirect(now, v);
    }

    fn next_wake(&self, now: Timestamp) -> Option<Timestamp> {
        let wake = self.shop.next_wake(now);
        if self.sabotage == Sabotage::Late {
            return wake.map(|at| at.saturating_add(std::time::Duration::from_secs(2 * 3_600)));
        }
        wake
    }

    fn wake(&mut self, now: Timestamp, klarna: &mut Klarna<'_>) {
        self.shop.poll(now, klarna);
        // What the shop's own executor is about to do, done (or not) the sabotaged way first.
        let owed: Vec<Action> = self.shop.tracker.actions().collect();
        for action in owed.iter().filter(|a| **a != Action::Disable) {
            match self.sabotage {
                Sabotage::Twice => perform(action, klarna),
                Sabotage::Drops => {
                    let _ = self.shop.tracker.done(action.id(&self.shop.id));
                }
                Sabotage::Late => {}
            }
        }
        self.shop.execute(now, klarna);
    }
}

#[test]
fn an_executor_that_does_an_action_twice_fails_the_judge() {
    let judgements = judge_sabotaged(Sabotage::Twice, 600);
    // An order asked twice is the money's own problem; anything else told twice is the shop's.
    let caught = judgements
        .iter()
        .filter(|j| {
            j.problem
                == Some(match j.expected {
                    Expected::PlaceOrder { .. } => Problem::OrderTwice,
                    _ => Problem::DoneTwice,
                })
        })
        .count();
    assert_eq!(
        caught,
        judgements.len(),
        "every session had its action twice"
    );
}

#[test]
fn an_executor_that_drops_an_action_fails_the_judge() {
    let judgements = judge_sabotaged(Sabotage::Drops, 600);
    // A dropped order is a dead token; anything else dropped is not done.
    let caught = judgements
        .iter()
        .filter(|j| {
            j.problem
                == Some(match j.expected {
                    Expected::PlaceOrder { .. } => Problem::TokenDead,
                    _ => Problem::NotDone,
                })
        })
        .count();
    assert_eq!(
        caught,
        judgements.len(),
        "every session's action was dropped"
    );
}

/// The README holds this shop, word for word, and the loop that tests it.
#[test]
fn the_readme_holds_this_integration_and_its_test() {
    let readme = include_str!("../../README.md");
    let code = include_str!("readme/integration.rs");
    assert!(
        readme.contains(code.trim()),
        "README.md's shop differs from sim/tests/readme/integration.rs"
    );
    let simulator = Simulator::new(
        SimConfig {
            forged: 200,
            read_failure: 50,
            late: 100,
            ..SimConfig::DEFAULT
        },
        11,
    );
    assert!(readme.contains("    let simulator = Simulator::new(SimConfig { forged: 200, read_failure: 50, late: 100, ..SimConfig::DEFAULT }, 11);"));
    assert_eq!(
        simulator.scenario(0),
        Simulator::new(HARSH, 11).scenario(0),
        "the README's mix is HARSH"
    );
}

#[test]
fn a_poller_two_hours_late_lets_tokens_die_and_the_judge_says_so() {
    let judgements = judge_sabotaged(Sabotage::Late, 600);
    let placed = judgements
        .iter()
        .filter(|j| matches!(j.expected, Expected::PlaceOrder { .. }))
        .count();
    let dead = judgements
        .iter()
        .filter(|j| j.problem == Some(Problem::TokenDead))
        .count();
    assert!(placed > 100, "{placed} sessions to place");
    assert!(dead * 2 > placed, "{dead} dead of {placed}");
}

/// A shop with a time limit disables abandoned sessions and releases them as `DISABLED`: the
/// judge reads the history after the run, where the merchant's disable is, and agrees.
#[test]
fn a_shop_with_a_time_limit_is_judged_on_the_history_after_its_disables() {
    let simulator = Simulator::new(HARSH, 12);
    let config = TrackerConfig {
        abandon_after: Some(std::time::Duration::from_secs(2 * 3_600)),
        ..TrackerConfig::default()
    };
    let mut disabled = 0;
    for i in 0..1_000 {
        let mut scenario = simulator.scenario(i);
        let mut shop = MyShop {
            config,
            ..shop_for(&scenario)
        };
        let judgement = drive_integration(&mut scenario, &mut shop);
        assert!(judgement.ok(), "scenario {i}: {judgement:?}");
        disabled += u32::from(
            judgement.expected
                == hpp_sim::oracle::Expected::Release(hpp_session::ReleaseReason::Disabled),
        ) * judgement.record.disables.min(1);
    }
    assert!(disabled > 50, "{disabled} sessions disabled by the shop");
}

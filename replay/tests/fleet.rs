//! The fleet simulation, bounded for CI: the money zeros and the read bars of the README, judged
//! from the simulator's histories and the modelled Klarna's record. (The README's figures come
//! from the same runs at full scale: `hpp-replay simulate --rate …`.)

use std::time::Duration;

use hpp_replay::fleet::{Ending, FleetConfig, FleetReport, run};
use hpp_session::sim::{SimConfig, Simulator};
use hpp_session::{ReadPolicy, TrackerConfig};

/// `sessions` arriving at `rate` a second against `limit`, as `hpp-replay simulate --rate`
/// runs them (reads may wait up to a minute for budget).
fn fleet(
    rate: f64,
    sessions: u64,
    limit: u32,
    read_share: f64,
    abandon_minutes: Option<u64>,
    network: SimConfig,
) -> FleetReport {
    careless_or_not(
        rate,
        sessions,
        limit,
        read_share,
        abandon_minutes,
        network,
        true,
    )
}

fn careless_or_not(
    rate: f64,
    sessions: u64,
    limit: u32,
    read_share: f64,
    abandon_minutes: Option<u64>,
    network: SimConfig,
    money_first: bool,
) -> FleetReport {
    let config = SimConfig {
        arrival_gap: Duration::from_secs_f64(1.0 / rate),
        read_failure: 0,
        ..network
    };
    let reads = ReadPolicy::DEFAULT
        .with_poll_lag(Duration::from_secs(60))
        .unwrap();
    run(
        &Simulator::new(config, 3),
        FleetConfig {
            sessions,
            limit,
            read_share,
            money_first,
            tracker: TrackerConfig {
                reads,
                abandon_after: abandon_minutes.map(|m| Duration::from_secs(m * 60)),
                ..TrackerConfig::DEFAULT
            },
        },
    )
}

fn reads_of(report: &FleetReport, ending: Ending) -> f64 {
    report
        .reads_by_ending
        .iter()
        .find(|(e, _)| *e == ending)
        .map(|(_, s)| s.mean)
        .unwrap()
}

fn assert_zeros(r: &FleetReport) {
    assert!(r.kept_the_guarantee(), "{r}");
    assert_eq!(
        (
            r.dead_tokens,
            r.rate_limited_money,
            r.orders_twice,
            r.mismatched,
            r.unsettled
        ),
        (0, 0, 0, 0, 0),
        "{r}"
    );
}

#[test]
fn the_playground_budget_carries_100_000_sessions_a_day() {
    let r = fleet(1.16, 12_000, 50, 0.8, None, SimConfig::DEFAULT);
    assert_zeros(&r);
    assert!(reads_of(&r, Ending::AbandonedExpired) <= 70.0, "{r}");
    assert!(r.reads_paid_hinted.mean <= 2.0, "{r}");
    assert!(r.reads_paid_hinted.sessions > 5_000, "{r}");
}

#[test]
fn the_live_budget_carries_1_000_000_a_day_with_a_time_limit() {
    let r = fleet(11.6, 12_000, 200, 0.8, Some(120), SimConfig::DEFAULT);
    assert_zeros(&r);
    assert!(reads_of(&r, Ending::AbandonedDisabled) <= 12.0, "{r}");
}

#[test]
fn with_every_hint_lost_a_completed_is_found_within_the_guarantee() {
    let lost = SimConfig {
        call_loss: 1000,
        redirect: 0,
        ..SimConfig::DEFAULT
    };
    let r = fleet(1.16, 8_000, 50, 0.8, None, lost);
    assert_zeros(&r);
    assert_eq!(r.reads_paid_hinted.sessions, 0);
    assert!(r.reads_paid_unhinted.sessions > 3_000);
    assert!(r.detection_max_secs <= 45.0 * 60.0, "{r}");
    // Found late, but in time: the token still had a quarter of its hour.
    assert!(r.place_by_slack_min_secs >= 15.0 * 60.0 - 61.0, "{r}");
}

/// The harness can fail: an integrator that spends the whole limit on reads and sends money
/// calls on top gets them refused (Klarna answers 429 to every request once a window is over).
#[test]
fn reading_with_the_whole_budget_gets_the_money_calls_refused() {
    let r = careless_or_not(1.16, 3_000, 2, 1.0, None, SimConfig::DEFAULT, false);
    assert!(!r.kept_the_guarantee(), "{r}");
    assert!(r.rate_limited_money > 0, "{r}");
}

/// … and a budget too small for the volume shows as reads waiting past what the guarantee
/// allows for, even with money calls first.
#[test]
fn too_small_a_budget_breaks_the_guarantee_visibly() {
    let r = fleet(1.16, 3_000, 1, 1.0, None, SimConfig::DEFAULT);
    assert!(!r.kept_the_guarantee(), "{r}");
    assert_eq!(r.rate_limited_money, 0, "{r}");
    assert!(r.max_read_wait_secs > 60.0, "{r}");
}

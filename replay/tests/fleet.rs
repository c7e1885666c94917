//! The fleet simulation, bounded for CI: the money zeros and the read bars of the README, judged
//! from the simulator's histories and the modelled Klarna's record. (The README's figures come
//! from the same runs at full scale: `hpp-replay simulate --rate …`.)

use std::time::Duration;

use hpp_replay::fleet::{Ending, FleetConfig, FleetReport, NoReadBudget};
use hpp_session::{ReadPolicy, TrackerConfig};
use hpp_sim::{SimConfig, Simulator};

/// A fleet run as `hpp-replay simulate --rate` makes it (reads may wait up to a minute for
/// budget; money calls first in each window unless `careless`).
struct Fleet {
    rate: f64,
    sessions: u64,
    limit: u32,
    read_share: f64,
    abandon_minutes: Option<u64>,
    network: SimConfig,
    careless: bool,
}

const PLAYGROUND: Fleet = Fleet {
    rate: 1.16,
    sessions: 12_000,
    limit: 50,
    read_share: 0.8,
    abandon_minutes: None,
    network: SimConfig::DEFAULT,
    careless: false,
};

impl Fleet {
    fn run(self) -> FleetReport {
        self.try_run().unwrap()
    }

    fn try_run(self) -> Result<FleetReport, NoReadBudget> {
        let config = SimConfig {
            arrival_gap: Duration::from_secs_f64(1.0 / self.rate),
            read_failure: 0,
            ..self.network
        };
        let reads = ReadPolicy::DEFAULT
            .with_poll_lag(Duration::from_secs(60))
            .unwrap();
        hpp_replay::fleet::run(
            &Simulator::new(config, 3),
            FleetConfig {
                sessions: self.sessions,
                limit: self.limit,
                read_share: self.read_share,
                money_first: !self.careless,
                all_open_at_once: false,
                tracker: TrackerConfig {
                    reads,
                    abandon_after: self.abandon_minutes.map(|m| Duration::from_secs(m * 60)),
                    ..TrackerConfig::DEFAULT
                },
            },
        )
    }
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
    let r = PLAYGROUND.run();
    assert_eq!(r.sessions, 12_000);
    assert_zeros(&r);
    assert!(reads_of(&r, Ending::AbandonedExpired) <= 70.0, "{r}");
    assert!(r.reads_paid_hinted.mean <= 2.0, "{r}");
    assert!(r.reads_paid_hinted.sessions > 5_000, "{r}");
    // About one paid session in a hundred has every callback and its redirect lost.
    let (hinted, unhinted) = (r.reads_paid_hinted.sessions, r.reads_paid_unhinted.sessions);
    assert!(unhinted > 0 && unhinted * 20 < hinted, "{r}");
    // Hints make the confirming read come soon (with every hint lost it takes minutes: below).
    assert!(r.detection_p99_secs <= 120.0, "{r}");
    // The merchant's own disables are told apart from the tracker's (no time limit here).
    let endings: Vec<Ending> = r.reads_by_ending.iter().map(|(e, _)| *e).collect();
    assert!(endings.contains(&Ending::Disabled), "{r}");
    assert!(!endings.contains(&Ending::AbandonedDisabled), "{r}");
    // Sessions end as others begin: the run holds far fewer open at once than it runs.
    assert!(r.live_peak > 0 && r.live_peak < r.sessions / 2, "{r}");
}

#[test]
fn the_live_budget_carries_1_000_000_a_day_with_a_time_limit() {
    let r = Fleet {
        rate: 11.6,
        limit: 200,
        abandon_minutes: Some(120),
        ..PLAYGROUND
    }
    .run();
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
    let r = Fleet {
        sessions: 8_000,
        network: lost,
        ..PLAYGROUND
    }
    .run();
    assert_zeros(&r);
    assert_eq!(r.reads_paid_hinted.sessions, 0);
    assert!(r.reads_paid_unhinted.sessions > 3_000);
    assert!(r.detection_max_secs <= 45.0 * 60.0, "{r}");
    // Found by the blind reads alone: minutes after the payment, not at once.
    assert!(r.detection_p99_secs >= 600.0, "{r}");
    // Found late, but in time: the token still had a quarter of its hour.
    assert!(r.place_by_slack_min_secs >= 15.0 * 60.0 - 61.0, "{r}");
}

/// The harness can fail: an integrator that spends the whole limit on reads and sends money
/// calls on top gets them refused (Klarna answers 429 to every request once a window is over).
#[test]
fn reading_with_the_whole_budget_gets_the_money_calls_refused() {
    let r = Fleet {
        sessions: 3_000,
        limit: 2,
        read_share: 1.0,
        careless: true,
        ..PLAYGROUND
    }
    .run();
    assert!(!r.kept_the_guarantee(), "{r}");
    assert!(r.rate_limited_money > 0, "{r}");
    // Reads stay under the limit on their own: every 429 here is on a money call.
    assert_eq!(r.rate_limited, r.rate_limited_money, "{r}");
}

/// … and a budget too small for the volume shows as reads waiting past what the guarantee
/// allows for, even with money calls first.
#[test]
fn too_small_a_budget_breaks_the_guarantee_visibly() {
    let r = Fleet {
        sessions: 3_000,
        limit: 1,
        read_share: 1.0,
        ..PLAYGROUND
    }
    .run();
    assert!(!r.kept_the_guarantee(), "{r}");
    assert_eq!(r.rate_limited_money, 0, "{r}");
    assert!(r.max_read_wait_secs > 60.0, "{r}");
}

/// The hang: a read budget that rounds to 0 a second (`--limit 1` with the default
/// 80 % for reads) looped forever on a full core. It is refused, and says why.
#[test]
fn a_budget_without_reads_is_refused_not_looped_on() {
    for (limit, read_share) in [(1, 0.8), (50, 0.0), (3, 0.3)] {
        let e = Fleet {
            sessions: 5,
            limit,
            read_share,
            ..PLAYGROUND
        }
        .try_run()
        .unwrap_err();
        assert_eq!(e.limit, limit);
        assert!(e.to_string().contains("leaves no read a second"), "{e}");
    }
    assert!(
        Fleet {
            sessions: 5,
            limit: 2,
            read_share: 0.5,
            ..PLAYGROUND
        }
        .try_run()
        .is_ok()
    );
}

//! The README's poller, run as a shop runs it: a cron job on 1 s, 60 s and 5 min ticks, with 48
//! hours of arrivals at 20,000 sessions a day (40,000 sessions), callbacks and redirects lost,
//! late and duplicated as the simulator makes them, and an executor that performs what the
//! trackers owe. Judged by the simulated histories (when each consumer paid) and Klarna's side
//! of each order (the token's hour), never by the trackers: no token dies, and each session's
//! actions are the oracle's, once.

#[path = "readme/poller.rs"]
mod poller;

use core::time::Duration;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use hpp_session::{
    Action, DisableAnswer, SessionId, Status, Timestamp, Tracker, TrackerConfig, place_by,
};
use hpp_sim::oracle::{Expected, expected};
use hpp_sim::{ReadAnswer, Scenario, SimConfig, Simulator};
use poller::{Answer, Sessions, policy_for};

/// Sessions a day.
const PER_DAY: u64 = 20_000;

/// How the cron job is set up.
#[derive(Clone, Copy, Debug)]
struct Cron {
    /// How often it wakes.
    tick: Duration,
    /// How much of the budget one tick spends: the tick itself for the README's poller.
    reads_for: Duration,
    /// The trackers' policy.
    config: TrackerConfig,
}

impl Cron {
    /// The README's poller on `tick`.
    fn readme(tick: Duration) -> Self {
        Self {
            tick,
            reads_for: tick,
            config: policy_for(tick).unwrap(),
        }
    }
}

/// What the run came to, from the simulator's side.
#[derive(Debug, Default)]
struct Verdict {
    #[expect(dead_code, reason = "printed with the verdict")]
    sessions: u64,
    paid_by_token: u64,
    dead_tokens: u64,
    off_the_oracle: u64,
    reads: u64,
}

/// Klarna and the consumers: the simulated sessions, and the merchant's disables in them.
struct World {
    simulator: Simulator,
    disabled_at: Vec<Option<Timestamp>>,
    rows: HashMap<String, usize>,
    /// The histories of the sessions created, for reads (the poller never disables here), and
    /// what Klarna and the consumers send for each.
    histories: Vec<hpp_sim::History>,
    sent: Vec<(Vec<hpp_sim::Delivery>, Vec<hpp_sim::Visit>)>,
    /// The shop's side: what was performed, and whether each order came in the token's hour.
    performed: Vec<Vec<Expected>>,
    ordered_in_time: Vec<bool>,
}

impl World {
    /// Session `row` as it is after the merchant's disable, if it made one.
    fn scenario(&self, row: usize) -> Scenario {
        let mut s = self.simulator.scenario(row as u64);
        if let Some(at) = self.disabled_at[row] {
            let _ = s.disable(at);
        }
        s
    }

    /// Klarna's answer to a read of `id` at `now`.
    fn read(&self, id: &SessionId, now: Timestamp) -> Answer {
        let row = self.rows[id.as_str()];
        assert!(self.disabled_at[row].is_none(), "no time limit here");
        match self.histories[row].answer(now) {
            ReadAnswer::Session(body) => {
                Answer::Session(Box::new(body.session_body().snapshot().unwrap()))
            }
            ReadAnswer::NotFound => Answer::NotFound,
            ReadAnswer::Failed(f) => Answer::Failed(f),
        }
    }

    /// The executor: performs what row `row` owes at `now` and reports each done.
    fn drain(
        &mut self,
        sessions: &mut Sessions,
        config: &TrackerConfig,
        row: usize,
        now: Timestamp,
    ) {
        let (id, mut tracker) = sessions.load(row);
        while let Some(action) = tracker.next_action() {
            match &action {
                Action::Disable => {
                    let answer = self.scenario(row).disable(now);
                    if answer == DisableAnswer::Disabled {
                        self.disabled_at[row] = Some(now);
                    }
                    tracker.observe_disable_answer(&id, answer, now).unwrap();
                    continue;
                }
                Action::PlaceOrder { .. } => {
                    // Klarna's side: the token dies 60 minutes after the consumer paid.
                    self.ordered_in_time[row] = self.histories[row].ending().is_some_and(|end| {
                        end.status == Status::Completed && now < place_by(end.at)
                    });
                }
                _ => {}
            }
            self.performed[row].extend(Expected::of(&action));
            tracker.done(action.id(&id)).unwrap();
        }
        sessions.store(row, id, tracker, config, now);
    }
}

/// Runs `hours` of arrivals with `cron` reading.
fn run(cron: Cron, hours: u64) -> Verdict {
    let Cron {
        tick,
        reads_for,
        config,
    } = cron;
    let network = SimConfig {
        arrival_gap: Duration::from_millis(86_400_000 / PER_DAY),
        // Harsher than the default: a tenth of the events lost outright, fewer redirects, some
        // callbacks hours late.
        event_loss: 100,
        redirect: 300,
        late: 50,
        ..SimConfig::DEFAULT
    };
    let count = (hours * 3_600_000 / network.arrival_gap.as_millis() as u64) as usize;
    let mut world = World {
        simulator: Simulator::new(network, 20),
        disabled_at: vec![None; count],
        rows: HashMap::new(),
        histories: Vec::with_capacity(count),
        sent: Vec::with_capacity(count),
        performed: vec![Vec::new(); count],
        ordered_in_time: vec![false; count],
    };
    let mut sessions = Sessions::default();
    // Callbacks and redirects, by arrival: (at, row, index, is a redirect).
    let mut hints: BinaryHeap<Reverse<(Timestamp, usize, usize, bool)>> = BinaryHeap::new();
    let mut created = 0;
    let mut verdict = Verdict {
        sessions: count as u64,
        ..Verdict::default()
    };
    let start = network.start;
    let last = start
        .checked_add(network.arrival_gap * count as u32)
        .unwrap();
    // Every session expires 48 hours after it was created; a day more to settle.
    let end = last.checked_add(Duration::from_secs(72 * 3_600)).unwrap();
    let mut now = start;
    while now <= end {
        let next_tick = now.checked_add(tick).unwrap();
        // Sessions created, and the hints that arrive, before the next tick: the checkout and
        // the callback handler, at once.
        // Session `i` is created at `start + i × arrival_gap` (the simulator's rule).
        let created_at = |i: usize| start.checked_add(network.arrival_gap * i as u32).unwrap();
        while created < count && created_at(created) < next_tick {
            let s = world.simulator.scenario(created as u64);
            let id = SessionId::new(s.history.session_id.as_str()).unwrap();
            for (i, d) in s.deliveries.iter().enumerate() {
                hints.push(Reverse((d.at, created, i, false)));
            }
            for (i, v) in s.visits.iter().enumerate() {
                hints.push(Reverse((v.at, created, i, true)));
            }
            world.rows.insert(id.as_str().to_owned(), created);
            world.histories.push(s.history.clone());
            world.sent.push((s.deliveries.to_vec(), s.visits.to_vec()));
            let at = s.history.created_at;
            sessions.store(created, id.clone(), Tracker::created(id, at), &config, at);
            created += 1;
        }
        while let Some(&Reverse((at, row, i, redirect))) = hints.peek() {
            if at >= next_tick {
                break;
            }
            hints.pop();
            let (deliveries, visits) = &world.sent[row];
            let (id, mut tracker) = sessions.load(row);
            // The consumer's later changes never happen after the merchant's disable.
            let happened =
                |change_at: Timestamp| world.disabled_at[row].is_none_or(|d| change_at <= d);
            if redirect {
                let v = visits[i];
                if v.forged || happened(v.change_at) {
                    let _ = tracker.observe_redirect(&id, v.redirect, at);
                }
            } else {
                let d = &deliveries[i];
                let change = Timestamp::parse(&d.body.updated_at).unwrap();
                if d.forged || happened(change) {
                    if let Ok(snapshot) = d.body.session_body().snapshot() {
                        let _ = tracker.observe_callback(&config, Some(&d.event_id), &snapshot, at);
                    }
                }
            }
            sessions.store(row, id, tracker, &config, at);
            world.drain(&mut sessions, &config, row, at);
        }
        now = next_tick;
        // The cron job wakes: one tick of reads, paced over the tick, then the executor.
        let read_rows = sessions.tick(&config, now, reads_for, |id, at| {
            verdict.reads += 1;
            world.read(id, at)
        });
        for (row, at) in read_rows {
            world.drain(&mut sessions, &config, row, at);
        }
    }
    for row in 0..count {
        let want = expected(&world.scenario(row).history);
        if matches!(want, Expected::PlaceOrder { .. }) {
            verdict.paid_by_token += 1;
            verdict.dead_tokens += u64::from(!world.ordered_in_time[row]);
        }
        if world.performed[row] != [want.clone()] {
            println!(
                "session {row}: performed {:?}, expected {want:?}; disabled {:?}; {:?}",
                world.performed[row],
                world.disabled_at[row],
                world.scenario(row).history
            );
            verdict.off_the_oracle += 1;
        }
    }
    verdict
}

fn check(tick: Duration) {
    let v = run(Cron::readme(tick), 48);
    println!("tick {tick:?}: {v:?}");
    assert!(v.paid_by_token > 5_000, "{v:?}");
    assert_eq!(v.dead_tokens, 0, "tokens died with a {tick:?} tick: {v:?}");
    assert_eq!(v.off_the_oracle, 0, "{v:?}");
}

#[test]
fn the_readme_poller_on_a_one_second_tick_lets_no_token_die() {
    check(Duration::from_secs(1));
}

#[test]
fn the_readme_poller_on_a_one_minute_tick_lets_no_token_die() {
    check(Duration::from_secs(60));
}

#[test]
fn the_readme_poller_on_a_five_minute_tick_lets_no_token_die() {
    check(Duration::from_secs(300));
}

/// The counter-check: the cron snippet this README had before (a minute of lag, and 40 reads a
/// tick whatever the tick) on a 5-minute tick falls behind and lets tokens die, judged the same
/// way. (Six hours of arrivals: enough to show it.)
#[test]
fn the_old_cron_snippet_on_a_five_minute_tick_lets_tokens_die() {
    let old = Cron {
        tick: Duration::from_secs(300),
        reads_for: Duration::from_secs(1),
        config: TrackerConfig {
            reads: hpp_session::ReadPolicy::DEFAULT
                .with_poll_lag(Duration::from_secs(60))
                .unwrap(),
            ..TrackerConfig::DEFAULT
        },
    };
    let v = run(old, 6);
    println!("the old snippet: {v:?}");
    assert!(v.dead_tokens > 100, "{v:?}");
}

/// The README holds this poller, word for word.
#[test]
fn the_readme_holds_this_poller() {
    let readme = include_str!("../../README.md");
    let code = include_str!("readme/poller.rs");
    assert!(
        readme.contains(code.trim()),
        "README.md's poller differs from sim/tests/readme/poller.rs"
    );
}

/// What `policy_for` makes of longer ticks, as its doc says: a 5-minute tick reads an open
/// session every 25 minutes, an 8-minute one every 7, and from 9 min 10 s on no guarantee is
/// left and it is refused.
#[test]
fn policy_for_gives_less_room_to_longer_ticks_and_refuses_what_leaves_none() {
    let minutes = |m: u64| Duration::from_secs(m * 60);
    let gap = |tick: Duration| policy_for(tick).map(|c| c.reads.blind_gap());
    assert_eq!(
        gap(Duration::from_secs(1)),
        Ok(minutes(45) - Duration::from_secs(2))
    );
    assert_eq!(gap(minutes(1)), Ok(minutes(43)));
    assert_eq!(gap(minutes(5)), Ok(minutes(25)));
    assert_eq!(gap(minutes(8)), Ok(minutes(7)));
    assert!(gap(Duration::from_secs(9 * 60 + 10)).is_err());
    assert!(gap(minutes(30)).is_err());
}

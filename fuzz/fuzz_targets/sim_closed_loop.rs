//! The simulator's closed loop under any delivery conditions and seeds: every session settles,
//! and the tracker asks for exactly the action the oracle reads off the history, once, with an
//! adversary posting forged callbacks or not, whether the integrator takes callbacks as hints or
//! checks their secret (which the adversary does not know), with redirects reaching the merchant
//! or not, and with the merchant's time limit (`abandon_after`: the tracker asks for a disable,
//! which races the consumer's payment; its 204 is evidence, so a disabled cart is released as
//! disabled even when every read after it fails) or without, and with callbacks of earlier
//! changes arriving late. Also: a scenario is a function of (seed, index).
#![no_main]

use core::time::Duration;

use hpp_session::TrackerConfig;
use hpp_sim::drive::{Callbacks, Integrator, drive};
use hpp_sim::oracle::expected;
use hpp_sim::{SimConfig, Simulator};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    seed: u64,
    index: u16,
    call_loss: u16,
    slow_ack: u16,
    event_loss: u16,
    delay_s: u16,
    forged: u16,
    /// Up to 95 %: with every read failing nothing can settle, by design.
    read_failure: u8,
    /// The integrator checks callback secrets and takes matching callbacks as evidence.
    verified: bool,
    redirect: u16,
    /// The merchant's time limit in minutes (0: none).
    abandon_minutes: u16,
    /// Calls that arrive late (after the callbacks of later changes).
    late: u16,
}

fuzz_target!(|input: Input| {
    let config = SimConfig {
        call_loss: input.call_loss % 1001,
        slow_ack: input.slow_ack % 1001,
        event_loss: input.event_loss % 1001,
        max_delay: Duration::from_secs(u64::from(input.delay_s % 3600)),
        forged: input.forged % 1001,
        read_failure: u16::from(input.read_failure % 96) * 10,
        redirect: input.redirect % 1001,
        late: input.late % 1001,
        ..SimConfig::DEFAULT
    };
    let simulator = Simulator::new(config, input.seed);
    let index = u64::from(input.index);
    let mut scenario = simulator.scenario(index);
    assert_eq!(scenario, simulator.scenario(index), "deterministic");
    let abandon_after = (input.abandon_minutes > 0)
        .then(|| Duration::from_secs(u64::from(input.abandon_minutes % 3000) * 60 + 60));
    let integrator = Integrator {
        tracker: TrackerConfig {
            abandon_after,
            ..TrackerConfig::DEFAULT
        },
        callbacks: if input.verified {
            Callbacks::Verified { leaked: false }
        } else {
            Callbacks::Hints
        },
    };
    let config = integrator.tracker;
    let (tracker, run) = drive(&mut scenario, integrator, |_| {});
    assert!(run.settled, "{run:?}");
    assert!(run.disables <= 1, "{run:?}");
    // After the run: a disable the tracker asked for is part of the history. Exactly once, for
    // the right reason, and a session the consumer paid before the disable keeps its money.
    let want = expected(&scenario.history);
    assert_eq!(run.actions.as_slice(), [want], "{:?}", scenario.history);
    assert_eq!(tracker.next_read(&config, scenario.history.expires_at), None);
    assert!(tracker.owed().is_empty());
    // Forged callbacks page no one.
    assert!(!run.conflict, "{run:?}");
});

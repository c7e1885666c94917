//! A `no_std`, `no_main` binary that uses the crate; see Cargo.toml for why it exists.
#![no_std]
#![no_main]

use hpp_session::{Completion, Event, Session, Status, Timestamp, Tracker};

// On Linux, libc provides start-up and memcpy; nothing else is linked.
#[link(name = "c")]
unsafe extern "C" {}

#[unsafe(no_mangle)]
pub extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
    let Ok(t0) = Timestamp::parse("2019-05-13T14:52:57.540Z") else {
        return 1;
    };
    let mut session = Session::new(t0);
    if session.apply(Event::Open, t0).is_err() {
        return 2;
    }
    let Ok(completion) = Completion::authorized("a1a8f727-2756-6058-bd3c-40069be0994b") else {
        return 3;
    };
    if session.authorize(&completion, t0).is_err() || session.status() != Status::Completed {
        return 4;
    }
    // The tracker: a read of the completed session asks for the order once.
    let Ok(snapshot) = hpp_session::Snapshot::new(Status::Completed, t0, None, session.completion().cloned()) else {
        return 8;
    };
    let mut tracker = Tracker::default();
    let config = hpp_session::TrackerConfig::DEFAULT;
    match tracker.observe_read(&config, &snapshot, t0) {
        Ok(report) if report.newly_owed().len() == 1 && tracker.actions().count() == 1 => {}
        _ => return 9,
    }
    // An unsigned callback is a claim: a read falls due, no money is owed.
    let mut hinted = Tracker::default();
    match hinted.observe_callback(&config, Some("e0"), &snapshot, t0) {
        Ok(r) if r.outcome() == hpp_session::Outcome::Claimed(Status::Completed) => {}
        _ => return 12,
    }
    if hinted.claim().is_none() || hinted.status().is_some() {
        return 13;
    }
    // The simulator: one hostile scenario in the closed loop, its oracle's action once.
    #[cfg(feature = "sim")]
    {
        use hpp_sim::{SimConfig, Simulator, drive::drive, oracle::expected};
        let config = SimConfig { forged: 1000, read_failure: 200, ..SimConfig::DEFAULT };
        let mut scenario = Simulator::new(config, 7).scenario(3);
        let want = expected(&scenario.history);
        let (_, run) = drive(&mut scenario, hpp_session::TrackerConfig::DEFAULT, |_| {});
        if !run.settled || run.actions.as_slice() != [want] {
            return 14;
        }
    }
    #[cfg(feature = "serde")]
    {
        let body = br#"{"event_id":"e1","session":{"status":"IN_PROGRESS","updated_at":"2019-05-13T14:52:57.540Z"}}"#;
        let Ok((callback, _)) = serde_json_core::from_slice::<hpp_session::wire::CallbackBody<'_>>(body) else {
            return 10;
        };
        if callback.session.snapshot().is_err() {
            return 11;
        }
        let mut buf = [0u8; 512];
        let Ok(n) = serde_json_core::to_slice(&session, &mut buf) else {
            return 5;
        };
        let Some(json) = buf.get(..n) else { return 6 };
        match serde_json_core::from_slice::<Session>(json) {
            Ok((back, _)) if back == session => {}
            _ => return 7,
        }
    }
    0
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

/// The host's prebuilt `core` refers to this symbol; with `panic = "abort"` it is never called.
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() {}

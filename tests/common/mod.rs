#![allow(dead_code, reason = "each test file uses part of the helpers")]

pub mod oracle;

use hpp_session::Timestamp;

/// `2019-05-13T14:52:57.540Z` plus `ms` milliseconds: a base instant from Klarna's examples.
pub fn at(ms: u64) -> Timestamp {
    Timestamp::parse("2019-05-13T14:52:57.540Z")
        .unwrap()
        .checked_add(core::time::Duration::from_millis(ms))
        .unwrap()
}

/// The default policy, which most tests run with (the caller holds the policy, not the tracker).
pub const CFG: hpp_session::TrackerConfig = hpp_session::TrackerConfig::DEFAULT;

/// The actions `report` newly asked for, with their data as `tracker` has it now.
pub fn new_actions<'t>(
    tracker: &'t hpp_session::Tracker,
    report: &hpp_session::Report,
) -> impl Iterator<Item = hpp_session::Action> + 't {
    report
        .newly_owed()
        .iter()
        .filter_map(move |k| tracker.action(k))
}

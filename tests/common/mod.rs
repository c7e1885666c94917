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

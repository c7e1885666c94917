//! Wire names and parsing of statuses.

use hpp_session::{Status, UnknownStatus};

/// The wire names as the spec lists them, with the finality it gives.
const SPEC: [(&str, bool); 10] = [
    ("WAITING", false),
    ("IN_PROGRESS", false),
    ("COMPLETED", true),
    ("FAILED", false),
    ("CANCELLED", true),
    ("BACK", false),
    ("ERROR", false),
    ("DISABLED", true),
    ("MANUAL_ID_CHECK", false),
    ("TIMEOUT", false),
];

#[test]
fn wire_names_round_trip_and_cover_all() {
    for (i, (name, is_final)) in SPEC.into_iter().enumerate() {
        let s: Status = name.parse().unwrap();
        assert_eq!(s.as_str(), name);
        assert_eq!(s.to_string(), name);
        assert_eq!(Status::try_from(name), Ok(s));
        assert_eq!(s.is_final(), is_final);
        assert_eq!(Status::ALL[i], s);
        assert_eq!(s as usize, i);
        assert_eq!(Status::from_index(i as u8), Some(s));
    }
    assert_eq!(Status::from_index(10), None);
    assert_eq!(core::mem::size_of::<Status>(), 1);
    assert_eq!(core::mem::size_of::<Option<Status>>(), 1);
}

#[test]
fn near_misses_are_unknown_and_echoed() {
    for bad in [
        "COMPLETE",
        "completed",
        "Completed",
        " COMPLETED",
        "COMPLETED ",
        "",
        "EXPIRED",
    ] {
        let err: UnknownStatus = bad.parse::<Status>().unwrap_err();
        assert_eq!(err.input().as_str(), bad);
        assert!(!err.input().is_cut());
        assert_eq!(err.to_string(), format!("unknown session status {bad:?}"));
    }
}

#[test]
fn a_long_unknown_status_is_echoed_in_a_bounded_excerpt() {
    let long = "X".repeat(10_000);
    let err = long.parse::<Status>().unwrap_err();
    assert_eq!(err.input().as_str().len(), hpp_session::EXCERPT_CAPACITY);
    assert!(err.input().is_cut());
    assert!(err.to_string().ends_with("…"));
}

#[test]
fn sizes_stay_small() {
    use hpp_session::*;
    // Printed for the README's bounds table; asserted so a growth is noticed.
    assert_eq!(core::mem::size_of::<Timestamp>(), 16);
    // The nanoseconds are stored plus one: `None` takes no room of its own.
    assert_eq!(core::mem::size_of::<Option<Timestamp>>(), 16);
    assert_eq!(core::mem::size_of::<Event>(), 1);
    assert!(
        core::mem::size_of::<SessionError>() <= 40,
        "{}",
        core::mem::size_of::<SessionError>()
    );
    println!(
        "Session {} Completion {} SessionError {} Result<Edge,SessionError> {}",
        core::mem::size_of::<Session>(),
        core::mem::size_of::<Completion>(),
        core::mem::size_of::<SessionError>(),
        core::mem::size_of::<Result<table::Edge, SessionError>>()
    );
}

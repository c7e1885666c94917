//! The service's handler, poller and executor, one case at a time.

use std::path::PathBuf;
use std::time::Duration;

use hpp_integration_example::{
    Callbacks, Crash, CrashPoint, Handled, NoFaults, ReadResult, Service, ServiceError, action_id,
};
use hpp_session::{ActionKind, Outcome, Status, Timestamp, TrackerConfig};

const ID: &str = "39a1c773-bafd-754d-af1f-b30c592f1267";
const SECRET: &str = "5e55ac1e5e55ac1e5e55ac1e5e55ac1e";

fn at(s: &str) -> Timestamp {
    Timestamp::parse(s).unwrap()
}

fn service(name: &str) -> Service {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("service-{}-{name}.sqlite", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let mut s = Service::open(&path, TrackerConfig::DEFAULT, Callbacks::Hints).unwrap();
    s.create_session(ID, SECRET, at("2019-05-13T14:51:43.507Z"))
        .unwrap();
    s
}

fn body(session_id: &str, status: &str, updated_at: &str, extra: &str) -> String {
    format!(
        r#"{{"session_id":"{session_id}","status":"{status}","updated_at":"{updated_at}","expires_at":"2019-05-15T13:51:43.507Z"{extra}}}"#
    )
}

fn callback(session_body: &str) -> Vec<u8> {
    format!(r#"{{"event_id":"e-1","session":{session_body}}}"#).into_bytes()
}

const TOKEN: &str = r#","authorization_token":"a1a8f727-2756-6058-bd3c-40069be0994b""#;

#[test]
fn the_handler_refuses_what_it_cannot_take_and_stores_nothing() {
    let mut s = service("handler");
    let now = at("2019-05-13T14:55:00Z");
    let paid = callback(&body(ID, "COMPLETED", "2019-05-13T14:54:04.675Z", TOKEN));
    let handle = |s: &mut Service, id: &str, secret: &str, b: &[u8]| {
        s.handle_callback(id, secret, b, now, &mut NoFaults)
            .unwrap()
    };
    assert_eq!(
        handle(&mut s, "no-such", SECRET, &paid),
        Handled::UnknownSession
    );
    assert_eq!(handle(&mut s, ID, "wrong", &paid), Handled::Forbidden);
    assert!(matches!(
        handle(&mut s, ID, SECRET, b"{"),
        Handled::Refused(_)
    ));
    let other = callback(&body(
        "another",
        "COMPLETED",
        "2019-05-13T14:54:04.675Z",
        TOKEN,
    ));
    let Handled::Refused(why) = handle(&mut s, ID, SECRET, &other) else {
        panic!("a body for another session is refused");
    };
    assert!(why.contains("another"), "{why}");
    let future = callback(&body(ID, "COMPLETED", "2019-05-13T23:00:00Z", TOKEN));
    assert!(matches!(
        handle(&mut s, ID, SECRET, &future),
        Handled::Refused(_)
    ));
    let invalid = callback(&body(ID, "PAID", "2019-05-13T14:54:04.675Z", ""));
    assert!(matches!(
        handle(&mut s, ID, SECRET, &invalid),
        Handled::Refused(_)
    ));
    assert!(s.pending().unwrap().is_empty());
    // A real one (a hint under the default trust): a claim, and a read due at once.
    assert_eq!(
        handle(&mut s, ID, SECRET, &paid),
        Handled::Observed(Outcome::Claimed(Status::Completed))
    );
    assert_eq!(s.next_read().unwrap(), Some(at("2019-05-13T14:55:00Z")));
    assert!(s.pending().unwrap().is_empty(), "a hint asks for no money");
}

#[test]
fn the_poller_stores_the_action_once_and_the_executor_marks_it_done() {
    let mut s = service("poller");
    let now = at("2019-05-13T14:55:00.250Z");
    let paid = body(ID, "COMPLETED", "2019-05-13T14:54:04.675Z", TOKEN);
    // A failed read, then a body for another session: nothing learned, read again after the
    // tracker's back-off (1 s, then 2 s, less a spread of up to half drawn from the session id).
    let read = |s: &mut Service, t: Timestamp, answer: ReadResult| {
        s.poll(t, 10, |_, _| answer.clone(), &mut NoFaults).unwrap()
    };
    let within = |next: Timestamp, from: Timestamp, most_ms: u64| {
        let wait = next.duration_since(from).unwrap();
        assert!(
            wait <= Duration::from_millis(most_ms) && wait >= Duration::from_millis(most_ms / 2),
            "{wait:?}"
        );
    };
    assert_eq!(read(&mut s, now, ReadResult::Failed), 1);
    let first = s.next_read().unwrap().unwrap();
    within(first, now, 1_000);
    let other = ReadResult::Body(body(
        "another",
        "COMPLETED",
        "2019-05-13T14:54:04.675Z",
        TOKEN,
    ));
    assert_eq!(read(&mut s, first, other), 1);
    let second = s.next_read().unwrap().unwrap();
    within(second, first, 2_000);
    // Not due yet: nothing read.
    let just_before =
        Timestamp::from_unix(second.unix_seconds() - 1, second.subsec_nanos()).unwrap();
    assert_eq!(read(&mut s, just_before, ReadResult::Failed), 0);
    // The paid read: the order to place, once; no read needed any more.
    assert_eq!(read(&mut s, second, ReadResult::Body(paid.clone())), 1);
    assert_eq!(s.next_read().unwrap(), None);
    let pending = s.pending().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].action_id, action_id(ID, ActionKind::PlaceOrder));
    assert_eq!(pending[0].action_id, format!("{ID}/place_order"));
    assert_eq!(pending[0].kind, "place_order");
    assert_eq!(
        pending[0].data["authorization_token"],
        "a1a8f727-2756-6058-bd3c-40069be0994b"
    );
    // A perform that fails leaves it pending; one that succeeds marks it done.
    let failed = s.execute(10, |_| Err(()), &mut NoFaults).unwrap();
    assert_eq!((failed, s.pending().unwrap().len()), (0, 1));
    let mut performed = Vec::new();
    let done = s
        .execute(
            10,
            |a| {
                performed.push(a.action_id.clone());
                Ok::<(), ()>(())
            },
            &mut NoFaults,
        )
        .unwrap();
    assert_eq!((done, performed.len()), (1, 1));
    assert!(s.pending().unwrap().is_empty());
}

#[test]
fn errors_say_what_happened() {
    let crash = ServiceError::Crashed(Crash(CrashPoint::AfterPerform));
    assert_eq!(crash.to_string(), "the process died at AfterPerform");
    let db = ServiceError::Db(rusqlite::Error::QueryReturnedNoRows);
    assert!(db.to_string().starts_with("database: "), "{db}");
}

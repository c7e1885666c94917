//! Every valid JSON spelling of a value is that value, and an authenticated `COMPLETED` body stays
//! paid whatever else about it is odd: checked with `serde_json` and both of `serde-json-core`'s
//! readers, against the values the bodies were written from (the oracle), not against the crate.
#![cfg(feature = "serde")]

use hpp_session::wire::{SessionBody, SessionStatus};
use hpp_session::{ActionKind, Snapshot, Status, Timestamp, Tracker, TrackerConfig};
use proptest::prelude::*;

/// The default policy, held by the caller.
const CFG: TrackerConfig = TrackerConfig::DEFAULT;

/// How a JSON string is spelled.
#[derive(Clone, Copy, Debug)]
enum Spelling {
    /// As `serde_json` writes it (escapes only where JSON requires them).
    Plain,
    /// Every `/` as `\/` (PHP's `json_encode`), the rest plain.
    Slashes,
    /// Every character as `\uXXXX` (UTF-16, surrogate pairs beyond the BMP).
    Unicode,
}

fn spell(value: &str, how: Spelling) -> String {
    let plain = serde_json::to_string(value).unwrap();
    match how {
        Spelling::Plain => plain,
        Spelling::Slashes => plain.replace('/', "\\/"),
        Spelling::Unicode => {
            let mut out = String::from("\"");
            for unit in value.encode_utf16() {
                out.push_str(&format!("\\u{unit:04X}"));
            }
            out.push('"');
            out
        }
    }
}

fn spelling() -> impl Strategy<Value = Spelling> {
    prop_oneof![
        Just(Spelling::Plain),
        Just(Spelling::Slashes),
        Just(Spelling::Unicode)
    ]
}

/// Whether `json` has a UTF-16 surrogate pair written as two `\u` escapes.
fn has_surrogate_escape(json: &str) -> bool {
    json.to_ascii_uppercase()
        .split("\\UD")
        .skip(1)
        .any(|rest| rest.starts_with(['8', '9', 'A', 'B']))
}

/// A session body parsed by all three readers; they must agree. One stated difference:
/// `serde-json-core`'s `from_str_escaped` decodes each `\u` escape alone, so it refuses a
/// character beyond the BMP written as a surrogate pair (valid JSON, RFC 8259 §7), which
/// `serde_json` and this crate (behind `from_str`) read.
fn parse_all(json: &str) -> Result<SessionBody<'_>, String> {
    let a = serde_json::from_str::<SessionBody<'_>>(json).map_err(|e| e.to_string());
    let b = serde_json_core::from_str::<SessionBody<'_>>(json)
        .map(|(b, _)| b)
        .map_err(|e| e.to_string());
    let mut scratch = [0u8; 1024];
    let c = serde_json_core::from_str_escaped::<SessionBody<'_>>(json, &mut scratch)
        .map(|(c, _)| c.clone())
        .map_err(|e| e.to_string());
    assert_eq!(a.is_ok(), b.is_ok(), "{json}: {a:?} / {b:?}");
    if let (Ok(a), Ok(b)) = (&a, &b) {
        assert_eq!(a, b, "{json}");
    }
    match (&a, &c) {
        (Ok(a), Ok(c)) => assert_eq!(a, c, "{json}"),
        (Ok(_), Err(_)) => assert!(has_surrogate_escape(json), "{json}: {c:?}"),
        (Err(_), Ok(c)) => panic!("{json}: only from_str_escaped reads it: {c:?}"),
        (Err(_), Err(_)) => {}
    }
    a
}

/// A field value of a paid body, as JSON text: a string in any spelling, or what an
/// integrator's round trip may leave there instead.
#[derive(Clone, Debug)]
enum Value {
    Absent,
    Null,
    Text(String, Spelling),
    Number(i64),
    Object,
}

impl Value {
    fn json(&self, name: &str) -> Option<String> {
        Some(match self {
            Self::Absent => return None,
            Self::Null => format!("\"{name}\":null"),
            Self::Text(s, how) => format!("\"{name}\":{}", spell(s, *how)),
            Self::Number(n) => format!("\"{name}\":{n}"),
            Self::Object => format!("\"{name}\":{{\"a\":[1,null]}}"),
        })
    }
}

fn id_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Absent),
        Just(Value::Null),
        ("[a-z0-9/\\-é]{0,12}", spelling()).prop_map(|(s, how)| Value::Text(s, how)),
        "[a-f0-9\\-/]{300,320}".prop_map(|s| Value::Text(s, Spelling::Slashes)),
        any::<i64>().prop_map(Value::Number),
        Just(Value::Object),
    ]
}

fn time_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Absent),
        Just(Value::Null),
        spelling().prop_map(|how| Value::Text("2019-05-13T14:54:04.675Z".into(), how)),
        Just(Value::Text(
            "2019-05-15T13:51:43.507".into(),
            Spelling::Plain
        )),
        Just(Value::Text("yesterday".into(), Spelling::Plain)),
        any::<i64>().prop_map(Value::Number),
    ]
}

/// A `COMPLETED` body from these fields (the status spelled as `how`).
fn paid_body(how: Spelling, fields: &[(&str, Value)]) -> String {
    let mut parts = vec![
        "\"session_id\":\"s\"".to_owned(),
        format!("\"status\":{}", spell("COMPLETED", how)),
    ];
    parts.extend(fields.iter().filter_map(|(name, v)| v.json(name)));
    format!("{{{}}}", parts.join(","))
}

/// What an integrator does with an authenticated body, as the README says: the snapshot of the
/// whole body, or, when it does not parse, the paid snapshot of its status.
fn read_snapshot(json: &str) -> Option<Snapshot> {
    match parse_all(json) {
        Ok(body) => Some(
            body.snapshot()
                .expect("a COMPLETED body is always a snapshot"),
        ),
        Err(_) => {
            let status: SessionStatus<'_> = serde_json::from_str(json).unwrap();
            let (core, _) = serde_json_core::from_str::<SessionStatus<'_>>(json).unwrap();
            assert_eq!(status, core);
            status.paid_snapshot().unwrap()
        }
    }
}

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4_096))]

    /// Any string, in any spelling, is its value in every reader.
    #[test]
    fn every_spelling_of_a_string_is_its_value(value in "\\PC{0,40}", how in spelling()) {
        let json = format!("{{\"order_id\":{}}}", spell(&value, how));
        let body = parse_all(&json).unwrap();
        let field = body.order_id.unwrap();
        if value.len() <= hpp_session::MAX_ID_LEN {
            prop_assert_eq!(field.as_str(), Ok(value.as_str()));
        }
        prop_assert_eq!(field.len(), value.len());
        // The oracle agrees on the value it decodes.
        let theirs: String = serde_json::from_str(&spell(&value, how)).unwrap();
        prop_assert_eq!(theirs, value);
    }

    /// An authenticated `COMPLETED` body, with any subset of its fields in any spelling (escapes,
    /// numbers, nulls, objects, missing or bad timestamps), then a 404 long after any expiry and
    /// anything else: never released, and exactly one of placing the order, recording it or a
    /// review is asked.
    #[test]
    fn a_paid_read_stays_paid_whatever_its_spelling(
        how in spelling(),
        token in id_value(),
        order in id_value(),
        reference in id_value(),
        updated in time_value(),
        expires in time_value(),
        later_status in prop::sample::select(&Status::ALL[..]),
    ) {
        let json = paid_body(how, &[
            ("authorization_token", token),
            ("order_id", order),
            ("klarna_reference", reference),
            ("updated_at", updated),
            ("expires_at", expires),
        ]);
        let snapshot = read_snapshot(&json).expect("a COMPLETED body is a paid session");
        prop_assert_eq!(snapshot.status(), Status::Completed);
        let mut tracker = Tracker::default();
        let mut asked = tracker.observe_read(&CFG, &snapshot, at("2019-05-13T14:55:00Z")).unwrap().newly_owed();
        let later = Snapshot::new(later_status, at("2019-05-14T00:00:00Z"), Some(at("2019-05-15T00:00:00Z")), None);
        if let Ok(later) = later {
            asked = asked.union(tracker.observe_read(&CFG, &later, at("2019-05-14T00:00:01Z")).unwrap().newly_owed());
        }
        if let Ok(r) = tracker.observe_not_found(at("2030-01-01T00:00:00Z")) {
            asked = asked.union(r.newly_owed());
        }
        prop_assert!(!asked.contains(ActionKind::Release), "{json}: released");
        let money = [ActionKind::PlaceOrder, ActionKind::RecordOrder, ActionKind::ReviewCompletion];
        prop_assert_eq!(money.iter().filter(|&&k| asked.contains(k)).count(), 1, "{}", json);
        prop_assert_eq!(tracker.status(), Some(Status::Completed));
    }

    /// Escaped and plain spellings of one body give identical snapshots.
    #[test]
    fn escaped_and_plain_bodies_make_the_same_snapshot(
        status in prop::sample::select(&Status::ALL[..]),
        token in "[a-z0-9/\\-]{1,20}",
        a in spelling(),
        b in spelling(),
    ) {
        let body = |how| {
            let completion = if status == Status::Completed {
                format!(",\"authorization_token\":{}", spell(&token, how))
            } else {
                String::new()
            };
            format!(
                "{{\"status\":{},\"updated_at\":{},\"expires_at\":{}{completion}}}",
                spell(status.as_str(), how),
                spell("2019-05-13T14:54:04.675Z", how),
                spell("2019-05-15T13:51:43.507Z", how),
            )
        };
        let (x, y) = (body(a), body(b));
        prop_assert_eq!(parse_all(&x).unwrap().snapshot(), parse_all(&y).unwrap().snapshot());
    }
}

/// The examples of issue 14, one by one, through the library.
#[test]
fn a_numeric_order_id_is_a_paid_session_to_review() {
    let json = r#"{"session_id":"s","status":"COMPLETED","updated_at":"2019-05-13T14:54:04.675Z","expires_at":"2019-05-15T13:51:43.507Z","order_id":1234567}"#;
    assert!(parse_all(json).is_err());
    let snapshot = read_snapshot(json).unwrap();
    // Of the session the body names: another session's tracker refuses it.
    let session = hpp_session::SessionId::new("s").unwrap();
    assert_eq!(snapshot.session_id(), Some(&session));
    let status: SessionStatus<'_> = serde_json::from_str(json).unwrap();
    assert_eq!(status.session_id(), Ok(Some(session.clone())));
    let other = hpp_session::SessionId::new("t").unwrap();
    assert!(
        Tracker::for_session(other)
            .observe_read(&CFG, &snapshot, at("2019-05-13T14:54:10Z"))
            .is_err()
    );
    let mut tracker = Tracker::for_session(session);
    let report = tracker
        .observe_read(&CFG, &snapshot, at("2019-05-13T14:54:10Z"))
        .unwrap();
    assert_eq!(
        report.newly_owed(),
        hpp_session::ActionSet::EMPTY.with(ActionKind::ReviewCompletion)
    );
    assert!(
        tracker
            .observe_not_found(at("2019-05-16T00:00:00Z"))
            .is_err()
    );
}

#[test]
fn a_body_that_is_not_paid_and_does_not_parse_stays_refused() {
    let json = r#"{"session_id":"s","status":"CANCELLED","updated_at":5}"#;
    assert!(parse_all(json).is_err());
    let status: SessionStatus<'_> = serde_json::from_str(json).unwrap();
    assert_eq!(status.paid_snapshot(), Ok(None));
    let unknown: SessionStatus<'_> =
        serde_json::from_str(r#"{"status":"COMPLETE","order_id":5}"#).unwrap();
    assert!(unknown.paid_snapshot().is_err());
}

#[test]
fn a_surrogate_pair_is_one_character() {
    let json = r#"{"order_id":"a\uD83D\uDE00b"}"#;
    assert!(has_surrogate_escape(json));
    assert!(!has_surrogate_escape(r#"{"order_id":"\u00e9\uE000"}"#));
    let body = parse_all(json).unwrap();
    assert_eq!(body.order_id.unwrap().as_str(), Ok("a\u{1F600}b"));
}

#[test]
fn an_escape_that_is_not_one_is_refused_by_every_reader() {
    for json in [
        r#"{"status":"COMPLETED\x"}"#,
        r#"{"status":"\uD800"}"#,
        r#"{"status":"\u12"}"#,
    ] {
        assert!(
            serde_json::from_str::<SessionBody<'_>>(json).is_err(),
            "{json}"
        );
        assert!(
            serde_json_core::from_str::<SessionBody<'_>>(json).is_err(),
            "{json}"
        );
    }
}

#[test]
fn a_newer_read_without_expires_at_keeps_the_known_expiry() {
    let first = Snapshot::new(
        Status::Waiting,
        at("2019-05-13T13:51:43.507Z"),
        Some(at("2019-05-15T13:51:43.507Z")),
        None,
    )
    .unwrap();
    let newer = Snapshot::new(Status::InProgress, at("2019-05-13T14:05:00Z"), None, None).unwrap();
    for order in [[&first, &newer], [&newer, &first]] {
        let mut tracker = Tracker::default();
        for s in order {
            let _ = tracker
                .observe_read(&CFG, s, at("2019-05-13T14:10:00Z"))
                .unwrap();
        }
        assert_eq!(
            tracker.state().expires_at,
            Some(at("2019-05-15T13:51:43.507Z"))
        );
        let report = tracker
            .observe_not_found(at("2019-05-16T00:00:00Z"))
            .unwrap();
        assert!(report.newly_owed().contains(ActionKind::Release));
    }
}

/// Control characters, which JSON writes as `\b`, `\f`, `\n`, `\r`, `\t`, through the reader
/// that hands escapes over raw (`serde-json-core`'s `from_str`), and the inline buffer's bound.
#[test]
fn short_escapes_and_the_inline_bound_are_values() {
    let value = "a\u{8}b\u{c}c\nd\re\tf\"g\\h/";
    let json = format!("{{\"order_id\":{}}}", serde_json::to_string(value).unwrap());
    let body = parse_all(&json).unwrap();
    assert_eq!(body.order_id.unwrap().as_str(), Ok(value));
    for len in [hpp_session::MAX_ID_LEN, hpp_session::MAX_ID_LEN + 1] {
        let value = "/".repeat(len);
        let json = format!("{{\"order_id\":{}}}", spell(&value, Spelling::Slashes));
        let field = parse_all(&json).unwrap().order_id.unwrap();
        let kept = len <= hpp_session::MAX_ID_LEN;
        assert_eq!(field.as_str().ok(), kept.then_some(value.as_str()), "{len}");
        assert_eq!((field.len(), field.is_empty()), (len, false));
    }
}

#[test]
fn a_text_compares_and_prints_as_its_value() {
    use hpp_session::wire::Text;
    let plain = Text::from("a/b");
    let body = parse_all(r#"{"order_id":"a\/b"}"#).unwrap();
    let escaped = body.order_id.unwrap();
    assert!(matches!(escaped, Text::Unescaped(_)));
    assert_eq!(escaped, plain);
    assert_ne!(escaped, Text::from("a/c"));
    assert!(escaped == *"a/b" && escaped != *"a/c");
    assert!(escaped == "a/b" && escaped != "a/c");
    assert_eq!(format!("{escaped:?}"), "\"a/b\"");
    assert_eq!(format!("{:?}", Text::Overlong(300)), "<300 bytes>");
    assert!(Text::from("").is_empty() && !plain.is_empty());
    let err = serde_json::from_str::<SessionBody<'_>>(r#"{"order_id":1}"#).unwrap_err();
    assert!(err.to_string().contains("a string"), "{err}");
}

//! Any JSON spelling of an authenticated `COMPLETED` read stays a paid session: each field in
//! any spelling (plain, `\/`, `\uXXXX`), or a number, `null`, an object, or missing; timestamps
//! good, zone-less or garbage. Read as an integrator does (the whole body, or its status alone
//! when it does not parse), with `serde_json` and `serde-json-core` alike, then followed by a 404
//! long after any expiry: never released, exactly one of place, record or review, and both
//! parsers give the same snapshot.
#![no_main]

use hpp_session::wire::{SessionBody, SessionStatus};
use hpp_session::{ActionKind, Snapshot, Status, Timestamp, Tracker};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Spelling {
    Plain,
    Slashes,
    Unicode,
}

#[derive(Arbitrary, Debug)]
enum Value {
    Absent,
    Null,
    Text(String, Spelling),
    Number(i64),
    Object,
}

#[derive(Arbitrary, Debug)]
struct Body {
    status: Spelling,
    fields: [Value; 5],
    pick_times: [u8; 2],
}

fn spell(value: &str, how: &Spelling) -> String {
    let plain = serde_json::to_string(value).expect("a string serializes");
    match how {
        Spelling::Plain => plain,
        Spelling::Slashes => plain.replace('/', "\\/"),
        Spelling::Unicode => {
            let units: String = value
                .encode_utf16()
                .map(|u| format!("\\u{u:04X}"))
                .collect();
            format!("\"{units}\"")
        }
    }
}

const NAMES: [&str; 5] = [
    "authorization_token",
    "order_id",
    "klarna_reference",
    "updated_at",
    "expires_at",
];
const TIMES: [&str; 4] = [
    "2019-05-13T14:54:04.675Z",
    "2019-05-15T13:51:43.507",
    "2019-02-30T00:00:00Z",
    "yesterday",
];

fn json(body: &Body) -> String {
    let mut parts = vec![format!("\"status\":{}", spell("COMPLETED", &body.status))];
    for (i, (name, value)) in NAMES.iter().zip(&body.fields).enumerate() {
        let part = match value {
            Value::Absent => continue,
            Value::Null => "null".to_owned(),
            // The timestamps pick among good and bad texts, spelled as drawn.
            Value::Text(_, how) if i >= 3 => spell(
                TIMES[usize::from(body.pick_times[i - 3]) % TIMES.len()],
                how,
            ),
            Value::Text(s, how) => spell(s, how),
            Value::Number(n) => n.to_string(),
            Value::Object => "{\"a\":[1,null]}".to_owned(),
        };
        parts.push(format!("\"{name}\":{part}"));
    }
    format!("{{{}}}", parts.join(","))
}

/// The snapshot an integrator makes of the authenticated body `text`: the whole body, or its
/// status alone when it does not parse whole.
fn read(whole: Option<SessionBody<'_>>, text: &str) -> Snapshot {
    match whole {
        Some(body) => body
            .snapshot()
            .expect("a COMPLETED body is always a snapshot"),
        None => serde_json::from_str::<SessionStatus<'_>>(text)
            .expect("any object has a status-only reading")
            .paid_snapshot()
            .expect("the status is COMPLETED")
            .expect("paid"),
    }
}

fuzz_target!(|body: Body| {
    let text = json(&body);
    let ours = serde_json::from_str::<SessionBody<'_>>(&text).ok();
    let core = serde_json_core::from_str::<SessionBody<'_>>(&text)
        .ok()
        .map(|(b, _)| b);
    assert_eq!(ours.is_some(), core.is_some(), "{text}");
    let snapshot = read(ours, &text);
    assert_eq!(snapshot, read(core, &text), "{text}");
    assert_eq!(snapshot.status(), Status::Completed);
    let mut tracker = Tracker::default();
    let t = |s: &str| s.parse::<Timestamp>().expect("a timestamp");
    let mut asked = tracker
        .observe_read(
            &hpp_session::TrackerConfig::DEFAULT,
            &snapshot,
            t("2019-05-13T14:55:00Z"),
        )
        .expect("no session id")
        .newly_owed();
    if let Ok(r) = tracker.observe_not_found(t("2030-01-01T00:00:00Z")) {
        asked = asked.union(r.newly_owed());
    }
    assert!(!asked.contains(ActionKind::Release), "{text}: released");
    let money = [
        ActionKind::PlaceOrder,
        ActionKind::RecordOrder,
        ActionKind::ReviewCompletion,
    ];
    assert_eq!(
        money.iter().filter(|&&k| asked.contains(k)).count(),
        1,
        "{text}"
    );
});

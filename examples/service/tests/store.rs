//! The store on a database written by the previous version: trackers stored with their policy
//! and without what they owe, and the service's action rows beside them. They load, owing what
//! their pending rows show (nothing that was already performed), and the policy that applies is
//! the service's own.

use hpp_service::store::{Sabotage, Store};
use hpp_session::{Action, ActionKind, Timestamp, TrackerConfig};

/// Trackers as version 0.1.0's serializer wrote them (the crate's `tests/data`).
const STORED: &str = include_str!("../../../tests/data/trackers-0.1.0.txt");

fn stored(name: &str, session_id: &str) -> String {
    STORED
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|l| l.strip_prefix(' ')))
        .expect("a stored tracker")
        .replace("39a1c773-bafd-754d-af1f-b30c592f1267", session_id)
}

#[tokio::test]
async fn trackers_stored_by_0_1_load_owing_what_their_rows_show() {
    let dir = std::env::temp_dir().join(format!("hpp-store-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let path = dir.join("old.db");
    let _ = std::fs::remove_file(&path);
    let url = path.to_str().expect("a UTF-8 path").to_owned();
    // The schema as the previous version created it.
    drop(
        Store::open(&url, Sabotage::None, TrackerConfig::DEFAULT)
            .await
            .expect("a store"),
    );
    {
        let conn = rusqlite::Connection::open(&path).expect("the database");
        for (id, name, rows) in [
            // Paid: the order asked for and not yet performed.
            ("s-paid", "PAID", vec![("place_order", 0)]),
            // Cancelled: the release performed and marked done.
            ("s-cancelled", "CANCELLED", vec![("release", 1)]),
            // Abandoned: the disable still pending.
            ("s-abandoned", "ABANDONED", vec![("disable", 0)]),
        ] {
            conn.execute(
                "INSERT INTO sessions (session_id, secret, payment_session_id, tracker) \
                 VALUES (?1, 'secret', 'ps', ?2)",
                rusqlite::params![id, stored(name, id)],
            )
            .expect("a session row");
            for (kind, done) in rows {
                conn.execute(
                    "INSERT INTO actions (action_id, session_id, kind, data, done) \
                     VALUES (?1, ?2, ?3, '{}', ?4)",
                    rusqlite::params![format!("{id}/{kind}"), id, kind, done],
                )
                .expect("an action row");
            }
        }
    }
    let store = Store::open(&url, Sabotage::None, TrackerConfig::DEFAULT)
        .await
        .expect("the old database opens");
    let now: Timestamp = "2019-05-13T16:00:00Z".parse().expect("a timestamp");
    let owed = |id: &'static str| {
        let store = &store;
        async move {
            store
                .observe(id, now, |row| {
                    ((row.tracker.owed(), row.tracker.next_action()), Vec::new())
                })
                .await
                .expect("loads")
                .expect("stored")
        }
    };
    let (paid, action) = owed("s-paid").await;
    assert_eq!(paid.iter().collect::<Vec<_>>(), [ActionKind::PlaceOrder]);
    assert!(matches!(action, Some(Action::PlaceOrder { .. })));
    let (cancelled, _) = owed("s-cancelled").await;
    assert!(
        cancelled.is_empty(),
        "a release already performed is owed again"
    );
    let (abandoned, action) = owed("s-abandoned").await;
    assert_eq!(abandoned.iter().collect::<Vec<_>>(), [ActionKind::Disable]);
    assert_eq!(action, Some(Action::Disable));
    // Stored again by this version: with what it owes, without a policy.
    let conn = rusqlite::Connection::open(&path).expect("the database");
    let text: String = conn
        .query_row(
            "SELECT tracker FROM sessions WHERE session_id = 's-paid'",
            [],
            |r| r.get(0),
        )
        .expect("the row");
    assert!(
        text.contains(r#""owed":1"#) && !text.contains(r#""reads""#),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

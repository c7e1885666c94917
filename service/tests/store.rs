//! The store on a database written by the previous version (SQLite and PostgreSQL, the schema
//! as it created it): trackers stored with their policy and without what they owe, and the
//! service's action rows beside them. They load, owing what their pending rows show (nothing
//! that was already performed), and the policy that applies is the service's own. Also: one
//! SQLite file serves one process, a claimed action is what the tracker owes now, and a
//! changed policy reschedules every open session.

mod support;

use hpp_service::store::{Options, Store};
use hpp_session::{Action, ActionKind, Timestamp, TrackerConfig};

/// Trackers as version 0.1.0's serializer wrote them (the crate's `tests/data`).
const STORED: &str = include_str!("../../tests/data/trackers-0.1.0.txt");

fn stored(name: &str, session_id: &str) -> String {
    STORED
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|l| l.strip_prefix(' ')))
        .expect("a stored tracker")
        .replace("39a1c773-bafd-754d-af1f-b30c592f1267", session_id)
}

/// The SQLite schema as `hpp-service` created it when migrations were not versioned yet (main
/// at 467875e, the start of issue 23), verbatim.
const SCHEMA_AT_ISSUE_23: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    session_id         TEXT PRIMARY KEY,
    secret             TEXT NOT NULL,
    payment_session_id TEXT NOT NULL,
    tracker            TEXT NOT NULL,
    next_read_ms       INTEGER,
    urgency            INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS sessions_due ON sessions (next_read_ms);
CREATE TABLE IF NOT EXISTS actions (
    action_id     TEXT PRIMARY KEY,
    session_id    TEXT NOT NULL,
    kind          TEXT NOT NULL,
    data          TEXT NOT NULL,
    done          INTEGER NOT NULL DEFAULT 0,
    outcome       TEXT,
    not_before_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS actions_pending ON actions (done);
CREATE TABLE IF NOT EXISTS attempts (
    action_id TEXT PRIMARY KEY,
    count     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

/// The PostgreSQL schema as `hpp-service` created it at the same commit, verbatim (its
/// advisory lock included).
const PG_SCHEMA_AT_ISSUE_23: &str = "
SELECT pg_advisory_xact_lock(716);
CREATE TABLE IF NOT EXISTS sessions (
    session_id         TEXT PRIMARY KEY,
    secret             TEXT NOT NULL,
    payment_session_id TEXT NOT NULL,
    tracker            TEXT NOT NULL,
    next_read_ms       BIGINT,
    urgency            INT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS sessions_due ON sessions (next_read_ms);
CREATE TABLE IF NOT EXISTS actions (
    seq           BIGSERIAL,
    action_id     TEXT PRIMARY KEY,
    session_id    TEXT NOT NULL,
    kind          TEXT NOT NULL,
    data          TEXT NOT NULL,
    done          BOOLEAN NOT NULL DEFAULT FALSE,
    outcome       TEXT,
    not_before_ms BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS actions_pending ON actions (seq) WHERE NOT done;
CREATE TABLE IF NOT EXISTS attempts (
    action_id TEXT PRIMARY KEY,
    count     INT NOT NULL
);
CREATE TABLE IF NOT EXISTS settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

/// A session of the old database: its id, its tracker as 0.1 stored it, and its action rows
/// (kind, performed).
type OldRow = (&'static str, &'static str, &'static [(&'static str, bool)]);

/// The old database's rows, in the order they were written.
const OLD_ROWS: [OldRow; 3] = [
    // Abandoned: the disable still pending.
    ("s-abandoned", "ABANDONED", &[("disable", false)]),
    // Cancelled: the release performed and marked done.
    ("s-cancelled", "CANCELLED", &[("release", true)]),
    // Paid: the order asked for (last) and not yet performed.
    ("s-paid", "PAID", &[("place_order", false)]),
];

/// The old database's attempts: the paid session's order was attempted once (perhaps in
/// flight when that version stopped).
const OLD_ATTEMPTS: [(&str, i32); 1] = [("s-paid/place_order", 1)];

/// What an upgraded store must show: the trackers load owing what their rows show, the schema
/// is current, and the pending order, asked last, is claimed first (money first, whatever the
/// rows' age). `stored_paid` reads the paid session's tracker text back after it was stored.
async fn assert_upgraded<F: Future<Output = String>>(
    store: &Store,
    stored_paid: impl FnOnce() -> F,
) {
    let now: Timestamp = "2019-05-13T16:00:00Z".parse().expect("a timestamp");
    let owed = |id: &'static str| async move {
        store
            .observe(id, now, |row| {
                ((row.tracker.owed(), row.tracker.next_action()), Vec::new())
            })
            .await
            .expect("loads")
            .expect("stored")
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
    let text = stored_paid().await;
    assert!(
        text.contains(r#""owed":1"#) && !text.contains(r#""reads""#),
        "{text}"
    );
    store.ready().await.expect("the schema is current");
    // PostgreSQL claims only once this process holds its liveness lock (taken at open, on a
    // connection of its own): a moment.
    let mut claim = store.claim_actions(10).await;
    for _ in 0..50 {
        if claim.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        claim = store.claim_actions(10).await;
    }
    let claim = claim.expect("claimed");
    let order: Vec<&str> = claim
        .actions()
        .iter()
        .map(|a| a.action_id.as_str())
        .collect();
    assert_eq!(order, ["s-paid/place_order", "s-abandoned/disable"]);
    // The old attempt, untimed, may still land: not looked up or placed again for a while.
    let paid = &claim.actions()[0];
    assert_eq!(paid.attempts, 1);
    assert!(
        paid.lands_in_ms.is_some_and(|ms| ms > 60_000),
        "{:?}",
        paid.lands_in_ms
    );
}

/// A SQLite database written by the service before its migrations were versioned (the schema
/// as it created it, its trackers as 0.1 stored them, open sessions and pending actions) is
/// upgraded at open, not refused ([`assert_upgraded`]).
#[tokio::test]
async fn trackers_stored_by_0_1_load_owing_what_their_rows_show() {
    let dir = std::env::temp_dir().join(format!("hpp-store-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let path = dir.join("old.db");
    let _ = std::fs::remove_file(&path);
    let url = path.to_str().expect("a UTF-8 path").to_owned();
    {
        let conn = rusqlite::Connection::open(&path).expect("the database");
        conn.execute_batch(SCHEMA_AT_ISSUE_23)
            .expect("the old schema");
        for (id, name, rows) in OLD_ROWS {
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
        for (action_id, count) in OLD_ATTEMPTS {
            conn.execute(
                "INSERT INTO attempts (action_id, count) VALUES (?1, ?2)",
                rusqlite::params![action_id, count],
            )
            .expect("an attempt row");
        }
    }
    let store = Store::open(&url, Options::new(TrackerConfig::DEFAULT))
        .await
        .expect("the old database opens");
    assert_upgraded(&store, || async {
        let conn = rusqlite::Connection::open(&path).expect("the database");
        conn.query_row(
            "SELECT tracker FROM sessions WHERE session_id = 's-paid'",
            [],
            |r| r.get(0),
        )
        .expect("the row")
    })
    .await;
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same on PostgreSQL: a database written with the schema and rows of the start of issue
/// 23 is upgraded at open ([`assert_upgraded`]).
#[tokio::test]
async fn a_postgres_database_written_before_versioned_migrations_is_upgraded() {
    assert!(
        support::postgres::available(),
        "PostgreSQL's server binaries (initdb, pg_ctl) must be on the PATH or in \
         /usr/lib/postgresql/*/bin (Debian: apt-get install postgresql)"
    );
    let pg = support::postgres::Postgres::start();
    let (client, connection) = tokio_postgres::connect(&pg.url, tokio_postgres::NoTls)
        .await
        .expect("connects");
    tokio::spawn(connection);
    client
        .batch_execute(&format!("BEGIN; {PG_SCHEMA_AT_ISSUE_23} COMMIT;"))
        .await
        .expect("the old schema");
    for (id, name, rows) in OLD_ROWS {
        client
            .execute(
                "INSERT INTO sessions (session_id, secret, payment_session_id, tracker) \
                 VALUES ($1, 'secret', 'ps', $2)",
                &[&id, &stored(name, id)],
            )
            .await
            .expect("a session row");
        for (kind, done) in rows {
            client
                .execute(
                    "INSERT INTO actions (action_id, session_id, kind, data, done) \
                     VALUES ($1, $2, $3, '{}', $4)",
                    &[&format!("{id}/{kind}"), &id, kind, done],
                )
                .await
                .expect("an action row");
        }
    }
    for (action_id, count) in OLD_ATTEMPTS {
        client
            .execute(
                "INSERT INTO attempts (action_id, count) VALUES ($1, $2)",
                &[&action_id, &count],
            )
            .await
            .expect("an attempt row");
    }
    let store = Store::open(&pg.url, Options::new(TrackerConfig::DEFAULT))
        .await
        .expect("the old database opens");
    assert_upgraded(&store, || async {
        client
            .query_one(
                "SELECT tracker FROM sessions WHERE session_id = 's-paid'",
                &[],
            )
            .await
            .expect("the row")
            .get(0)
    })
    .await;
}

/// SQLite is for one process: a second store on the same file is refused while the first is
/// open, with an error that says so, and opens once the first is gone.
#[tokio::test]
async fn a_second_process_on_one_sqlite_file_is_refused() {
    let (dir, url) = temp_db("second");
    let first = Store::open(&url, Options::new(TrackerConfig::DEFAULT))
        .await
        .expect("the first store");
    let second = Store::open(&url, Options::new(TrackerConfig::DEFAULT)).await;
    let error = second
        .expect_err("a second store on the same file")
        .to_string();
    assert!(
        error.contains("another hpp-service process holds") && error.contains("PostgreSQL"),
        "{error}"
    );
    // The same file named another way: through `..`, and through a symbolic link.
    let db = std::path::Path::new(&url);
    let name = db
        .file_name()
        .expect("a file name")
        .to_str()
        .expect("UTF-8");
    let dotted = dir.join("sub").join("..").join(name);
    std::fs::create_dir_all(dir.join("sub")).expect("a directory");
    let linked = dir.join("linked.db");
    std::os::unix::fs::symlink(db, &linked).expect("a symbolic link");
    for other in [dotted, linked] {
        let other = other.to_str().expect("UTF-8").to_owned();
        let second = Store::open(&other, Options::new(TrackerConfig::DEFAULT)).await;
        assert!(second.is_err(), "{other} opened beside {url}");
    }
    drop(first);
    Store::open(&url, Options::new(TrackerConfig::DEFAULT))
        .await
        .expect("opens once the first is gone");
    let _ = std::fs::remove_dir_all(&dir);
}

fn temp_db(name: &str) -> (std::path::PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("hpp-store-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let path = dir.join("store.db");
    let _ = std::fs::remove_file(&path);
    let url = path.to_str().expect("a UTF-8 path").to_owned();
    (dir, url)
}

const SESSION: &str = "39a1c773-bafd-754d-af1f-b30c592f1267";

fn body(status: &str, completion: &str, updated_at: &str) -> String {
    format!(
        r#"{{"session_id":"{SESSION}","status":"{status}",{completion}"updated_at":"{updated_at}","expires_at":"2019-05-15T13:51:43.507Z"}}"#
    )
}

async fn created(store: &Store, config: &TrackerConfig) {
    use hpp_service::store::NewSession;
    use hpp_session::{SessionId, Tracker};
    let at: Timestamp = "2019-05-13T13:51:43.507Z".parse().expect("a timestamp");
    let tracker = Tracker::created(SessionId::new(SESSION).expect("an id"), at);
    let next = tracker.next_read(config, at);
    store
        .insert(NewSession {
            session_id: SESSION.to_owned(),
            secret: "secret".to_owned(),
            payment_session_id: "ps".to_owned(),
            tracker,
            next,
        })
        .await
        .expect("inserted");
}

async fn read(store: &Store, config: TrackerConfig, answer: String, at: &str) {
    use hpp_service::observe::{self, ReadAnswer};
    let now: Timestamp = at.parse().expect("a timestamp");
    store
        .observe(SESSION, now, move |row| {
            let asked = observe::read(&mut row.tracker, &config, &ReadAnswer::Body(answer), now);
            ((), asked)
        })
        .await
        .expect("observed")
        .expect("stored");
}

/// The action rows are a projection of what the tracker owes, written when each was asked: a
/// row the tracker owes no more (a token, then Klarna's own order for the same session: the
/// token's order must not be placed) is claimed as retired, to be done without being performed,
/// and a row still owed is claimed with the data the tracker owes it with now.
#[tokio::test]
async fn a_claimed_action_is_what_the_tracker_owes_now() {
    let (dir, url) = temp_db("retired");
    let config = TrackerConfig::DEFAULT;
    let store = Store::open(&url, Options::new(config))
        .await
        .expect("a store");
    created(&store, &config).await;
    let token = r#""authorization_token":"a1a8f727-2756-6058-bd3c-40069be0994b","#;
    read(
        &store,
        config,
        body("COMPLETED", token, "2019-05-13T14:54:04.675Z"),
        "2019-05-13T14:55:00Z",
    )
    .await;
    let order =
        r#""order_id":"93d644a2-43f3-11e9-b210-d663bd873d93","klarna_reference":"X438HG0Q","#;
    read(
        &store,
        config,
        body("COMPLETED", order, "2019-05-13T14:54:04.675Z"),
        "2019-05-13T14:56:00Z",
    )
    .await;
    let claim = store.claim_actions(10).await.expect("claimed");
    let by_kind = |kind: &str| {
        claim
            .actions()
            .iter()
            .find(|a| a.action_id.ends_with(kind))
            .cloned()
            .expect("a row")
    };
    let place = by_kind("/place_order");
    assert!(
        place.retired,
        "the token's order would be placed: {place:?}"
    );
    let record = by_kind("/record_order");
    assert!(!record.retired);
    assert_eq!(
        record.data["order_id"],
        "93d644a2-43f3-11e9-b210-d663bd873d93"
    );
    drop(claim);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A store opened with another policy computes every open session's next read under it: a
/// time limit added after the sessions were stored reaches them at once, not after a read on
/// the old schedule; opened again with the same policy, nothing is computed again.
#[tokio::test]
async fn a_changed_policy_reschedules_every_open_session_at_open() {
    let (dir, url) = temp_db("policy");
    let path = url.clone();
    let config = TrackerConfig::DEFAULT;
    let store = Store::open(&url, Options::new(config))
        .await
        .expect("a store");
    created(&store, &config).await;
    let waiting = body("WAITING", "", "2019-05-13T13:51:43.507Z");
    read(&store, config, waiting, "2019-05-13T14:00:00Z").await;
    drop(store);
    let next = || -> i64 {
        rusqlite::Connection::open(&path)
            .expect("the database")
            .query_row("SELECT next_read_ms FROM sessions", [], |r| r.get(0))
            .expect("a row")
    };
    let before = next();
    // 13:51:43.507 plus 20 minutes: the time limit's read, before the blind read at ~14:44.
    let limited = TrackerConfig {
        abandon_after: Some(std::time::Duration::from_mins(20)),
        ..TrackerConfig::DEFAULT
    };
    let deadline: Timestamp = "2019-05-13T14:11:43.507Z".parse().expect("a timestamp");
    assert!(before > hpp_service::store::millis(deadline), "{before}");
    drop(
        Store::open(&url, Options::new(limited))
            .await
            .expect("reopened"),
    );
    assert_eq!(next(), hpp_service::store::millis(deadline));
    // The same policy again: the schedule the service wrote since is left alone.
    rusqlite::Connection::open(&path)
        .expect("the database")
        .execute("UPDATE sessions SET next_read_ms = 1", [])
        .expect("updated");
    drop(
        Store::open(&url, Options::new(limited))
            .await
            .expect("reopened"),
    );
    assert_eq!(next(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// One process never holds one action twice, whatever its claim's row says: with a lease of
/// zero (every claim looks stale at once) a claim held by this process is not claimed again by
/// it; and an attempt is a compare-and-set on what the claim saw, so a second holder with a
/// stale view (another process that took over, a claim from before an attempt) records nothing
/// and performs nothing, and nothing is attempted once done. On SQLite and PostgreSQL.
#[tokio::test]
async fn an_action_has_one_holder_and_one_attempt_per_view() {
    use hpp_service::observe::Done;
    use hpp_service::store::Finished;
    assert!(
        support::postgres::available(),
        "PostgreSQL's server binaries must be on the PATH or in /usr/lib/postgresql/*/bin"
    );
    let pg = support::postgres::Postgres::start();
    let (dir, sqlite) = temp_db("one-holder");
    for url in [sqlite.as_str(), pg.url.as_str()] {
        let config = TrackerConfig::DEFAULT;
        let mut options = Options::new(config);
        options.lease = std::time::Duration::ZERO;
        let store = Store::open(url, options).await.expect("a store");
        created(&store, &config).await;
        let token = r#""authorization_token":"a1a8f727-2756-6058-bd3c-40069be0994b","#;
        read(
            &store,
            config,
            body("COMPLETED", token, "2019-05-13T14:54:04.675Z"),
            "2019-05-13T14:55:00Z",
        )
        .await;
        // PostgreSQL claims once the liveness lock is held: a moment after opening.
        let mut first = store.claim_actions(10).await;
        for _ in 0..50 {
            if first.as_ref().is_ok_and(|c| !c.actions().is_empty()) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            first = store.claim_actions(10).await;
        }
        let first = first.expect("claimed");
        assert_eq!(first.actions().len(), 1, "{url}");
        let order = first.actions()[0].clone();
        assert!(order.action_id.ends_with("/place_order"));
        let again = store.claim_actions(10).await.expect("a claim");
        assert!(
            again.actions().is_empty(),
            "{url}: claimed again while held: {:?}",
            again.actions()
        );
        // Two views of attempt 0: the first records, the stale one does not.
        let bound = std::time::Duration::from_mins(1);
        assert!(
            store.attempt(&order, bound).await.expect("recorded"),
            "{url}"
        );
        assert!(!store.attempt(&order, bound).await.expect("asked"), "{url}");
        let mut seen_once = order.clone();
        seen_once.attempts = 1;
        assert!(
            store.attempt(&seen_once, bound).await.expect("asked"),
            "{url}"
        );
        // Done: no attempt is recorded any more, whatever the view.
        let done = Finished::Done(Done::Kind(ActionKind::PlaceOrder), "order 1".to_owned());
        store
            .finish_actions(
                &first,
                vec![(order.action_id.clone(), done)],
                "2019-05-13T14:56:00Z".parse().expect("a time"),
            )
            .await
            .expect("stored");
        let mut seen_twice = order.clone();
        seen_twice.attempts = 2;
        assert!(
            !store.attempt(&seen_twice, bound).await.expect("asked"),
            "{url}"
        );
        drop(first);
        assert!(
            store
                .claim_actions(10)
                .await
                .expect("a claim")
                .actions()
                .is_empty()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

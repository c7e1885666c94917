//! What a client sees on the wire, over real HTTP, byte for byte where Klarna's own SDKs look:
//! header names in Klarna's case, `X-Ratelimit-*` on every answer in Klarna's form, a bucket per
//! create call, and timestamps with 3 fractional digits.
//!
//! Klarna's pages followed: <https://docs.klarna.com/api/#rate-limiting> (the headers, a bucket
//! per create call), <https://docs.klarna.com/hosted-payment-page/api-documentation/> (the HPP
//! session object's timestamps), and Klarna's PHP SDK (`kco_rest_php`), whose default transport
//! looks `Content-Type` up case-sensitively.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;

use base64::Engine as _;
use klarna_double::DoubleConfig;

/// One request on a fresh connection; the raw answer, head and body.
fn raw(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> String {
    let auth = base64::engine::general_purpose::STANDARD.encode("merchant:secret");
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {auth}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// A double on a loopback port with the given per-second limits (other calls, each create call).
async fn double_with(
    limit: u32,
    create_limit: u32,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<klarna_double::Double>,
    tokio::task::JoinHandle<()>,
) {
    double_on(DoubleConfig {
        limit,
        create_limit,
        ..DoubleConfig::default()
    })
    .await
}

/// A double on a loopback port with `config`.
async fn double_on(
    config: DoubleConfig,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<klarna_double::Double>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (double, server) = klarna_double::serve(listener, config).unwrap();
    (addr, double, server)
}

fn header<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    let head = answer.split("\r\n\r\n").next()?;
    head.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|l| l.strip_prefix(": ")))
}

fn status(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wire_looks_like_klarnas() {
    // The playground's limits: 5 creates a second per create call, 50 other operations.
    let (addr, _double, _server) = double_with(50, 5).await;
    let answers = tokio::task::spawn_blocking(move || {
        let payment: Vec<String> = (0..6)
            .map(|_| raw(addr, "POST", "/payments/v1/sessions", "{}"))
            .collect();
        let first = &payment[0];
        let id = first.split("\"session_id\":\"").nth(1).unwrap().split('"').next().unwrap();
        let hpp_body = format!(
            r#"{{"payment_session_url":"http://{addr}/payments/v1/sessions/{id}","merchant_urls":{{}}}}"#
        );
        let hpp = raw(addr, "POST", "/hpp/v1/sessions", &hpp_body);
        let hpp_id = hpp.split("\"session_id\":\"").nth(1).unwrap().split('"').next().unwrap();
        let read = raw(addr, "GET", &format!("/hpp/v1/sessions/{hpp_id}"), "");
        (payment, hpp, read)
    })
    .await
    .unwrap();
    let (payment, hpp, read) = answers;
    // Header names as Klarna writes them, not hyper's lower case.
    for answer in [&payment[0], &hpp, &read] {
        assert!(header(answer, "Content-Type").is_some(), "{answer}");
        assert!(!answer.contains("\r\ncontent-type:"), "{answer}");
    }
    // The create bucket: 5 a second, the sixth refused, with the headers in Klarna's form.
    assert_eq!(status(&payment[0]), 200, "{}", payment[0]);
    assert_eq!(header(&payment[0], "X-Ratelimit-Limit"), Some("5, 5;w=1"));
    assert_eq!(header(&payment[0], "X-Ratelimit-Remaining"), Some("4"));
    let reset = header(&payment[0], "X-Ratelimit-Reset").unwrap();
    assert!(matches!(reset, "0" | "1"), "{reset}");
    // (A window boundary between the calls can only let more through, never fewer.)
    if status(&payment[5]) == 429 {
        assert_eq!(header(&payment[5], "X-Ratelimit-Remaining"), Some("0"));
    }
    // Creating the HPP session counts against its own bucket, not the payment sessions'.
    assert_eq!(status(&hpp), 201, "{hpp}");
    assert_eq!(header(&hpp, "X-Ratelimit-Remaining"), Some("4"));
    // A read is an "other operation": 50 a second, and its answer says so too.
    assert_eq!(status(&read), 200, "{read}");
    assert_eq!(header(&read, "X-Ratelimit-Limit"), Some("50, 50;w=1"));
    // Timestamps with Klarna's 3 fractional digits.
    let body = read.split("\r\n\r\n").nth(1).unwrap();
    let session: serde_json::Value = serde_json::from_str(body).unwrap();
    for field in ["updated_at", "expires_at"] {
        let stamp = session[field].as_str().unwrap();
        let fraction = stamp.rsplit('.').next().unwrap();
        assert_eq!(fraction.len(), 4, "{field}: {stamp}"); // "540Z"
    }
}

/// Klarna never moves a session to `DISABLED` by itself: only the merchant's `DELETE` does
/// (<https://docs.klarna.com/hosted-payment-page/api-documentation/disable-session/>). The
/// simulator's merchant, who disables 1 in 25 sessions in the closed loop, is off here: 200
/// sessions read 3 hours on show no `DISABLED`; a `DELETE` of one still open answers 204 and
/// the next read shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_merchants_delete_disables() {
    let (addr, _double, _server) = double_with(10_000, 10_000).await;
    let statuses = tokio::task::spawn_blocking(move || {
        let ids: Vec<String> = (0..200)
            .map(|_| {
                let payment = raw(addr, "POST", "/payments/v1/sessions", "{}");
                let id = payment.split("\"session_id\":\"").nth(1).unwrap();
                let id = id.split('"').next().unwrap();
                let body = format!(
                    r#"{{"payment_session_url":"http://{addr}/payments/v1/sessions/{id}"}}"#
                );
                let hpp = raw(addr, "POST", "/hpp/v1/sessions", &body);
                let hpp_id = hpp.split("\"session_id\":\"").nth(1).unwrap();
                let hpp_id = hpp_id.split('"').next().unwrap().to_owned();
                // The consumer opens the page: the history is played from here.
                assert_eq!(
                    status(&raw(addr, "GET", &format!("/hpp/{hpp_id}"), "")),
                    200
                );
                hpp_id
            })
            .collect();
        raw(addr, "POST", "/admin/clock/advance", r#"{"seconds":10800}"#);
        let status_of = |id: &str| {
            let read = raw(addr, "GET", &format!("/hpp/v1/sessions/{id}"), "");
            let body = read.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
            let session: serde_json::Value = serde_json::from_str(&body).unwrap();
            session["status"].as_str().unwrap().to_owned()
        };
        let statuses: Vec<String> = ids.iter().map(|id| status_of(id)).collect();
        let open = ids
            .iter()
            .zip(&statuses)
            .find(|(_, s)| matches!(s.as_str(), "WAITING" | "IN_PROGRESS" | "BACK"))
            .map(|(id, _)| id.clone());
        let deleted = open.map(|id| {
            let answer = raw(addr, "DELETE", &format!("/hpp/v1/sessions/{id}"), "");
            (status(&answer), status_of(&id))
        });
        (statuses, deleted)
    })
    .await
    .unwrap();
    let (statuses, deleted) = statuses;
    assert!(!statuses.iter().any(|s| s == "DISABLED"), "{statuses:?}");
    assert_eq!(deleted, Some((204, "DISABLED".to_owned())), "{statuses:?}");
}

/// Creates a payment session and its HPP session; the HPP session's id.
fn create_hpp(addr: std::net::SocketAddr) -> String {
    let payment = raw(addr, "POST", "/payments/v1/sessions", "{}");
    let id = payment.split("\"session_id\":\"").nth(1).unwrap();
    let id = id.split('"').next().unwrap();
    let body = format!(r#"{{"payment_session_url":"http://{addr}/payments/v1/sessions/{id}"}}"#);
    let hpp = raw(addr, "POST", "/hpp/v1/sessions", &body);
    let hpp_id = hpp.split("\"session_id\":\"").nth(1).unwrap();
    hpp_id.split('"').next().unwrap().to_owned()
}

/// The session object a read answers (`Null` for a 404).
fn read(addr: std::net::SocketAddr, id: &str) -> serde_json::Value {
    let answer = raw(addr, "GET", &format!("/hpp/v1/sessions/{id}"), "");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or_default()
}

fn advance(addr: std::net::SocketAddr, seconds: u64) {
    raw(
        addr,
        "POST",
        "/admin/clock/advance",
        &format!(r#"{{"seconds":{seconds}}}"#),
    );
}

/// Nothing happens to a session until its page is opened, however late that is
/// (<https://docs.klarna.com/hosted-payment-page/get-started/accept-klarna-payments-using-hosted-payment-page/>:
/// the consumer is sent to the page, or gets it by e-mail or SMS). Pages opened 3 hours after
/// creation show no change stamped before they were opened, and a token found by a read taken
/// within 5 minutes of each change still creates the order: the double blamed merchants for
/// tokens dead at first sight. A page never opened reads `WAITING`, and its `DELETE` answers
/// 204 from that same state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_lives_from_when_its_page_is_opened() {
    let (addr, double, _server) = double_with(10_000, 10_000).await;
    tokio::task::spawn_blocking(move || {
        let ids: Vec<String> = (0..60).map(|_| create_hpp(addr)).collect();
        let unopened = create_hpp(addr);
        advance(addr, 3 * 3_600);
        let opened_at: hpp_session::Timestamp = {
            let clock = raw(addr, "GET", "/admin/clock", "");
            let body = clock.split("\r\n\r\n").nth(1).unwrap();
            let clock: serde_json::Value = serde_json::from_str(body).unwrap();
            clock["now"].as_str().unwrap().parse().unwrap()
        };
        for id in &ids {
            assert_eq!(status(&raw(addr, "GET", &format!("/hpp/{id}"), "")), 200);
        }
        let (mut changed, mut ordered) = (0, 0);
        let mut done = std::collections::HashSet::new();
        for _ in 0..36 {
            for id in &ids {
                let session = read(addr, id);
                let Some(state) = session["status"].as_str() else {
                    continue;
                };
                if state != "WAITING" {
                    changed += 1;
                    let at: hpp_session::Timestamp =
                        session["updated_at"].as_str().unwrap().parse().unwrap();
                    assert!(
                        at >= opened_at,
                        "{id}: {state} at {at}, opened at {opened_at}"
                    );
                }
                // A token with Klarna's own order is not the merchant's to place.
                let token = session["authorization_token"]
                    .as_str()
                    .filter(|_| session["order_id"].is_null());
                if let Some(token) = token.filter(|_| done.insert(id.clone())) {
                    let path = format!("/payments/v1/authorizations/{token}/order");
                    let answer = raw(addr, "POST", &path, "{}");
                    assert_eq!(status(&answer), 200, "{id}: {answer}");
                    ordered += 1;
                }
            }
            advance(addr, 300);
        }
        assert!(
            changed > 0 && ordered > 0,
            "{changed} changes, {ordered} orders"
        );
        // Never opened: `WAITING`, and the disable answers from that state.
        assert_eq!(read(addr, &unopened)["status"], "WAITING");
        let answer = raw(addr, "DELETE", &format!("/hpp/v1/sessions/{unopened}"), "");
        assert_eq!(status(&answer), 204, "{answer}");
        assert_eq!(read(addr, &unopened)["status"], "DISABLED");
        // Opening a disabled page plays nothing.
        raw(addr, "GET", &format!("/hpp/{unopened}"), "");
        advance(addr, 3_600);
        assert_eq!(read(addr, &unopened)["status"], "DISABLED");
    })
    .await
    .unwrap();
    // The symptom the issue saw: tokens dead at first sight, blamed on the merchant.
    let t = double.world.lock().truth(double.clock.now(), false);
    assert_eq!(
        (t.tokens_expired_unused, t.orders_twice),
        (0, 0),
        "{}",
        t.line(0)
    );
}

/// A payment session's id, freshly created.
fn create_payment(addr: std::net::SocketAddr) -> String {
    let payment = raw(addr, "POST", "/payments/v1/sessions", "{}");
    let id = payment.split("\"session_id\":\"").nth(1).unwrap();
    id.split('"').next().unwrap().to_owned()
}

/// An HPP session for `payment`: the answer's status and the session's id (empty on an error).
fn create_hpp_for(addr: std::net::SocketAddr, payment: &str) -> (u16, String) {
    let body =
        format!(r#"{{"payment_session_url":"http://{addr}/payments/v1/sessions/{payment}"}}"#);
    let hpp = raw(addr, "POST", "/hpp/v1/sessions", &body);
    let id = hpp
        .split("\"session_id\":\"")
        .nth(1)
        .and_then(|id| id.split('"').next())
        .unwrap_or_default();
    (status(&hpp), id.to_owned())
}

/// A payment session may have several HPP sessions (Klarna calls it bad practice, and allows
/// it: <https://docs.klarna.com/hosted-payment-page/api-documentation/create-session/>), and
/// only one order per payment session succeeds ("several authorizations may exist, only one can
/// create an order"): the second consumer's token is refused 400, the payment session reads
/// `complete`, and the truth counts the refusal without calling it wrong. A merchant that will not fulfil cancels the authorization
/// (`DELETE /payments/v1/authorizations/{token}`, 204;
/// <https://docs.klarna.com/api/payments/#operation/cancelAuthorization>), after which the token
/// places no order; the truth counts neither as a dead token. A payment session expires 48 hours
/// after its last update, and then reads 404 and takes no new HPP session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_sessions_hold_several_hpp_sessions_one_order_and_expire() {
    let (addr, double, _server) = double_with(10_000, 10_000).await;
    let truth = tokio::task::spawn_blocking(move || {
        let payments: Vec<String> = (0..40).map(|_| create_payment(addr)).collect();
        let mut hpp = Vec::new();
        for (n, payment) in payments.iter().enumerate() {
            for _ in 0..2 {
                let (code, id) = create_hpp_for(addr, payment);
                assert_eq!(code, 201, "a second HPP session is allowed");
                hpp.push((n, id));
            }
        }
        for (_, id) in &hpp {
            assert_eq!(status(&raw(addr, "GET", &format!("/hpp/{id}"), "")), 200);
        }
        let mut answers = std::collections::HashMap::<usize, Vec<u16>>::new();
        let mut cancelled = 0;
        let mut seen = std::collections::HashSet::new();
        for _ in 0..60 {
            for (n, id) in &hpp {
                let session = read(addr, id);
                // A token with Klarna's own order is not the merchant's to place.
                let Some(token) = session["authorization_token"]
                    .as_str()
                    .filter(|_| session["order_id"].is_null())
                else {
                    continue;
                };
                if !seen.insert(id.clone()) {
                    continue;
                }
                let payment_path = format!("/payments/v1/sessions/{}", payments[*n]);
                let closed = raw(addr, "GET", &payment_path, "").contains("\"complete\"");
                if n % 4 == 3 && !closed && !answers.contains_key(n) {
                    // This merchant decides not to fulfil this cart.
                    let path = format!("/payments/v1/authorizations/{token}");
                    assert_eq!(status(&raw(addr, "DELETE", &path, "")), 204);
                    assert_eq!(status(&raw(addr, "DELETE", &path, "")), 404, "twice");
                    let order = format!("/payments/v1/authorizations/{token}/order");
                    assert_eq!(status(&raw(addr, "POST", &order, "{}")), 404);
                    cancelled += 1;
                    answers.insert(*n, vec![]);
                    continue;
                }
                let path = format!("/payments/v1/authorizations/{token}/order");
                let answer = status(&raw(addr, "POST", &path, "{}"));
                // Open: the order is created. Closed (by the other HPP session's order, or by
                // one Klarna placed itself): refused.
                assert_eq!(answer, if closed { 400 } else { 200 });
                answers.entry(*n).or_default().push(answer);
                let payment = raw(addr, "GET", &payment_path, "");
                assert!(payment.contains("\"complete\""), "{payment}");
            }
            advance(addr, 300);
        }
        let refused = answers.values().flatten().filter(|&&s| s == 400).count() as u64;
        assert!(refused > 0 && cancelled > 0, "{answers:?}");
        // Expiry: the payment session 48 hours after its creation, its HPP sessions an hour
        // before it, however late they were made (HPP: "until 1 hour before the payment
        // session expires"). The clock runs at speed 1 as well: a minute's margin.
        let fresh = create_payment(addr);
        let payment_path = format!("/payments/v1/sessions/{fresh}");
        advance(addr, 46 * 3_600);
        let (code, late) = create_hpp_for(addr, &fresh);
        assert_eq!(code, 201);
        advance(addr, 3_600 - 60);
        assert_eq!(
            status(&raw(addr, "GET", &format!("/hpp/v1/sessions/{late}"), "")),
            200
        );
        advance(addr, 120);
        let hpp_read = raw(addr, "GET", &format!("/hpp/v1/sessions/{late}"), "");
        assert_eq!(status(&hpp_read), 404, "47 h: {hpp_read}");
        assert_eq!(create_hpp_for(addr, &fresh).0, 400, "its last hour");
        assert_eq!(status(&raw(addr, "GET", &payment_path, "")), 200);
        advance(addr, 3_600);
        let read = raw(addr, "GET", &payment_path, "");
        assert_eq!(status(&read), 404, "{read}");
        assert_eq!(create_hpp_for(addr, &fresh).0, 400);
        (refused, cancelled)
    })
    .await
    .unwrap();
    let (refused, cancelled) = truth;
    let t = double.world.lock().truth(double.clock.now(), false);
    assert_eq!(
        (t.second_orders_refused, t.orders_twice),
        (refused, 0),
        "another authorization's order refused: counted, and no money moved"
    );
    assert_eq!(t.authorizations_cancelled, cancelled);
    assert_eq!(t.tokens_expired_unused, 0, "{}", t.line(0));
}

/// Timestamps in Klarna's form by default (3 fractional digits), and in the other valid forms
/// on demand, for a parser's tests: 0 and 9 digits, in reads and in the create's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_come_in_the_form_asked() {
    for (digits, fraction) in [
        (klarna_double::TimestampDigits::Zero, 0),
        (klarna_double::TimestampDigits::Three, 3),
        (klarna_double::TimestampDigits::Nine, 9),
    ] {
        let (addr, _double, _server) = double_on(DoubleConfig {
            timestamp_digits: digits,
            ..DoubleConfig::default()
        })
        .await;
        let (create, session) = tokio::task::spawn_blocking(move || {
            let payment = create_payment(addr);
            let body = format!(
                r#"{{"payment_session_url":"http://{addr}/payments/v1/sessions/{payment}"}}"#
            );
            let create = raw(addr, "POST", "/hpp/v1/sessions", &body);
            let id = create.split("\"session_id\":\"").nth(1).unwrap();
            let id = id.split('"').next().unwrap().to_owned();
            (create, read(addr, &id))
        })
        .await
        .unwrap();
        let created: serde_json::Value =
            serde_json::from_str(create.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        for stamp in [
            &created["expires_at"],
            &session["updated_at"],
            &session["expires_at"],
        ] {
            let stamp = stamp.as_str().unwrap();
            let digits = stamp
                .trim_end_matches('Z')
                .rsplit_once('.')
                .map_or(0, |(_, f)| f.len());
            assert_eq!(digits, fraction, "{stamp}");
            assert!(stamp.parse::<hpp_session::Timestamp>().is_ok(), "{stamp}");
        }
    }
}

//! The sidecar's contract (`service/openapi.json`) held to the running service: the Klarna
//! double (in this process) and the service binary (on SQLite) are started, every status the
//! document lists for every operation is provoked, and each answer's status, content type,
//! headers and body are validated against the document. An answer whose status the document
//! does not list for its operation fails, and so does a listed status no request provoked.
//!
//! The shop is a small recorder in this test (`--shop-url` points at it; it forwards nothing):
//! every call the executor makes to it is validated against the document's `webhooks`. It
//! answers each action's first call 503 and the repeat 2xx, so the retry with the same key and
//! body is seen too. Sessions are driven to a recorded order, a review and a release by the
//! status callbacks Klarna would send, posted with each session's secret (read from the
//! double, which holds the merchant URLs the service gave it).

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::{Value, json};

/// The document under test.
const DOCUMENT: &str = include_str!("../openapi.json");

/// Where the document keeps the answers to requests outside its `paths`.
const UNLISTED: &str = "x-unlisted-requests";

/// The Klarna double's merchant credentials (its defaults, which the service's are too).
const KLARNA: (&str, &str) = ("merchant", "secret");

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One answer of the service, as received.
#[derive(Clone, Debug)]
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The same answer with `body` as its JSON body.
    fn with_json(&self, body: &Value) -> Self {
        Self {
            body: body.to_string().into_bytes(),
            ..self.clone()
        }
    }
}

/// Whether a `Content-Type` (`actual`) is the documented media type: the same type, and every
/// parameter the document names (`version=0.0.4`) present.
fn media_matches(documented: &str, actual: &str) -> bool {
    let parts = |s: &str| {
        let mut parts = s
            .split(';')
            .map(|p| p.trim().to_ascii_lowercase().replace(' ', ""));
        let essence = parts.next().unwrap_or_default();
        let params: BTreeSet<String> = parts.filter(|p| !p.is_empty()).collect();
        (essence, params)
    };
    let (documented, wanted) = parts(documented);
    let (actual, given) = parts(actual);
    documented == actual && wanted.is_subset(&given)
}

/// A request to the service, or a call of the shop, as the document names it: the path (a key of
/// `paths`, the webhook's name, or [`UNLISTED`]), the method, the status (or `2XX`, `default`).
type Operation = (String, String, String);

/// The document, and which of its answers were seen.
struct Contract {
    doc: Value,
    exercised: Mutex<BTreeSet<Operation>>,
}

impl Contract {
    fn load() -> Self {
        let doc: Value = serde_json::from_str(DOCUMENT).expect("openapi.json is JSON");
        assert_eq!(doc["openapi"], "3.1.0", "an OpenAPI 3.1 document");
        Self {
            doc,
            exercised: Mutex::default(),
        }
    }

    /// `value` with every `$ref` into the document replaced by what it points at (its sibling
    /// keywords kept), so that a schema validates on its own.
    fn inline(&self, value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut out = serde_json::Map::new();
                if let Some(Value::String(target)) = map.get("$ref") {
                    let pointer = target.strip_prefix('#').expect("a $ref into this document");
                    let found = self
                        .doc
                        .pointer(pointer)
                        .unwrap_or_else(|| panic!("openapi.json: {target} points at nothing"));
                    if let Value::Object(found) = self.inline(found) {
                        out.extend(found);
                    }
                }
                for (key, v) in map.iter().filter(|(k, _)| *k != "$ref") {
                    out.insert(key.clone(), self.inline(v));
                }
                Value::Object(out)
            }
            Value::Array(items) => Value::Array(items.iter().map(|v| self.inline(v)).collect()),
            other => other.clone(),
        }
    }

    /// Whether `instance` is valid under the document's `schema` (JSON Schema 2020-12, formats
    /// asserted); why not.
    fn validate(&self, schema: &Value, instance: &Value) -> Result<(), String> {
        let schema = self.inline(schema);
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&schema)
            .map_err(|e| format!("openapi.json has a schema that does not build: {e}"))?;
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| format!("{} (at {})", e, e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!("{instance} is not valid: {}", errors.join("; ")))
        }
    }

    /// Whether `answer` is the documented `response` (a Response Object): its required headers
    /// present and every documented header valid, its content type one it lists and its body
    /// valid under that one's schema, or no body when it lists none.
    fn conforms(&self, response: &Value, answer: &Answer) -> Result<(), String> {
        let response = self.inline(response);
        let headers = response["headers"].as_object().cloned().unwrap_or_default();
        for (name, header) in &headers {
            match answer.headers.get(name.to_ascii_lowercase().as_str()) {
                Some(value) => {
                    let value = value.to_str().map_err(|_| format!("{name} is not text"))?;
                    self.validate(&header["schema"], &Value::String(value.to_owned()))
                        .map_err(|e| format!("header {name}: {e}"))?;
                }
                None if header["required"] == true => {
                    return Err(format!("the required header {name} is missing"));
                }
                None => {}
            }
        }
        let Some(content) = response["content"].as_object() else {
            return if answer.body.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "a body where the document has none: {:?}",
                    answer.text()
                ))
            };
        };
        let actual = answer
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .ok_or("no Content-Type where the document has a body")?;
        let (media, documented) = content
            .iter()
            .find(|(media, _)| media_matches(media, actual))
            .ok_or_else(|| {
                let listed: Vec<&String> = content.keys().collect();
                format!("Content-Type {actual} is none of {listed:?}")
            })?;
        let body = if media.starts_with("application/json") {
            serde_json::from_slice(&answer.body)
                .map_err(|e| format!("{media} that is not JSON ({e}): {:?}", answer.text()))?
        } else {
            Value::String(
                String::from_utf8(answer.body.clone()).map_err(|_| "a body that is not UTF-8")?,
            )
        };
        self.validate(&documented["schema"], &body)
            .map_err(|e| format!("{media} body: {e}"))
    }

    /// Whether `answer` to `method` `path` (a key of `paths`) is one the document lists there.
    fn verify(&self, path: &str, method: &str, answer: &Answer) -> Result<(), String> {
        let operation = &self.doc["paths"][path][method];
        if !operation.is_object() {
            return Err(format!("{method} {path} is not in the document"));
        }
        let status = answer.status.to_string();
        let response = operation["responses"].get(&status).ok_or_else(|| {
            format!(
                "{method} {path} answered {status}, which the document does not list: {:?}",
                answer.text()
            )
        })?;
        self.conforms(response, answer)
            .map_err(|e| format!("{method} {path} {status}: {e}"))
    }

    /// Checks `answer` to `method` `path` against the document (panics if it is not one it
    /// lists), and counts that answer as exercised.
    fn check(&self, path: &str, method: &str, answer: &Answer) {
        if let Err(e) = self.verify(path, method, answer) {
            panic!("{e}");
        }
        let seen = (
            path.to_owned(),
            method.to_owned(),
            answer.status.to_string(),
        );
        lock(&self.exercised).insert(seen);
    }

    /// Checks an answer to a request outside `paths` against [`UNLISTED`].
    fn check_unlisted(&self, what: &str, answer: &Answer) {
        let status = answer.status.to_string();
        let response = self.doc[UNLISTED]["responses"]
            .get(&status)
            .unwrap_or_else(|| panic!("{what} answered {status}, not listed in {UNLISTED}"));
        if let Err(e) = self.conforms(response, answer) {
            panic!("{what} {status}: {e}");
        }
        let seen = (UNLISTED.to_owned(), "*".to_owned(), status);
        lock(&self.exercised).insert(seen);
    }

    /// The webhook a call of the shop is (by its `x-shop-path` and method), and the session id
    /// in its path; whether the call is valid under it: its header parameters, its content
    /// type and its body.
    fn verify_shop_call(&self, call: &ShopCall) -> Result<(String, String), String> {
        let webhooks = self.doc["webhooks"].as_object().ok_or("no webhooks")?;
        let (name, item, session) = webhooks
            .iter()
            .find_map(|(name, item)| {
                let template = item[&call.method]["x-shop-path"].as_str()?;
                let session = match_template(template, &call.path)?;
                Some((name, &item[&call.method], session))
            })
            .ok_or_else(|| format!("{} {}: no webhook of that", call.method, call.path))?;
        let operation = self.inline(item);
        for parameter in operation["parameters"].as_array().into_iter().flatten() {
            if parameter["in"] != "header" {
                continue;
            }
            let header = parameter["name"].as_str().unwrap_or_default();
            match call.headers.get(header.to_ascii_lowercase().as_str()) {
                Some(value) => {
                    let value = value
                        .to_str()
                        .map_err(|_| format!("{header} is not text"))?;
                    self.validate(&parameter["schema"], &Value::String(value.to_owned()))
                        .map_err(|e| format!("{name}: header {header}: {e}"))?;
                }
                None if parameter["required"] == true => {
                    return Err(format!("{name}: the required header {header} is missing"));
                }
                None => {}
            }
        }
        let content = operation["requestBody"]["content"]
            .as_object()
            .ok_or_else(|| format!("{name}: no request body documented"))?;
        let actual = call
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| format!("{name}: no Content-Type"))?;
        let (_, documented) = content
            .iter()
            .find(|(media, _)| media_matches(media, actual))
            .ok_or_else(|| format!("{name}: Content-Type {actual} is not documented"))?;
        let body: Value = serde_json::from_slice(&call.body)
            .map_err(|e| format!("{name}: a body that is not JSON: {e}"))?;
        self.validate(&documented["schema"], &body)
            .map_err(|e| format!("{name}: {e}"))?;
        Ok((name.clone(), session))
    }

    fn exercised_shop(&self, webhook: &str, method: &str, answer: &str) {
        let seen = (webhook.to_owned(), method.to_owned(), answer.to_owned());
        lock(&self.exercised).insert(seen);
    }

    /// Every answer the document lists: each operation's in `paths` and `webhooks`, and those
    /// in [`UNLISTED`].
    fn documented(&self) -> BTreeSet<Operation> {
        let mut all = BTreeSet::new();
        for (section, items) in [
            ("paths", &self.doc["paths"]),
            ("webhooks", &self.doc["webhooks"]),
        ] {
            let items = items.as_object().unwrap_or_else(|| panic!("no {section}"));
            for (key, item) in items {
                for (method, operation) in item.as_object().into_iter().flatten() {
                    for status in operation["responses"].as_object().into_iter().flatten() {
                        all.insert((key.clone(), method.clone(), status.0.clone()));
                    }
                }
            }
        }
        for status in self.doc[UNLISTED]["responses"]
            .as_object()
            .into_iter()
            .flatten()
        {
            all.insert((UNLISTED.to_owned(), "*".to_owned(), status.0.clone()));
        }
        all
    }
}

/// The value of the one `{…}` segment of `template` in `path`, if `path` is an instance of it.
fn match_template(template: &str, path: &str) -> Option<String> {
    let (template, path): (Vec<&str>, Vec<&str>) =
        (template.split('/').collect(), path.split('/').collect());
    if template.len() != path.len() {
        return None;
    }
    let mut captured = None;
    for (t, p) in template.iter().zip(&path) {
        if t.starts_with('{') && t.ends_with('}') {
            if p.is_empty() {
                return None;
            }
            captured = Some((*p).to_owned());
        } else if t != p {
            return None;
        }
    }
    captured
}

/// Sends `request`; the answer as received.
async fn try_send(request: reqwest::RequestBuilder) -> reqwest::Result<Answer> {
    let response = request.send().await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await?.to_vec();
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// Sends `request`; the answer as received.
async fn send(request: reqwest::RequestBuilder) -> Answer {
    try_send(request).await.expect("the service answers")
}

/// One call the executor made to the shop, and what the shop answered.
#[derive(Clone, Debug)]
struct ShopCall {
    method: String,
    path: String,
    headers: HeaderMap,
    body: Bytes,
    answered: u16,
}

impl ShopCall {
    fn key(&self) -> &str {
        self.headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// The shop: records every call and forwards nothing. Each action's first call (by its
/// `Idempotency-Key`) is answered 503, its repeats 2xx (200, 202 or 204 by the kind: any 2xx is
/// done).
#[derive(Debug, Default)]
struct Shop {
    calls: Mutex<Vec<ShopCall>>,
}

async fn shop_endpoint(
    State(shop): State<Arc<Shop>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut call = ShopCall {
        method: method.as_str().to_ascii_lowercase(),
        path: uri.path().to_owned(),
        headers,
        body,
        answered: 0,
    };
    let mut calls = lock(&shop.calls);
    let first = !calls.iter().any(|c| c.key() == call.key());
    let answer = if first {
        StatusCode::SERVICE_UNAVAILABLE
    } else if call.path.starts_with("/shop/orders/") {
        StatusCode::OK
    } else if call.path.starts_with("/shop/reviews/") {
        StatusCode::ACCEPTED
    } else {
        StatusCode::NO_CONTENT
    };
    call.answered = answer.as_u16();
    calls.push(call);
    answer
}

impl Shop {
    /// Serves a shop on a port of its own; it and its URL.
    async fn start() -> (Arc<Self>, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port for the shop");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        let shop = Arc::new(Self::default());
        let app = axum::Router::new()
            .fallback(shop_endpoint)
            .with_state(Arc::clone(&shop));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (shop, url)
    }

    fn calls(&self) -> Vec<ShopCall> {
        lock(&self.calls).clone()
    }
}

/// One service process on a SQLite file of its own.
struct Sidecar {
    base: String,
    db: PathBuf,
    child: Child,
}

impl Sidecar {
    fn start(dir: &Path, name: &str, klarna: &str, extra: &[&str]) -> Self {
        let port = support::postgres::free_port();
        let db = dir.join(format!("{name}.db"));
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("a log file");
        let child = Command::new(env!("CARGO_BIN_EXE_hpp-service"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--klarna-url", klarna, "--double-clock"])
            .args(["--checkout-token", support::CHECKOUT_TOKEN])
            .args(["--database-url", db.to_str().expect("UTF-8")])
            .args(["--create-budget", "100000", "--budget", "100000"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the service starts");
        Self {
            base: format!("http://127.0.0.1:{port}"),
            db,
            child,
        }
    }

    /// Waits until it serves: its `/healthz`, checked.
    async fn serving(&self, http: &reqwest::Client, contract: &Contract) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(answer) = try_send(http.get(format!("{}/healthz", self.base))).await {
                contract.check("/healthz", "get", &answer);
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{} did not start", self.base);
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The service under test and what it talks to.
struct World {
    contract: Contract,
    http: reqwest::Client,
    double: Arc<klarna_double::Double>,
    sidecar: Sidecar,
    shop: Arc<Shop>,
}

impl World {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sidecar.base)
    }

    /// A checkout with the credential, checked: the session id, and the answer.
    async fn check_out(&self) -> (String, Answer) {
        let answer = send(
            self.http
                .post(self.url("/checkout"))
                .bearer_auth(support::CHECKOUT_TOKEN),
        )
        .await;
        self.contract.check("/checkout", "post", &answer);
        assert_eq!(answer.status, 201, "{}", answer.text());
        let id = answer.json()["session_id"]
            .as_str()
            .expect("a session id")
            .to_owned();
        (id, answer)
    }

    /// The status-callback URL the service gave Klarna for `session`, with its secret.
    fn callback_url(&self, session: &str) -> String {
        let world = self.double.world.lock();
        let url = world
            .sessions
            .get(session)
            .and_then(|s| s.urls.status_update.clone())
            .expect("the service gave Klarna a status_update URL");
        url.replace("{{session_id}}", session)
    }

    /// The callback Klarna sends when `session` changes to `status` (with the completion's
    /// fields `extra`), built on Klarna's read of the session.
    async fn callback_body(&self, session: &str, status: &str, extra: &[(&str, &str)]) -> Value {
        let read: Value = self
            .http
            .get(format!(
                "{}/hpp/v1/sessions/{session}",
                self.double.base_url
            ))
            .basic_auth(KLARNA.0, Some(KLARNA.1))
            .send()
            .await
            .expect("the double answers")
            .json()
            .await
            .expect("a session");
        // A second after Klarna's own `updated_at`: the newest change.
        let updated_at = self
            .double
            .clock
            .now()
            .saturating_add(Duration::from_secs(1))
            .to_string();
        let mut body = json!({
            "session_id": session,
            "status": status,
            "updated_at": updated_at,
            "expires_at": read["expires_at"],
        });
        for (field, value) in extra {
            body[*field] = json!(value);
        }
        let callback = json!({"event_id": format!("contract-{status}-{session}"), "session": body});
        // What this test sends as Klarna is what the document says Klarna sends.
        let schema = json!({"$ref": "#/components/schemas/KlarnaCallback"});
        if let Err(e) = self.contract.validate(&schema, &callback) {
            panic!("the test's own callback: {e}");
        }
        callback
    }

    /// POSTs `body` to the callback `url`, checked.
    async fn callback(&self, url: &str, body: impl Into<reqwest::Body>) -> Answer {
        let answer = send(
            self.http
                .post(url)
                .header("content-type", "application/json")
                .body(body),
        )
        .await;
        self.contract
            .check("/klarna/status/{session_id}/{secret}", "post", &answer);
        answer
    }

    /// GETs `path` (a redirect), checked.
    async fn redirect(&self, path: &str) -> Answer {
        let answer = send(self.http.get(self.url(path))).await;
        self.contract
            .check("/klarna/return/{kind}/{session_id}", "get", &answer);
        answer
    }

    /// GETs `path` (an operations endpoint), checked.
    async fn operations(&self, path: &str) -> Answer {
        let answer = send(self.http.get(self.url(path))).await;
        self.contract.check(path, "get", &answer);
        answer
    }
}

/// The sessions the test drives: to a recorded order, a review, a release, and one for the
/// rest (forged callbacks, redirects).
struct Sessions {
    record: String,
    review: String,
    release: String,
    other: String,
    created: Answer,
}

/// `POST /checkout`: without a credential, with a wrong one, with a body (not read), and as
/// the shop's backend does (201).
async fn checkouts(w: &World) -> Sessions {
    let unauthorized = [
        w.http.post(w.url("/checkout")),
        w.http
            .post(w.url("/checkout"))
            .bearer_auth("not-the-credential"),
        w.http.post(w.url("/checkout")).header(
            "authorization",
            format!("Basic {}", support::CHECKOUT_TOKEN),
        ),
        // A body over the limit: not read, so not refused for its size. (A body not read is
        // not drained either: the service closes the connection after the answer.)
        w.http
            .post(w.url("/checkout"))
            .header("connection", "close")
            .body(vec![b'x'; 100 * 1024]),
    ];
    for request in unauthorized {
        let answer = send(request).await;
        w.contract.check("/checkout", "post", &answer);
        assert_eq!(answer.status, 401, "{}", answer.text());
    }
    let (record, created) = w.check_out().await;
    let (review, _) = w.check_out().await;
    let (release, _) = w.check_out().await;
    // The scheme is case-insensitive; a body is not read.
    let lower = send(
        w.http
            .post(w.url("/checkout"))
            .header(
                "authorization",
                format!("bearer {}", support::CHECKOUT_TOKEN),
            )
            .header("connection", "close")
            .body(vec![b'x'; 100 * 1024]),
    )
    .await;
    w.contract.check("/checkout", "post", &lower);
    assert_eq!(lower.status, 201, "{}", lower.text());
    let other = lower.json()["session_id"]
        .as_str()
        .expect("an id")
        .to_owned();
    Sessions {
        record,
        review,
        release,
        other,
        created,
    }
}

/// The status callback: with the secret (evidence that asks for the shop's three calls), with a
/// forged secret, a body that is not a callback, a body over the limit, an unknown session,
/// a path that is not UTF-8.
async fn callbacks(w: &World, s: &Sessions) {
    let asks = [
        (
            &s.record,
            "COMPLETED",
            &[
                ("order_id", "contract-order-1"),
                ("klarna_reference", "K-1"),
            ][..],
        ),
        // Paid, and nothing says how to place the order or which one Klarna placed.
        (&s.review, "COMPLETED", &[][..]),
        (&s.release, "CANCELLED", &[][..]),
    ];
    for (session, status, extra) in asks {
        let body = w.callback_body(session, status, extra).await;
        let answer = w.callback(&w.callback_url(session), body.to_string()).await;
        assert_eq!(answer.status, 200);
    }
    let url = w.callback_url(&s.other);
    let (head, _secret) = url.rsplit_once('/').expect("a secret segment");
    let forged = w
        .callback_body(&s.other, "COMPLETED", &[("order_id", "forged")])
        .await;
    for (target, body) in [
        // The adversary knows the id and the URL's shape, not the secret: a hint, 200.
        (format!("{head}/{}", "0".repeat(32)), forged.to_string()),
        // With the secret, a body that is no callback: refused for good, 200.
        (url.clone(), "this is not a callback".to_owned()),
    ] {
        let answer = w.callback(&target, body).await;
        assert_eq!(answer.status, 200);
    }
    let too_large = w.http.post(&url).header("connection", "close");
    let answer = send(too_large.body(vec![b' '; 64 * 1024 + 1])).await;
    w.contract
        .check("/klarna/status/{session_id}/{secret}", "post", &answer);
    assert_eq!(answer.status, 413);
    let unknown = w
        .callback(
            &w.url(&format!(
                "/klarna/status/no-such-session/{}",
                "0".repeat(32)
            )),
            forged.to_string(),
        )
        .await;
    assert_eq!(unknown.status, 404);
    let not_utf8 = w
        .callback(&w.url("/klarna/status/%FF%FE/secret"), "{}")
        .await;
    assert_eq!(not_utf8.status, 400);
}

/// The consumer's redirects: each kind for a session stored, an unknown kind, an unknown
/// session, a path that is not UTF-8.
async fn redirects(w: &World, s: &Sessions) {
    for kind in ["success", "failure", "back", "cancel", "error"] {
        let answer = w
            .redirect(&format!("/klarna/return/{kind}/{}", s.other))
            .await;
        assert_eq!(answer.status, 200, "{kind}");
    }
    let unknown_kind = w
        .redirect(&format!("/klarna/return/paid/{}", s.other))
        .await;
    assert_eq!(unknown_kind.status, 404);
    let unknown_session = w.redirect("/klarna/return/success/no-such-session").await;
    assert_eq!(unknown_session.status, 404);
    let not_utf8 = w.redirect("/klarna/return/success/%C3%28").await;
    assert_eq!(not_utf8.status, 400);
}

/// Requests outside the document's paths: unknown paths, listed paths with other methods.
async fn unlisted(w: &World) {
    let requests = [
        ("GET /nothing-here", w.http.get(w.url("/nothing-here"))),
        ("GET /status/", w.http.get(w.url("/status/"))),
        (
            "POST a callback URL without its secret",
            w.http.post(w.url("/klarna/status/some-session")),
        ),
        ("GET /checkout", w.http.get(w.url("/checkout"))),
        (
            "GET a callback URL",
            w.http.get(w.url("/klarna/status/some-session/secret")),
        ),
        ("POST /status", w.http.post(w.url("/status"))),
        ("DELETE /metrics", w.http.delete(w.url("/metrics"))),
    ];
    for (what, request) in requests {
        let answer = send(request).await;
        w.contract.check_unlisted(what, &answer);
    }
}

/// Waits until the shop saw each of its three calls answered 2xx, then checks every call
/// against `webhooks`, and that each action was called exactly twice (the 503, then the 2xx)
/// with one key and one body.
async fn shop_calls(w: &World, s: &Sessions) -> Vec<ShopCall> {
    let expected = [
        (
            format!("/shop/orders/{}/record", s.record),
            format!("{}/record_order", s.record),
        ),
        (
            format!("/shop/reviews/{}", s.review),
            format!("{}/review_completion", s.review),
        ),
        (
            format!("/shop/carts/{}/release", s.release),
            format!("{}/release", s.release),
        ),
    ];
    let deadline = Instant::now() + Duration::from_secs(15);
    let done = |calls: &[ShopCall]| {
        expected.iter().all(|(path, _)| {
            calls
                .iter()
                .any(|c| &c.path == path && (200..300).contains(&c.answered))
        })
    };
    while !done(&w.shop.calls()) {
        assert!(
            Instant::now() < deadline,
            "the shop's three calls did not come: {:#?}",
            w.shop.calls()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // Done is done: nothing more comes for these keys.
    tokio::time::sleep(Duration::from_millis(750)).await;
    let calls = w.shop.calls();
    for call in &calls {
        let (webhook, session) = w
            .contract
            .verify_shop_call(call)
            .unwrap_or_else(|e| panic!("{e}\n{call:#?}"));
        assert!(
            call.key().starts_with(&format!("{session}/")),
            "the key names the path's session: {call:#?}"
        );
        let answer = if (200..300).contains(&call.answered) {
            "2XX"
        } else {
            "default"
        };
        w.contract.exercised_shop(&webhook, &call.method, answer);
    }
    // Nothing else: the forged callback and the redirects were hints, and asked for nothing.
    assert_eq!(calls.len(), 2 * expected.len(), "{calls:#?}");
    for (path, key) in &expected {
        let of_key: Vec<&ShopCall> = calls.iter().filter(|c| c.key() == key).collect();
        let answers: Vec<u16> = of_key.iter().map(|c| c.answered).collect();
        assert_eq!(
            answers.len(),
            2,
            "{key}: one 503, then one 2xx: {answers:?}"
        );
        assert_eq!(answers[0], 503, "{key}: {answers:?}");
        assert!((200..300).contains(&answers[1]), "{key}: {answers:?}");
        assert!(of_key.iter().all(|c| &c.path == path), "{key}: {of_key:#?}");
        assert_eq!(of_key[0].body, of_key[1].body, "{key}: the same body again");
    }
    let body = |key: &str| -> Value {
        let call = calls.iter().find(|c| c.key() == key).expect("a call");
        serde_json::from_slice(&call.body).expect("JSON")
    };
    assert_eq!(
        body(&expected[0].1),
        json!({"order_id": "contract-order-1"})
    );
    assert_eq!(body(&expected[1].1), json!({}));
    assert_eq!(body(&expected[2].1), json!({"reason": "CANCELLED"}));
    calls
}

/// The database fails under the running service (its tables as a newer version would have
/// left them, and the sessions' table gone): every operation that reads it answers 503, the
/// metrics still answer (`hpp_store_up 0`), and liveness holds.
async fn database_gone(w: &World, s: &Sessions) {
    let db = w.sidecar.db.clone();
    tokio::task::spawn_blocking(move || {
        let conn = rusqlite::Connection::open(db).expect("the service's SQLite file");
        conn.busy_timeout(Duration::from_secs(5))
            .expect("a timeout");
        conn.execute_batch(
            "UPDATE refinery_schema_history SET version = version + 100; \
             ALTER TABLE sessions RENAME TO sessions_elsewhere;",
        )
        .expect("the schema changed");
    })
    .await
    .expect("the change ran");
    let ready = w.operations("/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert!(ready.text().contains("schema"), "{}", ready.text());
    let status = w.operations("/status").await;
    assert_eq!(status.status, 503, "{}", status.text());
    let metrics = w.operations("/metrics").await;
    assert!(
        metrics.text().contains("\nhpp_store_up 0\n"),
        "{}",
        metrics.text()
    );
    assert_eq!(w.operations("/healthz").await.status, 200);
    let body = w.callback_body(&s.other, "CANCELLED", &[]).await;
    let callback = w
        .callback(&w.callback_url(&s.other), body.to_string())
        .await;
    assert_eq!(callback.status, 503, "{}", callback.text());
    let redirect = w
        .redirect(&format!("/klarna/return/success/{}", s.other))
        .await;
    assert_eq!(redirect.status, 503, "{}", redirect.text());
    // The public routes tell the caller that storage failed, not the database's words.
    for public in [&callback, &redirect] {
        assert!(
            public.text().contains("storage unavailable") && !public.text().contains("sessions"),
            "{}",
            public.text()
        );
    }
    assert!(ready.text().contains("version 102"), "{}", ready.text());
    let checkout = send(
        w.http
            .post(w.url("/checkout"))
            .bearer_auth(support::CHECKOUT_TOKEN),
    )
    .await;
    w.contract.check("/checkout", "post", &checkout);
    assert_eq!(checkout.status, 503, "{}", checkout.text());
}

/// The validator bites: real answers and calls, changed, fail.
fn validator_bites(w: &World, sessions: &Sessions, calls: &[ShopCall]) {
    let contract = &w.contract;
    let created = &sessions.created;
    let checkout = |answer: &Answer| contract.verify("/checkout", "post", answer);
    assert!(checkout(created).is_ok());
    let mut body = created.json();
    body.as_object_mut()
        .expect("an object")
        .remove("redirect_url");
    let why = checkout(&created.with_json(&body)).expect_err("a required field removed");
    assert!(why.contains("redirect_url"), "{why}");
    let mut body = created.json();
    body["extra"] = json!(1);
    assert!(
        checkout(&created.with_json(&body)).is_err(),
        "a field added"
    );
    let undocumented = Answer {
        status: 200,
        ..created.clone()
    };
    let why = checkout(&undocumented).expect_err("an undocumented status");
    assert!(why.contains("does not list"), "{why}");
    let mut relabelled = created.clone();
    relabelled
        .headers
        .insert("content-type", "text/plain".parse().expect("a value"));
    assert!(checkout(&relabelled).is_err(), "another content type");
    // A 401 without its WWW-Authenticate.
    let unauthorized = Answer {
        status: 401,
        body: json!({"error": "unauthorized"}).to_string().into_bytes(),
        ..created.clone()
    };
    let why = checkout(&unauthorized).expect_err("no WWW-Authenticate");
    assert!(why.contains("WWW-Authenticate"), "{why}");
    let release = calls
        .iter()
        .find(|call| call.path.ends_with("/release"))
        .expect("a release");
    assert!(contract.verify_shop_call(release).is_ok());
    let mut changed = release.clone();
    changed.body = Bytes::from(json!({"reason": "CANCELLED", "note": "x"}).to_string());
    assert!(
        contract.verify_shop_call(&changed).is_err(),
        "an extra field in a shop call"
    );
    changed.body = Bytes::from(json!({"reason": "cancelled"}).to_string());
    assert!(
        contract.verify_shop_call(&changed).is_err(),
        "a reason not listed"
    );
    let mut keyless = release.clone();
    keyless.headers.remove("idempotency-key");
    assert!(
        contract.verify_shop_call(&keyless).is_err(),
        "no Idempotency-Key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_is_documented_and_every_documented_answer_is_given() {
    let started = Instant::now();
    let contract = Contract::load();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port for the double");
    let config = klarna_double::DoubleConfig {
        limit: 100_000,
        create_limit: 100_000,
        ..klarna_double::DoubleConfig::default()
    };
    let (double, _server) = klarna_double::serve(listener, config).expect("the double");
    let (shop, shop_url) = Shop::start().await;
    let dir = std::env::temp_dir().join(format!("hpp-contract-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory");
    eprintln!("the service processes' logs: {}", dir.display());
    let sidecar = Sidecar::start(
        &dir,
        "sidecar",
        &double.base_url,
        &["--shop-url", &shop_url],
    );
    // Klarna refuses this one's credentials: its checkout is a 502.
    let refused = Sidecar::start(&dir, "refused", &double.base_url, &["--password", "wrong"]);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("a client");
    sidecar.serving(&http, &contract).await;
    refused.serving(&http, &contract).await;
    let w = World {
        contract,
        http,
        double,
        sidecar,
        shop,
    };
    assert_eq!(w.operations("/readyz").await.status, 200);
    assert_eq!(
        w.operations("/status").await.json(),
        json!({"sessions": 0, "pending_actions": 0})
    );
    let sessions = checkouts(&w).await;
    callbacks(&w, &sessions).await;
    redirects(&w, &sessions).await;
    unlisted(&w).await;
    let calls = shop_calls(&w, &sessions).await;
    let status = w.operations("/status").await;
    assert_eq!(status.json()["sessions"], 4, "{}", status.text());
    let metrics = w.operations("/metrics").await;
    assert!(
        metrics.text().contains("\nhpp_store_up 1\n"),
        "{}",
        metrics.text()
    );
    let bad_gateway = send(
        w.http
            .post(format!("{}/checkout", refused.base))
            .bearer_auth(support::CHECKOUT_TOKEN),
    )
    .await;
    w.contract.check("/checkout", "post", &bad_gateway);
    assert_eq!(bad_gateway.status, 502, "{}", bad_gateway.text());
    database_gone(&w, &sessions).await;
    validator_bites(&w, &sessions, &calls);
    let documented = w.contract.documented();
    let exercised = lock(&w.contract.exercised).clone();
    let never: Vec<&Operation> = documented.difference(&exercised).collect();
    assert!(never.is_empty(), "documented, never given: {never:?}");
    let unlisted: Vec<&Operation> = exercised.difference(&documented).collect();
    assert!(unlisted.is_empty(), "given, not documented: {unlisted:?}");
    drop(refused);
    drop(w);
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "{} documented answers, each given; {} shop calls; {:.1} s",
        documented.len(),
        calls.len(),
        started.elapsed().as_secs_f64()
    );
}

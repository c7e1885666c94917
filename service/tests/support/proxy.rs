//! One public URL in front of the service's processes, as a load balancer is: each request goes
//! to the next process in turn that passed its last health check (`GET /healthz` every 250 ms,
//! answered within 200 ms), and to the next one when a process refuses the connection. Klarna's
//! callbacks, the consumers' checkouts and redirects all come through it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

struct Backends {
    ports: Vec<u16>,
    healthy: Vec<AtomicBool>,
    next: AtomicUsize,
    http: reqwest::Client,
}

/// Starts the proxy on a free port in front of `ports`; its port.
pub async fn start(ports: Vec<u16>) -> u16 {
    let backends = Arc::new(Backends {
        healthy: ports.iter().map(|_| AtomicBool::new(true)).collect(),
        ports,
        next: AtomicUsize::new(0),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(64)
            .build()
            .expect("a client"),
    });
    tokio::spawn(health_checks(Arc::clone(&backends)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port for the proxy");
    let port = listener.local_addr().expect("an address").port();
    let app = axum::Router::new().fallback(forward).with_state(backends);
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

async fn health_checks(backends: Arc<Backends>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .expect("a client");
    loop {
        for (i, port) in backends.ports.iter().enumerate() {
            let ok = http
                .get(format!("http://127.0.0.1:{port}/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            backends.healthy[i].store(ok, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn forward(State(backends): State<Arc<Backends>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 1 << 20).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let n = backends.ports.len();
    let start = backends.next.fetch_add(1, Ordering::Relaxed);
    for k in 0..n {
        let i = (start + k) % n;
        if !backends.healthy[i].load(Ordering::Relaxed) {
            continue;
        }
        let mut call = backends.http.request(
            parts.method.clone(),
            format!("http://127.0.0.1:{}{path}", backends.ports[i]),
        );
        for (name, value) in &parts.headers {
            if name != axum::http::header::HOST {
                call = call.header(name, value);
            }
        }
        match call.body(body.clone()).send().await {
            Ok(answer) => {
                let status = answer.status();
                let mut headers = answer.headers().clone();
                headers.remove(axum::http::header::TRANSFER_ENCODING);
                headers.remove(axum::http::header::CONTENT_LENGTH);
                let bytes = answer.bytes().await.unwrap_or_default();
                let mut response = Response::new(Body::from(bytes));
                *response.status_mut() = status;
                *response.headers_mut() = headers;
                return response;
            }
            // Refused or reset before an answer: the next process.
            Err(e) if e.is_connect() => {}
            Err(_) => return StatusCode::BAD_GATEWAY.into_response(),
        }
    }
    StatusCode::SERVICE_UNAVAILABLE.into_response()
}

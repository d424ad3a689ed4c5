//! An upstream double: a real HTTP server on 127.0.0.1:0 that serves recorded OpenAI
//! (or Anthropic) bodies, can fail, stall or cut a stream, and records every request it
//! receives, with its path and query. It answers on every path, so tests assert the URL.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use futures_util::stream;
use serde_json::Value;
use tokio::sync::Notify;

/// What the double does with the next request.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// 200 with this JSON body.
    Json(Bytes),
    /// 200 `text/event-stream`: these SSE bytes, one event per write, `gap` apart; with
    /// `cut_after`, the connection breaks after that many events.
    Sse { body: Bytes, gap: Duration, cut_after: Option<usize> },
    /// This status and body (JSON).
    Status(u16, Bytes),
    /// 200 with a body and content type of the test's choosing (garbage).
    Raw { content_type: &'static str, body: Bytes },
    /// Accept the request and never answer.
    Stall,
    /// 429 with OpenAI's rate-limit envelope and `Retry-After: retry_after` (seconds).
    RateLimited { retry_after: u64 },
    /// Whatever this function picks for the request's body (a model double that knows
    /// the answers, or answers samples differently).
    Reply(Responder),
}

/// Picks the behaviour for a request body.
#[derive(Clone)]
pub struct Responder(pub Arc<dyn Fn(&Value) -> Behaviour + Send + Sync>);

impl Responder {
    pub fn new(pick: impl Fn(&Value) -> Behaviour + Send + Sync + 'static) -> Self {
        Responder(Arc::new(pick))
    }
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Responder")
    }
}

impl Behaviour {
    pub fn json(fixture_path: &str) -> Self {
        Behaviour::Json(super::fixture(fixture_path))
    }

    pub fn sse(fixture_path: &str) -> Self {
        Behaviour::Sse { body: super::fixture(fixture_path), gap: Duration::ZERO, cut_after: None }
    }

    /// The recorded 13-event stream (with usage), one event every `gap`.
    pub fn slow_stream(gap: Duration) -> Self {
        Behaviour::Sse { body: super::fixture("openai/chat_stream_usage.sse"), gap, cut_after: None }
    }

    pub fn status(code: u16, fixture_path: &str) -> Self {
        Behaviour::Status(code, super::fixture(fixture_path))
    }
}

/// One request as the double received it.
#[derive(Clone, Debug)]
pub struct Received {
    /// The path and query the request was sent to.
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Value,
    /// The body's bytes exactly as they arrived, for counting planted needles.
    pub raw: Bytes,
    /// When it arrived.
    pub at: std::time::Instant,
}

struct Shared {
    /// What every request gets, once `script` is used up.
    behaviour: Behaviour,
    /// What the next requests get, in order (see [`UpstreamDouble::then`]).
    script: Mutex<std::collections::VecDeque<Behaviour>>,
    received: Mutex<Vec<Received>>,
    /// SSE bodies dropped before their last event was sent: the client went away.
    abandoned_streams: AtomicUsize,
    abandoned: Notify,
}

pub struct UpstreamDouble {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl UpstreamDouble {
    pub async fn start(behaviour: Behaviour) -> Self {
        let shared = Arc::new(Shared {
            behaviour,
            script: Mutex::new(std::collections::VecDeque::new()),
            received: Mutex::new(Vec::new()),
            abandoned_streams: AtomicUsize::new(0),
            abandoned: Notify::new(),
        });
        let app = Router::new().route("/v1/chat/completions", post(answer)).fallback(answer).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        UpstreamDouble { addr, shared }
    }

    /// The `base_url` to put in tierwise's config.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Queues `behaviour` for the next request not yet scripted; then the default again.
    pub fn then(&self, behaviour: Behaviour) -> &Self {
        self.shared.script.lock().unwrap().push_back(behaviour);
        self
    }

    pub fn calls(&self) -> usize {
        self.shared.received.lock().unwrap().len()
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// How many of the requests this double received hold `needle` anywhere in their
    /// bytes: as written, or as JSON escapes it (`\u0040`), or in any string of the body
    /// once JSON escapes are undone.
    pub fn saw(&self, needle: &str) -> usize {
        let escaped = serde_json::to_string(needle).unwrap();
        let escaped = escaped.trim_matches('"');
        self.received()
            .iter()
            .filter(|r| {
                let raw = String::from_utf8_lossy(&r.raw);
                raw.contains(needle) || raw.contains(escaped) || r.body.to_string().contains(escaped)
            })
            .count()
    }

    /// Waits (bounded) until a stream was dropped before it finished.
    pub async fn wait_abandoned_stream(&self, within: Duration) -> bool {
        let wait = async {
            while self.shared.abandoned_streams.load(Ordering::SeqCst) == 0 {
                let notified = self.shared.abandoned.notified();
                if self.shared.abandoned_streams.load(Ordering::SeqCst) > 0 {
                    break;
                }
                notified.await;
            }
        };
        tokio::time::timeout(within, wait).await.is_ok()
    }
}

/// Counts a stream as abandoned if dropped before its last event.
struct StreamGuard {
    shared: Arc<Shared>,
    finished: bool,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.shared.abandoned_streams.fetch_add(1, Ordering::SeqCst);
            self.shared.abandoned.notify_waiters();
        }
    }
}

async fn answer(State(shared): State<Arc<Shared>>, uri: Uri, headers: HeaderMap, raw: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let request = body.clone();
    shared.received.lock().unwrap().push(Received { uri, headers, body, raw, at: std::time::Instant::now() });
    let scripted = shared.script.lock().unwrap().pop_front();
    let mut behaviour = scripted.unwrap_or_else(|| shared.behaviour.clone());
    if let Behaviour::Reply(Responder(pick)) = &behaviour {
        behaviour = pick(&request);
    }
    match behaviour {
        Behaviour::RateLimited { retry_after } => Response::builder()
            .status(StatusCode::TOO_MANY_REQUESTS)
            .header("content-type", "application/json")
            .header("retry-after", retry_after.to_string())
            .body(Body::from(
                r#"{"error":{"message":"Rate limit reached for requests","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
            ))
            .unwrap(),
        Behaviour::Json(body) => with_type(StatusCode::OK, "application/json", Body::from(body)),
        Behaviour::Reply(_) => with_type(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", Body::from("a responder picked a responder")),
        Behaviour::Status(code, body) => {
            with_type(StatusCode::from_u16(code).unwrap(), "application/json", Body::from(body))
        }
        Behaviour::Raw { content_type, body } => with_type(StatusCode::OK, content_type, Body::from(body)),
        Behaviour::Stall => {
            std::future::pending::<()>().await;
            unreachable!()
        }
        Behaviour::Sse { body, gap, cut_after } => {
            let events = split_events(&body);
            let total = events.len();
            let guard = StreamGuard { shared: shared.clone(), finished: false };
            let body =
                stream::unfold((events.into_iter(), 0usize, guard), move |(mut events, sent, mut guard)| async move {
                    if cut_after == Some(sent) {
                        // Breaking the body makes hyper abort the connection mid-stream,
                        // dropping what it has not flushed yet: let it flush first.
                        tokio::time::sleep(Duration::from_millis(30)).await;
                        guard.finished = true;
                        return Some((Err(std::io::Error::other("cut")), (events, sent, guard)));
                    }
                    let event = events.next()?;
                    if sent > 0 && !gap.is_zero() {
                        tokio::time::sleep(gap).await;
                    }
                    if sent + 1 == total {
                        guard.finished = true;
                    }
                    Some((Ok::<Bytes, std::io::Error>(event), (events, sent + 1, guard)))
                });
            with_type(StatusCode::OK, "text/event-stream", Body::from_stream(body))
        }
    }
}

fn with_type(status: StatusCode, content_type: &'static str, body: Body) -> Response {
    Response::builder().status(status).header("content-type", content_type).body(body).unwrap()
}

/// Splits SSE bytes into events, each keeping its trailing blank line.
pub fn split_events(body: &[u8]) -> Vec<Bytes> {
    let text = std::str::from_utf8(body).unwrap();
    text.split_inclusive("\n\n").map(|e| Bytes::copy_from_slice(e.as_bytes())).collect()
}

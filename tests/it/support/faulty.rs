//! A fault server: raw TCP on 127.0.0.1:0 with hand-written HTTP/1.1 answers, for the
//! upstream failures an HTTP framework would not let a double produce — a refused port, a
//! peer that never answers, bytes trickled one at a time, a reset (RST) or a clean close
//! (FIN) halfway through a body or a stream, malformed JSON and SSE, a 10 MiB line, the
//! wrong content type, 429 storms, 500s. Every answer says `connection: close` and the
//! socket is closed after it, so no connection outlives its request (the no-leak checks
//! count tasks). It counts connections and requests, and it notices when the peer (tierwise)
//! closes a connection before the fault's script is done.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Bytes of the SSE fixture the stream faults start from.
pub const STREAM_FIXTURE: &str = "openai/chat_stream_usage.sse";
pub const JSON_FIXTURE: &str = "openai/chat_completion.json";

/// One step of what the server does on a connection, once it has read the request.
#[derive(Clone, Debug)]
pub enum Act {
    /// Write these bytes at once.
    Send(Bytes),
    /// Write these bytes one at a time, `every` apart.
    Trickle {
        bytes: Bytes,
        every: Duration,
    },
    Pause(Duration),
    /// Abort the connection: SO_LINGER 0, then close, so the peer gets an RST.
    Reset,
    /// Keep the connection open, saying nothing, until the peer closes it.
    Hold,
    /// Keep the connection for another request, read that request, then close (FIN)
    /// without answering: a keep-alive connection the server dropped as it was reused.
    DropNext,
}

/// The request as the fault server read it.
#[derive(Clone, Debug)]
pub struct Request {
    pub body: Value,
}

impl Request {
    pub fn stream(&self) -> bool {
        self.body["stream"] == true
    }
}

type Script = Arc<dyn Fn(&Request) -> Vec<Act> + Send + Sync>;

/// What the server does with every request. After the script the connection is closed
/// cleanly (FIN), unless the script reset it or holds it.
#[derive(Clone)]
pub struct Fault {
    /// `None`: nothing listens (connections are refused).
    script: Option<Script>,
}

impl Fault {
    fn new(script: impl Fn(&Request) -> Vec<Act> + Send + Sync + 'static) -> Self {
        Fault { script: Some(Arc::new(script)) }
    }

    /// A dead port: the address was bound, then released; connecting is refused.
    pub fn refuse() -> Self {
        Fault { script: None }
    }

    /// Accepts and reads the request, then never answers.
    pub fn hang() -> Self {
        Fault::new(|_| vec![Act::Hold])
    }

    /// A well-behaved upstream: the recorded completion, or the recorded stream.
    pub fn healthy() -> Self {
        Fault::new(|r| vec![Act::Send(healthy_response(r.stream()))])
    }

    /// The first request gets the recorded completion on a kept-alive connection, which
    /// is closed unanswered when the next request arrives on it; every later connection
    /// is healthy. What a pooled client sees when the server timed out an idle
    /// connection just as the client reused it.
    pub fn stale_keep_alive() -> Self {
        let first = std::sync::atomic::AtomicBool::new(true);
        Fault::new(move |r| {
            if first.swap(false, Ordering::SeqCst) {
                let kept =
                    String::from_utf8(healthy_response(false).to_vec()).unwrap().replace("connection: close\r\n", "");
                vec![Act::Send(Bytes::from(kept)), Act::DropNext]
            } else {
                vec![Act::Send(healthy_response(r.stream()))]
            }
        })
    }

    /// The healthy response, status line included, one byte per `every`.
    pub fn trickle(every: Duration) -> Self {
        Fault::new(move |r| vec![Act::Trickle { bytes: healthy_response(r.stream()), every }])
    }

    /// The head at once, then the body (or the stream) one byte per `every`.
    pub fn trickle_body(every: Duration) -> Self {
        Fault::new(move |r| {
            let (head, body) = split_head(&healthy_response(r.stream()));
            vec![Act::Send(head), Act::Trickle { bytes: body, every }]
        })
    }

    /// Half of the JSON body (its `content-length` promises all of it), or half of the
    /// first SSE event; then `end` — [`Act::Reset`] for an RST, `None` for a clean close.
    pub fn break_mid_body(end: Option<Act>) -> Self {
        Fault::new(move |r| {
            let (head, body) = split_head(&healthy_response(r.stream()));
            let half =
                if r.stream() { chunk(&super::fixture(STREAM_FIXTURE)[..100]) } else { body.slice(..body.len() / 2) };
            let mut acts = vec![Act::Send(head), Act::Send(half), Act::Pause(Duration::from_millis(50))];
            acts.extend(end.clone());
            acts
        })
    }

    /// The recorded stream's first `events` events, then an RST.
    pub fn reset_mid_stream(events: usize) -> Self {
        Fault::new(move |_| {
            let mut acts = vec![Act::Send(sse_head())];
            acts.extend(fixture_events().into_iter().take(events).map(|e| Act::Send(chunk(&e))));
            // Let the peer read the events before the RST discards what it has not.
            acts.extend([Act::Pause(Duration::from_millis(50)), Act::Reset]);
            acts
        })
    }

    /// The recorded stream, `gap` between events: long enough to hang up in the middle.
    pub fn slow_stream(gap: Duration) -> Self {
        Fault::new(move |_| {
            let mut acts = vec![Act::Send(sse_head())];
            for event in fixture_events() {
                acts.extend([Act::Send(chunk(&event)), Act::Pause(gap)]);
            }
            acts.push(Act::Send(Bytes::from_static(b"0\r\n\r\n")));
            acts
        })
    }

    /// 200 `application/json` whose body is cut off mid-object (but complete per its
    /// `content-length`).
    pub fn malformed_json() -> Self {
        let body = super::fixture(JSON_FIXTURE).slice(..120);
        Fault::new(move |_| vec![Act::Send(response(200, "application/json", &[], &body))])
    }

    /// 200 `text/event-stream`: `good` events of the recorded stream, then an event of
    /// garbage — a line that is no SSE field, an unknown event type, data that is not
    /// JSON — then the rest of the stream.
    pub fn malformed_sse(good: usize) -> Self {
        Fault::new(move |_| {
            let events = fixture_events();
            let garbage =
                Bytes::from_static(b"this line is no SSE field\nevent: nonsense\ndata: {\"id\": oops not json}\n\n");
            let mut acts = vec![Act::Send(sse_head())];
            acts.extend(events[..good].iter().map(|e| Act::Send(chunk(e))));
            acts.push(Act::Send(chunk(&garbage)));
            acts.extend(events[good..].iter().map(|e| Act::Send(chunk(e))));
            acts.push(Act::Send(Bytes::from_static(b"0\r\n\r\n")));
            acts
        })
    }

    /// A 10 MiB single line with no newline: JSON that never parses, or an SSE `data:`
    /// line that never ends.
    pub fn huge_line() -> Self {
        Fault::new(|r| {
            let mut line = vec![b'x'; 10 * 1024 * 1024];
            if r.stream() {
                line[..6].copy_from_slice(b"data: ");
                vec![Act::Send(sse_head()), Act::Send(chunk(&line)), Act::Send(Bytes::from_static(b"0\r\n\r\n"))]
            } else {
                line[0] = b'{';
                vec![Act::Send(response(200, "application/json", &[], &line))]
            }
        })
    }

    /// A valid completion whose content is one 10 MiB line.
    pub fn huge_completion() -> Self {
        Fault::new(|_| {
            let mut completion: Value = serde_json::from_slice(&super::fixture(JSON_FIXTURE)).unwrap();
            completion["choices"][0]["message"]["content"] = Value::String("y".repeat(10 * 1024 * 1024));
            vec![Act::Send(response(200, "application/json", &[], completion.to_string().as_bytes()))]
        })
    }

    /// 200 `text/html` with an HTML page (a captive portal, a misrouted proxy), whatever
    /// was asked for.
    pub fn html() -> Self {
        let page = b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>\n";
        Fault::new(move |_| vec![Act::Send(response(200, "text/html; charset=utf-8", &[], page))])
    }

    /// This status, extra headers and body (JSON).
    pub fn status(code: u16, headers: &[(&str, &str)], body: Bytes) -> Self {
        let headers: Vec<(String, String)> = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Fault::new(move |_| {
            let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            vec![Act::Send(response(code, "application/json", &headers, &body))]
        })
    }

    /// OpenAI's 429 (its documented `rate_limit_exceeded` error) with `Retry-After`.
    pub fn rate_limited(retry_after_secs: u32) -> Self {
        let body = r#"{"error":{"message":"Rate limit reached for gpt-4o-mini in organization org-test on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s.","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
        Fault::status(429, &[("retry-after", &retry_after_secs.to_string())], Bytes::from_static(body.as_bytes()))
    }

    /// The recorded OpenAI 500.
    pub fn server_error() -> Self {
        Fault::status(500, &[], super::fixture("openai/error_500_server.json"))
    }
}

/// A complete `connection: close` response with a `content-length`.
pub fn response(status: u16, content_type: &str, headers: &[(&str, &str)], body: &[u8]) -> Bytes {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n",
        reason(status),
        body.len()
    );
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    Bytes::from(out)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        _ => "Whatever",
    }
}

/// The head of a chunked SSE response.
fn sse_head() -> Bytes {
    Bytes::from_static(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\
          transfer-encoding: chunked\r\nconnection: close\r\n\r\n",
    )
}

/// `bytes` as one HTTP/1.1 chunk.
fn chunk(bytes: &[u8]) -> Bytes {
    let mut out = format!("{:x}\r\n", bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
    Bytes::from(out)
}

/// The recorded stream's events, each with its blank line.
pub fn fixture_events() -> Vec<Bytes> {
    super::upstream::split_events(&super::fixture(STREAM_FIXTURE))
}

/// The recorded completion (JSON) or the recorded stream (chunked SSE, an event a chunk).
fn healthy_response(stream: bool) -> Bytes {
    if !stream {
        return response(200, "application/json", &[], &super::fixture(JSON_FIXTURE));
    }
    let mut out = sse_head().to_vec();
    for event in fixture_events() {
        out.extend_from_slice(&chunk(&event));
    }
    out.extend_from_slice(b"0\r\n\r\n");
    Bytes::from(out)
}

/// `(head, body)` of a response.
fn split_head(response: &Bytes) -> (Bytes, Bytes) {
    let end = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    (response.slice(..end), response.slice(end..))
}

#[derive(Default)]
struct Counters {
    connections: AtomicUsize,
    requests: AtomicUsize,
    /// Connections the peer closed (EOF, RST, a failed write) before the script was done.
    peer_closed: AtomicUsize,
    received: Mutex<Vec<Value>>,
}

/// A fault server on 127.0.0.1:0 (or a dead port, for [`Fault::refuse`]).
pub struct FaultServer {
    pub addr: SocketAddr,
    counters: Arc<Counters>,
    accept: Option<JoinHandle<()>>,
}

impl FaultServer {
    pub async fn start(fault: Fault) -> Self {
        let counters = Arc::new(Counters::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let Some(script) = fault.script else {
            drop(listener);
            return FaultServer { addr, counters, accept: None };
        };
        let shared = counters.clone();
        let accept = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                shared.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(socket, script.clone(), shared.clone()));
            }
        });
        FaultServer { addr, counters, accept: Some(accept) }
    }

    /// The `base_url` to put in tierwise's config.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn connections(&self) -> usize {
        self.counters.connections.load(Ordering::SeqCst)
    }

    /// Requests read in full.
    pub fn requests(&self) -> usize {
        self.counters.requests.load(Ordering::SeqCst)
    }

    /// Connections the peer closed before the fault's script was done.
    pub fn peer_closed(&self) -> usize {
        self.counters.peer_closed.load(Ordering::SeqCst)
    }

    /// The JSON bodies received, in order.
    pub fn received(&self) -> Vec<Value> {
        self.counters.received.lock().unwrap().clone()
    }

    /// Waits (polling, bounded by `within`) until `requests() >= n`.
    pub async fn wait_requests(&self, n: usize, within: Duration) -> bool {
        wait_for(within, || self.requests() >= n).await
    }

    /// Waits (bounded) until the peer has closed `n` connections early.
    pub async fn wait_peer_closed(&self, n: usize, within: Duration) -> bool {
        wait_for(within, || self.peer_closed() >= n).await
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
    }
}

async fn wait_for(within: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let poll = async {
        while !ready() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(within, poll).await.is_ok()
}

/// How a connection's script ended.
enum End {
    Close,
    Reset,
    /// The peer closed it (EOF or RST while we waited or wrote).
    PeerClosed,
    /// Read one more request on the connection, then close it.
    DropNext,
}

async fn serve(socket: TcpStream, script: Script, counters: Arc<Counters>) {
    let _ = socket.set_nodelay(true);
    let (mut reader, mut writer) = socket.into_split();
    let end = match read_request(&mut reader).await {
        Some(request) => {
            counters.requests.fetch_add(1, Ordering::SeqCst);
            counters.received.lock().unwrap().push(request.body.clone());
            let acts = script(&request);
            tokio::select! {
                end = play(&mut writer, &acts) => end,
                () = peer_gone(&mut reader) => End::PeerClosed,
            }
        }
        None => End::Close,
    };
    match end {
        End::Close => {
            let _ = writer.shutdown().await;
        }
        End::DropNext => {
            if let Some(request) = read_request(&mut reader).await {
                counters.requests.fetch_add(1, Ordering::SeqCst);
                counters.received.lock().unwrap().push(request.body);
            }
            let _ = writer.shutdown().await;
        }
        End::Reset => {
            if let Ok(socket) = reader.reunite(writer) {
                // SO_LINGER 0 makes the close an abort: the kernel sends an RST at once
                // (the deprecation is about a non-zero linger blocking the thread).
                #[expect(
                    deprecated,
                    reason = "SO_LINGER 0 makes close() an abort at once: the deprecation is about blocking"
                )]
                let _ = socket.set_linger(Some(Duration::ZERO));
            }
        }
        End::PeerClosed => {
            counters.peer_closed.fetch_add(1, Ordering::SeqCst);
        }
    }
}

async fn play(writer: &mut OwnedWriteHalf, acts: &[Act]) -> End {
    for act in acts {
        let written = match act {
            Act::Send(bytes) => writer.write_all(bytes).await,
            Act::Trickle { bytes, every } => {
                let mut result = Ok(());
                for (i, byte) in bytes.iter().enumerate() {
                    if i > 0 {
                        tokio::time::sleep(*every).await;
                    }
                    result = writer.write_all(&[*byte]).await;
                    if result.is_err() {
                        break;
                    }
                }
                result
            }
            Act::Pause(pause) => {
                tokio::time::sleep(*pause).await;
                Ok(())
            }
            Act::Reset => return End::Reset,
            Act::Hold => std::future::pending().await,
            Act::DropNext => return End::DropNext,
        };
        if written.is_err() {
            return End::PeerClosed;
        }
    }
    End::Close
}

/// Resolves when the peer closes its side (EOF) or resets the connection.
async fn peer_gone(reader: &mut OwnedReadHalf) {
    let mut buf = [0u8; 1024];
    while let Ok(n) = reader.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}

/// Reads one request: the head, then a `content-length` body (all tierwise sends).
/// `None` if the peer closes first or sends something unreadable.
async fn read_request(reader: &mut OwnedReadHalf) -> Option<Request> {
    const MAX: usize = 16 * 1024 * 1024;
    let mut buf = Vec::with_capacity(4096);
    let mut tmp = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = reader.read(&mut tmp).await.ok().filter(|&n| n > 0)?;
        buf.extend_from_slice(&tmp[..n]);
        if buf.len() > MAX {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
        .min(MAX);
    while buf.len() < head_end + length {
        let n = reader.read(&mut tmp).await.ok().filter(|&n| n > 0)?;
        buf.extend_from_slice(&tmp[..n]);
    }
    let body = serde_json::from_slice(&buf[head_end..head_end + length]).unwrap_or(Value::Null);
    Some(Request { body })
}

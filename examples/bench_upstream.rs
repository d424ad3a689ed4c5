//! An upstream double for load benchmarks (`bench/run.sh`): serves
//! `POST /v1/chat/completions` with a fixed delay and a fixed body, like a very fast model.
//!
//! - non-streaming: sleeps `--delay-ms`, then returns `tests/fixtures/openai/chat_completion.json`;
//! - streaming (request body has `"stream": true`): `text/event-stream`, the first of
//!   `--chunks` `chat.completion.chunk` events after `--delay-ms`, the next ones
//!   `--chunk-gap-ms` apart, then `data: [DONE]`.
//!
//! Connections get TCP_NODELAY, as model servers set it; `--nagle` leaves Nagle's algorithm on.
//!
//! Prints `listening on ADDR` as its first stdout line. Not a test double for correctness:
//! it ignores the request except for the stream flag.
//!
//! ```text
//! cargo run --release --example bench_upstream -- --listen 127.0.0.1:0 --delay-ms 20
//! ```

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::HeaderValue;
use axum::response::Response;
use axum::routing::post;
use axum::serve::ListenerExt;
use axum::Router;
use futures_util::stream;

const COMPLETION: &[u8] = include_bytes!("../tests/fixtures/openai/chat_completion.json");

const USAGE: &str = "usage: bench_upstream [--listen ADDR] [--delay-ms N] [--chunks N] [--chunk-gap-ms N] [--nagle]
  --listen ADDR       address to bind (default 127.0.0.1:0; the bound address is printed)
  --delay-ms N        delay before the JSON reply or the first stream chunk (default 20)
  --chunks N          stream chunks before [DONE] (default 20)
  --chunk-gap-ms N    gap between stream chunks (default 1)
  --nagle             leave Nagle's algorithm on (no TCP_NODELAY), to see what it costs streams";

struct Options {
    listen: SocketAddr,
    delay: Duration,
    chunks: usize,
    chunk_gap: Duration,
    nodelay: bool,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        delay: Duration::from_millis(20),
        chunks: 20,
        chunk_gap: Duration::from_millis(1),
        nodelay: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        if flag == "--nagle" {
            options.nodelay = false;
            continue;
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--listen" => options.listen = value.parse().map_err(|e| bad(&e))?,
            "--delay-ms" => options.delay = Duration::from_millis(value.parse().map_err(|e| bad(&e))?),
            "--chunks" => options.chunks = value.parse().map_err(|e| bad(&e))?,
            "--chunk-gap-ms" => options.chunk_gap = Duration::from_millis(value.parse().map_err(|e| bad(&e))?),
            _ => return Err(format!("unknown argument {flag}\n{USAGE}")),
        }
    }
    Ok(options)
}

struct Upstream {
    delay: Duration,
    chunk_gap: Duration,
    /// The whole event stream, pre-rendered: one `data: ...\n\n` event per chunk, then `[DONE]`.
    events: Vec<Bytes>,
}

fn render_events(chunks: usize) -> Vec<Bytes> {
    let mut events = Vec::with_capacity(chunks + 1);
    for i in 0..chunks {
        let delta = if i == 0 {
            r#"{"role":"assistant","content":""}"#.to_string()
        } else {
            format!(r#"{{"content":"w{i} "}}"#)
        };
        let finish = if i + 1 == chunks { r#""stop""# } else { "null" };
        events.push(Bytes::from(format!(
            "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\
             \"model\":\"bench\",\"system_fingerprint\":\"fp_bench\",\"choices\":[{{\"index\":0,\"delta\":{delta},\
             \"logprobs\":null,\"finish_reason\":{finish}}}]}}\n\n"
        )));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    events
}

/// True when the JSON body sets `"stream"` to `true` (a byte scan, not a parse).
fn wants_stream(body: &[u8]) -> bool {
    const KEY: &[u8] = b"\"stream\"";
    let mut rest = body;
    while let Some(at) = rest.windows(KEY.len()).position(|w| w == KEY) {
        rest = &rest[at + KEY.len()..];
        let after = rest.iter().position(|b| !b.is_ascii_whitespace()).map_or(&[][..], |i| &rest[i..]);
        if let Some(value) = after.strip_prefix(b":") {
            let value = value.iter().position(|b| !b.is_ascii_whitespace()).map_or(&[][..], |i| &value[i..]);
            return value.starts_with(b"true");
        }
    }
    false
}

async fn chat_completions(State(upstream): State<Arc<Upstream>>, body: Bytes) -> Response {
    tokio::time::sleep(upstream.delay).await;
    if !wants_stream(&body) {
        let mut response = Response::new(Body::from(Bytes::from_static(COMPLETION)));
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        return response;
    }
    // The first chunk goes out at once (the delay is already spent), then one per gap. Each is
    // due at `start + i * gap` (not `gap` after the previous one), so the timer's rounding up to
    // whole milliseconds does not add up over the stream.
    let start = tokio::time::Instant::now();
    let events = stream::unfold((upstream, 0u32), move |(upstream, i)| async move {
        let event = upstream.events.get(i as usize)?.clone();
        if i > 0 {
            tokio::time::sleep_until(start + upstream.chunk_gap * i).await;
        }
        Some((Ok::<_, std::convert::Infallible>(event), (upstream, i + 1)))
    });
    let mut response = Response::new(Body::from_stream(events));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> std::process::ExitCode {
    let options = match parse_args() {
        Ok(options) => options,
        Err(err) => {
            eprintln!("bench_upstream: {err}");
            return std::process::ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(options.listen).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("bench_upstream: cannot listen on {}: {err}", options.listen);
            return std::process::ExitCode::FAILURE;
        }
    };
    let bound = listener.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| options.listen.to_string());
    let mut stdout = std::io::stdout();
    // A closed stdout is no reason to stop serving.
    let _ = writeln!(stdout, "listening on {bound}").and_then(|()| stdout.flush());

    let state = Arc::new(Upstream {
        delay: options.delay,
        chunk_gap: options.chunk_gap,
        events: render_events(options.chunks),
    });
    let app = Router::new().route("/v1/chat/completions", post(chat_completions)).with_state(state);
    // Like a real model server: small SSE events leave at once instead of waiting on Nagle.
    let nodelay = options.nodelay;
    let listener = listener.tap_io(move |tcp| {
        let _ = tcp.set_nodelay(nodelay);
    });
    match axum::serve(listener, app).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench_upstream: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_flag_is_found_with_or_without_spaces() {
        assert!(wants_stream(br#"{"model":"chat","stream":true}"#));
        assert!(wants_stream(br#"{"stream" : true, "model":"chat"}"#));
        assert!(!wants_stream(br#"{"model":"chat","stream":false}"#));
        assert!(!wants_stream(br#"{"model":"chat"}"#));
        assert!(!wants_stream(br#"{"content":"say \"stream\" twice"}"#));
    }

    #[test]
    fn events_end_with_done_and_parse_as_json() {
        let events = render_events(3);
        assert_eq!(events.len(), 4);
        assert_eq!(&events[3][..], b"data: [DONE]\n\n");
        for event in &events[..3] {
            let text = std::str::from_utf8(event).unwrap();
            let json = text.strip_prefix("data: ").unwrap().trim_end();
            let value: serde_json::Value = serde_json::from_str(json).unwrap();
            assert_eq!(value["object"], "chat.completion.chunk");
        }
        assert!(std::str::from_utf8(&events[2]).unwrap().contains(r#""finish_reason":"stop""#));
    }
}

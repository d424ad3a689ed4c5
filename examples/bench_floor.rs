//! The floor for load benchmarks (`bench/run.py`, `BENCH_FLOOR=1`): a bare forwarder on
//! tierwise's own stack — axum in, reqwest out, the body passed through as bytes —
//! that does nothing else. Whatever tierwise costs above it is tierwise's own work
//! (parsing, policy, the trail, metrics, the record).
//!
//! `POST /v1/chat/completions` goes to `--upstream`'s same path, the answer (JSON or a
//! stream) comes back as it is, chunk by chunk. Prints `listening on ADDR` first.
//!
//! ```text
//! cargo run --release --example bench_floor -- --listen 127.0.0.1:0 --upstream http://127.0.0.1:8080
//! ```

use std::io::Write;
use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::serve::ListenerExt;
use axum::Router;
use futures_util::TryStreamExt;

const USAGE: &str = "usage: bench_floor --upstream URL [--listen ADDR]";

#[derive(Clone)]
struct Forward {
    client: reqwest::Client,
    url: String,
}

async fn forward(State(to): State<Forward>, headers: HeaderMap, body: Bytes) -> Response {
    let mut request = to.client.post(&to.url).body(body);
    if let Some(kind) = headers.get(CONTENT_TYPE) {
        request = request.header(CONTENT_TYPE, kind);
    }
    match request.send().await {
        Ok(answer) => {
            let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let kind = answer.headers().get(CONTENT_TYPE).cloned();
            let mut response = Response::new(Body::from_stream(answer.bytes_stream().map_err(std::io::Error::other)));
            *response.status_mut() = status;
            if let Some(kind) = kind {
                response.headers_mut().insert(CONTENT_TYPE, kind);
            }
            response
        }
        Err(_) => {
            let mut response = Response::new(Body::from("upstream unreachable"));
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            response
        }
    }
}

fn parse_args() -> Result<(SocketAddr, String), String> {
    let (mut listen, mut upstream) = (SocketAddr::from(([127, 0, 0, 1], 0)), None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--listen" => listen = value.parse().map_err(|e| format!("--listen {value}: {e}"))?,
            "--upstream" => upstream = Some(value.trim_end_matches('/').to_string()),
            _ => return Err(format!("unknown argument {flag}\n{USAGE}")),
        }
    }
    Ok((listen, upstream.ok_or_else(|| USAGE.to_string())?))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (listen, upstream) = parse_args()?;
    tierwise::upstream::install_crypto_provider();
    let client = reqwest::Client::builder().no_proxy().tcp_nodelay(true).build()?;
    let state = Forward { client, url: format!("{upstream}/v1/chat/completions") };
    let app = Router::new().route("/v1/chat/completions", post(forward)).with_state(state);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening on {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await?;
    Ok(())
}

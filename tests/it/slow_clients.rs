//! Slow and hostile clients on raw sockets: a head sent too slowly, an idle keep-alive
//! connection, a head too large, a body sent too slowly. Each is cut off in bounded time,
//! with an OpenAI error where HTTP allows one, and tierwise keeps serving.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

const LIMITS: &str = "[server]\nheader_read_timeout_ms = 300\nbody_read_timeout_ms = 300\nmax_header_bytes = 16384\n";

async fn app() -> (UpstreamDouble, TestApp) {
    let up = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let app = TestApp::start(&config_for(&[("local", "local", &up.base_url())], &[], LIMITS)).await;
    (up, app)
}

/// Reads until the server closes the connection (at most 5 s); what it sent, and when.
async fn until_closed(socket: &mut TcpStream) -> (String, Duration) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf)).await {
            Err(_) => panic!("the connection was still open after 5 s; got {:?}", String::from_utf8_lossy(&got)),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), started.elapsed())
}

async fn still_serves(app: &TestApp) {
    assert_eq!(app.chat(chat_body("local-model")).await.status(), 200, "tierwise keeps serving");
}

#[tokio::test]
async fn a_head_sent_too_slowly_is_cut_off_at_the_header_read_timeout() {
    let (_up, app) = app().await;
    let mut socket = TcpStream::connect(app.addr).await.unwrap();
    socket.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    // One more header line, slowly: still inside the head after the timeout.
    tokio::time::sleep(Duration::from_millis(100)).await;
    socket.write_all(b"X-Slow: 1\r\n").await.unwrap();
    let (got, after) = until_closed(&mut socket).await;
    assert!(!got.contains("200 OK"), "{got}");
    assert!(after >= Duration::from_millis(150), "closed after {after:?}, before the timeout");
    still_serves(&app).await;
}

#[tokio::test]
async fn an_idle_connection_is_closed_at_the_header_read_timeout() {
    let (_up, app) = app().await;
    let mut socket = TcpStream::connect(app.addr).await.unwrap();
    let (got, after) = until_closed(&mut socket).await;
    assert_eq!(got, "", "nothing was asked, nothing is answered");
    assert!(after >= Duration::from_millis(250), "closed after {after:?}");
    // And after a request, the kept-alive connection is closed the same way.
    let mut socket = TcpStream::connect(app.addr).await.unwrap();
    socket.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let (got, _) = until_closed(&mut socket).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    still_serves(&app).await;
}

#[tokio::test]
async fn a_head_larger_than_max_header_bytes_gets_431() {
    let (up, app) = app().await;
    let big = "a".repeat(20_000);
    let response = client()
        .post(app.url("/v1/chat/completions"))
        .header("x-padding", big)
        .json(&chat_body("local-model"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 431);
    assert_eq!(up.calls(), 0);
    still_serves(&app).await;
}

#[tokio::test]
async fn a_body_sent_too_slowly_gets_408_in_the_openai_envelope() {
    let (up, app) = app().await;
    let mut socket = TcpStream::connect(app.addr).await.unwrap();
    let head = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n";
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(b"{\"model\": \"local-").await.unwrap();
    let (got, after) = until_closed(&mut socket).await;
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(after >= Duration::from_millis(250), "answered after {after:?}");
    let body = got.split("\r\n\r\n").nth(1).unwrap_or_default();
    let error: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {got}"));
    assert_eq!(error["error"]["code"], "request_body_timeout");
    assert!(error["error"]["message"].as_str().unwrap().contains("server.body_read_timeout_ms"), "{error}");
    assert_eq!(up.calls(), 0);
    still_serves(&app).await;
}

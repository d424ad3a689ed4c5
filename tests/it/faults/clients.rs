//! Clients that leave at every stage — while tierwise waits for the upstream's headers,
//! during a JSON body, mid-stream, while a verified stream is buffered: tierwise closes the
//! upstream connection promptly, goes on to no further step, and still writes the
//! request's audit line.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};

use super::*;

#[tokio::test]
async fn a_client_leaving_while_tierwise_waits_for_upstream_headers_closes_the_upstream() {
    bounded(async {
        let rig = Rig::start(Fault::hang(), "first_byte_timeout_ms = 30000\n", "").await;
        let good_before = rig.good.requests();
        for (n, (model, stream)) in [("bad-model", false), ("chain", true)].into_iter().enumerate() {
            let send = fresh_client().post(rig.app.url("/v1/chat/completions")).json(&request(model, stream)).send();
            let pending = tokio::spawn(send);
            assert!(rig.bad.wait_requests(n + 1, PROMPTLY).await);
            pending.abort();
            assert!(rig.bad.wait_peer_closed(n + 1, PROMPTLY).await, "the upstream call outlived its client");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(rig.good.requests(), good_before, "a request nobody waits for went on to the next step");
        rig.assert_settled().await;
    })
    .await;
}

#[tokio::test]
async fn a_client_leaving_during_a_json_body_closes_the_upstream() {
    bounded(async {
        let keys = "first_byte_timeout_ms = 2000\ntimeout_ms = 60000\n";
        let rig = Rig::start(Fault::trickle_body(Duration::from_millis(50)), keys, "").await;
        let send = fresh_client().post(rig.app.url("/v1/chat/completions")).json(&request("bad-model", false)).send();
        let pending = tokio::spawn(send);
        assert!(rig.bad.wait_requests(1, PROMPTLY).await);
        // tierwise has the head and is reading the trickled body.
        tokio::time::sleep(Duration::from_millis(300)).await;
        pending.abort();
        assert!(rig.bad.wait_peer_closed(1, PROMPTLY).await, "tierwise kept reading a body nobody waits for");
        rig.assert_settled().await;
    })
    .await;
}

#[tokio::test]
async fn a_client_leaving_mid_stream_closes_the_upstream() {
    bounded(async {
        let rig = Rig::start(Fault::slow_stream(Duration::from_millis(200)), DEFAULT_KEYS, "").await;
        let response = rig.post("bad-model", true).await;
        assert_eq!(response.status(), 200);
        let mut body = response.bytes_stream();
        let first = body.next().await.unwrap().unwrap();
        assert!(first.starts_with(b"data: {"), "{first:?}");
        drop(body);
        assert!(rig.bad.wait_peer_closed(1, PROMPTLY).await, "the upstream still streams after the client left");
        rig.assert_settled().await;
    })
    .await;
}

#[tokio::test]
async fn a_client_leaving_while_a_verified_stream_is_buffered_closes_the_upstream() {
    bounded(async {
        let extra = "[server]\nsse_keepalive_ms = 100\n";
        let rig = Rig::start(Fault::slow_stream(Duration::from_millis(200)), DEFAULT_KEYS, extra).await;
        let good_before = rig.good.requests();
        let response = rig.post("verified", true).await;
        assert_eq!(response.status(), 200);
        let mut body = response.bytes_stream();
        let first = body.next().await.unwrap().unwrap();
        assert_eq!(&first[..], b": keep-alive\n\n", "the buffered answer must not reach the client");
        drop(body);
        assert!(rig.bad.wait_peer_closed(1, PROMPTLY).await, "the buffered upstream stream outlived its client");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(rig.good.requests(), good_before, "a request nobody waits for went on to the next step");
        rig.assert_settled().await;
    })
    .await;
}

/// The audit lines of `path` once `n` are there (the writer is a thread: bounded polling).
async fn audit_lines(path: &std::path::Path, n: usize) -> Vec<Value> {
    let mut lines = Vec::new();
    for _ in 0..200 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        lines = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        if lines.len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    lines
}

/// DESIGN §9: one audit line per request — also for one whose response was abandoned:
/// cut by `server.request_timeout_ms` (the client got a 504), or by a client that left
/// while tierwise waited on the upstream, or while a verified stream was buffered.
#[tokio::test]
async fn a_request_abandoned_before_its_answer_still_gets_an_audit_line() {
    bounded(async {
        let dir = std::env::temp_dir().join(format!("tierwise-it-faults-audit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        let extra = format!(
            "[server]\nrequest_timeout_ms = 400\nsse_keepalive_ms = 100\n[audit]\npath = \"{}\"\n",
            path.display()
        );
        let rig = Rig::start(Fault::hang(), "first_byte_timeout_ms = 30000\n", &extra).await;
        let url = rig.app.url("/v1/chat/completions");
        let send = |id: &str, model: &str, stream: bool| {
            fresh_client().post(&url).header("x-request-id", id).json(&request(model, stream)).send()
        };
        // The request deadline passes while the upstream says nothing: 504 to the client.
        let body = expect_error(send("timed-out", "bad-model", false).await.unwrap(), 504, "request_timeout").await;
        assert!(message(&body).contains("400 ms"), "{body}");
        // The client leaves while tierwise waits for the upstream's headers.
        let pending = tokio::spawn(send("client-left", "chain", false));
        assert!(rig.bad.wait_requests(2, PROMPTLY).await);
        pending.abort();
        // The client leaves while a verified stream is buffered (after the keep-alives began).
        let response = send("left-while-buffered", "verified", true).await.unwrap();
        let mut stream = response.bytes_stream();
        assert_eq!(&stream.next().await.unwrap().unwrap()[..], b": keep-alive\n\n");
        drop(stream);
        assert!(rig.bad.wait_peer_closed(3, PROMPTLY).await);

        let lines = audit_lines(&path, 5).await;
        let find = |id: &str| lines.iter().find(|l| l["id"] == id).unwrap_or_else(|| panic!("no audit line for {id}"));
        let timed_out = find("timed-out");
        assert_eq!((timed_out["status"].clone(), timed_out["error"].clone()), (json!(504), json!("request_timeout")));
        assert_eq!(timed_out["task"], "bad-model");
        assert_eq!(timed_out["plan"][0]["model"], "bad-model");
        for id in ["client-left", "left-while-buffered"] {
            let line = find(id);
            assert_eq!(line["outcome"], "abandoned", "{line}");
            assert_eq!(line["error"], "client_gone", "{line}");
        }
        // Each line names the call the request was waiting on when it was dropped.
        for id in ["timed-out", "client-left", "left-while-buffered"] {
            let line = find(id);
            let attempts = line["attempts"].as_array().unwrap();
            assert_eq!(attempts.len(), 1, "{line}");
            assert_eq!(attempts[0]["verdict"], "abandoned", "{line}");
            assert_eq!(attempts[0]["model"], "bad-model", "{line}");
        }
        assert_eq!(find("left-while-buffered")["stream"], true);
        rig.assert_settled().await;
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

/// A request dropped after one step failed: its audit line has that attempt, then the
/// one it was waiting on — and the failed one stays out of any other request's line.
#[tokio::test]
async fn an_abandoned_request_keeps_the_attempts_it_made_in_its_audit_line() {
    bounded(async {
        let failing = UpstreamDouble::start(Behaviour::status(500, "openai/error_500_server.json")).await;
        let hanging = UpstreamDouble::start(Behaviour::Stall).await;
        let dir = std::env::temp_dir().join(format!("tierwise-it-faults-progress-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        let toml = config_for(
            &[("first", "local", &failing.base_url()), ("second", "server", &hanging.base_url())],
            &[("chain", &["first-model", "second-model"])],
            &format!("[audit]\npath = \"{}\"\n", path.display()),
        )
        .replace("[upstreams.second]\n", "[upstreams.second]\nretries = 0\n");
        let app = TestApp::start(&toml).await;
        let send = fresh_client()
            .post(app.url("/v1/chat/completions"))
            .header("x-request-id", "left-on-second")
            .json(&request("chain", false))
            .send();
        let pending = tokio::spawn(send);
        for _ in 0..200 {
            if hanging.calls() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!((failing.calls(), hanging.calls()), (1, 1));
        pending.abort();
        let lines = audit_lines(&path, 1).await;
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line = &lines[0];
        assert_eq!(line["id"], "left-on-second");
        assert_eq!(line["outcome"], "abandoned");
        let attempts = line["attempts"].as_array().unwrap();
        let summary: Vec<(Value, Value)> =
            attempts.iter().map(|a| (a["model"].clone(), a["verdict"].clone())).collect();
        assert_eq!(
            summary,
            vec![(json!("first-model"), json!("error")), (json!("second-model"), json!("abandoned"))],
            "{line}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

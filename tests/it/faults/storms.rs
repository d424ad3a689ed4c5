//! Storms and a hanging judge: 429s (Retry-After passed on, or the next step answers),
//! 500s (502 naming the upstream's message, or the next step answers), and a judge that
//! never answers (the step escalates with a verifier error).

use serde_json::Value;

use super::*;

/// Fires `n` requests at once and returns the responses' statuses, `Retry-After` headers
/// and bodies.
async fn storm(rig: &Rig, model: &str, stream: bool, n: usize) -> Vec<(u16, Option<String>, String)> {
    let requests = (0..n).map(|_| async move {
        let response = rig.post(model, stream).await;
        let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
        (response.status().as_u16(), retry_after, response.text().await.unwrap())
    });
    futures_util::future::join_all(requests).await
}

/// Today an upstream's 429 goes back to the client as it is (a 4xx is the request's own
/// fault): 429, the upstream's message and `Retry-After`. With retries and circuit
/// breakers in the run loop it may instead be retried, escalated, or refused by an open
/// circuit (502/503): both are accepted, and what happened is printed.
#[tokio::test]
async fn a_429_storm_passes_retry_after_on_or_escalates() {
    bounded(async {
        let rig = Rig::start(Fault::rate_limited(7), DEFAULT_KEYS, "").await;
        let mut seen = std::collections::BTreeMap::new();
        for stream in [false, true] {
            for (status, retry_after, text) in storm(&rig, "bad-model", stream, 20).await {
                let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
                assert_envelope(&body);
                match status {
                    429 => {
                        assert_eq!(retry_after.as_deref(), Some("7"), "a 429 passed on keeps Retry-After: {text}");
                        assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{text}");
                        // The 429 escalated (there is no next step) and is passed on with
                        // the upstream's message in the step's line.
                        assert!(
                            message(&body)
                                .contains("answered 429 (type requests, code rate_limit_exceeded): Rate limit reached"),
                            "{text}"
                        );
                    }
                    502 | 503 => assert!(message(&body).contains("bad-model"), "{text}"),
                    other => panic!("a 429 storm answered {other}: {text}"),
                }
                *seen.entry(format!("single step: {status}")).or_insert(0) += 1;
            }
        }
        assert!(rig.bad.requests() >= 1);
        let good_before = rig.good.requests();
        for (status, retry_after, text) in storm(&rig, "chain", false, 10).await {
            match status {
                429 => assert_eq!(retry_after.as_deref(), Some("7"), "{text}"),
                200 => assert!(text.contains("\"tierwise\""), "{text}"),
                other => panic!("a 429 storm on a chain answered {other}: {text}"),
            }
            *seen.entry(format!("chain: {status}")).or_insert(0) += 1;
        }
        let escalated = seen.get("chain: 200").copied().unwrap_or(0);
        assert_eq!(rig.good.requests() - good_before, escalated, "only escalated requests reach good");
        eprintln!("429 storm: {seen:?}; the rate-limited upstream saw {} requests", rig.bad.requests());
        rig.assert_settled().await;
    })
    .await;
}

#[tokio::test]
async fn a_500_storm_is_502_with_the_upstreams_message_or_goes_to_the_next_step() {
    bounded(async {
        let rig = Rig::start(Fault::server_error(), DEFAULT_KEYS, "").await;
        for stream in [false, true] {
            for (status, _, text) in storm(&rig, "bad-model", stream, 20).await {
                let body: Value = serde_json::from_str(&text).unwrap();
                assert_envelope(&body);
                // 503: a circuit breaker may open under the storm.
                assert!(matches!(status, 502 | 503), "{status}: {text}");
                if status == 502 {
                    assert_eq!(body["error"]["code"], "upstream_error", "{text}");
                    assert!(message(&body).contains("answered 500"), "{text}");
                    assert!(message(&body).contains("The server had an error"), "{text}");
                }
            }
            for (status, _, text) in storm(&rig, "chain", stream, 10).await {
                assert_eq!(status, 200, "{text}");
            }
        }
        rig.assert_settled().await;
    })
    .await;
}

#[tokio::test]
async fn a_judge_that_hangs_escalates_with_a_verifier_error() {
    bounded(async {
        let first = FaultServer::start(Fault::healthy()).await;
        let judge = FaultServer::start(Fault::hang()).await;
        let last = FaultServer::start(Fault::healthy()).await;
        let toml = config_for(
            &[("a", "local", &first.base_url()), ("j", "local", &judge.base_url()), ("c", "cloud", &last.base_url())],
            &[("t", &["a-model", "c-model"])],
            "[tasks.t.verify]\nchecks = [\"non_empty\"]\njudge = \"j-model\"\njudge_timeout_ms = 300\n",
        );
        let app = TestApp::start(&toml).await;
        let baseline = quiet_task_count().await;
        let url = app.url("/v1/chat/completions");
        for stream in [false, true] {
            let response = fresh_client().post(&url).json(&request("t", stream)).send().await.unwrap();
            assert_eq!(response.status(), 200);
            let attempts = header(&response, "x-tierwise-attempts").to_string();
            assert!(attempts.starts_with("local/a-model:escalate:") && attempts.contains("cloud/c-model:accept:"));
            let body = response.bytes().await.unwrap();
            if stream {
                assert_eq!(body, fixture(STREAM_FIXTURE));
            } else {
                let reply: Value = serde_json::from_slice(&body).unwrap();
                let feedback = reply["tierwise"]["attempts"][0]["feedback"].as_str().unwrap();
                assert_eq!(feedback, "verifier error: the judge did not answer within 300 ms");
            }
        }
        // The next step was told why, and the hung judge's connections were dropped.
        let sent = last.received()[1]["messages"][0]["content"].as_str().unwrap().to_string();
        assert!(sent.ends_with("Prior attempt feedback: verifier error: the judge did not answer within 300 ms"));
        assert_eq!((first.requests(), judge.requests(), last.requests()), (2, 2, 2));
        assert!(judge.wait_peer_closed(2, PROMPTLY).await, "the hung judge's connection was left open");
        assert_no_leak(&app, baseline).await;
    })
    .await;
}

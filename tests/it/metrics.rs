//! Metrics: known traffic gives exact counter deltas with the right label sets; the
//! exposition passes `promtool check metrics`; a real Prometheus scrapes it.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};

use crate::support::*;

/// `name{labels}` → value, for every sample.
type Samples = BTreeMap<String, f64>;

async fn scrape(url: &str) -> (String, Samples) {
    let text = client().get(url).send().await.unwrap().text().await.unwrap();
    let samples = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_string(), value.parse().ok()?))
        })
        .collect();
    (text, samples)
}

fn delta(before: &Samples, after: &Samples, key: &str) -> f64 {
    after.get(key).copied().unwrap_or(0.0) - before.get(key).copied().unwrap_or(0.0)
}

/// Every sample that changed, with its change (histogram buckets left out).
fn changes(before: &Samples, after: &Samples) -> BTreeMap<String, f64> {
    after
        .iter()
        .filter(|(k, _)| !k.contains("_bucket{") && !k.contains("_sum") && !k.starts_with("tierwise_in_flight"))
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d != 0.0)
        .collect()
}

fn completion(content: &str) -> Behaviour {
    Behaviour::Json(Bytes::from(
        json!({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500}})
        .to_string(),
    ))
}

struct World {
    app: TestApp,
    _doubles: Vec<UpstreamDouble>,
}

async fn world() -> World {
    let good = UpstreamDouble::start(completion("fine")).await;
    let empty = UpstreamDouble::start(completion("")).await;
    let cloud = UpstreamDouble::start(completion("from the cloud")).await;
    let stream = UpstreamDouble::start(Behaviour::sse("openai/chat_stream_usage.sse")).await;
    let toml = format!(
        r#"
        [upstreams.good]
        tier = "local"
        base_url = "{good}"
        [upstreams.empty]
        tier = "local"
        base_url = "{empty}"
        [upstreams.cloud]
        tier = "cloud"
        base_url = "{cloud}"
        [upstreams.stream]
        tier = "server"
        base_url = "{stream}"
        [upstreams.keyless]
        tier = "cloud"
        base_url = "{cloud}"
        api_key_env = "UNSET_METRICS_TEST_KEY"
        [models]
        small = {{ upstream = "good" }}
        blank = {{ upstream = "empty" }}
        gpt = {{ upstream = "cloud", price = {{ input_usd_per_mtok = 2.0, output_usd_per_mtok = 8.0 }} }}
        lan = {{ upstream = "stream" }}
        nokey = {{ upstream = "keyless" }}
        [tasks.served]
        chain = ["small", "gpt"]
        [tasks.escalated]
        chain = ["blank", "gpt"]
        verify = {{ checks = ["non_empty"] }}
        [tasks.streamed]
        chain = ["lan"]
        [tasks.keyless]
        chain = ["nokey", "small"]
        [tasks.cloud-first]
        chain = ["gpt", "small"]
        [profiles.default]
        cloud_consent = true
        [profiles.shy]
        cloud_consent = false
        [profiles.pinned]
        cloud_consent = true
        task_overrides = {{ "served" = "cloud" }}
        [[keys]]
        key_env = "SHY_KEY"
        profile = "shy"
        [[keys]]
        key_env = "PINNED_KEY"
        profile = "pinned"
        "#,
        good = good.base_url(),
        empty = empty.base_url(),
        cloud = cloud.base_url(),
        stream = stream.base_url(),
    );
    let app = TestApp::start_with_env(&toml, &[("SHY_KEY", "shy"), ("PINNED_KEY", "pinned")]).await;
    World { app, _doubles: vec![good, empty, cloud, stream] }
}

async fn send(app: &TestApp, task: &str, key: Option<&str>, text: &str, stream: bool) -> u16 {
    let mut request = client()
        .post(app.url("/v1/chat/completions"))
        .json(&json!({"model": task, "stream": stream, "messages": [{"role": "user", "content": text}]}));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let _ = response.bytes().await;
    status
}

/// (task, client key, message, stream, status, expected counter changes).
type Case = (&'static str, Option<&'static str>, &'static str, bool, u16, Vec<(&'static str, f64)>);

#[tokio::test]
async fn each_kind_of_traffic_moves_exactly_its_counters() {
    let w = world().await;
    let url = w.app.url("/metrics");
    let cases: Vec<Case> = vec![
        (
            "served",
            None,
            "hi",
            false,
            200,
            vec![
                (r#"tierwise_requests_total{outcome="answered",task="served",tier="local"}"#, 1.0),
                (r#"tierwise_attempts_total{model="small",task="served",tier="local",verdict="accept"}"#, 1.0),
                (r#"tierwise_attempt_duration_seconds_count{model="small",tier="local"}"#, 1.0),
                (r#"tierwise_request_duration_seconds_count{task="served",tier="local"}"#, 1.0),
                (r#"tierwise_tokens_total{kind="prompt",model="small",tier="local"}"#, 1000.0),
                (r#"tierwise_tokens_total{kind="completion",model="small",tier="local"}"#, 500.0),
                (r#"tierwise_warm_starts_total{model="small",warm="unknown"}"#, 1.0),
                // 1000 prompt tokens at 2 USD/M + 500 completion tokens at 8 USD/M, had gpt answered.
                (r#"tierwise_cost_avoided_usd_total{task="served"}"#, 0.006),
                ("tierwise_overhead_seconds_count", 1.0),
            ],
        ),
        (
            "escalated",
            None,
            "hi",
            false,
            200,
            vec![
                (r#"tierwise_requests_total{outcome="answered",task="escalated",tier="cloud"}"#, 1.0),
                (r#"tierwise_attempts_total{model="blank",task="escalated",tier="local",verdict="escalate"}"#, 1.0),
                (r#"tierwise_attempts_total{model="gpt",task="escalated",tier="cloud",verdict="accept"}"#, 1.0),
                (r#"tierwise_attempt_duration_seconds_count{model="blank",tier="local"}"#, 1.0),
                (r#"tierwise_attempt_duration_seconds_count{model="gpt",tier="cloud"}"#, 1.0),
                (r#"tierwise_request_duration_seconds_count{task="escalated",tier="cloud"}"#, 1.0),
                (r#"tierwise_escalations_total{from_tier="local",task="escalated",to_tier="cloud"}"#, 1.0),
                (r#"tierwise_verifier_verdicts_total{task="escalated",verdict="escalate"}"#, 1.0),
                (r#"tierwise_verifier_duration_seconds_count{task="escalated"}"#, 1.0),
                (r#"tierwise_tokens_total{kind="prompt",model="blank",tier="local"}"#, 1000.0),
                (r#"tierwise_tokens_total{kind="completion",model="blank",tier="local"}"#, 500.0),
                (r#"tierwise_tokens_total{kind="prompt",model="gpt",tier="cloud"}"#, 1000.0),
                (r#"tierwise_tokens_total{kind="completion",model="gpt",tier="cloud"}"#, 500.0),
                (r#"tierwise_cost_usd_total{model="gpt",tier="cloud"}"#, 0.006),
                (r#"tierwise_warm_starts_total{model="blank",warm="unknown"}"#, 1.0),
                (r#"tierwise_warm_starts_total{model="gpt",warm="unknown"}"#, 1.0),
                ("tierwise_overhead_seconds_count", 1.0),
            ],
        ),
        (
            "streamed",
            None,
            "hi",
            true,
            200,
            vec![
                (r#"tierwise_requests_total{outcome="answered",task="streamed",tier="server"}"#, 1.0),
                (r#"tierwise_attempts_total{model="lan",task="streamed",tier="server",verdict="accept"}"#, 1.0),
                (r#"tierwise_attempt_duration_seconds_count{model="lan",tier="server"}"#, 1.0),
                (r#"tierwise_request_duration_seconds_count{task="streamed",tier="server"}"#, 1.0),
                (r#"tierwise_time_to_first_token_seconds_count{model="lan",tier="server"}"#, 1.0),
                (r#"tierwise_tokens_total{kind="prompt",model="lan",tier="server"}"#, 9.0),
                (r#"tierwise_tokens_total{kind="completion",model="lan",tier="server"}"#, 9.0),
                (r#"tierwise_warm_starts_total{model="lan",warm="unknown"}"#, 1.0),
                ("tierwise_overhead_seconds_count", 1.0),
            ],
        ),
        (
            "keyless",
            None,
            "hi",
            false,
            200,
            vec![
                (r#"tierwise_requests_total{outcome="answered",task="keyless",tier="local"}"#, 1.0),
                (r#"tierwise_skips_total{reason="not_available",task="keyless",tier="cloud"}"#, 1.0),
                (r#"tierwise_attempts_total{model="small",task="keyless",tier="local",verdict="accept"}"#, 1.0),
                (r#"tierwise_attempt_duration_seconds_count{model="small",tier="local"}"#, 1.0),
                (r#"tierwise_request_duration_seconds_count{task="keyless",tier="local"}"#, 1.0),
                (r#"tierwise_tokens_total{kind="prompt",model="small",tier="local"}"#, 1000.0),
                (r#"tierwise_tokens_total{kind="completion",model="small",tier="local"}"#, 500.0),
                (r#"tierwise_warm_starts_total{model="small",warm="unknown"}"#, 1.0),
                ("tierwise_overhead_seconds_count", 1.0),
            ],
        ),
        // Without consent the local step is the last that can run: not verified, served;
        // the cloud step after the answer is never reached, so no skip is counted.
        (
            "escalated",
            Some("shy"),
            "hi",
            false,
            200,
            vec![
                (r#"tierwise_requests_total{outcome="answered",task="escalated",tier="local"}"#, 1.0),
                (r#"tierwise_attempts_total{model="blank",task="escalated",tier="local",verdict="accept"}"#, 1.0),
                (r#"tierwise_attempt_duration_seconds_count{model="blank",tier="local"}"#, 1.0),
                (r#"tierwise_request_duration_seconds_count{task="escalated",tier="local"}"#, 1.0),
                (r#"tierwise_tokens_total{kind="prompt",model="blank",tier="local"}"#, 1000.0),
                (r#"tierwise_tokens_total{kind="completion",model="blank",tier="local"}"#, 500.0),
                (r#"tierwise_cost_avoided_usd_total{task="escalated"}"#, 0.006),
                (r#"tierwise_warm_starts_total{model="blank",warm="unknown"}"#, 1.0),
                ("tierwise_overhead_seconds_count", 1.0),
            ],
        ),
        (
            "cloud-first",
            None,
            "write to eve@example.org",
            false,
            200,
            vec![
                (r#"tierwise_requests_total{outcome="answered",task="cloud-first",tier="local"}"#, 1.0),
                (r#"tierwise_skips_total{reason="privacy",task="cloud-first",tier="cloud"}"#, 1.0),
                (r#"tierwise_privacy_blocked_total{reason="privacy",task="cloud-first"}"#, 1.0),
                (r#"tierwise_attempts_total{model="small",task="cloud-first",tier="local",verdict="accept"}"#, 1.0),
                (r#"tierwise_attempt_duration_seconds_count{model="small",tier="local"}"#, 1.0),
                (r#"tierwise_request_duration_seconds_count{task="cloud-first",tier="local"}"#, 1.0),
                (r#"tierwise_tokens_total{kind="prompt",model="small",tier="local"}"#, 1000.0),
                (r#"tierwise_tokens_total{kind="completion",model="small",tier="local"}"#, 500.0),
                (r#"tierwise_cost_avoided_usd_total{task="cloud-first"}"#, 0.006),
                (r#"tierwise_warm_starts_total{model="small",warm="unknown"}"#, 1.0),
                ("tierwise_overhead_seconds_count", 1.0),
            ],
        ),
        (
            "served",
            Some("pinned"),
            "mail eve@example.org",
            false,
            403,
            vec![
                (r#"tierwise_requests_total{outcome="refused",task="served",tier="none"}"#, 1.0),
                (r#"tierwise_privacy_blocked_total{reason="privacy_blocked",task="served"}"#, 1.0),
            ],
        ),
    ];
    for (task, key, text, stream, status, expected) in cases {
        let (_, before) = scrape(&url).await;
        assert_eq!(send(&w.app, task, key, text, stream).await, status, "{task} {key:?} {text}");
        let (_, after) = scrape(&url).await;
        let mut expected: BTreeMap<String, f64> = expected.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        let got = changes(&before, &after);
        for (key, value) in expected.iter_mut() {
            let d = delta(&before, &after, key);
            assert!((d - *value).abs() < 1e-9, "{task}: {key} changed by {d}, expected {value}\nall changes: {got:#?}");
        }
        let unexpected: Vec<&String> = got.keys().filter(|k| !expected.contains_key(*k)).collect();
        assert!(unexpected.is_empty(), "{task}: unexpected changes {unexpected:?}\nall changes: {got:#?}");
    }
}

#[tokio::test]
async fn the_exposition_passes_promtool() {
    let w = world().await;
    for task in ["served", "escalated", "streamed", "keyless"] {
        send(&w.app, task, None, "hi", task == "streamed").await;
    }
    send(&w.app, "served", Some("pinned"), "mail eve@example.org", false).await;
    let (text, _) = scrape(&w.app.url("/metrics")).await;
    let mut promtool = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) is required: scripts/test installs it");
    use tokio::io::AsyncWriteExt;
    promtool.stdin.take().unwrap().write_all(text.as_bytes()).await.unwrap();
    let output = promtool.wait_with_output().await.unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && report.trim().is_empty(), "promtool check metrics:\n{report}");
}

#[tokio::test]
async fn metrics_can_live_on_their_own_address() {
    let port = dead_address().await.port();
    let up = UpstreamDouble::start(completion("x")).await;
    let toml = config_for(
        &[("local", "local", &up.base_url())],
        &[],
        &format!("[server]\nmetrics_listen = \"127.0.0.1:{port}\"\n"),
    );
    let app = TestApp::start(&toml).await;
    assert_eq!(client().get(app.url("/metrics")).send().await.unwrap().status(), 404, "not on the public address");
    let text = client().get(format!("http://127.0.0.1:{port}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("tierwise_in_flight_requests"));
}

#[tokio::test]
async fn a_real_prometheus_scrapes_the_per_tier_counts() {
    let w = world().await;
    for _ in 0..3 {
        send(&w.app, "served", None, "hi", false).await;
    }
    for _ in 0..2 {
        send(&w.app, "escalated", None, "hi", false).await;
    }
    let dir = std::env::temp_dir().join(format!("tierwise-prom-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: tierwise\n    static_configs:\n      - targets: ['{}']\n",
            w.app.addr
        ),
    )
    .unwrap();
    let port = dead_address().await.port();
    let _prometheus = tokio::process::Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("prometheus (Debian package prometheus) is required: scripts/test installs it");
    let query = format!("http://127.0.0.1:{port}/api/v1/query?query=sum%20by%20(tier)%20(tierwise_requests_total)");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let by_tier = loop {
        if let Ok(response) = client().get(&query).send().await {
            if let Ok(body) = response.json::<Value>().await {
                let result: BTreeMap<String, String> = body["data"]["result"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| {
                        (
                            r["metric"]["tier"].as_str().unwrap_or("").to_string(),
                            r["value"][1].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect();
                if result.len() == 2 {
                    break result;
                }
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "Prometheus did not report tierwise's counts within 60 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(by_tier["local"], "3");
    assert_eq!(by_tier["cloud"], "2");
    let _ = std::fs::remove_dir_all(&dir);
}

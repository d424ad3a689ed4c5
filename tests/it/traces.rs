//! Traces (issue "Traces"): tierwise, run as its own process with `[tracing]` pointed at a
//! real OTLP/HTTP receiver (decoding with the official protobuf definitions), exports one
//! SERVER span per request that continues the client's trace, a CLIENT span per attempt
//! and per judge call with the GenAI conventions' attributes, and events for checks and
//! skips; every upstream call carries the attempt's `traceparent`. Spans never carry the
//! prompt, the answer or a key; a collector that is down costs no request.

use std::process::Stdio;
use std::time::Duration;

use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::{json, Value};
use tokio::process::{Child, Command};

use crate::support::bodies::{answer, sse};
use crate::support::otlp::{attr, Receiver};
use crate::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_tierwise");

/// The client's trace: W3C trace id and parent span id.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
/// The cloud upstream's API key: a needle no span may carry.
const CLOUD_KEY: &str = "sk-trace-needle-7f3a9c";

/// tierwise as a process with `toml` and traces to `endpoint`, exporting every 100 ms.
struct Traced {
    port: u16,
    _child: Child,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Traced {
    async fn start(toml: &str, endpoint: &str) -> Traced {
        Self::start_with(toml, endpoint, "http/protobuf").await
    }

    async fn start_with(toml: &str, endpoint: &str, protocol: &str) -> Traced {
        let port = dead_address().await.port();
        let dir = std::env::temp_dir().join(format!("tierwise-traces-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tierwise.toml");
        let tracing = format!(
            "[tracing]\notlp_endpoint = \"{endpoint}\"\nprotocol = \"{protocol}\"\nservice_name = \"tierwise-test\"\n\
             headers = {{ \"x-collector-token\" = \"TRACES_TOKEN\" }}\n"
        );
        std::fs::write(&path, format!("{toml}\n{tracing}")).unwrap();
        let child = Command::new(BIN)
            .arg("serve")
            .env("TIERWISE_CONFIG", &path)
            .env("TIERWISE_SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .env("TRACES_TOKEN", "collector-secret-token")
            .env("TRACE_TEST_CLOUD_KEY", CLOUD_KEY)
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while client().get(format!("http://127.0.0.1:{port}/healthz")).send().await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "tierwise did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Traced { port, _child: child, _dir: TempDir(dir) }
    }

    async fn chat(&self, body: Value) -> reqwest::Response {
        client()
            .post(format!("http://127.0.0.1:{}/v1/chat/completions", self.port))
            .header("traceparent", format!("00-{TRACE_ID}-{CLIENT_SPAN}-01"))
            .header("tracestate", "vendor=client-state")
            .json(&body)
            .send()
            .await
            .unwrap()
    }
}

fn header_of(double: &UpstreamDouble, name: &str) -> String {
    double.received()[0].headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn trace_id() -> Vec<u8> {
    (0..16).map(|i| u8::from_str_radix(&TRACE_ID[2 * i..2 * i + 2], 16).unwrap()).collect()
}

fn named<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span \"{name}\" among {:?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>()))
}

/// The `traceparent` an upstream double received on its `i`-th call: (trace id, parent id).
fn traceparent(double: &UpstreamDouble, i: usize) -> (String, String) {
    let received = &double.received()[i];
    let header = received.headers.get("traceparent").expect("a traceparent on the upstream call").to_str().unwrap();
    let parts: Vec<&str> = header.split('-').collect();
    (parts[1].to_string(), parts[2].to_string())
}

#[tokio::test]
async fn a_two_step_chain_with_a_judge_is_one_trace_of_server_attempt_and_judge_spans() {
    let receiver = Receiver::start().await;
    let local = UpstreamDouble::start(answer("Paris, probably.")).await;
    let judge = UpstreamDouble::start(answer(r#"{"accept": false, "feedback": "name the source"}"#)).await;
    let cloud = UpstreamDouble::start(answer("Paris is the capital of France.")).await;
    let toml = config_for(
        &[
            ("a", "local", &local.base_url()),
            ("b", "server", "http://127.0.0.1:9/v1"),
            ("c", "cloud", &cloud.base_url()),
            ("judge", "local", &judge.base_url()),
        ],
        &[("t", &["a-model", "b-model", "c-model"])],
        "[tasks.t.verify]\nchecks = [\"non_empty\"]\njudge = \"judge-model\"\n",
    )
    // `b` has a key variable nobody set: skipped, not called; `c`'s key is a needle.
    .replace("[upstreams.b]\n", "[upstreams.b]\napi_key_env = \"TIERWISE_TEST_UNSET_KEY\"\n")
    .replace("[upstreams.c]\n", "[upstreams.c]\napi_key_env = \"TRACE_TEST_CLOUD_KEY\"\n");
    let tierwise = Traced::start(&toml, &receiver.endpoint()).await;
    let response =
        tierwise.chat(json!({"model": "t", "messages": [{"role": "user", "content": "Capital of France?"}]})).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-tierwise-tier"), "cloud");

    let spans = receiver.trace(&trace_id(), 4).await;
    assert_eq!(spans.len(), 4, "{:?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>());
    let server = named(&spans, "POST /v1/chat/completions");
    assert_eq!(server.kind, SpanKind::Server as i32);
    assert_eq!(hex(&server.parent_span_id), CLIENT_SPAN, "the client's trace continues");
    for (key, value) in [
        ("http.request.method", "POST"),
        ("url.path", "/v1/chat/completions"),
        ("http.response.status_code", "200"),
        ("tierwise.task", "t"),
        ("tierwise.profile", "default"),
        ("tierwise.content_class", "normal"),
        ("tierwise.tier", "cloud"),
        ("tierwise.model", "c-model"),
        ("tierwise.outcome", "answered"),
    ] {
        assert_eq!(attr(&server.attributes, key).as_deref(), Some(value), "server span: {key}");
    }
    assert!(attr(&server.attributes, "tierwise.request_id").is_some_and(|id| !id.is_empty()));
    let skip = server.events.iter().find(|e| e.name == "skip").expect("the skip of b is an event");
    assert_eq!(attr(&skip.attributes, "tierwise.model").as_deref(), Some("b-model"));
    assert_eq!(attr(&skip.attributes, "tierwise.reason").as_deref(), Some("not_available"));

    let local_span = named(&spans, "chat a-upstream-model");
    let cloud_span = named(&spans, "chat c-upstream-model");
    let judge_span = named(&spans, "chat judge-upstream-model");
    for span in [local_span, cloud_span, judge_span] {
        assert_eq!(span.kind, SpanKind::Client as i32, "{}", span.name);
        assert_eq!(attr(&span.attributes, "gen_ai.operation.name").as_deref(), Some("chat"));
        assert_eq!(attr(&span.attributes, "gen_ai.provider.name").as_deref(), Some("openai"));
        assert_eq!(attr(&span.attributes, "gen_ai.response.model").as_deref(), Some("m"));
        assert_eq!(attr(&span.attributes, "gen_ai.usage.input_tokens").as_deref(), Some("5"));
        assert_eq!(attr(&span.attributes, "gen_ai.usage.output_tokens").as_deref(), Some("7"));
        assert_eq!(attr(&span.attributes, "server.address").as_deref(), Some("127.0.0.1"));
    }
    assert_eq!(local_span.parent_span_id, server.span_id);
    assert_eq!(cloud_span.parent_span_id, server.span_id);
    assert_eq!(judge_span.parent_span_id, local_span.span_id, "the judge call is inside the attempt it judges");
    assert_eq!(attr(&local_span.attributes, "gen_ai.request.model").as_deref(), Some("a-upstream-model"));
    assert_eq!(attr(&local_span.attributes, "tierwise.verdict").as_deref(), Some("escalate"));
    assert_eq!(attr(&local_span.attributes, "tierwise.tier").as_deref(), Some("local"));
    assert_eq!(attr(&local_span.attributes, "tierwise.step").as_deref(), Some("0"));
    assert_eq!(attr(&cloud_span.attributes, "tierwise.verdict").as_deref(), Some("accept"));
    assert_eq!(attr(&judge_span.attributes, "tierwise.role").as_deref(), Some("judge"));
    assert_eq!(attr(&judge_span.attributes, "tierwise.verdict").as_deref(), Some("reject"));
    let check = local_span.events.iter().find(|e| e.name == "check").expect("the check is an event on the attempt");
    assert_eq!(attr(&check.attributes, "tierwise.check").as_deref(), Some("non_empty"));
    assert_eq!(attr(&check.attributes, "tierwise.verdict").as_deref(), Some("pass"));

    // Every upstream call carried the trace, with its own span as the parent.
    assert_eq!(traceparent(&local, 0), (TRACE_ID.to_string(), hex(&local_span.span_id)));
    assert_eq!(traceparent(&judge, 0), (TRACE_ID.to_string(), hex(&judge_span.span_id)));
    assert_eq!(traceparent(&cloud, 0), (TRACE_ID.to_string(), hex(&cloud_span.span_id)));
    assert_eq!(header_of(&cloud, "tracestate"), "vendor=client-state", "the client's tracestate goes along");

    // No prompt, no answer, no feedback, no key in any span.
    assert_eq!(header_of(&cloud, "authorization"), format!("Bearer {CLOUD_KEY}"));
    for needle in ["Capital of France?", "Paris", "name the source", CLOUD_KEY, "collector-secret-token"] {
        assert_eq!(receiver.saw(needle), 0, "a span carried {needle:?}");
    }
    // The export header's value came from its env var.
    assert_eq!(receiver.export_header("x-collector-token").as_deref(), Some("collector-secret-token"));
}

#[tokio::test]
async fn a_stream_is_traced_and_a_retry_is_an_event_on_its_attempt() {
    let receiver = Receiver::start().await;
    let up = UpstreamDouble::start(Behaviour::Sse { body: sse("hello"), gap: Duration::ZERO, cut_after: None }).await;
    up.then(Behaviour::status(500, "openai/error_500_server.json"));
    let toml = config_for(&[("s", "server", &up.base_url())], &[("t", &["s-model"])], "")
        .replace("[upstreams.s]\n", "[upstreams.s]\nretries = 1\nretry_backoff_ms = 1\n");
    let tierwise = Traced::start(&toml, &receiver.endpoint()).await;
    let body = json!({"model": "t", "stream": true, "messages": [{"role": "user", "content": "Say hello."}]});
    let response = tierwise.chat(body).await;
    assert_eq!(response.status(), 200);
    assert!(String::from_utf8(response.bytes().await.unwrap().to_vec()).unwrap().ends_with("data: [DONE]\n\n"));

    let spans = receiver.trace(&trace_id(), 2).await;
    let server = named(&spans, "POST /v1/chat/completions");
    let attempt = named(&spans, "chat s-upstream-model");
    assert_eq!(attempt.parent_span_id, server.span_id);
    assert_eq!(attr(&attempt.attributes, "tierwise.verdict").as_deref(), Some("accept"));
    let retry = attempt.events.iter().find(|e| e.name == "retry").expect("the retry is an event on the attempt");
    assert_eq!(attr(&retry.attributes, "tierwise.retry").as_deref(), Some("1"));
    assert!(attr(&retry.attributes, "error.type").is_some_and(|e| e.contains("500")), "{retry:?}");
    assert_eq!(up.calls(), 2);
    assert_eq!(traceparent(&up, 1).1, hex(&attempt.span_id));
}

#[tokio::test]
async fn a_collector_that_is_down_costs_no_request_and_its_spans_are_counted_as_dropped() {
    let dead = dead_address().await;
    let up = UpstreamDouble::start(answer("ok")).await;
    let toml = config_for(&[("s", "server", &up.base_url())], &[("t", &["s-model"])], "");
    let tierwise = Traced::start(&toml, &format!("http://{dead}")).await;
    for _ in 0..5 {
        let response = tierwise.chat(json!({"model": "t", "messages": [{"role": "user", "content": "hi"}]})).await;
        assert_eq!(response.status(), 200);
    }
    let metrics = format!("http://127.0.0.1:{}/metrics", tierwise.port);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let text = client().get(&metrics).send().await.unwrap().text().await.unwrap();
        let dropped: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("tierwise_trace_spans_dropped_total "))
            .map_or(0.0, |v| v.trim().parse().unwrap());
        if dropped >= 10.0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "dropped spans not counted: {dropped}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn over_grpc_the_same_spans_arrive() {
    let receiver = Receiver::start_grpc().await;
    let up = UpstreamDouble::start(answer("ok")).await;
    let toml = config_for(&[("s", "server", &up.base_url())], &[("t", &["s-model"])], "");
    let tierwise = Traced::start_with(&toml, &receiver.endpoint(), "grpc").await;
    let response = tierwise.chat(json!({"model": "t", "messages": [{"role": "user", "content": "hi"}]})).await;
    assert_eq!(response.status(), 200);
    let spans = receiver.trace(&trace_id(), 2).await;
    let server = named(&spans, "POST /v1/chat/completions");
    let attempt = named(&spans, "chat s-upstream-model");
    assert_eq!(attempt.parent_span_id, server.span_id);
    assert_eq!(hex(&server.parent_span_id), CLIENT_SPAN);
    assert_eq!(attr(&attempt.attributes, "gen_ai.request.model").as_deref(), Some("s-upstream-model"));
    assert_eq!(traceparent(&up, 0).1, hex(&attempt.span_id));
}

/// The privacy property, for what spans carry: every needle of the leak property's corpus,
/// planted in each request field, echoed by the local model and quoted back by a local
/// judge's feedback, streamed or not, never reaches the collector — as planted, or its
/// digits.
#[tokio::test]
async fn no_planted_personal_data_reaches_the_collector_from_any_field_or_local_output() {
    use crate::leak_property::{plant, FIELDS, NEEDLES};
    use crate::support::bodies::streaming;

    let receiver = Receiver::start().await;
    // The local model says what it was asked (so the needle is in its answer); the judge
    // rejects, quoting the answer (so it is in the feedback, the cloud's prompt).
    let local = UpstreamDouble::start(Behaviour::Reply(Responder::new(|body: &Value| {
        let said = format!("You asked: {}", body["messages"]);
        if body["stream"] == true {
            streaming(&said)
        } else {
            answer(&said)
        }
    })))
    .await;
    let judge = UpstreamDouble::start(Behaviour::Reply(Responder::new(|body: &Value| {
        let quoted = body["messages"][0]["content"].as_str().unwrap_or_default().replace('"', "'");
        answer(&json!({"accept": false, "feedback": format!("Wrong: {quoted}")}).to_string())
    })))
    .await;
    let cloud = UpstreamDouble::start(Behaviour::Reply(Responder::new(|body: &Value| {
        let said = "The cloud's answer.";
        if body["stream"] == true {
            streaming(said)
        } else {
            answer(said)
        }
    })))
    .await;
    let toml = config_for(
        &[("a", "local", &local.base_url()), ("judge", "local", &judge.base_url()), ("c", "cloud", &cloud.base_url())],
        &[("t", &["a-model", "c-model"])],
        "[tasks.t.verify]\nchecks = [\"non_empty\"]\njudge = \"judge-model\"\n[detect]\nmode = \"off\"\n",
    );
    let tierwise = Traced::start(&toml, &receiver.endpoint()).await;
    for (i, needle) in NEEDLES.iter().enumerate() {
        for field in 0..FIELDS {
            let response = tierwise.chat(plant(Some(field), needle.0, (i + field) % 2 == 0)).await;
            assert_eq!(response.status(), 200, "needle {i} in field {field}");
            let _ = response.bytes().await;
        }
    }
    // Every request's spans arrived (two attempts, a judge call, the request: 4 each).
    let spans = receiver.trace(&trace_id(), 4 * NEEDLES.len() * FIELDS).await;
    assert_eq!(spans.len(), 4 * NEEDLES.len() * FIELDS);
    assert!(judge.calls() >= NEEDLES.len() * FIELDS, "the local output went through the judge");
    for needle in NEEDLES {
        assert_eq!(receiver.saw(needle.0), 0, "a span carried {:?}", needle.0);
        if !needle.1.is_empty() {
            assert_eq!(receiver.saw(needle.1), 0, "a span carried the digits of {:?}", needle.0);
        }
    }
}

//! `POST /v1/responses` end to end: the official Python SDK's Responses API through
//! tierwise to the real SmolLM2 (translated to chat completions), JSON and streamed; the
//! same through a chain of doubles — a cut-off local answer escalated with its feedback,
//! a function call translated both ways; and the privacy invariant over every field of a
//! Responses body, counted at the doubles.

use proptest::prelude::*;
use serde_json::{json, Value};

use crate::sdk::run_python;
use crate::support::bodies::completion;
use crate::support::llama::{self, LlamaServer};
use crate::support::*;

#[tokio::test]
async fn the_python_sdk_responses_api_through_tierwise() {
    let llama = LlamaServer::start().await;
    let app = TestApp::start(&llama::config(&llama)).await;
    run_python("openai_responses_test.py", &app, 7).await;
}

/// A chat stream whose text is cut off at the token limit.
fn cut_off_stream() -> Behaviour {
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1, "model": "small",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let events = [
        chunk(json!({"role": "assistant", "content": "The weather in"}), Value::Null),
        chunk(json!({}), json!("length")),
    ];
    let body: String =
        events.iter().map(|e| format!("data: {e}\n\n")).chain(["data: [DONE]\n\n".to_string()]).collect();
    Behaviour::Sse { body: body.into(), gap: std::time::Duration::ZERO, cut_after: None }
}

/// The recorded tool call, streamed as OpenAI streams tool calls.
fn tool_call_stream() -> Behaviour {
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-abc123", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let events = [
        chunk(
            json!({"role": "assistant", "content": null, "tool_calls": [{"index": 0, "id": "call_abc123", "type": "function",
            "function": {"name": "get_current_weather", "arguments": ""}}]}),
            Value::Null,
        ),
        chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"location\": "}}]}), Value::Null),
        chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Boston, MA\"}"}}]}), Value::Null),
        chunk(json!({}), json!("tool_calls")),
    ];
    let body: String =
        events.iter().map(|e| format!("data: {e}\n\n")).chain(["data: [DONE]\n\n".to_string()]).collect();
    Behaviour::Sse { body: body.into(), gap: std::time::Duration::ZERO, cut_after: None }
}

fn streaming(body: &Value) -> bool {
    body["stream"] == true
}

#[tokio::test]
async fn responses_escalate_with_feedback_and_tools() {
    let local = UpstreamDouble::start(Behaviour::Reply(Responder::new(|body: &Value| {
        if streaming(body) {
            cut_off_stream()
        } else {
            Behaviour::Json(completion("The weather in", "length"))
        }
    })))
    .await;
    let cloud = UpstreamDouble::start(Behaviour::Reply(Responder::new(|body: &Value| {
        if streaming(body) {
            tool_call_stream()
        } else {
            Behaviour::json("openai/chat_completion_tool_call.json")
        }
    })))
    .await;
    let toml = format!(
        "[upstreams.local]\ntier = \"local\"\nbase_url = \"{}\"\n[upstreams.cloud]\ntier = \"cloud\"\nbase_url = \"{}\"\n\
         [models.small]\nupstream = \"local\"\n[models.big]\nupstream = \"cloud\"\n\
         [tasks.chat]\nchain = [\"small\", \"big\"]\nverify = {{ checks = [\"finish_stop\"] }}\n[profiles.default]\ncloud_consent = true\n",
        local.base_url(),
        cloud.base_url()
    );
    let app = TestApp::start(&toml).await;
    run_python("openai_responses_chain_test.py", &app, 3).await;

    let to_cloud = cloud.received();
    assert_eq!(to_cloud.len(), 3, "every local answer was cut off, so every request escalated");
    for sent in &to_cloud {
        let body = &sent.body;
        assert_eq!(body["tools"][0]["type"], "function");
        assert_eq!(body["tools"][0]["function"]["name"], "get_current_weather", "tools in the chat shape");
        let messages = body["messages"].as_array().unwrap();
        let user = messages.iter().rev().find(|m| m["role"] == "user").unwrap()["content"].as_str().unwrap();
        assert!(
            user.contains("Weather in Boston?") && user.contains("cut off at the token limit"),
            "feedback went up: {user}"
        );
    }
    // The function call's output went to the local model as chat's assistant and tool turns.
    let with_output = local.received().into_iter().find(|r| r.body.to_string().contains("22 C, sunny")).unwrap();
    let messages = with_output.body["messages"].as_array().unwrap().clone();
    assert_eq!(messages[1]["tool_calls"][0]["id"], "call_abc123");
    assert_eq!(messages[2], json!({"role": "tool", "tool_call_id": "call_abc123", "content": "22 C, sunny"}));
}

/// A Responses body with `needle` at field `field`.
fn plant(field: usize, needle: &str) -> Value {
    let mut body = json!({"model": "t", "input": "Who handles refunds?"});
    match field {
        0 => body["input"] = json!(format!("Contact {needle}")),
        1 => body["instructions"] = json!(format!("Escalate to {needle}")),
        2 => body["input"] = json!([{"role": "user", "content": [{"type": "input_text", "text": needle}]}]),
        3 => {
            body["input"] = json!([{"role": "user", "content": "hi"},
                {"type": "function_call", "call_id": "c", "name": "f", "arguments": json!({"to": needle}).to_string()},
                {"type": "function_call_output", "call_id": "c", "output": "ok"}])
        }
        4 => {
            body["input"] =
                json!([{"type": "function_call_output", "call_id": "c", "output": format!("found {needle}")}])
        }
        5 => body["tools"] = json!([{"type": "function", "name": "f", "description": format!("mail {needle}")}]),
        6 => body["metadata"] = json!({"customer": needle}),
        7 => body["user"] = json!(needle),
        8 => body["prompt_cache_key"] = json!(needle),
        _ => body["text"] = json!({"format": {"type": "json_schema", "name": "r", "schema": {"description": needle}}}),
    }
    body
}

const NEEDLES: [&str; 5] = [
    "ann.lee@example.org",
    "DE89 3704 0044 0532 0130 00",
    "+49 30 1234567",
    "４１１１ １１１１ １１１１ １１１１",
    "nееdlе@ехаmple.org",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_personal_data_in_a_responses_body_reaches_the_cloud(field in 0usize..10, needle in 0..NEEDLES.len(), stream in any::<bool>(), native in any::<bool>()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (leaked, status) = runtime.block_on(async {
            let local = UpstreamDouble::start(Behaviour::status(500, "openai/error_500_server.json")).await;
            let cloud = UpstreamDouble::start(crate::support::bodies::answer("ok")).await;
            let toml = config_for(
                &[("local", "local", &local.base_url()), ("vendor", "cloud", &cloud.base_url())],
                &[("t", &["local-model", "vendor-model"])],
                "",
            );
            // The cloud gets the Responses body itself when it serves the API natively.
            let toml = if native { responses_native(&toml, "vendor") } else { toml };
            let app = TestApp::start(&toml).await;
            let mut body = plant(field, NEEDLES[needle]);
            body["stream"] = json!(stream);
            let response = client().post(app.url("/v1/responses")).json(&body).send().await.unwrap();
            let status = response.status().as_u16();
            let _ = response.bytes().await;
            (cloud.saw(NEEDLES[needle]), status)
        });
        prop_assert!([200, 502, 503].contains(&status), "status {status}");
        prop_assert_eq!(leaked, 0);
    }
}

/// The count can fail: a normal Responses body does reach the cloud, needle-free.
#[tokio::test]
async fn a_normal_responses_body_does_reach_the_cloud() {
    let local = UpstreamDouble::start(Behaviour::status(500, "openai/error_500_server.json")).await;
    let cloud = UpstreamDouble::start(crate::support::bodies::answer("ok")).await;
    let toml = config_for(
        &[("local", "local", &local.base_url()), ("vendor", "cloud", &cloud.base_url())],
        &[("t", &["local-model", "vendor-model"])],
        "",
    );
    let app = TestApp::start(&toml).await;
    let body: Value = client()
        .post(app.url("/v1/responses"))
        .json(&plant(1, "the front desk"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["output"][0]["content"][0]["text"], "ok");
    assert_eq!(cloud.saw("Escalate to the front desk"), 1);

    // And so it does to a cloud that serves the Responses API natively.
    let native = UpstreamDouble::start(Behaviour::json("llama_server/responses.json")).await;
    let toml = responses_native(
        &config_for(
            &[("local", "local", &local.base_url()), ("vendor", "cloud", &native.base_url())],
            &[("t", &["local-model", "vendor-model"])],
            "",
        ),
        "vendor",
    );
    let app = TestApp::start(&toml).await;
    let response = client().post(app.url("/v1/responses")).json(&plant(1, "the front desk")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(native.received()[0].uri.path(), "/v1/responses");
    assert_eq!(native.saw("Escalate to the front desk"), 1);
}

//! `responses = "native"`: a Responses request passed through to an upstream's own
//! `POST /responses` — the official Python SDK through tierwise to the real llama-server's
//! Responses API; a cut-off local answer escalated with its feedback to a native cloud
//! double that answers with llama-server's recorded bodies, passed back byte for byte,
//! JSON and streamed; a verified step translated even on a native upstream.

use serde_json::{json, Value};

use crate::sdk::run_python;
use crate::support::bodies::completion;
use crate::support::llama::{self, LlamaServer};
use crate::support::*;

#[tokio::test]
async fn the_python_sdk_responses_api_passed_through_to_llama_server() {
    let llama = LlamaServer::start().await;
    let toml = responses_native(&llama::config(&llama), "local");
    let app = TestApp::start(&toml).await;
    run_python("openai_responses_native_test.py", &app, 2).await;
}

/// A local double whose answers are cut off at the token limit, and a native cloud
/// double answering with llama-server's recorded Responses bodies.
async fn chain() -> (UpstreamDouble, UpstreamDouble, TestApp) {
    let local = UpstreamDouble::start(Behaviour::Reply(Responder::new(|body: &Value| {
        if body["stream"] == true {
            let chunk = json!({"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1, "model": "small",
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": "The answer is"}, "finish_reason": "length"}]});
            let body = format!("data: {chunk}\n\ndata: [DONE]\n\n");
            Behaviour::Sse { body: body.into(), gap: std::time::Duration::ZERO, cut_after: None }
        } else {
            Behaviour::Json(completion("The answer is", "length"))
        }
    })))
    .await;
    let cloud = UpstreamDouble::start(Behaviour::Reply(Responder::new(|body: &Value| {
        if body["stream"] == true {
            Behaviour::Sse {
                body: fixture("llama_server/responses_stream.sse"),
                gap: std::time::Duration::ZERO,
                cut_after: None,
            }
        } else {
            Behaviour::json("llama_server/responses.json")
        }
    })))
    .await;
    let toml = responses_native(
        &config_for(
            &[("local", "local", &local.base_url()), ("vendor", "cloud", &cloud.base_url())],
            &[("t", &["local-model", "vendor-model"])],
            "[tasks.t.verify]\nchecks = [\"finish_stop\"]\n",
        ),
        "vendor",
    );
    let app = TestApp::start(&toml).await;
    (local, cloud, app)
}

fn request(stream: bool) -> Value {
    json!({"model": "t", "instructions": "Be brief.", "stream": stream, "store": true, "max_output_tokens": 8,
           "input": [{"role": "user", "content": [{"type": "input_text", "text": "What is 2+2?"}]}]})
}

#[tokio::test]
async fn an_escalated_request_reaches_the_native_cloud_with_its_feedback_and_comes_back_as_it_was_sent() {
    let (local, cloud, app) = chain().await;
    let response = client().post(app.url("/v1/responses")).json(&request(false)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-tierwise-tier"), "cloud");
    let body = response.bytes().await.unwrap();
    assert_eq!(strip_trail(&body), fixture("llama_server/responses.json"), "the upstream's bytes, and the trail");
    let trail: Value = serde_json::from_slice::<Value>(&body).unwrap()["tierwise"].clone();
    assert_eq!(trail["attempts"][0]["verdict"], "escalate");

    let streamed = client().post(app.url("/v1/responses")).json(&request(true)).send().await.unwrap();
    assert_eq!(header(&streamed, "content-type"), "text/event-stream");
    assert_eq!(streamed.bytes().await.unwrap(), fixture("llama_server/responses_stream.sse"), "byte for byte");

    // The local model was asked in chat's shape (its answer is verified); the cloud in
    // the Responses shape, with the upstream's model name, no state, and the feedback.
    assert!(local.received().iter().all(|r| r.uri.path() == "/v1/chat/completions"));
    let to_cloud = cloud.received();
    assert_eq!(to_cloud.len(), 2);
    for (sent, stream) in to_cloud.iter().zip([false, true]) {
        assert_eq!(sent.uri.path(), "/v1/responses");
        let body = &sent.body;
        assert_eq!(
            (&body["model"], &body["store"], &body["instructions"]),
            (&json!("vendor-upstream-model"), &json!(false), &json!("Be brief."))
        );
        let expected = if stream { Some(json!(true)) } else { None };
        assert_eq!(body.get("stream").cloned(), expected);
        let text = body["input"][0]["content"][0]["text"].as_str().unwrap();
        assert!(text.starts_with("What is 2+2?\n\nPrior attempt feedback: ") && text.contains("token limit"), "{text}");
    }

    // The usage of both answers counted as the cloud model's tokens: 42 + 42 and 8 + 8.
    let metrics = client().get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains(r#"tierwise_tokens_total{kind="prompt",model="vendor-model",tier="cloud"} 84"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"tierwise_tokens_total{kind="completion",model="vendor-model",tier="cloud"} 16"#));
}

#[tokio::test]
async fn a_verified_step_is_translated_even_on_a_native_upstream() {
    let local = UpstreamDouble::start(Behaviour::Json(completion("4", "stop"))).await;
    let cloud = UpstreamDouble::start(Behaviour::json("llama_server/responses.json")).await;
    let toml = responses_native(
        &config_for(
            &[("local", "local", &local.base_url()), ("vendor", "cloud", &cloud.base_url())],
            &[("t", &["local-model", "vendor-model"])],
            "[tasks.t.verify]\nchecks = [\"finish_stop\"]\n",
        ),
        "local",
    );
    let app = TestApp::start(&toml).await;
    let body: Value =
        client().post(app.url("/v1/responses")).json(&request(false)).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["output"][0]["content"][0]["text"], "4", "translated back from chat");
    assert_eq!(local.received()[0].uri.path(), "/v1/chat/completions");
    assert_eq!(cloud.calls(), 0);
}

#[tokio::test]
async fn a_native_answer_that_is_not_a_response_object_moves_the_run_on() {
    let native = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let fallback = UpstreamDouble::start(Behaviour::Json(completion("from the fallback", "stop"))).await;
    let toml = config_for(
        &[("native", "cloud", &native.base_url()), ("fallback", "cloud", &fallback.base_url())],
        &[("t", &["native-model", "fallback-model"])],
        "",
    )
    .replace("[upstreams.native]\n", "[upstreams.native]\nretries = 0\n");
    let toml = responses_native(&toml, "native");
    let app = TestApp::start(&toml).await;
    let response = client().post(app.url("/v1/responses")).json(&request(false)).send().await.unwrap();
    let attempts = header(&response, "x-tierwise-attempts").to_string();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["output"][0]["content"][0]["text"], "from the fallback");
    let first = &body["tierwise"]["attempts"][0];
    assert_eq!(first["verdict"], "error", "{attempts}");
    assert!(first["message"].to_string().contains("not a response object"), "{first}");
}

#[tokio::test]
async fn a_delayed_stream_passes_the_native_events_on_after_its_keep_alives() {
    let chunk = json!({"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1, "model": "small",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "The answer is"}, "finish_reason": "length"}]});
    let slow = Behaviour::Sse {
        body: format!("data: {chunk}\n\ndata: [DONE]\n\n").into(),
        gap: std::time::Duration::from_millis(400),
        cut_after: None,
    };
    let local = UpstreamDouble::start(slow).await;
    let cloud = UpstreamDouble::start(Behaviour::Sse {
        body: fixture("llama_server/responses_stream.sse"),
        gap: std::time::Duration::ZERO,
        cut_after: None,
    })
    .await;
    let toml = responses_native(
        &config_for(
            &[("local", "local", &local.base_url()), ("vendor", "cloud", &cloud.base_url())],
            &[("t", &["local-model", "vendor-model"])],
            "[tasks.t.verify]\nchecks = [\"finish_stop\"]\n[server]\nsse_keepalive_ms = 100\n",
        ),
        "vendor",
    );
    let app = TestApp::start(&toml).await;
    let response = client().post(app.url("/v1/responses")).json(&request(true)).send().await.unwrap();
    assert_eq!(header(&response, "x-tierwise-tier"), "", "not known when the headers went out");
    let text = response.text().await.unwrap();
    let events = text.trim_start_matches(": keep-alive\n\n");
    assert!(events.len() < text.len(), "keep-alives first: {text}");
    let recorded = String::from_utf8(fixture("llama_server/responses_stream.sse").to_vec()).unwrap();
    let trailer = events.strip_prefix(recorded.as_str()).expect("then the upstream's events, unchanged");
    let trailer: Value = serde_json::from_str(trailer.trim().strip_prefix(": tierwise ").unwrap()).unwrap();
    assert_eq!(trailer["tier"], "cloud");
    assert!(trailer["attempts"].as_str().unwrap().starts_with("local/local-model:escalate"), "{trailer}");
}

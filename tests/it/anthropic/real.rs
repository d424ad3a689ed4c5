//! `kind = "anthropic"` against the real llama-server's `/v1/messages`: answers, streams,
//! a tool call and its result, and the official Python SDK through it.

use super::*;

/// llama-server with the tool-capable ChatML template the Anthropic fixtures were
/// recorded with (SmolLM2's own template has no tools).
async fn llama_with_tools() -> LlamaServer {
    let template = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/anthropic/recording/tools-chatml.jinja");
    LlamaServer::start_with(&["--chat-template-file", template]).await
}

/// tierwise with task `chat` on llama-server spoken to as an Anthropic upstream.
fn messages_config(llama: &LlamaServer) -> String {
    format!(
        "[upstreams.llama]\ntier = \"local\"\nkind = \"anthropic\"\nbase_url = \"{}\"\nmax_tokens_default = 48\n\n\
         [models.smollm2]\nupstream = \"llama\"\nname = \"SmolLM2-135M-Instruct\"\n\n[tasks.chat]\nchain = [\"smollm2\"]\n",
        llama.base_url()
    )
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {"name": "get_weather", "description": "Get the current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})
}

/// Few-shot: the 135M model calls a tool reliably only after seeing it done (as in
/// `tests/fixtures/anthropic/recording/record.py`).
fn weather_conversation(city: &str) -> Vec<Value> {
    let call = |id: &str, city: &str| {
        json!({"role": "assistant", "content": null, "tool_calls": [{"id": id, "type": "function",
            "function": {"name": "get_weather", "arguments": json!({"city": city}).to_string()}}]})
    };
    vec![
        json!({"role": "user", "content": "What is the weather in London?"}),
        call("call_0", "London"),
        json!({"role": "user", "content": "What is the weather in Berlin?"}),
        call("call_1", "Berlin"),
        json!({"role": "user", "content": format!("What is the weather in {city}?")}),
    ]
}

#[tokio::test]
async fn a_real_messages_server_answers_and_streams_through_tierwise() {
    let llama = llama_with_tools().await;
    let app = TestApp::start(&messages_config(&llama)).await;

    let response = app
        .chat(
            json!({"model": "chat", "max_tokens": 24, "messages": [{"role": "user", "content": "Say hello to Ann."}]}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-tierwise-attempts").split(':').next(), Some("local/smollm2"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    let text = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text.split_whitespace().count() >= 2, "not generated text: {text:?}");
    assert!(["stop", "length"].contains(&body["choices"][0]["finish_reason"].as_str().unwrap()), "{body}");
    assert!(body["usage"]["completion_tokens"].as_u64().unwrap() > 0);

    let response = app
        .chat(json!({"model": "chat", "max_tokens": 24, "stream": true, "stream_options": {"include_usage": true},
                     "messages": [{"role": "user", "content": "Name three colours."}]}))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), "text/event-stream");
    let chunks = chunks(&response.text().await.unwrap());
    let text = streamed_text(&chunks);
    assert!(text.split_whitespace().count() >= 2, "not generated text: {text:?}");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]), "include_usage's final chunk");
    assert!(usage["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        usage["usage"]["total_tokens"].as_u64().unwrap(),
        usage["usage"]["prompt_tokens"].as_u64().unwrap() + usage["usage"]["completion_tokens"].as_u64().unwrap()
    );
}

#[tokio::test]
async fn a_real_messages_server_calls_a_tool_and_answers_with_its_result() {
    let llama = llama_with_tools().await;
    let app = TestApp::start(&messages_config(&llama)).await;
    let mut messages = weather_conversation("Paris");
    let request = |messages: &[Value], stream: bool| {
        json!({"model": "chat", "temperature": 0, "max_tokens": 60, "stream": stream,
               "tools": [weather_tool()], "messages": messages})
    };

    // The call.
    let body: Value = app.chat(request(&messages, false)).await.json().await.unwrap();
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{body}");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let arguments: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({"city": "Paris"}));

    // The same call, streamed: deltas that assemble to the same call.
    let chunks = chunks(&app.chat(request(&messages, true)).await.text().await.unwrap());
    let deltas: Vec<&Value> =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"].get("tool_calls")).map(|t| &t[0]).collect();
    assert_eq!(deltas[0]["function"]["name"], "get_weather");
    assert!(deltas[0]["id"].as_str().is_some_and(|id| !id.is_empty()));
    let streamed: String = deltas.iter().map(|d| d["function"]["arguments"].as_str().unwrap()).collect();
    assert_eq!(serde_json::from_str::<Value>(&streamed).unwrap(), json!({"city": "Paris"}));

    // The round trip: the tool's result goes back, the model answers with it.
    messages.push(choice["message"].clone());
    messages.push(json!({"role": "tool", "tool_call_id": call["id"], "content": "15 degrees, rainy"}));
    let body: Value = app.chat(request(&messages, false)).await.json().await.unwrap();
    let answer = &body["choices"][0];
    assert_eq!(answer["finish_reason"], "stop", "{body}");
    assert!(answer["message"].get("tool_calls").is_none(), "{body}");
    let text = answer["message"]["content"].as_str().unwrap();
    assert!(text.contains("15 degrees"), "the tool's result did not reach the model: {text:?}");
}

#[tokio::test]
async fn the_official_python_sdk_works_through_an_anthropic_upstream() {
    let llama = llama_with_tools().await;
    let recorded = UpstreamDouble::start(Behaviour::sse("anthropic/stream_docs_tool_use.sse")).await;
    let toml = format!(
        "{}\n[upstreams.recorded]\ntier = \"cloud\"\nkind = \"anthropic\"\nbase_url = \"{}\"\n\
         [models.claude]\nupstream = \"recorded\"\nname = \"claude-sonnet-4-5\"\n\
         [tasks.recorded]\nchain = [\"claude\"]\n[profiles.default]\ncloud_consent = true\n",
        messages_config(&llama),
        recorded.base_url()
    );
    let app = TestApp::start(&toml).await;
    crate::sdk::run_python("openai_anthropic_test.py", &app, 6).await;
    assert_eq!(recorded.received()[0].uri.path(), "/v1/messages");
}

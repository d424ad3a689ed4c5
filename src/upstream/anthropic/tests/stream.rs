use serde_json::{json, Value};

use super::{fixture, CREATED};
use crate::upstream::anthropic::{StreamFailure, StreamTranslator};

/// The whole output of a stream fed in one push, and whether it finished.
fn translate(sse: &[u8], include_usage: bool) -> (String, bool) {
    let mut translator = StreamTranslator::at(include_usage, CREATED);
    let out = translator.push(sse).unwrap();
    (String::from_utf8(out.to_vec()).unwrap(), translator.finished())
}

/// The `data:` payloads of OpenAI SSE output, checking its framing.
fn events(out: &str) -> Vec<&str> {
    assert!(out.is_empty() || out.ends_with("\n\n"), "unterminated output: {out:?}");
    out.split_terminator("\n\n").map(|event| event.strip_prefix("data: ").expect(event)).collect()
}

/// A line per OpenAI event, after checking the fields every chunk shares: `role`,
/// `text:…`, `tool N start ID NAME`, `tool N args:…`, `finish:…`, `usage P/C/T`, `[DONE]`.
fn transcript(out: &str, id: &str, model: &str, include_usage: bool) -> Vec<String> {
    let mut lines = Vec::new();
    for data in events(out) {
        if data == "[DONE]" {
            lines.push(data.to_string());
            continue;
        }
        let chunk: Value = serde_json::from_str(data).unwrap();
        assert_eq!(chunk["id"], id);
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["created"], CREATED);
        assert_eq!(chunk["model"], model);
        assert_eq!(chunk.get("usage").is_some(), include_usage, "{data}");
        let choices = chunk["choices"].as_array().unwrap();
        if choices.is_empty() {
            let u = &chunk["usage"];
            lines.push(format!("usage {}/{}/{}", u["prompt_tokens"], u["completion_tokens"], u["total_tokens"]));
            continue;
        }
        assert_eq!(choices.len(), 1);
        assert_eq!(choices[0]["index"], 0);
        if include_usage {
            assert_eq!(chunk["usage"], Value::Null);
        }
        let delta = choices[0]["delta"].as_object().unwrap();
        let finish = &choices[0]["finish_reason"];
        if let Some(finish) = finish.as_str() {
            assert!(delta.is_empty(), "{data}");
            lines.push(format!("finish:{finish}"));
        } else if delta.contains_key("role") {
            assert_eq!(Value::Object(delta.clone()), json!({"role": "assistant", "content": ""}));
            lines.push("role".into());
        } else if let Some(text) = delta.get("content") {
            assert_eq!(delta.len(), 1, "{data}");
            lines.push(format!("text:{}", text.as_str().unwrap()));
        } else {
            let calls = delta["tool_calls"].as_array().unwrap();
            assert_eq!((delta.len(), calls.len()), (1, 1), "{data}");
            let call = &calls[0];
            let function = call["function"].as_object().unwrap();
            if let Some(id) = call.get("id") {
                assert_eq!(call["type"], "function");
                assert_eq!(function["arguments"], "");
                lines.push(format!("tool {} start {} {}", call["index"], id.as_str().unwrap(), function["name"]));
            } else {
                assert_eq!((call.as_object().unwrap().len(), function.len()), (2, 1), "{data}");
                lines.push(format!("tool {} args:{}", call["index"], function["arguments"].as_str().unwrap()));
            }
        }
    }
    lines
}

fn words(lines: &[&str]) -> Vec<String> {
    lines.iter().map(|l| l.to_string()).collect()
}

const TEXT_ID: &str = "chatcmpl-yCD4WzgLynqOapaWmJFdOWtI4JYmpiLo";
const LLAMA: &str = "SmolLM2-135M-Instruct";

#[test]
fn translates_a_recorded_text_stream() {
    let (out, finished) = translate(fixture!("stream_text.sse"), false);
    assert!(finished);
    assert_eq!(
        transcript(&out, TEXT_ID, LLAMA, false),
        words(&[
            "role",
            "text:The",
            "text: capital",
            "text: of",
            "text: France",
            "text: is",
            "text: Paris",
            "text:.",
            "finish:stop",
            "[DONE]"
        ])
    );
    // The exact bytes of a chunk: OpenAI's field order and framing.
    assert!(out.starts_with(concat!(
        r#"data: {"id":"chatcmpl-yCD4WzgLynqOapaWmJFdOWtI4JYmpiLo","object":"chat.completion.chunk","created":1700000000,"#,
        r#""model":"SmolLM2-135M-Instruct","choices":[{"index":0,"delta":{"role":"assistant","content":""},"#,
        r#""logprobs":null,"finish_reason":null}]}"#,
        "\n\n"
    )));
    assert!(out.ends_with(concat!(
        r#""choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}"#,
        "\n\ndata: [DONE]\n\n"
    )));
}

#[test]
fn usage_past_u64_saturates() {
    // The sum overflowed; the input is fuzz/corpus/anthropic_stream/regression-usage-overflow-stream.
    let sse = concat!(
        "event: message_start\n",
        r#"data: {"type":"message_start","message":{"id":"m","model":"x","usage":{"input_tokens":18446744073709551615,"cache_read_input_tokens":1}}}"#,
        "\n\nevent: message_delta\n",
        r#"data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":5}}"#,
        "\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );
    let (out, finished) = translate(sse.as_bytes(), true);
    assert!(finished);
    let usage: Value = serde_json::from_str(events(&out)[2]).unwrap();
    assert_eq!(
        usage["usage"],
        json!({"prompt_tokens": u64::MAX, "completion_tokens": 5, "total_tokens": u64::MAX,
            "prompt_tokens_details": {"cached_tokens": 1}})
    );
}

#[test]
fn adds_usage_only_when_asked() {
    let (out, _) = translate(fixture!("stream_text.sse"), true);
    let lines = transcript(&out, TEXT_ID, LLAMA, true);
    assert_eq!(lines[lines.len() - 3..], words(&["finish:stop", "usage 27/8/35", "[DONE]"]));
    let usage: Value = serde_json::from_str(events(&out)[lines.len() - 2]).unwrap();
    assert_eq!(
        usage["usage"],
        json!({"prompt_tokens": 27, "completion_tokens": 8, "total_tokens": 35,
            "prompt_tokens_details": {"cached_tokens": 26}})
    );
    assert_eq!(usage["choices"], json!([]));

    let (out, _) = translate(fixture!("stream_text.sse"), false);
    assert!(!out.contains("usage"));
}

#[test]
fn translates_a_recorded_tool_call_stream() {
    let (out, finished) = translate(fixture!("stream_tool_use.sse"), true);
    assert!(finished);
    assert_eq!(
        transcript(&out, "chatcmpl-y5t1h3IEHUoB7IpRoDjwQzOiLOF3QZu2", LLAMA, true),
        words(&[
            "role",
            "tool 0 start vJSt78PdjMllep2WVGqEhPT4RRjtkaHl \"get_weather\"",
            "tool 0 args:{",
            "tool 0 args:\"",
            "tool 0 args:city",
            "tool 0 args:\":",
            "tool 0 args: \"",
            "tool 0 args:Paris",
            "tool 0 args:\"",
            "tool 0 args:}",
            "finish:tool_calls",
            "usage 282/31/313",
            "[DONE]",
        ])
    );
}

#[test]
fn numbers_tool_calls_apart_from_text_blocks() {
    let (out, _) = translate(fixture!("stream_text_and_tool_uses.sse"), false);
    let lines = transcript(&out, "chatcmpl-B0EFtB1HxwRIkEvDVAxsznK6o33lt28O", LLAMA, false);
    let text: String = lines.iter().filter_map(|l| l.strip_prefix("text:")).collect();
    assert_eq!(text, "Let me check both cities");
    let starts: Vec<&String> = lines.iter().filter(|l| l.contains(" start ")).collect();
    assert_eq!(
        starts,
        [
            "tool 0 start fDxHkZXw11FeKyaanL106Rje81hXe4DT \"get_weather\"",
            "tool 1 start 0c8B0Yajxtwh4qAIEmbOgCUgJgKqRni4 \"get_weather\""
        ]
    );
    let arguments =
        |n: usize| -> String { lines.iter().filter_map(|l| l.strip_prefix(&format!("tool {n} args:"))).collect() };
    assert_eq!(arguments(0), "{\"city\": \"Paris\"}");
    assert_eq!(arguments(1), "{\"city\": \"Oslo\"}");
    assert_eq!(lines[0], "role");
    assert_eq!(lines[lines.len() - 2..], words(&["finish:tool_calls", "[DONE]"]));
}

#[test]
fn ignores_pings_empty_deltas_and_server_side_input() {
    let (out, _) = translate(fixture!("stream_docs_tool_use.sse"), true);
    assert_eq!(
        transcript(&out, "msg_014p7gG3wDgGV9EUtLvnow3U", "claude-sonnet-4-5", true),
        words(&[
            "role",
            "text:Okay, let's check the weather for San Francisco:",
            "tool 0 start toolu_01T1x1fJ34qAmk2tNTrN7Up6 \"get_weather\"",
            "tool 0 args:{\"location\":",
            "tool 0 args: \"San Francisco, CA\"}",
            "finish:tool_calls",
            "usage 472/89/561",
            "[DONE]",
        ])
    );

    let (out, _) = translate(fixture!("stream_ping.sse"), false);
    assert_eq!(
        transcript(&out, "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "claude-sonnet-4-5", false),
        words(&["role", "text:Hello", "text:!", "finish:stop", "[DONE]"])
    );
}

#[test]
fn drops_thinking() {
    let (out, _) = translate(fixture!("stream_thinking.sse"), false);
    assert_eq!(
        transcript(&out, "msg_01EcWzPpXvV6dzRLyJQkvhJp", "claude-sonnet-4-5", false),
        words(&["role", "text:27 * 453 = 12,231.", "finish:stop", "[DONE]"])
    );
}

#[test]
fn gives_the_same_output_however_the_bytes_are_split() {
    let fixtures = [
        fixture!("stream_text.sse"),
        fixture!("stream_tool_use.sse"),
        fixture!("stream_text_and_tool_uses.sse"),
        fixture!("stream_docs_tool_use.sse"),
        fixture!("stream_thinking.sse"),
    ];
    for sse in fixtures {
        let (whole, _) = translate(sse, true);
        let text = std::str::from_utf8(sse).unwrap();
        let events: Vec<String> = text.split_inclusive("\n\n").map(str::to_string).collect();

        // Event by event, in twos, in threes: the splits the SSE framer makes.
        for group in [1, 2, 3] {
            let mut translator = StreamTranslator::at(true, CREATED);
            let mut out = Vec::new();
            for events in events.chunks(group) {
                out.extend_from_slice(&translator.push(events.concat().as_bytes()).unwrap());
            }
            assert_eq!(String::from_utf8(out).unwrap(), whole, "groups of {group}");
            assert!(translator.finished());
        }
        // Arbitrary byte splits, even mid-line, are buffered too.
        for size in [1, 7, 64] {
            let mut translator = StreamTranslator::at(true, CREATED);
            let mut out = Vec::new();
            for piece in sse.chunks(size) {
                out.extend_from_slice(&translator.push(piece).unwrap());
            }
            assert_eq!(String::from_utf8(out).unwrap(), whole, "pieces of {size} bytes");
        }
        // CRLF line endings.
        let (crlf, _) = translate(text.replace('\n', "\r\n").as_bytes(), true);
        assert_eq!(crlf, whole);
        // Lone CRs, whole and a byte at a time (the framer releases an event at a CR
        // that ends a push, before it can know whether an LF follows).
        let cr = text.replace('\n', "\r");
        assert_eq!(translate(cr.as_bytes(), true).0, whole, "lone CRs");
        let mut translator = StreamTranslator::at(true, CREATED);
        let mut out = Vec::new();
        for piece in cr.as_bytes().chunks(1) {
            out.extend_from_slice(&translator.push(piece).unwrap());
        }
        assert_eq!(String::from_utf8(out).unwrap(), whole, "lone CRs, byte by byte");
    }
}

#[test]
fn a_cut_stream_is_not_finished() {
    let (out, finished) = translate(fixture!("stream_cut.sse"), true);
    assert!(!finished);
    assert_eq!(transcript(&out, TEXT_ID, LLAMA, true), words(&["role", "text:The", "text: capital", "text: of"]));
}

#[test]
fn an_error_event_fails_the_stream_after_what_came_before() {
    let mut translator = StreamTranslator::at(false, CREATED);
    let err = translator.push(fixture!("stream_error_overloaded.sse")).unwrap_err();
    assert!(!translator.finished());
    let pending = std::str::from_utf8(&err.pending).unwrap();
    assert_eq!(
        transcript(pending, "msg_01Qm7c2Vbq9LrXw4TnYd8Kfs", "claude-sonnet-4-5", false),
        words(&["role", "text:Once upon"])
    );
    let StreamFailure::Upstream(class) = &err.failure else { panic!("{err:?}") };
    assert_eq!(class.status_for_client, 503);
    assert!(err.retryable());
    assert!(!class.provider_block);
    assert_eq!(err.to_string(), "the upstream sent an error event: Overloaded");
    assert_eq!(
        err.envelope(),
        json!({"error": {"message": "Overloaded", "type": "server_error", "param": null, "code": "overloaded_error"}})
    );
}

#[test]
fn a_content_filter_error_event_is_a_provider_block() {
    let mut translator = StreamTranslator::at(false, CREATED);
    let sse = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"m\"}}\n\n",
        "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",",
        "\"message\":\"Output blocked by content filtering policy\"}}\n\n",
    );
    let err = translator.push(sse.as_bytes()).unwrap_err();
    let StreamFailure::Upstream(class) = &err.failure else { panic!("{err:?}") };
    assert!(class.provider_block);
    assert!(!err.retryable());
    assert_eq!(err.envelope()["error"]["code"], "content_filter");
}

#[test]
fn refuses_what_is_not_a_messages_stream() {
    let delta = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\
                 \"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n";
    let cases = [delta, "event: message_start\ndata: {not json\n\n", "data: {\"type\":\"message_start\"}\n\n"];
    for sse in cases {
        let err = StreamTranslator::at(false, CREATED).push(sse.as_bytes()).unwrap_err();
        assert!(matches!(err.failure, StreamFailure::Protocol(_)), "{sse}: {err:?}");
        assert!(!err.retryable());
        assert_eq!(err.envelope()["error"]["code"], "upstream_error");
    }
}

#[test]
fn ignores_unknown_events_comments_and_anything_after_message_stop() {
    let mut sse = String::from(": a comment\n\nevent: future_event\ndata: {\"type\":\"future_event\",\"x\":1}\n\n");
    sse.push_str(std::str::from_utf8(fixture!("stream_ping.sse")).unwrap());
    sse.push_str("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"late\"}}\n\n");
    let (out, finished) = translate(sse.as_bytes(), false);
    assert!(finished);
    assert_eq!(out, translate(fixture!("stream_ping.sse"), false).0);
}

#[test]
fn uses_the_event_name_when_data_has_no_type() {
    let sse = "event: message_start\ndata: {\"message\":{\"id\":\"msg_1\",\"model\":\"m\"}}\n\n\
               event: content_block_delta\ndata: {\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n";
    let (out, finished) = translate(sse.as_bytes(), false);
    assert!(!finished);
    assert_eq!(transcript(&out, "msg_1", "m", false), words(&["role", "text:Hi"]));
}

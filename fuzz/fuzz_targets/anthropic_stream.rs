//! Anthropic answers from an upstream: a Messages stream cut at fuzzer-chosen points
//! through `StreamTranslator` (with and without the usage chunk), the same bytes as a
//! whole response (`from_messages_response`) and as an error body (`classify_error`).
//!
//! Input: `[n][n chunk sizes][status: 2 bytes, big endian][payload]` (see `common`).
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tierwise::upstream::anthropic::{classify_error, from_messages_response, StreamTranslator};

fuzz_target!(|data: &[u8]| {
    let (sizes, rest) = common::split(data);
    let [hi, lo, payload @ ..] = rest else {
        return;
    };
    let status = u16::from_be_bytes([*hi, *lo]);

    for include_usage in [true, false] {
        let mut translator = StreamTranslator::new(include_usage);
        for chunk in common::chunks(payload, sizes) {
            let was_finished = translator.finished();
            match translator.push(chunk) {
                Ok(out) => {
                    assert_openai_events(&out, translator.finished());
                    assert!(!was_finished || out.is_empty(), "output after message_stop: {out:?}");
                }
                Err(err) => {
                    assert_openai_events(&err.pending, false);
                    assert!(err.envelope().pointer("/error/message").is_some_and(Value::is_string));
                    let _ = (err.to_string(), err.retryable());
                    break;
                }
            }
        }
    }

    if let Ok(body) = from_messages_response(payload) {
        let completion: Value = serde_json::from_slice(&body).expect("a completion is JSON");
        assert_eq!(completion["object"], "chat.completion");
    }

    let class = classify_error(status, payload);
    assert!((400..=599).contains(&class.status_for_client), "status {}", class.status_for_client);
    assert!(class.openai_envelope.pointer("/error/message").is_some_and(Value::is_string));
});

/// `out` is whole `data: {chunk}\n\n` events, ending in `data: [DONE]\n\n` only when
/// the stream is `finished`.
fn assert_openai_events(out: &[u8], finished: bool) {
    if out.is_empty() {
        return;
    }
    let text = std::str::from_utf8(out).expect("the translator writes UTF-8");
    let events = text.strip_suffix("\n\n").unwrap_or_else(|| panic!("output ends mid-event: {text:?}"));
    let mut done = false;
    for event in events.split("\n\n") {
        let data = event.strip_prefix("data: ").unwrap_or_else(|| panic!("not a data event: {event:?}"));
        assert!(!done, "an event after [DONE]: {text:?}");
        if data == "[DONE]" {
            done = true;
            continue;
        }
        let chunk: Value = serde_json::from_str(data).unwrap_or_else(|e| panic!("a chunk is not JSON ({e}): {data}"));
        assert_eq!(chunk["object"], "chat.completion.chunk");
    }
    assert_eq!(done, finished, "[DONE] without message_stop or the reverse: {text:?}");
}

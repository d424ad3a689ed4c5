//! A client's request body: `parse::<ChatRequest>`, then what the chat handler does with
//! a parsed one — the detector over everything it forwards, a redaction of each text
//! (whose placeholders must land where the findings were), `take_content_class`, the
//! checks, and `body_for` with feedback, whose output must parse back as the same
//! conversation.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde_json::json;
use tierwise::api::extract::parse;
use tierwise::openai::ChatRequest;
use tierwise::escalate::{run_checks, Candidate, Check, DEFAULT_REFUSALS};
use tierwise::policy::{Detector, Opaque, Scanner};

fn detector() -> &'static Detector {
    static DETECTOR: OnceLock<Detector> = OnceLock::new();
    DETECTOR.get_or_init(Detector::standard)
}

fuzz_target!(|data: &[u8]| {
    let Ok(mut request) = parse::<ChatRequest>(data) else {
        return;
    };
    let _ = request.scan(&Scanner { detector: detector(), opaque: Opaque::Sensitive });
    for (_, text) in request.texts() {
        for finding in detector().findings(text) {
            assert!(text.is_char_boundary(finding.range.start) && text.is_char_boundary(finding.range.end));
        }
        if let Some(redacted) = detector().redact(text) {
            assert!(!redacted.kinds.is_empty() && redacted.text.contains('['));
        }
    }
    let feedback = request.texts().last().map(|(at, text)| format!("{at}: {text}")).unwrap_or_default();
    let _ = request.take_content_class();

    // The last message stands in for an upstream's answer, so the checks see the
    // client's texts, tool calls and `response_format` schema.
    let answer = json!({"choices": [{"message": request.messages.last(), "finish_reason": "stop"}]});
    let candidate = Candidate::from_completion(&answer);
    let refusals = DEFAULT_REFUSALS.iter().map(|s| s.to_string()).collect();
    let checks = [
        Check::NonEmpty,
        Check::FinishStop,
        Check::Json,
        Check::JsonSchema,
        Check::MaxChars(1000),
        Check::NoRefusal(refusals),
        Check::ToolCallValid,
    ];
    for check in checks {
        let _ = run_checks(&[check], &candidate, &request);
    }

    let body = request.body_for("m", &[feedback]).expect("a parsed request serializes");
    let sent = parse::<ChatRequest>(&body).unwrap_or_else(|e| panic!("body_for wrote an unreadable body ({e:?})"));
    assert_eq!(sent.model.as_deref(), Some("m"));
    assert_eq!(sent.stream, request.stream);
    let roles = |r: &ChatRequest| r.messages.iter().map(|m| m.role).collect::<Vec<_>>();
    assert_eq!(roles(&sent), roles(&request), "body_for changed the conversation");
});

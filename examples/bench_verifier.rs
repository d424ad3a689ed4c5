//! Benchmark: the verifier's own cost — everything but upstream calls — on a 4 KiB
//! answer: parsing the completion body, then every deterministic check (non_empty,
//! finish_stop, json, json_schema, max_chars, regex, no_refusal, tool_call_valid).
//!
//! `cargo run --release --example bench_verifier` prints p50 / p99 per verification.

use std::time::Instant;

use regex::Regex;
use serde_json::{json, Value};
use tierwise::escalate::{run_checks, Candidate, Check, DEFAULT_REFUSALS};
use tierwise::openai::ChatRequest;

fn main() {
    // A JSON answer of just under 4 KiB that satisfies the schema, as a model would send it.
    let mut items: Vec<Value> = Vec::new();
    let answer = loop {
        let i = items.len();
        items.push(json!({"id": i, "title": format!("Item number {i} with a description"), "done": i % 2 == 0}));
        let text = json!({"summary": "A list of things to do this week, in order.", "items": items}).to_string();
        if text.len() > 4096 {
            items.pop();
            break json!({"summary": "A list of things to do this week, in order.", "items": items}).to_string();
        }
    };
    let body = json!({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}]})
    .to_string();
    let schema = json!({"type": "object", "required": ["summary", "items"], "properties": {
        "summary": {"type": "string"},
        "items": {"type": "array", "items": {"type": "object", "required": ["id", "title", "done"], "properties": {
            "id": {"type": "integer"}, "title": {"type": "string"}, "done": {"type": "boolean"}}}}}});
    let request: ChatRequest = serde_json::from_value(json!({
        "model": "t", "messages": [{"role": "user", "content": "List my todos as JSON."}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "todos", "schema": schema}},
        "tools": [{"type": "function", "function": {"name": "get_weather"}}]
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    let checks = vec![
        Check::NonEmpty,
        Check::FinishStop,
        Check::Json,
        Check::JsonSchema,
        Check::MaxChars(8000),
        Check::Regex(Regex::new(r"^\{").unwrap_or_else(|e| panic!("{e}"))),
        Check::NoRefusal(DEFAULT_REFUSALS.iter().map(|s| s.to_string()).collect()),
        Check::ToolCallValid,
    ];
    let verify_once = || {
        let completion: Value = serde_json::from_slice(body.as_bytes()).unwrap_or(Value::Null);
        let candidate = Candidate::from_completion(&completion);
        run_checks(&checks, &candidate, &request)
    };
    assert!(verify_once().is_ok(), "the benchmark answer must pass: {:?}", verify_once());
    let mut samples: Vec<f64> = (0..20_000)
        .map(|_| {
            let started = Instant::now();
            std::hint::black_box(verify_once()).ok();
            started.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    println!(
        "deterministic checks on a {} B answer: p50 {:.1} µs, p99 {:.1} µs (20000 runs)",
        answer.len(),
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100]
    );
}

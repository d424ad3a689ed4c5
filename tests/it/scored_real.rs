//! All four scored verifiers on the real SmolLM2 (llama-server, two slots): its answer's
//! logprobs, `n` samples (llama-server takes `n` up to its slot count), its own verdict's
//! token probabilities, and SmolLM2 judging itself Yes or No — JSON and streamed. The
//! thresholds are 0 so every verifier runs and records its score; what SmolLM2 scores is
//! not asserted, only that each score is a probability and each call is counted.

use serde_json::{json, Value};

use crate::support::bodies::answer;
use crate::support::llama::LlamaServer;
use crate::support::*;

const VERIFY: &str = "[tasks.t.verify]\njudge = \"smollm2\"\njudge_score = \"yes_no\"\njudge_threshold = 0.0\n\
    [tasks.t.verify.confidence]\nthreshold = 0.0\n\
    [tasks.t.verify.consistency]\nsamples = 3\nthreshold = 0.0\n\
    [tasks.t.verify.self_check]\nthreshold = 0.0\n";

#[tokio::test]
async fn the_real_local_model_runs_every_scored_verifier() {
    let llama = LlamaServer::start().await;
    let cloud = UpstreamDouble::start(answer("The cloud's answer.")).await;
    let toml = format!(
        "{}\n[upstreams.vendor]\ntier = \"cloud\"\nbase_url = \"{}\"\n[models.vendor-model]\nupstream = \"vendor\"\n\
         [profiles.default]\ncloud_consent = true\n{VERIFY}",
        crate::support::llama::config(&llama)
            .replace("chain = [\"smollm2\"]", "chain = [\"smollm2\", \"vendor-model\"]")
            .replace("[tasks.chat]", "[tasks.t]"),
        cloud.base_url()
    );
    let app = TestApp::start(&toml).await;
    let question = json!([{"role": "user", "content": "What is the capital of France? One word."}]);

    let body: Value = app
        .chat(json!({"model": "t", "max_tokens": 12, "temperature": 0, "messages": question}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["tierwise"]["tier"], "local", "{body}");
    let attempt = &body["tierwise"]["attempts"][0];
    let scores = attempt["scores"].as_array().unwrap();
    let names: Vec<&str> = scores.iter().map(|s| s["verifier"].as_str().unwrap()).collect();
    assert_eq!(names, ["confidence", "consistency", "self_check", "judge"]);
    for score in scores {
        let value = score["score"].as_f64().unwrap_or_else(|| panic!("no score: {score}"));
        assert!((0.0..=1.0).contains(&value), "{score}");
        assert_eq!(score["result"], "accept");
    }
    let kinds: Vec<&str> =
        attempt["verify_calls"].as_array().unwrap().iter().map(|c| c["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["consistency", "self_check", "judge"], "n = 2 in one call: llama-server has two slots");
    assert!(attempt["verify_calls"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["completion_tokens"].as_u64().unwrap_or(0) > 0));
    assert!(body["choices"][0].get("logprobs").is_none(), "the client did not ask for logprobs");
    assert_eq!(cloud.calls(), 0);

    let text = app
        .chat(json!({"model": "t", "max_tokens": 12, "temperature": 0, "stream": true, "messages": question}))
        .await
        .text()
        .await
        .unwrap();
    assert!(text.contains("data: [DONE]") && !text.contains("\"logprobs\":{"), "{text}");
    let metrics = client().get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for verifier in ["confidence", "consistency", "self_check", "judge"] {
        let line = format!("tierwise_verifier_results_total{{result=\"accept\",task=\"t\",verifier=\"{verifier}\"}} 2");
        assert!(metrics.contains(&line), "{line} missing:\n{metrics}");
    }
}

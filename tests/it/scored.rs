//! The scored verifiers end to end, against doubles that speak llama-server's recorded
//! bodies (so every score is exact): `confidence` from recorded logprobs, JSON and
//! streamed; `consistency` over samples, falling back from `n` to one call per sample;
//! `self_check` from a recorded verdict's token probabilities; the judge's score. What
//! each costs is in the trail. The real SmolLM2 runs all four in `scored_real.rs`.

use serde_json::{json, Value};

use crate::support::bodies::answer;
use crate::support::*;

/// A local double and a cloud double after it, for task `t` verified by `verify` (the
/// lines of `[tasks.t.verify]`).
async fn chain(local: Behaviour, verify: &str) -> (UpstreamDouble, UpstreamDouble, TestApp) {
    let local = UpstreamDouble::start(local).await;
    let cloud = UpstreamDouble::start(answer("The cloud's answer.")).await;
    let toml = config_for(
        &[("local", "local", &local.base_url()), ("vendor", "cloud", &cloud.base_url())],
        &[("t", &["local-model", "vendor-model"])],
        &format!("[tasks.t.verify]\n{verify}\n"),
    );
    (local, cloud, TestApp::start(&toml).await)
}

fn ask(stream: bool) -> Value {
    json!({"model": "t", "stream": stream, "messages": [{"role": "user", "content": "What is 2+2? Answer with a number."}]})
}

fn recorded(name: &str) -> Value {
    serde_json::from_slice(&fixture(&format!("llama_server/{name}"))).unwrap()
}

/// The recorded answer's token log-probabilities.
fn recorded_logprobs() -> Vec<f64> {
    let completion = recorded("logprobs.json");
    completion["choices"][0]["logprobs"]["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["logprob"].as_f64().unwrap())
        .collect()
}

fn geometric_mean(logprobs: &[f64]) -> f64 {
    (logprobs.iter().sum::<f64>() / logprobs.len() as f64).exp()
}

/// The trail's first attempt's scores.
fn scores(body: &Value) -> &Value {
    &body["tierwise"]["attempts"][0]["scores"]
}

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// The value of one sample line of the Prometheus text.
async fn metric(app: &TestApp, line_start: &str) -> Option<f64> {
    let text = client().get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines().find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
}

#[tokio::test]
async fn confidence_scores_recorded_logprobs_and_removes_them_unless_asked() {
    let (local, cloud, app) =
        chain(Behaviour::json("llama_server/logprobs.json"), "[tasks.t.verify.confidence]\nthreshold = 0.5").await;
    let response = app.chat(ask(false)).await;
    assert_eq!(header(&response, "x-tierwise-tier"), "local");
    let body: Value = response.json().await.unwrap();
    let expected = geometric_mean(&recorded_logprobs());
    assert_eq!(
        scores(&body),
        &json!([{"verifier": "confidence", "score": round4(expected), "threshold": 0.5, "result": "accept"}])
    );
    assert!(body["choices"][0].get("logprobs").is_none(), "the client did not ask: {body}");
    assert_eq!(local.received()[0].body["logprobs"], true, "the verifier asked the upstream");
    assert_eq!(cloud.calls(), 0);

    let mut asking = ask(false);
    asking["logprobs"] = json!(true);
    let body: Value = app.chat(asking).await.json().await.unwrap();
    assert_eq!(body["choices"][0]["logprobs"]["content"].as_array().unwrap().len(), 7, "asked for: kept");
}

#[tokio::test]
async fn low_confidence_escalates_with_its_score_as_feedback() {
    let (_local, cloud, app) = chain(
        Behaviour::json("llama_server/logprobs.json"),
        "[tasks.t.verify.confidence]\nthreshold = 0.6\nscore = \"min\"",
    )
    .await;
    let body: Value = app.chat(ask(false)).await.json().await.unwrap();
    assert_eq!(body["tierwise"]["tier"], "cloud");
    let min = (-1.8379321098327637f64).exp();
    assert_eq!(
        scores(&body),
        &json!([{"verifier": "confidence", "score": round4(min), "threshold": 0.6, "result": "reject"}])
    );
    let sent = cloud.received()[0].body["messages"][0]["content"].as_str().unwrap().to_string();
    assert!(sent.contains("low confidence (0.16 < 0.60"), "{sent}");
}

#[tokio::test]
async fn a_streamed_answer_is_scored_once_buffered() {
    let (_local, _cloud, app) =
        chain(Behaviour::sse("llama_server/logprobs_stream.sse"), "[tasks.t.verify.confidence]\nthreshold = 0.5").await;
    let text = app.chat(ask(true)).await.text().await.unwrap();
    assert!(text.contains("The answer is 4.") || text.contains("\"4\""), "{text}");
    assert!(!text.contains("\"logprobs\":{"), "not asked, not sent: {text}");
    // The stream lists no end-of-text token: six tokens, not the JSON answer's seven.
    let lps = recorded_logprobs();
    let expected = geometric_mean(&lps[..6]);
    let sum = metric(&app, "tierwise_verifier_scores_sum{task=\"t\",verifier=\"confidence\"}").await.unwrap();
    assert!((sum - expected).abs() < 1e-9, "{sum} vs {expected}");
    let results = client().get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        results.contains("tierwise_verifier_results_total{result=\"accept\",task=\"t\",verifier=\"confidence\"} 1"),
        "{results}"
    );

    let mut asking = ask(true);
    asking["logprobs"] = json!(true);
    let text = app.chat(asking).await.text().await.unwrap();
    assert!(text.contains("\"logprobs\":{\"content\":[{"), "asked for, replayed with the text: {text}");
}

#[tokio::test]
async fn an_upstream_without_logprobs_is_a_verifier_error() {
    let (_local, cloud, app) = chain(Behaviour::json("llama_server/plain.json"), "[tasks.t.verify.confidence]").await;
    let body: Value = app.chat(ask(false)).await.json().await.unwrap();
    assert_eq!(body["tierwise"]["tier"], "cloud");
    assert_eq!(scores(&body), &json!([{"verifier": "confidence", "threshold": 0.5, "result": "error"}]));
    let feedback = body["tierwise"]["attempts"][0]["feedback"].as_str().unwrap();
    assert_eq!(
        feedback,
        "verifier error: confidence: the upstream returned no logprobs with the answer (it may not support them)"
    );
    assert_eq!(cloud.calls(), 1);
}

/// The main answer says `main`; samples (by `seed`) say `by_seed[seed - 1]`; a request
/// with `n` gets llama-server's recorded refusal, or `n` choices saying `batch`.
fn sampled(main: &'static str, by_seed: &'static [&'static str], batch: Option<&'static str>) -> Behaviour {
    Behaviour::Reply(Responder::new(move |body: &Value| {
        if let Some(n) = body.get("n").and_then(Value::as_u64) {
            return match batch {
                None => Behaviour::status(400, "llama_server/n3_refused.json"),
                Some(text) => {
                    let choices: Vec<Value> = (0..n)
                        .map(|i| json!({"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}))
                        .collect();
                    Behaviour::Json(
                        json!({"id": "c", "object": "chat.completion", "choices": choices,
                        "usage": {"prompt_tokens": 9, "completion_tokens": 3 * n, "total_tokens": 9 + 3 * n}})
                        .to_string()
                        .into(),
                    )
                }
            };
        }
        match body.get("seed").and_then(Value::as_u64) {
            Some(seed) => answer(by_seed[seed as usize - 1]),
            None => answer(main),
        }
    }))
}

const NUMBERS: &str = "[tasks.t.verify.consistency]\nsamples = 5\nextract = \"number\"";

#[tokio::test]
async fn consistency_accepts_agreeing_samples_and_falls_back_from_n_to_calls() {
    let (local, cloud, app) = chain(sampled("So #### 42", &["42", "41", "#### 42", "It is 42."], None), NUMBERS).await;
    let body: Value = app.chat(ask(false)).await.json().await.unwrap();
    assert_eq!(body["tierwise"]["tier"], "local");
    assert_eq!(
        scores(&body),
        &json!([{"verifier": "consistency", "score": 0.8, "threshold": 0.6, "result": "accept"}])
    );
    let calls = body["tierwise"]["attempts"][0]["verify_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 5, "the refused n request, then four samples: {calls:?}");
    assert!(calls.iter().all(|c| c["kind"] == "consistency" && c["tier"] == "local" && c["model"] == "local-model"));
    let samples: Vec<Value> = local.received().iter().skip(1).map(|r| r.body.clone()).collect();
    assert_eq!(samples[0]["n"], 4);
    for (i, sample) in samples[1..].iter().enumerate() {
        assert_eq!(
            (sample["seed"].as_u64(), sample["temperature"].as_f64(), sample.get("stream")),
            (Some(i as u64 + 1), Some(0.7), None)
        );
        assert_eq!(sample["messages"], ask(false)["messages"], "the same request, sampled");
    }
    assert_eq!(cloud.calls(), 0);
    // Once refused, n is not asked again.
    app.chat(ask(false)).await.bytes().await.unwrap();
    assert_eq!(local.calls(), 6 + 5);
}

#[tokio::test]
async fn consistency_answers_with_the_largest_group() {
    let (_local, _cloud, app) = chain(sampled("#### 40", &["42", "The answer: 42", "42!", "7"], None), NUMBERS).await;
    let body: Value = app.chat(ask(false)).await.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "42", "the verified answer was outvoted");
    assert_eq!(body["choices"][0]["index"], 0);
    assert_eq!(scores(&body)[0]["score"], 0.6);
}

#[tokio::test]
async fn disagreement_escalates_and_says_how_the_samples_split() {
    let (_local, cloud, app) = chain(sampled("#### 1", &["2", "3", "2", "4"], None), NUMBERS).await;
    let body: Value = app.chat(ask(false)).await.json().await.unwrap();
    assert_eq!(body["tierwise"]["tier"], "cloud");
    let sent = cloud.received()[0].body["messages"][0]["content"].as_str().unwrap().to_string();
    assert!(
        sent.ends_with("5 answers of a smaller model disagreed (40 % agree, 60 % needed): 2 ×2, 1 ×1, 3 ×1, 4 ×1; work it out carefully"),
        "{sent}"
    );
}

#[tokio::test]
async fn consistency_takes_n_samples_in_one_call_where_the_upstream_can() {
    let verify = format!("{NUMBERS}\nsampling = \"n\"");
    let (local, _cloud, app) = chain(sampled("#### 42", &[], Some("42")), &verify).await;
    let body: Value = app.chat(ask(false)).await.json().await.unwrap();
    assert_eq!(scores(&body)[0]["score"], 1.0);
    let calls = body["tierwise"]["attempts"][0]["verify_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!((calls[0]["prompt_tokens"].as_u64(), calls[0]["completion_tokens"].as_u64()), (Some(9), Some(12)));
    assert_eq!(local.calls(), 2);
}

/// The recorded verdict's P(Yes) among its top alternatives: "No" -1.96, "Yes" -2.908.
fn recorded_yes() -> f64 {
    let top = recorded("self_check.json")["choices"][0]["logprobs"]["content"][0]["top_logprobs"].clone();
    let p = |word: &str| -> f64 {
        top.as_array()
            .unwrap()
            .iter()
            .filter(|t| t["token"] == word)
            .map(|t| t["logprob"].as_f64().unwrap().exp())
            .sum()
    };
    p("Yes") / (p("Yes") + p("No"))
}

fn self_checked(verdicts: &'static [&'static str]) -> Behaviour {
    Behaviour::Reply(Responder::new(move |body: &Value| {
        if !body["messages"].to_string().contains("Correct?") {
            return answer("9 times 3 is 27.");
        }
        match body.get("seed").and_then(Value::as_u64) {
            Some(seed) => answer(verdicts[seed as usize - 1]),
            None if body.get("n").is_some() => Behaviour::status(400, "llama_server/n3_refused.json"),
            None => Behaviour::json("llama_server/self_check.json"),
        }
    }))
}

#[tokio::test]
async fn self_check_reads_the_verdicts_token_probability() {
    let (local, cloud, app) = chain(self_checked(&[]), "[tasks.t.verify.self_check]\nthreshold = 0.5").await;
    let body: Value = app.chat(ask(false)).await.json().await.unwrap();
    assert_eq!(
        scores(&body),
        &json!([{"verifier": "self_check", "score": round4(recorded_yes()), "threshold": 0.5, "result": "reject"}])
    );
    assert_eq!(body["tierwise"]["tier"], "cloud");
    let check = &local.received()[1].body;
    assert_eq!(
        (check["max_tokens"].as_u64(), check["logprobs"].as_bool(), check["top_logprobs"].as_u64()),
        (Some(1), Some(true), Some(10))
    );
    let prompt = check["messages"][0]["content"].as_str().unwrap();
    assert!(
        prompt.ends_with("Question: What is 2+2? Answer with a number.\nProposed answer: 9 times 3 is 27.\nCorrect?"),
        "{prompt}"
    );
    assert!(cloud.received()[0].body.to_string().contains("doubted its own answer (self-check 0.28 < 0.50)"));

    let (_local, cloud, app) = chain(self_checked(&[]), "[tasks.t.verify.self_check]\nthreshold = 0.25").await;
    let body: Value = app.chat(ask(false)).await.json().await.unwrap();
    assert_eq!((body["tierwise"]["tier"].as_str(), cloud.calls()), (Some("local"), 0));
}

#[tokio::test]
async fn a_sampled_self_check_counts_the_yes_votes() {
    let verify = "[tasks.t.verify.self_check]\nsamples = 3\nthreshold = 0.6";
    let (_local, _cloud, app) = chain(self_checked(&["Yes", "No.", "Yes, it is"]), verify).await;
    let body: Value = app.chat(ask(false)).await.json().await.unwrap();
    let score = scores(&body)[0]["score"].as_f64().unwrap();
    assert_eq!(score, round4(2.0 / 3.0));
    assert_eq!(body["tierwise"]["tier"], "local");
    assert_eq!(body["tierwise"]["attempts"][0]["verify_calls"].as_array().unwrap().len(), 4, "refused n, three votes");
}

/// A local judge double answering every verdict request with `verdict`; `verify` adds
/// to `judge = "judge-model"`.
async fn judged(verdict: Behaviour, verify: &str) -> (UpstreamDouble, Value) {
    let local = UpstreamDouble::start(answer("27")).await;
    let judge = UpstreamDouble::start(verdict).await;
    let cloud = UpstreamDouble::start(answer("The cloud's answer.")).await;
    let toml = config_for(
        &[
            ("local", "local", &local.base_url()),
            ("judge", "local", &judge.base_url()),
            ("vendor", "cloud", &cloud.base_url()),
        ],
        &[("t", &["local-model", "vendor-model"])],
        &format!("[tasks.t.verify]\njudge = \"judge-model\"\n{verify}\n"),
    );
    let app = TestApp::start(&toml).await;
    let body: Value = app.chat(ask(false)).await.json().await.unwrap();
    (judge, body)
}

#[tokio::test]
async fn a_yes_no_judge_scores_by_its_verdicts_token_probability() {
    // A one-token verdict with its alternatives, as llama-server records it.
    let (judge, body) = judged(Behaviour::json("llama_server/self_check.json"), "judge_score = \"yes_no\"").await;
    assert_eq!(
        scores(&body),
        &json!([{"verifier": "judge", "score": round4(recorded_yes()), "threshold": 0.5, "result": "reject"}])
    );
    assert_eq!(body["tierwise"]["tier"], "cloud");
    let asked = &judge.received()[0].body;
    assert_eq!(
        (asked["max_tokens"].as_u64(), asked["logprobs"].as_bool(), asked.get("response_format")),
        (Some(1), Some(true), None)
    );
    assert!(asked["messages"][0]["content"].as_str().unwrap().ends_with("Reply with Yes or No only."));
    assert_eq!(body["tierwise"]["attempts"][0]["feedback"], "the reviewer rejected the answer (score 0.28 < 0.50)");
    let (_judge, body) =
        judged(Behaviour::json("llama_server/self_check.json"), "judge_score = \"yes_no\"\njudge_threshold = 0.25")
            .await;
    assert_eq!(body["tierwise"]["tier"], "local");
}

#[tokio::test]
async fn a_json_judge_with_a_threshold_uses_its_own_score_or_its_boolean() {
    let (_judge, body) = judged(answer("{\"accept\": false, \"score\": 0.9}"), "judge_threshold = 0.8").await;
    assert_eq!((body["tierwise"]["tier"].as_str(), scores(&body)[0]["score"].as_f64()), (Some("local"), Some(0.9)));
    let (_judge, body) = judged(answer("{\"accept\": true}"), "judge_threshold = 0.8").await;
    assert_eq!(scores(&body), &json!([{"verifier": "judge", "score": 1.0, "threshold": 0.8, "result": "accept"}]));
    let (_judge, body) = judged(answer("{\"accept\": true, \"score\": 0.3}"), "").await;
    assert_eq!(
        (body["tierwise"]["tier"].as_str(), body["tierwise"]["attempts"][0].get("scores")),
        (Some("local"), None),
        "no threshold: the boolean"
    );
}

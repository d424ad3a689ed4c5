//! `self_check` (AutoMix's self-verification): the model that answered is shown the
//! question and its answer in a few-shot verification prompt and asked "Correct?". With
//! one sample the score is the probability of "Yes" as the verdict's first token (from
//! its top log-probabilities); with k samples, the share of "Yes" among k verdicts drawn
//! at a temperature. No other model is involved.

use std::time::Duration;

use serde_json::json;

use crate::config::{Sampling, SelfCheck};
use crate::upstream::Upstream;

use super::logprobs;
use super::sampling::{self, Ask, Call, CallError};

/// The built-in verification prompt: four worked verdicts, then the answer to check.
/// `{system}`, `{user}` and `{answer}` are replaced.
pub const DEFAULT_PROMPT: &str = "You check answers. For each question and proposed answer, say whether the proposed \
answer is correct. Reply with Yes or No only.\n\n\
Question: What is 12 + 30?\nProposed answer: 12 + 30 = 42.\nCorrect? Yes\n\n\
Question: What is the capital of Australia?\nProposed answer: The capital of Australia is Sydney.\nCorrect? No\n\n\
Question: A shirt costs $20 and is 25% off. What does it cost now?\nProposed answer: 25% of 20 is 5, so it costs \
20 - 5 = 15 dollars.\nCorrect? Yes\n\n\
Question: How many legs do 3 spiders have?\nProposed answer: A spider has 6 legs, so 3 spiders have 18 legs.\n\
Correct? No\n\n\
Question: {user}\nProposed answer: {answer}\nCorrect?";

/// How many alternatives of the verdict token are read.
const TOP_LOGPROBS: u32 = 10;

/// Asks `model` on `upstream` to check an answer (`prompt`, already filled in). The
/// score, or why there is none; and the calls made.
pub async fn check(
    upstream: &Upstream,
    model: &str,
    prompt: String,
    config: &SelfCheck,
) -> (Result<f64, String>, Vec<Call>) {
    let messages = json!([{"role": "user", "content": prompt}]);
    if config.samples == 1 {
        let body = json!({
            "model": model, "messages": messages, "max_tokens": 1, "temperature": 0,
            "logprobs": true, "top_logprobs": TOP_LOGPROBS,
        });
        return match tokio::time::timeout(config.timeout, sampling::call(upstream, body)).await {
            Err(_) => (Err(timed_out(config.timeout)), Vec::new()),
            Ok(Err(CallError { message, call, .. })) => {
                (Err(format!("the self-check failed: {message}")), call.into_iter().collect())
            }
            Ok(Ok((choices, call))) => (logprobs::verdict_probability(choices.first()), vec![call]),
        };
    }
    let ask = Ask {
        upstream,
        body: json!({"model": model, "messages": messages, "max_tokens": 3}),
        count: config.samples,
        temperature: config.temperature,
        sampling: Sampling::Auto,
        timeout: config.timeout,
    };
    match sampling::sample(ask).await {
        Err((message, calls)) => (Err(format!("the self-check failed: {message}")), calls),
        Ok(sampled) => {
            let said_yes = sampled.choices.iter().filter(|c| logprobs::first_word_verdict(c) == Some(true)).count();
            (Ok(said_yes as f64 / sampled.choices.len().max(1) as f64), sampled.calls)
        }
    }
}

fn timed_out(timeout: Duration) -> String {
    format!("the self-check took longer than {} ms", timeout.as_millis())
}

/// The feedback for the next step when the score is below the threshold.
pub fn feedback(score: f64, threshold: f64) -> String {
    format!("a smaller model doubted its own answer (self-check {score:.2} < {threshold:.2}); work it out carefully")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn recorded(name: &str) -> Value {
        let path = format!("{}/tests/fixtures/llama_server/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn the_verdict_probability_comes_from_the_recorded_top_logprobs() {
        let completion = recorded("self_check.json");
        let first = &completion["choices"][0]["logprobs"]["content"][0];
        let top = first["top_logprobs"].as_array().unwrap();
        let p = |word: &str| -> f64 {
            top.iter()
                .filter(|t| logprobs::verdict_of(t["token"].as_str().unwrap()) == Some(word == "yes"))
                .map(|t| t["logprob"].as_f64().unwrap().exp())
                .sum()
        };
        let expected = p("yes") / (p("yes") + p("no"));
        let score = logprobs::verdict_probability(completion["choices"].get(0)).unwrap();
        assert!((score - expected).abs() < 1e-12, "{score} vs {expected}");
        assert!(score > 0.0 && score < 1.0);
    }
}

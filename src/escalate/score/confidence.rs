//! `confidence`: how sure the model was of its own tokens. The step's request asks the
//! upstream for `logprobs`; the score is a probability — the geometric mean of the token
//! probabilities (`mean`), the least likely token's (`min`), or the geometric mean of the
//! k least likely (`lowest_k`). No extra call.

use serde_json::Value;

use crate::config::ConfidenceScore;

use super::logprobs;

/// Why no score could be read: the verifier errs, and the answer escalates.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoScore {
    #[error("the upstream returned no logprobs with the answer (it may not support them)")]
    Missing,
    #[error("the answer has no tokens to score")]
    Empty,
}

/// The score of a completion's first choice.
pub fn score(completion: &Value, how: ConfidenceScore) -> Result<f64, NoScore> {
    let choice = completion.pointer("/choices/0").ok_or(NoScore::Missing)?;
    let mut tokens = logprobs::of_choice(choice).ok_or(NoScore::Missing)?;
    if tokens.is_empty() {
        return Err(NoScore::Empty);
    }
    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len() as f64;
    let log_score = match how {
        ConfidenceScore::Mean => mean(&tokens),
        ConfidenceScore::Min => tokens.iter().copied().fold(f64::INFINITY, f64::min),
        ConfidenceScore::LowestMean(k) => {
            tokens.sort_by(f64::total_cmp);
            mean(&tokens[..k.min(tokens.len())])
        }
    };
    Ok(log_score.exp().clamp(0.0, 1.0))
}

/// The feedback for the next step when the score is below the threshold.
pub fn feedback(score: f64, threshold: f64) -> String {
    format!(
        "a smaller model answered with low confidence ({score:.2} < {threshold:.2} by its token probabilities); work it out carefully"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded() -> Value {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/llama_server/logprobs.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// The token log-probabilities llama-server recorded for SmolLM2's "The answer is 4."
    /// (tests/fixtures/llama_server/logprobs.json), scored by hand.
    #[test]
    fn scores_recorded_llama_server_logprobs_exactly() {
        let completion = recorded();
        let lps = [
            -1.8379321098327637,
            -0.24918532371520996,
            -0.6396653056144714,
            -0.39861738681793213,
            -0.06160722300410271,
            -0.42380818724632263,
            -0.48979175090789795,
        ];
        let tokens = logprobs::of_choice(&completion["choices"][0]).unwrap();
        assert_eq!(tokens, lps);
        let mean = (lps.iter().sum::<f64>() / 7.0).exp();
        assert!((score(&completion, ConfidenceScore::Mean).unwrap() - mean).abs() < 1e-12);
        assert!((score(&completion, ConfidenceScore::Min).unwrap() - (-1.8379321098327637f64).exp()).abs() < 1e-12);
        let lowest2 = ((-1.8379321098327637 - 0.6396653056144714) / 2.0f64).exp();
        assert!((score(&completion, ConfidenceScore::LowestMean(2)).unwrap() - lowest2).abs() < 1e-12);
        assert!((score(&completion, ConfidenceScore::LowestMean(50)).unwrap() - mean).abs() < 1e-12);
    }

    #[test]
    fn an_answer_without_logprobs_cannot_be_scored() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/llama_server/plain.json");
        let plain: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(score(&plain, ConfidenceScore::Mean), Err(NoScore::Missing));
        let empty = serde_json::json!({"choices": [{"logprobs": {"content": []}}]});
        assert_eq!(score(&empty, ConfidenceScore::Mean), Err(NoScore::Empty));
    }
}

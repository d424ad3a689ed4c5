//! Token log-probabilities in OpenAI's shape (`choices[i].logprobs.content[]`, each
//! `{token, logprob, top_logprobs: [{token, logprob}]}`), as llama-server, vLLM and OpenAI
//! return them.

use serde_json::Value;

/// Tokens read as "yes" and "no" in a verdict (trimmed, lowercased).
const YES: [&str; 4] = ["yes", "correct", "true", "right"];
const NO: [&str; 5] = ["no", "incorrect", "false", "wrong", "not"];

/// The log-probabilities of a choice's tokens; `None` when it has none.
pub fn of_choice(choice: &Value) -> Option<Vec<f64>> {
    let content = choice.pointer("/logprobs/content")?.as_array()?;
    content.iter().map(|t| t.get("logprob")?.as_f64()).collect()
}

/// Whether a token reads as a verdict: `Some(true)` for yes, `Some(false)` for no.
pub fn verdict_of(token: &str) -> Option<bool> {
    let word = token.trim().trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase();
    if YES.contains(&word.as_str()) {
        Some(true)
    } else if NO.contains(&word.as_str()) {
        Some(false)
    } else {
        None
    }
}

/// The probability of "yes" at one token position: the yes tokens' probability over the
/// yes and no tokens' among its top alternatives (the chosen token counts too). `None`
/// when neither appears.
pub fn yes_share(position: &Value) -> Option<f64> {
    let chosen = position.get("token").and_then(Value::as_str).zip(position.get("logprob").and_then(Value::as_f64));
    let top = position.get("top_logprobs").and_then(Value::as_array);
    let alternatives =
        top.into_iter().flatten().filter_map(|t| Some((t.get("token")?.as_str()?, t.get("logprob")?.as_f64()?)));
    let mut seen: Vec<&str> = Vec::new();
    let (mut yes, mut no) = (0.0, 0.0);
    for (token, logprob) in chosen.into_iter().chain(alternatives) {
        if seen.contains(&token) {
            continue;
        }
        seen.push(token);
        match verdict_of(token) {
            Some(true) => yes += logprob.exp(),
            Some(false) => no += logprob.exp(),
            None => {}
        }
    }
    (yes + no > 0.0).then(|| yes / (yes + no))
}

/// P(yes) at the verdict's first token; the token itself when no alternative reads as
/// yes or no (an upstream without logprobs still gives a 0 or 1).
pub fn verdict_probability(choice: Option<&Value>) -> Result<f64, String> {
    let choice = choice.ok_or("the verdict's answer has no choice")?;
    let first = choice.pointer("/logprobs/content/0");
    if let Some(share) = first.and_then(yes_share) {
        return Ok(share);
    }
    match first_word_verdict(choice) {
        Some(yes) => Ok(if yes { 1.0 } else { 0.0 }),
        None => {
            let said: String = super::consistency::text_of(choice).chars().take(40).collect();
            Err(format!("the verdict is neither yes nor no: {said:?}"))
        }
    }
}

pub fn first_word_verdict(choice: &Value) -> Option<bool> {
    super::consistency::text_of(choice).split_whitespace().next().and_then(verdict_of)
}

/// Removes every choice's `logprobs` (for a client that did not ask for them); whether
/// there were any.
pub fn strip(completion: &mut Value) -> bool {
    let mut removed = false;
    for choice in completion.get_mut("choices").and_then(Value::as_array_mut).into_iter().flatten() {
        if let Some(choice) = choice.as_object_mut() {
            removed |= choice.remove("logprobs").is_some_and(|l| !l.is_null());
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yes_share_weighs_yes_against_no_among_the_alternatives() {
        let position = json!({"token": "Yes", "logprob": -0.2, "top_logprobs": [
            {"token": "Yes", "logprob": -0.2}, {"token": " No", "logprob": -1.9}, {"token": "Maybe", "logprob": -3.0},
            {"token": "yes", "logprob": -4.0}]});
        let (yes, no) = ((-0.2f64).exp() + (-4.0f64).exp(), (-1.9f64).exp());
        assert!((yes_share(&position).unwrap() - yes / (yes + no)).abs() < 1e-12);
        assert_eq!(yes_share(&json!({"token": "Hmm", "logprob": -0.1, "top_logprobs": []})), None);
        assert_eq!(verdict_of(" Correct."), Some(true));
        assert_eq!(verdict_of("No"), Some(false));
        assert_eq!(verdict_of("The"), None);
    }

    #[test]
    fn without_logprobs_the_verdict_word_decides_and_anything_else_errs() {
        let yes = json!({"message": {"content": "Yes."}});
        assert_eq!(verdict_probability(Some(&yes)), Ok(1.0));
        let no = json!({"message": {"content": "No, it is wrong"}});
        assert_eq!(verdict_probability(Some(&no)), Ok(0.0));
        let neither = json!({"message": {"content": "Perhaps"}});
        assert!(verdict_probability(Some(&neither)).unwrap_err().contains("neither yes nor no"));
    }
}

//! Validation of a task's `verify` table.

use std::time::Duration;

use regex::Regex;

use super::raw::{RawConfig, RawVerify};
use super::validate::Problems;
use super::{validate_signals, JudgeScore, VerifyConfig};
use crate::escalate::{judge, Check, DEFAULT_REFUSALS};
use crate::policy::{ContentClass, Tier};

const CHECKS: &str = "non_empty, finish_stop, json, json_schema, max_chars, regex, no_refusal, tool_call_valid";

pub(super) fn verify(
    task_path: &str,
    raw: &RawVerify,
    config: &RawConfig,
    class: ContentClass,
    problems: &mut Problems,
) -> VerifyConfig {
    let path = format!("{task_path}.verify");
    let mut checks = Vec::new();
    for (i, name) in raw.checks.iter().enumerate() {
        let check_path = format!("{path}.checks[{i}]");
        let check = match name.as_str() {
            "non_empty" => Check::NonEmpty,
            "finish_stop" => Check::FinishStop,
            "json" => Check::Json,
            "json_schema" => Check::JsonSchema,
            "tool_call_valid" => Check::ToolCallValid,
            "max_chars" => match raw.max_chars {
                Some(max) => Check::MaxChars(max),
                None => {
                    problems.hint(check_path, "max_chars needs a limit", format!("set {path}.max_chars"));
                    continue;
                }
            },
            "regex" => match raw.regex.as_deref().map(Regex::new) {
                Some(Ok(regex)) => Check::Regex(regex),
                Some(Err(err)) => {
                    problems.add(format!("{path}.regex"), format!("not a valid regex: {err}"));
                    continue;
                }
                None => {
                    problems.hint(check_path, "regex needs a pattern", format!("set {path}.regex"));
                    continue;
                }
            },
            "no_refusal" => Check::NoRefusal(match &raw.refusal_phrases {
                Some(phrases) => phrases.iter().map(|p| p.to_lowercase()).collect(),
                None => DEFAULT_REFUSALS.iter().map(|p| p.to_string()).collect(),
            }),
            other => {
                problems.hint(check_path, format!("unknown check \"{other}\""), format!("one of: {CHECKS}"));
                continue;
            }
        };
        checks.push(check);
    }
    if let Some(alias) = &raw.judge {
        let tier = config
            .models
            .get(alias)
            .and_then(|m| config.upstreams.get(m.upstream.as_deref()?))
            .and_then(|u| u.tier.as_deref()?.parse::<Tier>().ok());
        match tier {
            None if !config.models.contains_key(alias) => {
                let known: Vec<&str> = config.models.keys().map(String::as_str).collect();
                problems.hint(
                    format!("{path}.judge"),
                    format!("unknown model \"{alias}\""),
                    format!("known models: {}", known.join(", ")),
                );
            }
            Some(tier) if class == ContentClass::Sensitive && tier > Tier::Local => problems.hint(
                format!("{path}.judge"),
                format!("the task is sensitive but its judge \"{alias}\" runs on tier {tier}"),
                "a sensitive task's judge must be a local model: the judge sees the whole request",
            ),
            _ => {}
        }
    }
    if let Some(prompt) = &raw.judge_prompt {
        if !prompt.contains("{answer}") {
            problems.hint(format!("{path}.judge_prompt"), "does not contain {answer}", "the judge must see the answer");
        }
    }
    let tiers = match &raw.tiers {
        None => vec![Tier::Local, Tier::Server],
        Some(list) => list
            .iter()
            .enumerate()
            .filter_map(|(i, t)| super::validate_access::tier(&format!("{path}.tiers[{i}]"), t, problems))
            .collect(),
    };
    let feedback = match raw.feedback.as_deref().unwrap_or("append") {
        "append" => true,
        "off" => false,
        other => {
            problems.hint(format!("{path}.feedback"), format!("unknown value \"{other}\""), "append or off");
            true
        }
    };
    let scored = raw.confidence.is_some() || raw.consistency.is_some() || raw.self_check.is_some();
    if checks.is_empty() && raw.judge.is_none() && !scored {
        problems.hint(
            path.clone(),
            "verifies nothing",
            "list checks, add confidence, consistency or self_check, name a judge, or remove the verify table",
        );
    }
    for (key, set) in [("judge_threshold", raw.judge_threshold.is_some()), ("judge_score", raw.judge_score.is_some())] {
        if set && raw.judge.is_none() {
            problems.hint(format!("{path}.{key}"), "there is no judge", format!("name one in {path}.judge"));
        }
    }
    let judge_score = match raw.judge_score.as_deref().unwrap_or("json") {
        "json" => JudgeScore::Json,
        "yes_no" => JudgeScore::YesNo,
        other => {
            problems.hint(format!("{path}.judge_score"), format!("unknown value \"{other}\""), "json or yes_no");
            JudgeScore::Json
        }
    };
    let judge_threshold = match (raw.judge_threshold, judge_score) {
        (None, JudgeScore::Json) => None,
        (t, _) => Some(validate_signals::threshold(format!("{path}.judge_threshold"), t, 0.5, problems)),
    };
    let judge_prompt = raw.judge_prompt.clone().unwrap_or_else(|| match judge_score {
        JudgeScore::Json => judge::DEFAULT_PROMPT.to_string(),
        JudgeScore::YesNo => judge::YES_NO_PROMPT.to_string(),
    });
    VerifyConfig {
        checks,
        confidence: raw.confidence.as_ref().map(|c| validate_signals::confidence(&path, c, problems)),
        consistency: raw.consistency.as_ref().map(|c| validate_signals::consistency(&path, c, problems)),
        self_check: raw.self_check.as_ref().map(|c| validate_signals::self_check(&path, c, problems)),
        judge: raw.judge.clone(),
        judge_threshold,
        judge_prompt,
        judge_score,
        judge_timeout: Duration::from_millis(raw.judge_timeout_ms.unwrap_or(30_000)),
        tiers,
        feedback,
    }
}

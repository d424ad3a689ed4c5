//! "What would happen": the plan for a task, profile and content class, each step with
//! the reason it would run or be skipped — without calling any model. Shared by
//! `tierwise explain` and `POST /v1/tierwise/explain`.

use std::fmt::Write as _;

use serde::Serialize;

use crate::config::{Config, Profile};
use crate::policy::{self, Action, Classification, Locale, PlanRequest, Resolved, SkipReason, Tier, Why};

#[derive(Debug, Serialize)]
pub struct Explanation {
    pub task: String,
    /// True when the name was a model alias (a one-step chain).
    pub direct: bool,
    pub profile: String,
    pub content_class: Classification,
    pub outcome: Expected,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<RefusalView>,
    pub steps: Vec<StepView>,
    pub rules_reply: bool,
}

/// What a request would get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Expected {
    /// Some step would run.
    Answers,
    /// Only the rules reply would answer.
    Rules,
    /// The policy refuses it (`tier_too_low`, `privacy_blocked`).
    Refused,
    /// Nothing could answer.
    NoTierAvailable,
}

impl Expected {
    pub fn as_str(self) -> &'static str {
        match self {
            Expected::Answers => "answers",
            Expected::Rules => "rules",
            Expected::Refused => "refused",
            Expected::NoTierAvailable => "no_tier_available",
        }
    }
}

#[derive(Debug, Serialize)]
pub struct RefusalView {
    pub code: &'static str,
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct StepView {
    pub step: usize,
    pub tier: Tier,
    pub model: String,
    pub upstream: String,
    /// `run` or `skip`.
    pub action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<SkipReason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Plans like a request would be planned, and adds what is known without a call: an
/// upstream whose key variable is unset would be skipped.
pub fn explain(
    config: &Config,
    resolved: &Resolved,
    profile: &Profile,
    class: &Classification,
    locale: Locale,
) -> Explanation {
    let mut explanation = Explanation {
        task: resolved.task.clone(),
        direct: resolved.direct,
        profile: profile.name.clone(),
        content_class: class.clone(),
        outcome: Expected::NoTierAvailable,
        refusal: None,
        steps: Vec::new(),
        rules_reply: false,
    };
    let plan = match policy::plan(config, &PlanRequest { resolved, profile, class }) {
        Ok(plan) => plan,
        Err(refusal) => {
            explanation.outcome = Expected::Refused;
            explanation.refusal = Some(RefusalView { code: refusal.code(), message: refusal.explain(locale) });
            return explanation;
        }
    };
    explanation.rules_reply = plan.rules_reply.is_some();
    for planned in &plan.steps {
        let step = &planned.step;
        let why = match &planned.action {
            Action::Skip(why) => Some(why.clone()),
            Action::Run => config.upstreams.get(&step.upstream).and_then(|u| match (&u.api_key_env, &u.api_key) {
                (Some(env), None) => Some(Why::MissingKey { env: env.clone(), upstream: u.name.clone() }),
                _ => None,
            }),
        };
        if why.is_none() && explanation.outcome == Expected::NoTierAvailable {
            explanation.outcome = Expected::Answers;
        }
        explanation.steps.push(StepView {
            step: step.index,
            tier: step.tier,
            model: step.model.clone(),
            upstream: step.upstream.clone(),
            action: if why.is_some() { "skip" } else { "run" },
            reason: why.as_ref().map(Why::reason),
            message: why.as_ref().map(|w| w.explain(locale)),
        });
    }
    if explanation.outcome == Expected::NoTierAvailable && explanation.rules_reply {
        explanation.outcome = Expected::Rules;
    }
    explanation
}

impl Explanation {
    /// Whether a request could get an answer at all (modulo upstreams failing).
    pub fn runnable(&self) -> bool {
        matches!(self.outcome, Expected::Answers | Expected::Rules)
    }

    /// For people: one line per step.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let kind = if self.direct { "model" } else { "task" };
        let _ = writeln!(
            out,
            "{kind} {} for profile \"{}\", content {}",
            self.task, self.profile, self.content_class.class
        );
        if !self.content_class.because.is_empty() {
            let _ = writeln!(out, "  sensitive because: {}", self.content_class.because.join("; "));
        }
        if let Some(refusal) = &self.refusal {
            let _ = writeln!(out, "refused ({}): {}", refusal.code, refusal.message);
            return out;
        }
        for s in &self.steps {
            match &s.message {
                None => {
                    let _ = writeln!(out, "  {}. {}/{} on {}: run", s.step + 1, s.tier, s.model, s.upstream);
                }
                Some(message) => {
                    let reason = s.reason.map(SkipReason::as_str).unwrap_or("skip");
                    let _ = writeln!(out, "  {}. {}/{}: skip ({reason}) — {message}", s.step + 1, s.tier, s.model);
                }
            }
        }
        if self.rules_reply {
            let _ = writeln!(out, "  then: the rules reply (tier none)");
        }
        let _ = writeln!(out, "outcome: {}", self.outcome.as_str());
        out
    }
}

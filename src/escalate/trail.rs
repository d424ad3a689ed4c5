//! The record of a request's walk through its plan: every attempt and every skip, in
//! order. It feeds the `x-tierwise-attempts` header, error messages and metrics.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::policy::{Step, Tier};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The answer went to the client.
    Accept,
    /// The answer was not good enough; the next step was tried.
    Escalate,
    /// The call failed.
    Error,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Accept => "accept",
            Verdict::Escalate => "escalate",
            Verdict::Error => "error",
        }
    }
}

/// Why a step was not called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// The upstream cannot be used: e.g. its API key env var is unset.
    NotAvailable,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NotAvailable => "not_available",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub step: usize,
    pub tier: Tier,
    pub model: String,
    pub upstream: String,
    #[serde(rename = "duration_ms", serialize_with = "as_millis")]
    pub duration: Duration,
    pub verdict: Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Skip {
    pub step: usize,
    pub tier: Tier,
    pub model: String,
    pub upstream: String,
    pub reason: SkipReason,
    /// What a person can do about it.
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    Attempt(Attempt),
    Skip(Skip),
}

/// Attempts and skips in the order they happened.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Trail {
    pub events: Vec<Event>,
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Trail {
    pub fn attempt(&mut self, step: &Step, duration: Duration, verdict: Verdict, error: Option<String>) {
        self.events.push(Event::Attempt(Attempt {
            step: step.index,
            tier: step.tier,
            model: step.model.clone(),
            upstream: step.upstream.clone(),
            duration,
            verdict,
            error,
        }));
    }

    pub fn skip(&mut self, step: &Step, reason: SkipReason, detail: String) {
        self.events.push(Event::Skip(Skip {
            step: step.index,
            tier: step.tier,
            model: step.model.clone(),
            upstream: step.upstream.clone(),
            reason,
            detail,
        }));
    }

    pub fn attempts(&self) -> impl Iterator<Item = &Attempt> {
        self.events.iter().filter_map(|e| match e {
            Event::Attempt(a) => Some(a),
            Event::Skip(_) => None,
        })
    }

    /// The compact `x-tierwise-attempts` form:
    /// `local/smollm2:error:3ms, cloud/gpt:skip(not_available), cloud/gpt2:accept:1430ms`.
    /// Names are config names (validated plain ASCII), so this is a valid header value.
    pub fn header_value(&self) -> String {
        let mut out = String::new();
        for (i, event) in self.events.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            // Writing to a String cannot fail.
            let _ = match event {
                Event::Attempt(a) => {
                    write!(out, "{}/{}:{}:{}ms", a.tier, a.model, a.verdict.as_str(), a.duration.as_millis())
                }
                Event::Skip(s) => write!(out, "{}/{}:skip({})", s.tier, s.model, s.reason.as_str()),
            };
        }
        out
    }

    /// One line per event, for error messages.
    pub fn describe(&self) -> String {
        let lines: Vec<String> = self
            .events
            .iter()
            .map(|event| match event {
                Event::Attempt(a) => format!(
                    "{} ({}, upstream \"{}\"): {}",
                    a.model,
                    a.tier,
                    a.upstream,
                    a.error.as_deref().unwrap_or(a.verdict.as_str())
                ),
                Event::Skip(s) => format!("{} ({}): skipped, {} — {}", s.model, s.tier, s.reason.as_str(), s.detail),
            })
            .collect();
        lines.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(index: usize, tier: Tier, model: &str) -> Step {
        Step { index, model: model.into(), upstream_model: model.into(), upstream: "u".into(), tier }
    }

    #[test]
    fn header_lists_events_in_order() {
        let mut trail = Trail::default();
        trail.attempt(&step(0, Tier::Local, "smollm2"), Duration::from_millis(812), Verdict::Error, Some("x".into()));
        trail.skip(&step(1, Tier::Cloud, "gpt"), SkipReason::NotAvailable, "key".into());
        trail.attempt(&step(2, Tier::Cloud, "claude"), Duration::from_millis(1430), Verdict::Accept, None);
        assert_eq!(
            trail.header_value(),
            "local/smollm2:error:812ms, cloud/gpt:skip(not_available), cloud/claude:accept:1430ms"
        );
        assert!(http::HeaderValue::try_from(trail.header_value()).is_ok());
    }
}

//! One record per request. When a request ends — answered, refused, failed, abandoned by
//! its client or cut off by its deadline — one typed [`RequestRecord`] is built, and
//! [`RequestRecord::emit`] writes it once: to the metrics and to the audit log (DESIGN
//! §9). Nothing else assembles an audit line or counts a finished request (the
//! `internal_events` way of vector).

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::audit::Audit;
use crate::config::Config;
use crate::escalate::Trail;
use crate::metrics::{Finished, Metrics, Outcome};
use crate::openai::Message;
use crate::policy::{Action, Classification, Locale, Plan, Tier};

/// How the request's response ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The handler responded: with `status`, and the error code it carried, if any.
    Responded { status: u16, outcome: Outcome, error: Option<String> },
    /// `server.request_timeout_ms` cut it off: the client got a 504.
    TimedOut,
    /// The client left (or shutdown's grace ran out) before the response was complete.
    ClientGone,
}

impl Ending {
    fn status(&self) -> Option<u16> {
        match self {
            Ending::Responded { status, .. } => Some(*status),
            Ending::TimedOut => Some(504),
            Ending::ClientGone => None,
        }
    }

    pub fn outcome(&self) -> Outcome {
        match self {
            Ending::Responded { outcome, .. } => *outcome,
            Ending::TimedOut => Outcome::Failed,
            Ending::ClientGone => Outcome::Abandoned,
        }
    }

    fn error(&self) -> Option<&str> {
        match self {
            Ending::Responded { error, .. } => error.as_deref(),
            Ending::TimedOut => Some("request_timeout"),
            Ending::ClientGone => Some("client_gone"),
        }
    }
}

/// The step that answered.
#[derive(Debug, Clone, Copy)]
pub struct Answered<'a> {
    pub tier: Tier,
    pub model: &'a str,
}

/// What the request was, once it had a plan.
pub struct Planned<'a> {
    pub plan: &'a Plan,
    pub profile: &'a str,
    /// The class applied: as classified, or raised during the run.
    pub class: Classification,
    pub stream: bool,
    pub trail: &'a Trail,
    pub answered: Option<Answered<'a>>,
    /// Until the response (or, for a stream, its first byte) was ready.
    pub took: Duration,
    /// The request's messages and the answer's text, when the audit log keeps content.
    pub content: Option<(&'a [Message], Option<String>)>,
}

/// Everything known about one request when it ended.
pub struct RequestRecord<'a> {
    pub id: &'a str,
    /// The task, once it was resolved.
    pub task: Option<&'a str>,
    pub ending: Ending,
    /// `None` for a request refused before it had a plan (bad request, auth, limits).
    pub planned: Option<Planned<'a>>,
}

impl RequestRecord<'_> {
    /// Writes the record to the metrics (a planned request the handler responded to) and
    /// the audit log (every request, when it is on).
    pub fn emit(&self, config: &Config, metrics: &Metrics, audit: &Audit) {
        let responded = match &self.ending {
            Ending::Responded { outcome, .. } => Some(*outcome),
            Ending::TimedOut | Ending::ClientGone => None,
        };
        if let (Some(planned), Some(task), Some(outcome)) = (&self.planned, self.task, responded) {
            let finished = Finished {
                task,
                trail: planned.trail,
                tier: planned.answered.map(|a| a.tier),
                outcome,
                took: planned.took,
            };
            metrics.request_finished(config, &finished);
        }
        if audit.enabled() {
            audit.record(self.audit_line(config, audit.include_content));
        }
    }

    /// The audit line (DESIGN §9). Without `include_content`, no message, answer or
    /// upstream's own words, and detector hits in what remains are redacted.
    fn audit_line(&self, config: &Config, include_content: bool) -> Value {
        let time = crate::audit::timestamp(SystemTime::now());
        let Some(planned) = &self.planned else {
            return json!({
                "id": self.id,
                "time": time,
                "task": self.task,
                "status": self.ending.status(),
                "outcome": self.ending.outcome().as_str(),
                "error": self.ending.error(),
            });
        };
        let plan: Vec<Value> = planned
            .plan
            .steps
            .iter()
            .map(|s| {
                let (action, reason) = match &s.action {
                    Action::Run => ("run", None),
                    Action::Skip(why) => ("skip", Some(why.reason())),
                };
                json!({"step": s.step.index, "tier": s.step.tier, "model": s.step.model, "action": action, "reason": reason})
            })
            .collect();
        let attempts = if include_content {
            planned.trail.views(Locale::En)
        } else {
            planned.trail.views_without_content(Locale::En, &config.detector)
        };
        let tokens = planned.trail.tokens();
        let mut line = json!({
            "id": self.id,
            "time": time,
            "task": self.task,
            "profile": planned.profile,
            "content_class": planned.class.class,
            "class_because": planned.class.because,
            "stream": planned.stream,
            "status": self.ending.status(),
            "outcome": self.ending.outcome().as_str(),
            "error": self.ending.error(),
            "tier": planned.answered.map(|a| a.tier),
            "model": planned.answered.map(|a| a.model),
            "plan": plan,
            "attempts": attempts,
            "rules_reply": planned.plan.rules_reply.is_some(),
            "duration_ms": (planned.took.as_secs_f64() * 1e6).round() / 1e3,
            "tokens": {"prompt": tokens.prompt, "completion": tokens.completion},
        });
        if let Some(cache) = &planned.trail.cache {
            line["cache"] = cache.view();
        }
        if let (true, Some((messages, answer))) = (include_content, &planned.content) {
            line["messages"] = serde_json::to_value(messages).unwrap_or(Value::Null);
            line["answer"] = answer.clone().map(Value::String).unwrap_or(Value::Null);
        }
        line
    }
}

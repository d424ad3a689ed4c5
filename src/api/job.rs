//! A chat request in flight: everything its run and its response need, owned (a delayed
//! stream carries it past the handler), and the one record it leaves when it ends —
//! answered, failed, abandoned by its client or cut off by its deadline.

use std::sync::Arc;

use tokio::time::Instant;
use tracing::Instrument;

use super::caller::Caller;
use crate::app::AppState;
use crate::escalate::{self, Answer, Produced, Progress, RunContext, Trail};
use crate::metrics::InFlight;
use crate::openai::ChatRequest;
use crate::policy::{Classification, ContentClass, Plan};
use crate::record::{Answered, Ending, Planned, RequestRecord};
use crate::state::budgets::{micro_usd, Hold};
use crate::upstream::Reply;

/// Which API the client spoke: the run is the same, the response is written in its
/// shape.
#[derive(Debug, Clone)]
pub enum Wire {
    Chat,
    /// `POST /v1/responses`: what the response object echoes, and the request body as it
    /// came (the detector reads all of it, forwarded or not).
    Responses {
        echo: crate::openai::responses::Echo,
        body: Arc<serde_json::Map<String, serde_json::Value>>,
    },
    /// `POST /v1/embeddings`: the request is kept as a chat request without messages.
    Embeddings,
}

pub struct Job {
    pub id: String,
    pub wire: Wire,
    pub state: AppState,
    /// Who is calling, and the config generation the request runs on (a reload does
    /// not touch it).
    pub caller: Caller,
    pub request: Arc<ChatRequest>,
    pub plan: Arc<Plan>,
    /// When the request must be answered by.
    pub deadline: Option<Instant>,
    pub classification: Classification,
    pub started: Instant,
    /// When `server.request_timeout_ms` cuts the response off, if it applies.
    pub cut_off: Option<Instant>,
    /// Whether the request's record is written: a job dropped before that (the client
    /// left, or the request deadline passed) writes it on drop.
    pub recorded: bool,
    /// The run's trail so far, when a dropped request would need it.
    pub progress: Option<Progress>,
    /// Held until the response is done — for a stream, until its body ends.
    pub guards: Option<Guards>,
    /// The request's span: its trace's SERVER span when traces are on.
    pub span: tracing::Span,
    /// The spend budgets the request falls under; settled when the last holder drops it
    /// (a passed-through stream holds it until its body ends).
    pub budget: Option<Arc<Hold>>,
    /// What the response cache does with the request's answer (a task with a cache).
    pub cache: Option<super::cached::CacheUse>,
}

/// What a request holds until its response is done: its place in
/// `in_flight_requests` and under `server.max_concurrent_requests`.
pub struct Guards {
    pub in_flight: InFlight,
    pub slot: Option<crate::slots::Slot>,
}

impl Job {
    /// The run, detached from the response side: it owns what it reads.
    pub fn run(&self) -> impl std::future::Future<Output = escalate::Outcome> + Send + 'static {
        let (generation, request, plan) = (self.caller.generation.clone(), self.request.clone(), self.plan.clone());
        let (profile, deadline, progress) = (self.caller.profile.clone(), self.deadline, self.progress.clone());
        let budget = self.budget.clone();
        let responses = match &self.wire {
            Wire::Responses { body, .. } => Some(body.clone()),
            Wire::Chat | Wire::Embeddings => None,
        };
        let endpoint = match self.wire {
            Wire::Embeddings => crate::upstream::Endpoint::Embeddings,
            Wire::Chat | Wire::Responses { .. } => crate::upstream::Endpoint::Chat,
        };
        let span = self.span.clone();
        async move {
            let ctx = RunContext {
                config: &generation.config,
                upstreams: &generation.upstreams,
                request: &request,
                profile: &profile,
                warmth: &generation.warmth,
                deadline,
                progress: progress.as_ref(),
                endpoint,
                responses: responses.as_deref(),
                budget: budget.as_deref(),
            };
            escalate::run(&ctx, &plan).await
        }
        .instrument(span)
    }

    /// The class the request ended with: as classified, or sensitive when a model's
    /// words made it so during the run.
    pub fn applied_class(&self, trail: &Trail) -> Classification {
        let mut applied = self.classification.clone();
        if let Some(because) = &trail.reclassified {
            applied.class = ContentClass::Sensitive;
            applied.because.push(because.clone());
        }
        applied
    }

    /// Writes the request's one record (metrics and audit) and charges the tokens its
    /// attempts used to the caller's key.
    pub fn record(&mut self, trail: &Trail, answer: Option<&Answer>, ending: Ending) {
        self.recorded = true;
        let answered = answer.map(|a| Answered { tier: a.step.tier, model: &a.step.model });
        let content = self.state.audit.include_content.then(|| (self.request.messages.as_slice(), answer_text(answer)));
        self.emit(trail, answered, ending, content);
    }

    fn emit(
        &self,
        trail: &Trail,
        answered: Option<Answered<'_>>,
        ending: Ending,
        content: Option<(&[crate::openai::Message], Option<String>)>,
    ) {
        if let Some(key) = self.caller.key {
            self.state.rate_limits.spend_tokens(key, trail.tokens().total());
        }
        if let Some(budget) = &self.budget {
            let config = &self.caller.generation.config;
            for attempt in trail.attempts() {
                let price = config.price_of(&attempt.model);
                if let (Some(price), Some(tokens)) = (price, attempt.tokens) {
                    budget.spent(&attempt.model, micro_usd(price.cost(tokens.prompt, tokens.completion)));
                }
            }
        }
        let class = self.applied_class(trail);
        crate::telemetry::record_request(
            &self.span,
            &crate::telemetry::RequestFields {
                task: &self.plan.task,
                profile: &self.caller.profile.name,
                class: class.class.as_str(),
                answered: answered.map(|a| (a.tier.as_str(), a.model)),
                outcome: ending.outcome().as_str(),
            },
        );
        let planned = Planned {
            plan: &self.plan,
            profile: &self.caller.profile.name,
            class,
            stream: self.request.is_stream(),
            trail,
            answered,
            took: self.started.elapsed(),
            content,
        };
        let record = RequestRecord { id: &self.id, task: Some(&self.plan.task), ending, planned: Some(planned) };
        record.emit(&self.caller.generation.config, &self.state.metrics, &self.state.audit);
    }
}

impl Drop for Job {
    /// A request dropped before its response was complete: cut off by
    /// `server.request_timeout_ms` (the client got a 504), or given up by its client (or
    /// by shutdown, when its grace period ran out). Its record lists the attempts made,
    /// and the call it was waiting on as `abandoned`.
    fn drop(&mut self) {
        if self.recorded {
            return;
        }
        let trail = self.progress.as_ref().map(|p| p.so_far().abandoned()).unwrap_or_default();
        let timed_out = self.cut_off.is_some_and(|at| Instant::now() >= at);
        let ending = if timed_out { Ending::TimedOut } else { Ending::ClientGone };
        self.emit(&trail, None, ending, None);
    }
}

/// The answer's text, when it is known without reading a stream.
fn answer_text(answer: Option<&Answer>) -> Option<String> {
    let completion = match &answer?.produced {
        Produced::Upstream(Reply::Json(bytes)) => serde_json::from_slice(bytes).ok()?,
        Produced::Completion(completion) => completion.clone(),
        Produced::Rules(reply) => return Some(reply.clone()),
        Produced::Upstream(Reply::Response(bytes)) => {
            crate::openai::responses::native::to_completion(&serde_json::from_slice(bytes).ok()?)
        }
        Produced::Upstream(Reply::Stream { .. } | Reply::ResponseStream { .. }) => return None,
    };
    Some(crate::escalate::Candidate::from_completion(&completion).text)
}

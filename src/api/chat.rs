//! `POST /v1/chat/completions`: the caller (an extractor), then parse, resolve the task,
//! classify the content, plan, run, respond — with the trail in the response headers on
//! every path and one record when the request ends.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use http::HeaderMap;
use tokio::time::Instant;

use super::cached::{self, Looked};
use super::caller::Caller;
use super::extract::JsonBody;
use super::headers::{set_trail, CONTENT_CLASS, DEADLINE, TASK};
use super::job::{Guards, Job, Wire};
use super::respond;
use crate::app::{AppState, ResponseDeadline};
use crate::config::Config;
use crate::error::ApiError;
use crate::escalate::{self, Progress, Trail};
use crate::openai::ChatRequest;
use crate::policy::{self, Classification, PlanRequest, Source};
use crate::state::{budgets, Refusal};

pub async fn chat_completions(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    headers: HeaderMap,
    cut_off: Option<Extension<ResponseDeadline>>,
    body: Result<JsonBody<ChatRequest>, ApiError>,
) -> Response {
    serve(Call { state, caller, headers, cut_off, wire: Wire::Chat }, body.map(|JsonBody(r)| r)).await
}

/// A request as the handlers received it, before its body is read.
pub struct Call {
    pub state: AppState,
    pub caller: Result<Caller, ApiError>,
    pub headers: HeaderMap,
    pub cut_off: Option<Extension<ResponseDeadline>>,
    pub wire: Wire,
}

/// Serves a chat request, from whichever API it came in: the caller, limits, the task
/// and class, the plan, the run, and the response in the client's API's shape.
pub async fn serve(call: Call, body: Result<ChatRequest, ApiError>) -> Response {
    let Call { state, caller, headers, cut_off, wire } = call;
    let started = Instant::now();
    let id = headers.get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let early = |err: ApiError, task: Option<&str>| respond::early(&id, &state, task, err);
    // Who is calling is answered first: an unknown caller learns nothing of its body.
    let caller = match caller {
        Ok(caller) => caller,
        Err(err) => return early(err, None),
    };
    let mut request = match body {
        Ok(request) => request,
        Err(err) => return early(err, None),
    };
    if let Some(key) = caller.key {
        if let Err(refusal) = state.rate_limits.admit(key).await {
            if let Refusal::Limited(limited) = &refusal {
                state.metrics.rate_limited(&caller.profile.name, limited.limit.as_str());
            }
            return early(refusal.into_error(&caller.profile.name), None);
        }
    }
    let slot = match state.admission.admit().await {
        Ok(slot) => slot,
        Err(err) => {
            state.metrics.shed(None);
            return early(err, None);
        }
    };
    let in_flight = state.metrics.request_started();
    let config = caller.generation.config.clone();
    let Prepared { resolved, classification, deadline } = match prepare(&config, &headers, &mut request, &wire) {
        Ok(prepared) => prepared,
        Err(err) => return early(err, None),
    };
    let plan_request = PlanRequest { resolved: &resolved, profile: &caller.profile, class: &classification };
    let plan = match policy::plan(&config, &plan_request) {
        Ok(plan) => plan,
        Err(refusal) => {
            state.metrics.request_refused(&resolved.task, refusal.code());
            let err = ApiError::Forbidden { code: refusal.code(), message: refusal.explain(caller.locale) };
            let mut response = early(err, Some(&resolved.task));
            set_trail(response.headers_mut(), &resolved.task, None, &Trail::default(), &classification);
            return response;
        }
    };
    let asker = cached::Asker {
        task: &plan.task,
        profile: &caller.profile.name,
        key: caller.key.as_ref().map(|k| &k.digest),
        class: classification.class,
    };
    let looked = match cached::look(&state, &config, &headers, &request, &wire, &asker).await {
        Ok(looked) => looked,
        Err(err) => {
            let mut response = early(err, Some(&resolved.task));
            response.headers_mut().insert(cached::CACHE, http::HeaderValue::from_static("miss"));
            return response;
        }
    };
    let tokens_limited = caller.key.is_some_and(|k| k.limits.tokens_per_minute.is_some());
    // Read only if the request is dropped mid-run: for its record and its tokens.
    let progress = (state.audit.enabled() || tokens_limited).then(Progress::default);
    let may_buffer = request.is_stream() && (0..plan.steps.len()).any(|i| escalate::is_verified(&config, &plan, i));
    let budget = budget_hold(&state, &config, &caller);
    let job = Job {
        id,
        wire,
        state: state.clone(),
        budget,
        // Without traces the run is not instrumented: no tracing work beyond the log span's.
        span: if crate::telemetry::enabled() { tracing::Span::current() } else { tracing::Span::none() },
        caller,
        request: Arc::new(request),
        plan: Arc::new(plan),
        deadline: deadline.map(|d| started + d),
        classification,
        started,
        cut_off: cut_off.map(|Extension(ResponseDeadline(at))| at),
        recorded: false,
        progress,
        guards: Some(Guards { in_flight, slot }),
        cache: match &looked {
            Looked::Run(cache) => cache.clone(),
            Looked::Hit(_) => None,
        },
    };
    if let Looked::Hit(hit) = looked {
        return cached::serve_hit(job, hit);
    }
    let mut running = Box::pin(job.run());
    if may_buffer {
        // A verified stream is buffered: if it takes long, start the response with
        // keep-alive comments rather than leave the client waiting for headers.
        match tokio::time::timeout(config.server.sse_keepalive, &mut running).await {
            Ok(outcome) => respond::finish(job, outcome),
            Err(_) => respond::delayed(job, running),
        }
    } else {
        let outcome = running.await;
        respond::finish(job, outcome)
    }
}

struct Prepared {
    resolved: policy::Resolved,
    classification: Classification,
    /// How long the request may take: `x-tierwise-deadline-ms`, else the task's.
    deadline: Option<Duration>,
}

/// Everything about the request that needs no upstream: its task and content class.
fn prepare(config: &Config, headers: &HeaderMap, request: &mut ChatRequest, wire: &Wire) -> Result<Prepared, ApiError> {
    let embeddings = matches!(wire, Wire::Embeddings);
    if request.messages.is_empty() && !embeddings {
        return Err(ApiError::invalid("`messages` must contain at least one message", Some("messages".into())));
    }
    let name = task_name(headers, request)?.to_string();
    let resolved = policy::resolve(config, &name)
        .map_err(|unknown| ApiError::ModelNotFound { name: unknown.name, known: unknown.known })?;
    serves(config, &resolved, embeddings)?;
    let mut classification = classify(config, &resolved, headers, request)?;
    if let Wire::Responses { body, .. } = wire {
        // What the translation drops is read too: a finding anywhere in the body counts.
        if classification.class != policy::ContentClass::Sensitive {
            let task = config.tasks.get(&resolved.task).filter(|_| !resolved.direct);
            let detect = task.map_or(config.detect, |t| t.detect);
            let scanner = policy::Scanner { detector: &config.detector, opaque: detect.opaque };
            if let Some(finding) = scanner.object(&mut Vec::new(), body) {
                classification = policy::classify(classification.class, &[], Some(finding)).unwrap_or(classification);
            }
        }
    }
    if embeddings
        && classification.class != policy::ContentClass::Sensitive
        && super::embeddings::holds_token_ids(request)
    {
        let task = config.tasks.get(&resolved.task).filter(|_| !resolved.direct);
        if task.map_or(config.detect, |t| t.detect).opaque == policy::Opaque::Sensitive {
            let reason = "token ids in input, which the detector cannot read (detect.opaque = \"sensitive\")";
            classification = policy::classify(classification.class, &[], Some(reason.into())).unwrap_or(classification);
        }
    }
    let deadline = match headers.get(&DEADLINE) {
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis)
                .ok_or_else(|| {
                    ApiError::invalid(
                        "x-tierwise-deadline-ms must be a positive number of milliseconds",
                        Some("x-tierwise-deadline-ms".into()),
                    )
                })?,
        ),
        None if resolved.direct => None,
        None => config.tasks.get(&resolved.task).and_then(|t| t.deadline),
    };
    Ok(Prepared { resolved, classification, deadline })
}

/// Whether the task's (or the direct model's) models serve what the request asks:
/// embeddings, or chat.
fn serves(config: &Config, resolved: &policy::Resolved, embeddings: bool) -> Result<(), ApiError> {
    let chain: Vec<&str> = match config.tasks.get(&resolved.task).filter(|_| !resolved.direct) {
        Some(task) => task.chain.iter().map(String::as_str).collect(),
        None => vec![resolved.task.as_str()],
    };
    let models = chain.iter().filter_map(|m| config.models.get(*m));
    let able = models.clone().all(|m| if embeddings { m.serves.embeddings } else { m.serves.chat });
    if able {
        return Ok(());
    }
    let name = &resolved.task;
    let message = if embeddings {
        format!("\"{name}\" does not serve embeddings (its models serve chat): name a task or model with serves = [\"embeddings\"]")
    } else {
        format!("\"{name}\" serves embeddings, not chat: send it to POST /v1/embeddings")
    };
    Err(ApiError::invalid(message, Some("model".into())))
}

/// The request's content class: the highest of the task's, every value of every
/// `x-tierwise-content-class` header, the body's `metadata.content_class` (removed before
/// forwarding) and the detector's finding in everything the request forwards.
pub fn classify(
    config: &Config,
    resolved: &policy::Resolved,
    headers: &HeaderMap,
    request: &mut ChatRequest,
) -> Result<Classification, ApiError> {
    let from_body = request.take_content_class().map_err(|_| {
        ApiError::invalid("`metadata.content_class` must be a string", Some("metadata.content_class".into()))
    })?;
    let mut stated = Vec::new();
    for value in headers.get_all(&CONTENT_CLASS) {
        let value = value
            .to_str()
            .map_err(|_| ApiError::invalid("the x-tierwise-content-class header is not valid text", None))?;
        // Two headers and one folded into a list say the same: every value counts.
        stated.extend(value.split(',').map(|v| (Source::Header, Some(v))));
    }
    stated.push((Source::Metadata, from_body.as_deref()));
    let task = config.tasks.get(&resolved.task).filter(|_| !resolved.direct);
    let task_class = task.map_or(policy::ContentClass::Normal, |t| t.content_class);
    let without_scan = policy::classify(task_class, &stated, None).map_err(|bad| {
        let param = match bad.source {
            Source::Header => "x-tierwise-content-class",
            Source::Metadata => "metadata.content_class",
        };
        ApiError::invalid(
            format!("unknown content class \"{}\" in {}: use normal or sensitive", bad.value, bad.source.label()),
            Some(param.into()),
        )
    })?;
    if without_scan.class == policy::ContentClass::Sensitive {
        return Ok(without_scan);
    }
    let detect = task.map_or(config.detect, |t| t.detect);
    let scanner = policy::Scanner { detector: &config.detector, opaque: detect.opaque };
    Ok(match request.scan(&scanner) {
        Some(finding) => policy::classify(without_scan.class, &[], Some(finding)).unwrap_or(without_scan),
        None => without_scan,
    })
}

/// `x-tierwise-task` if present, else `model`.
pub fn task_name<'a>(headers: &'a HeaderMap, request: &'a ChatRequest) -> Result<&'a str, ApiError> {
    match headers.get(&TASK) {
        Some(value) => {
            value.to_str().map_err(|_| ApiError::invalid("the x-tierwise-task header is not valid text", None))
        }
        None => request.model.as_deref().ok_or_else(|| {
            ApiError::invalid(
                "missing `model`: name a tierwise task or model alias (or send the x-tierwise-task header)",
                Some("model".into()),
            )
        }),
    }
}

/// The request's spend budgets — its key's and its profile's — or `None` if it has none.
fn budget_hold(state: &AppState, config: &Config, caller: &Caller) -> Option<Arc<budgets::Hold>> {
    let now = budgets::now_unix();
    let profile = &caller.profile;
    let mut limits = budgets::Limit::of("profile", &profile.name, &profile.name, profile.budget, now);
    let key = caller.key.and_then(|key| config.auth.keys.iter().find(|k| k.digest == key.digest));
    if let Some(key) = key.filter(|k| !k.budget.is_unlimited()) {
        limits.extend(budgets::Limit::of("key", &key.name, &crate::config::hex(&key.digest), key.budget, now));
    }
    budgets::Hold::new(state.budgets.clone(), limits)
}

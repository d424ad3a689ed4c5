//! The response cache on the request path (docs/caching.md): whether a request uses it
//! (`[tasks.NAME] cache`, `x-tierwise-cache: off | refresh | only`), a hit served as
//! JSON or replayed as SSE without calling a model, and an accepted answer kept — a
//! passed-through stream once it ended whole.

use axum::response::Response;
use bytes::Bytes;
use futures_util::stream::{self, BoxStream};
use futures_util::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::{json, Value};

use super::headers;
use super::job::{Job, Wire};
use super::respond;
use crate::cache::key::{self, Namespace};
use crate::cache::{Entry, Hit, Slot};
use crate::config::Config;
use crate::error::ApiError;
use crate::escalate::{Answer, CacheNote, Produced, Trail};
use crate::openai::{replay, ChatRequest};
use crate::policy::{ContentClass, Detector, Step, Tier};

/// `x-tierwise-cache`, on requests (`off`, `refresh`, `only`) and responses (`hit`,
/// `miss`, `bypass`).
pub const CACHE: HeaderName = HeaderName::from_static("x-tierwise-cache");

/// What the cache does for a request that was not served from it.
#[derive(Debug, Clone)]
pub struct CacheUse {
    pub note: CacheNote,
    /// Where its answer is kept, when it may be.
    pub slot: Option<Slot>,
}

/// The cache's answer to a request: a hit, or go on and run (with what the cache does
/// with the answer; `None` for a task without a cache).
pub enum Looked {
    Hit(Hit),
    Run(Option<CacheUse>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Use,
    Off,
    Refresh,
    Only,
}

/// Who is asking, for the cache's namespace.
pub struct Asker<'a> {
    pub task: &'a str,
    pub profile: &'a str,
    pub key: Option<&'a [u8; 32]>,
    pub class: ContentClass,
}

/// Looks the request up, when its task has a cache and the request may use it.
pub async fn look(
    state: &crate::app::AppState,
    config: &Config,
    headers: &HeaderMap,
    request: &ChatRequest,
    wire: &Wire,
    asker: &Asker<'_>,
) -> Result<Looked, ApiError> {
    let mode = mode(headers)?;
    let settings = config.tasks.get(asker.task).and_then(|t| t.cache.as_ref());
    let Some(settings) = settings else {
        return match mode {
            Mode::Only => {
                Err(miss_error(format!("task \"{}\" has no cache ([tasks.{}] cache)", asker.task, asker.task)))
            }
            _ => Ok(Looked::Run(None)),
        };
    };
    let bypass = match (mode, wire) {
        (Mode::Off, _) => Some("off"),
        (_, Wire::Responses { .. } | Wire::Embeddings) => Some("endpoint"),
        _ if settings.deterministic_only && !key::is_deterministic(request) => Some("not_deterministic"),
        _ => None,
    };
    let metrics = &state.metrics;
    if let Some(reason) = bypass {
        if mode == Mode::Only {
            return Err(miss_error(format!("the request cannot be served from the cache ({})", explain(reason))));
        }
        metrics.cache_lookup(asker.task, "bypass");
        return Ok(Looked::Run(Some(CacheUse { note: CacheNote::bypass(reason), slot: None })));
    }
    let key_digest = asker.key.filter(|_| settings.per_key);
    let namespace = Namespace { task: asker.task, profile: asker.profile, key: key_digest, class: asker.class };
    let slot = Slot {
        task: asker.task.to_string(),
        key: key::key(settings, &namespace, request),
        config: settings.clone(),
        local_only: asker.class == ContentClass::Sensitive,
    };
    if mode != Mode::Refresh {
        if let Some(hit) = state.cache.get(&slot).await {
            metrics.cache_lookup(asker.task, "hit");
            return Ok(Looked::Hit(hit));
        }
    }
    metrics.cache_lookup(asker.task, "miss");
    if mode == Mode::Only {
        return Err(miss_error("no answer is cached for this request".to_string()));
    }
    let note = CacheNote::miss((mode == Mode::Refresh).then_some("refresh"));
    Ok(Looked::Run(Some(CacheUse { note, slot: Some(slot) })))
}

fn mode(headers: &HeaderMap) -> Result<Mode, ApiError> {
    let Some(value) = headers.get(&CACHE) else { return Ok(Mode::Use) };
    match value.to_str().map(str::trim) {
        Ok(v) if v.eq_ignore_ascii_case("off") => Ok(Mode::Off),
        Ok(v) if v.eq_ignore_ascii_case("refresh") => Ok(Mode::Refresh),
        Ok(v) if v.eq_ignore_ascii_case("only") => Ok(Mode::Only),
        _ => Err(ApiError::invalid("x-tierwise-cache must be off, refresh or only", Some("x-tierwise-cache".into()))),
    }
}

fn explain(reason: &str) -> &'static str {
    match reason {
        "off" => "x-tierwise-cache: off",
        "endpoint" => "only chat completions are cached",
        _ => "the task caches only requests at temperature 0 or with a seed (cache.deterministic_only)",
    }
}

/// `only-if-cached` without an answer: 504, as HTTP caches answer it (RFC 9111 §5.2.1.7).
fn miss_error(why: String) -> ApiError {
    ApiError::Exhausted {
        status: StatusCode::GATEWAY_TIMEOUT,
        code: "cache_miss",
        message: format!("x-tierwise-cache: only, and {why}"),
        skipped: None,
        retry_after: None,
    }
}

/// A hit, served without calling a model: the answer as JSON, or replayed as SSE with
/// its usage chunk (when asked) marking every prompt token as cached. It costs nothing:
/// no spend, no tokens charged to the key.
pub fn serve_hit(mut job: Job, hit: Hit) -> Response {
    let guards = job.guards.take();
    let Hit { entry, store } = hit;
    let trail = Trail { cache: Some(CacheNote::hit(store, entry.age(), entry.tier, &entry.model)), ..Trail::default() };
    job.state.metrics.cache_cost_avoided(&job.plan.task, entry.cost_usd);
    let step = Step {
        index: 0,
        model: entry.model.clone(),
        upstream_model: entry.model.clone(),
        upstream: "cache".into(),
        tier: entry.tier,
    };
    let answered = (entry.tier, entry.model.as_str());
    // The entry was stored with its usage marked: JSON goes out as stored, the trail
    // spliced in, without a parse.
    let mut response = if job.request.is_stream() {
        let completion: Value = serde_json::from_slice(&entry.body).unwrap_or(Value::Null);
        let trailer = respond::trailer_comment(&job, &trail, Some(answered));
        respond::sse_of(replay::to_sse_with(&completion, job.request.include_usage(), Some(&trailer)))
    } else if job.caller.generation.config.server.trail_in_body {
        let trail_object = respond::trail_object(&job, &trail, answered.0, answered.1);
        respond::json_of(respond::splice_trail(entry.body.clone(), &trail_object))
    } else {
        respond::json_of(entry.body.clone())
    };
    let answer = Answer { step, produced: Produced::Upstream(crate::upstream::Reply::Json(entry.body.clone())) };
    job.record(&trail, Some(&answer), respond::responded(StatusCode::OK, None));
    drop(guards);
    headers::set_trail(response.headers_mut(), &job.plan.task, Some(answered), &trail, &job.applied_class(&trail));
    set_header(response.headers_mut(), &trail);
    response
}

/// `x-tierwise-cache: hit | miss | bypass` from the trail's cache entry.
pub fn set_header(headers: &mut HeaderMap, trail: &Trail) {
    if let Some(note) = &trail.cache {
        headers.insert(CACHE, HeaderValue::from_static(note.result.as_str()));
    }
}

/// The answer as it is served from the cache: its usage marked (see [`mark_cached`]).
fn marked(body: &[u8]) -> Option<Bytes> {
    let mut completion: Value = serde_json::from_slice(body).ok()?;
    mark_cached(&mut completion);
    Some(Bytes::from(completion.to_string()))
}

/// Every prompt token of a served answer came from the cache (OpenAI's own marker).
fn mark_cached(completion: &mut Value) {
    let Some(usage) = completion.get_mut("usage").filter(|u| u.is_object()) else { return };
    let prompt = usage.get("prompt_tokens").cloned().unwrap_or(json!(0));
    match usage.get_mut("prompt_tokens_details") {
        Some(Value::Object(details)) => {
            details.insert("cached_tokens".into(), prompt);
        }
        _ => usage["prompt_tokens_details"] = json!({"cached_tokens": prompt}),
    }
}

/// Keeps an accepted answer the client gets whole now (JSON, or a verified stream
/// replayed), when the request may fill the cache.
pub fn keep(job: &Job, trail: &Trail, answer: &Answer) {
    let Some(slot) = job.cache.as_ref().and_then(|c| c.slot.as_ref()) else { return };
    let body = match &answer.produced {
        Produced::Upstream(crate::upstream::Reply::Json(body)) => body.clone(),
        Produced::Completion(completion) => Bytes::from(completion.to_string()),
        // A rules reply is the config's own text, and often a stand-in for a failure.
        _ => return,
    };
    let cost = cost_of(&job.caller.generation.config, trail, None);
    store(job, slot, trail, body, (answer.step.tier, &answer.step.model), cost);
}

fn store(job: &Job, slot: &Slot, trail: &Trail, body: Bytes, made_by: (Tier, &str), cost: f64) {
    let config = &job.caller.generation.config;
    let body = marked(&body).unwrap_or(body);
    let sensitive =
        job.applied_class(trail).class == ContentClass::Sensitive || holds_personal_data(&config.detector, &body);
    job.state.cache.put(slot, Entry::new(body, made_by.0, made_by.1, cost), sensitive);
}

/// Whether any text of the answer holds personal data: then it stays in a local store.
fn holds_personal_data(detector: &Detector, body: &[u8]) -> bool {
    fn any_string(value: &Value, found: &mut dyn FnMut(&str) -> bool) -> bool {
        match value {
            Value::String(text) => found(text),
            Value::Array(items) => items.iter().any(|v| any_string(v, found)),
            Value::Object(map) => map.values().any(|v| any_string(v, found)),
            _ => false,
        }
    }
    let Ok(value) = serde_json::from_slice::<Value>(body) else { return true };
    detector.is_enabled() && any_string(&value, &mut |text| detector.find(text).is_some())
}

/// What the request's attempts and verify calls cost, plus `last` (a stream's own usage,
/// read when it ended), at the configured prices.
fn cost_of(config: &Config, trail: &Trail, last: Option<(&str, crate::upstream::usage::Usage)>) -> f64 {
    let price = |model: &str, usage: crate::upstream::usage::Usage| {
        config.price_of(model).map_or(0.0, |p| p.cost(usage.prompt, usage.completion))
    };
    let attempts: f64 = trail
        .attempts()
        .map(|a| {
            let own = a.tokens.map_or(0.0, |t| price(&a.model, t));
            own + a.verify_calls.iter().filter_map(|c| Some(price(&c.model, c.tokens?))).sum::<f64>()
        })
        .sum();
    attempts + last.map_or(0.0, |(model, usage)| price(model, usage))
}

/// A passed-through stream, kept once it ended whole: its events are collected (up to
/// the task's `max_bytes`) and, when the last one has passed, assembled into the
/// completion they amount to. A stream that broke or was left is not kept.
pub fn tee(
    job: &Job,
    trail: &Trail,
    made_by: (Tier, &str),
    events: BoxStream<'static, Bytes>,
) -> BoxStream<'static, Bytes> {
    let Some(slot) = job.cache.as_ref().and_then(|c| c.slot.clone()) else { return events };
    let max = usize::try_from(slot.config.max_bytes).unwrap_or(usize::MAX);
    let collected = std::sync::Arc::new(std::sync::Mutex::new(Some(Vec::new())));
    let sink = collected.clone();
    let events = events.map(move |bytes| {
        if let Ok(mut guard) = sink.lock() {
            let full = guard.as_ref().is_some_and(|b| b.len() + bytes.len() > max);
            match guard.as_mut() {
                Some(_) if full => *guard = None,
                Some(buffer) => buffer.extend_from_slice(&bytes),
                None => {}
            }
        }
        bytes
    });
    let (state, config) = (job.state.clone(), job.caller.generation.config.clone());
    let class = job.applied_class(trail).class;
    let earlier = cost_of(&config, trail, None);
    let (tier, model) = (made_by.0, made_by.1.to_string());
    let end = stream::once(async move {
        let buffer = collected.lock().ok().and_then(|mut g| g.take());
        let Some(completion) = buffer.and_then(|b| whole_completion(&b)) else { return };
        let usage = crate::upstream::usage::of_completion(&completion);
        let cost = earlier + cost_of(&config, &Trail::default(), usage.map(|u| (model.as_str(), u)));
        let mut completion = completion;
        mark_cached(&mut completion);
        let body = Bytes::from(completion.to_string());
        let sensitive = class == ContentClass::Sensitive || holds_personal_data(&config.detector, &body);
        state.cache.put(&slot, Entry::new(body, tier, &model, cost), sensitive);
    })
    .filter_map(|()| async { None::<Bytes> });
    events.chain(end).boxed()
}

/// The completion a whole stream amounts to: every choice finished, no error event.
fn whole_completion(events: &[u8]) -> Option<Value> {
    let completion = crate::escalate::assemble_events(events).ok()?;
    let choices = completion.get("choices")?.as_array()?;
    let finished = !choices.is_empty() && choices.iter().all(|c| c.get("finish_reason").is_some_and(|r| !r.is_null()));
    finished.then_some(completion)
}

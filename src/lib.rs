//! tierwise: an OpenAI-compatible proxy that sends each chat completion to the cheapest
//! tier that can do it well.
//!
//! A request's path through the modules:
//!
//! - [`app`]        — state, route table, the tower stack (request id, span, panic
//!   catcher, body limit, deadline), the connection loop (header timeout and size),
//!   graceful shutdown.
//! - [`api`]        — handlers: `chat` (the request's whole journey), `models`,
//!   `explain`, `health`; `auth` maps client keys to profiles; `admission` and
//!   `rate_limit` shed load and enforce per-key limits; `wire` holds the OpenAI
//!   request types, `extract` the JSON extractor, `replay` renders our own answers as SSE.
//! - [`policy`]     — pure: resolve `model`/`x-tierwise-task` to a task, classify the
//!   content (detector), `plan` its steps by tier, profile and class (DESIGN §2). No I/O.
//! - [`escalate`]   — the run loop: walks the plan, calls upstreams, keeps the `Trail`
//!   of attempts and skips.
//! - [`upstream`]   — pooled HTTP clients with connect/first-byte/total timeouts; SSE
//!   framing; errors that say whether to escalate; `anthropic` translates OpenAI chat
//!   requests to Anthropic's Messages API and back (JSON and streams).
//! - [`warmth`]     — which models are loaded: a background prober per upstream
//!   (llama-swap, llama-server, ollama) publishes snapshots the run loop reads without
//!   waiting; the learned cold-start time.
//! - [`explain`]    — what a request would do, step by step, without calling a model
//!   (`tierwise explain`, `POST /v1/tierwise/explain`).
//! - [`config`]     — raw TOML mirror → validated `Config` (figment layering, every
//!   problem reported at once).
//! - [`reload`]     — reloads the config when its file changes (as SIGHUP does).
//! - [`slots`]      — a concurrency limit with a bounded wait queue (the server's and
//!   each upstream's).
//! - [`audit`]      — one JSON line per request, written off the request path.
//! - [`metrics`]    — every Prometheus metric, one typed function per event.
//! - [`error`]      — `ApiError`: status mapping and the OpenAI error envelope.

pub mod api;
pub mod app;
pub mod audit;
pub mod config;
pub mod error;
pub mod escalate;
pub mod explain;
pub mod metrics;
pub mod openai;
pub mod policy;
pub mod record;
pub mod reload;
pub mod server;
pub mod shutdown;
pub mod slots;
pub mod upstream;
pub mod warmth;

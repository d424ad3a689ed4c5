//! tierwise: an OpenAI-compatible proxy that sends each chat completion to the cheapest
//! tier that can do it well.
//!
//! A request's path through the modules:
//!
//! - [`app`]        — state, route table, the tower stack (request id, span, panic
//!   catcher, body limit, deadline), graceful shutdown.
//! - [`api`]        — handlers: `chat` (the request's whole journey), `models`,
//!   `health`; `wire` holds the OpenAI request types, `extract` the JSON extractor.
//! - [`policy`]     — pure: resolve `model`/`x-tierwise-task` to a task, `plan` its
//!   steps. No I/O.
//! - [`escalate`]   — the run loop: walks the plan, calls upstreams, keeps the `Trail`
//!   of attempts and skips.
//! - [`upstream`]   — pooled HTTP clients with connect/first-byte/total timeouts; SSE
//!   framing; errors that say whether to escalate.
//! - [`config`]     — raw TOML mirror → validated `Config` (figment layering, every
//!   problem reported at once).
//! - [`metrics`]    — every Prometheus metric, one typed function per event.
//! - [`error`]      — `ApiError`: status mapping and the OpenAI error envelope.

pub mod api;
pub mod app;
pub mod config;
pub mod error;
pub mod escalate;
pub mod metrics;
pub mod policy;
pub mod upstream;

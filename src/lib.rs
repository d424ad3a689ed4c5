//! tierwise: an OpenAI-compatible proxy that sends each chat completion to the cheapest
//! tier that can do it well, and never past the tier its privacy allows.
//!
//! A request's path through the modules (docs/architecture.md draws it):
//!
//! - [`server`]   — the accept loop (header timeout and size), the metrics listener,
//!   graceful shutdown on the [`shutdown`] token tree.
//! - [`app`]      — state (the config [`app::Generation`], swapped whole on reload), the
//!   route table, the tower stack (request id, span, panic catcher, body limit, deadline).
//! - [`api`]      — handlers, HTTP ⇄ domain only: `caller` (the key → profile
//!   extractor), `chat` (parse, classify, plan, run), `job` (the request in flight and
//!   its one record), `respond` (JSON or SSE, trail headers), `failure` (the client's
//!   error when nothing answered), `admission` and `rate_limit`, `models`, `explain`,
//!   `health`.
//! - [`openai`]   — OpenAI's wire types below the run loop: the chat request (duplicate
//!   keys refused), feedback injection, the SSE replay of our own answers.
//! - [`policy`]   — pure: resolve `model`/`x-tierwise-task` to a task, classify the
//!   content (the detector reads every string the request forwards), `plan` its steps by
//!   tier, profile and class (DESIGN §2). No I/O.
//! - [`escalate`] — the run loop: walks the plan, `step` skips or calls (with retries),
//!   `review` checks, guards and judges an answer, escalating with feedback; the `Trail`
//!   of attempts and skips.
//! - [`upstream`] — pooled HTTP clients with connect/first-byte/total timeouts, circuit
//!   breakers, the one SSE event reader, usage; `anthropic` translates OpenAI chat
//!   requests to Anthropic's Messages API and back (JSON and streams).
//! - [`record`]   — one `RequestRecord` per request, emitted once to [`metrics`] and
//!   [`audit`].
//! - [`warmth`]   — which models are loaded: a background prober per upstream
//!   (llama-swap, llama-server, ollama) publishes snapshots the run loop reads without
//!   waiting; the learned cold-start time.
//! - [`explain`]  — what a request would do, step by step, without calling a model
//!   (`tierwise explain`, `POST /v1/tierwise/explain`).
//! - [`config`]   — raw TOML mirror → validated `Config` (figment layering, every
//!   problem reported at once).
//! - [`reload`]   — reloads the config on SIGHUP, the reload endpoint, or a changed file.
//! - [`slots`]    — a concurrency limit with a bounded wait queue (the server's and
//!   each upstream's).
//! - [`error`]    — `ApiError`: status mapping and the OpenAI error envelope.
//!
//! Beside the request path, [`eval`] (`tierwise eval`) runs a dataset through an
//! in-process server and reports what the chain buys against each model alone.

pub mod api;
pub mod app;
pub mod audit;
pub mod cache;
pub mod canonical;
pub mod config;
pub mod error;
pub mod escalate;
pub mod eval;
pub mod explain;
pub mod metrics;
pub mod openai;
pub mod policy;
pub mod record;
pub mod reload;
pub mod server;
pub mod shutdown;
pub mod slots;
pub mod state;
pub mod telemetry;
pub mod upstream;
pub mod warmth;

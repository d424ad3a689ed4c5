//! The one integration test binary: tierwise on 127.0.0.1:0 against real HTTP upstreams
//! on 127.0.0.1:0 (doubles serving recorded bodies, and the real local LLM).
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot go on fails, with the panic as its message"
)]

mod support;

mod anthropic;
mod audit;
mod budgets;
mod cache;
mod chain;
mod cli;
mod dashboard;
mod detector;
mod docs;
mod edge;
mod embeddings;
mod errors;
mod eval;
mod faults;
mod invariant;
mod leak_property;
mod leaks;
mod limits;
mod llm;
mod local_output;
mod metrics;
mod privacy;
mod providers;
mod reliability;
mod reload;
mod responses;
mod responses_native;
mod scored;
mod scored_real;
mod sdk;
mod slow_clients;
mod state;
mod streaming;
mod traces;
mod verify;
mod verify_e2e;
mod warm_routing;
mod warmth;

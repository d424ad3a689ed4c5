//! The raw mirror of the services beside the upstreams: `[tracing]` and `[state]` (see
//! `raw.rs`, which re-exports them).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `[tracing]`: OpenTelemetry traces over OTLP. The standard `OTEL_*` variables fill in
/// what is not set here.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTracing {
    /// The collector's OTLP base URL (`http://127.0.0.1:4318` for HTTP, `:4317` for gRPC);
    /// absent, and no `OTEL_EXPORTER_OTLP_ENDPOINT`: no traces.
    pub otlp_endpoint: Option<String>,
    /// `http/protobuf` (default) or `grpc`.
    pub protocol: Option<String>,
    /// Headers sent with every export: header name → the env var holding its value.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The share of traces kept, 0 to 1 (a client's `traceparent` decision is followed).
    pub sample_ratio: Option<f64>,
    /// `service.name`. Default `OTEL_SERVICE_NAME`, else `tierwise`.
    pub service_name: Option<String>,
}

/// `[state]`: where state shared by requests lives — per-key rate limits. In memory (one
/// process), or in Redis, shared by every replica that points at it.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    /// `memory` (default) or `redis`.
    pub backend: Option<String>,
    /// `redis://HOST:PORT/DB`, or `rediss://` for TLS. No password in it: see
    /// `password_env`.
    pub url: Option<String>,
    /// The env var holding Redis's password (and `username` for an ACL user).
    pub password_env: Option<String>,
    /// An ACL user name. Default: none (the `default` user).
    pub username: Option<String>,
    /// A PEM file with the CA certificate(s) to trust for `rediss://` instead of the
    /// system's roots (a private CA). Default: the system's roots.
    pub tls_ca_file: Option<String>,
    /// Time to connect. Default 1000.
    pub connect_timeout_ms: Option<u64>,
    /// Time for one command's answer. Default 250.
    pub command_timeout_ms: Option<u64>,
    /// Prefix of every key tierwise writes. Default `tierwise:`.
    pub key_prefix: Option<String>,
    /// While Redis cannot be reached: `local` (default) falls back to per-process state;
    /// `deny` refuses requests that need the shared state with 503.
    pub on_error: Option<String>,
    /// The tier of the Redis as a cache store: `server` (default) or `local` (Redis on
    /// this machine). Sensitive answers are cached only in a `local` store.
    pub cache_tier: Option<String>,
}

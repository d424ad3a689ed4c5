//! The services tierwise may use beside its upstreams: a Redis for state shared by
//! replicas (`[state]`), and an OTLP collector for traces (`[tracing]`).

use std::time::Duration;

use super::Secret;

/// Where and how traces are exported (`[tracing]`, `OTEL_*`).
#[derive(Debug, Clone, PartialEq)]
pub struct TracingConfig {
    /// For HTTP the full traces URL (`…/v1/traces`); for gRPC the collector's base URL.
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    /// Header names and their values (from env).
    pub headers: Vec<(String, Secret)>,
    pub sample_ratio: f64,
    pub service_name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    HttpProtobuf,
    Grpc,
}

/// `[state]`: where per-key rate limits live.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StateConfig {
    /// In this process.
    #[default]
    Memory,
    /// In Redis, shared by every replica configured alike.
    Redis(RedisConfig),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://` or `rediss://`, without credentials.
    pub url: String,
    pub username: Option<String>,
    /// From `password_env`.
    pub password: Option<Secret>,
    /// `tls_ca_file`'s PEM bytes: the roots `rediss://` trusts instead of the system's.
    pub tls_ca: Option<Vec<u8>>,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub key_prefix: String,
    pub on_error: OnStateError,
    /// What Redis is as a cache store: sensitive answers go only to a `local` one.
    pub cache_tier: crate::policy::Tier,
}

/// What a request that needs the shared state gets while Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStateError {
    /// This process's own counters, as with `backend = "memory"`.
    Local,
    /// 503 `state_unavailable`.
    Deny,
}

impl OnStateError {
    pub fn as_str(self) -> &'static str {
        match self {
            OnStateError::Local => "local",
            OnStateError::Deny => "deny",
        }
    }
}

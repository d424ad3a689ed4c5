//! The Redis side of the shared state: one multiplexed connection (redis-rs's
//! `ConnectionManager`, which reconnects by itself), the Lua scripts, and the outage
//! bookkeeping. Every command is bounded by `command_timeout_ms`; a connection is made
//! lazily, so tierwise starts (and serves, by `on_error`) while Redis is down.
//!
//! Keys are `{key_prefix}{what}:v{N}:{id}`; a script's arithmetic changing bumps N, so old
//! and new replicas can run side by side during a rollout without misreading each other.
//! Scripts run by EVALSHA and are loaded on the first NOSCRIPT (redis-rs `Script`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, Script};
use tracing::{info, warn};

use super::budgets::Limit;
use crate::config::{KeyLimits, OnStateError, RedisConfig};
use crate::metrics::Metrics;
use crate::shutdown::CancellationToken;

/// A command that did not succeed in time.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("Redis did not answer within {0:?} (state.command_timeout_ms)")]
    Timeout(Duration),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("cannot use state.url: {0}")]
    Config(String),
}

/// What the admit script decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    Yes,
    /// Over the request limit; the bucket holds one again after this long.
    OverRequests(Duration),
    OverTokens(Duration),
}

pub struct RedisStore {
    connection: ConnectionManager,
    /// For the pub/sub connection circuit news arrive on.
    client: redis::Client,
    connect_timeout: Duration,
    /// This replica, in the circuit messages it publishes (so it ignores its own).
    id: u64,
    circuit_report: Script,
    prefix: String,
    command_timeout: Duration,
    on_error: OnStateError,
    admit: Script,
    spend: Script,
    budget_reserve: Script,
    budget_settle: Script,
    /// In an outage now: the first failure logs it, the first success after logs the end.
    down: AtomicBool,
    metrics: Metrics,
}

impl RedisStore {
    /// A store for `config`; no connection is made until the first command.
    pub fn new(config: &RedisConfig, metrics: Metrics) -> Result<Self, StoreError> {
        crate::upstream::install_crypto_provider();
        let info = config.url.as_str().into_connection_info().map_err(|e| StoreError::Config(e.to_string()))?;
        let mut settings = info.redis_settings().clone();
        if let Some(username) = &config.username {
            settings = settings.set_username(username);
        }
        if let Some(password) = &config.password {
            settings = settings.set_password(password.expose());
        }
        let info = info.set_redis_settings(settings);
        let client = match &config.tls_ca {
            None => redis::Client::open(info)?,
            Some(pem) => redis::Client::build_with_tls(
                info,
                redis::TlsCertificates { client_tls: None, root_cert: Some(pem.clone()) },
            )?,
        };
        let pubsub_client = client.clone();
        // Commands fail fast and the manager reconnects in the background: a request
        // never waits for more than one command timeout.
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.command_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let connection = ConnectionManager::new_lazy_with_config(client, manager)?;
        Ok(RedisStore {
            connection,
            client: pubsub_client,
            connect_timeout: config.connect_timeout,
            id: replica_id(),
            circuit_report: Script::new(include_str!("lua/circuit_report.lua")),
            prefix: config.key_prefix.clone(),
            command_timeout: config.command_timeout,
            on_error: config.on_error,
            admit: Script::new(include_str!("lua/rate_admit.lua")),
            spend: Script::new(include_str!("lua/rate_spend.lua")),
            budget_reserve: Script::new(include_str!("lua/budget_reserve.lua")),
            budget_settle: Script::new(include_str!("lua/budget_settle.lua")),
            down: AtomicBool::new(false),
            metrics,
        })
    }

    pub fn on_error(&self) -> OnStateError {
        self.on_error
    }

    /// Whether the last command failed (so the next decision may skip Redis's timeout).
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// Admits one request of the key with `digest` against `limits`, in one script call.
    pub async fn admit(&self, digest: &[u8; 32], limits: KeyLimits) -> Result<Admitted, StoreError> {
        let mut invocation = self.admit.key(self.bucket_key(digest));
        invocation.arg(limit_arg(limits.requests_per_minute)).arg(limit_arg(limits.tokens_per_minute));
        let mut connection = self.connection.clone();
        let (verdict, wait_ms): (i64, i64) = self.run("admit", invocation.invoke_async(&mut connection)).await?;
        let wait = Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0));
        Ok(match verdict {
            1 => Admitted::OverRequests(wait),
            2 => Admitted::OverTokens(wait),
            _ => Admitted::Yes,
        })
    }

    /// Charges `tokens` to the key's token bucket (`tokens_per_minute`).
    pub async fn spend(&self, digest: &[u8; 32], tokens_per_minute: u64, tokens: u64) -> Result<(), StoreError> {
        let mut invocation = self.spend.key(self.bucket_key(digest));
        invocation.arg(tokens_per_minute).arg(tokens);
        let mut connection = self.connection.clone();
        let _level: i64 = self.run("spend", invocation.invoke_async(&mut connection)).await?;
        Ok(())
    }

    /// Reserves `estimate` (micro-USD) on every one of `limits`: `Ok(spent)` after it, one
    /// per limit, or `Err(i)` for the first limit it would overrun.
    pub async fn budget_reserve(&self, limits: &[Limit], estimate: i64) -> Result<Result<Vec<i64>, usize>, StoreError> {
        let mut invocation = self.budget_reserve.prepare_invoke();
        for limit in limits {
            invocation.key(format!("{}{}", self.prefix, limit.store_key));
        }
        invocation.arg(estimate);
        for limit in limits {
            invocation.arg(limit.micro_usd);
        }
        for limit in limits {
            invocation.arg(limit.ends);
        }
        let mut connection = self.connection.clone();
        let reply: Vec<i64> = self.run("budget", invocation.invoke_async(&mut connection)).await?;
        Ok(match reply.split_first() {
            Some((0, spent)) => Ok(spent.to_vec()),
            Some((over, _)) => Err(usize::try_from(*over - 1).unwrap_or(0).min(limits.len().saturating_sub(1))),
            None => Ok(Vec::new()),
        })
    }

    /// Adds `delta` (micro-USD, may be negative) to every one of `limits`; the spends after.
    pub async fn budget_settle(&self, limits: &[Limit], delta: i64) -> Result<Vec<i64>, StoreError> {
        let mut invocation = self.budget_settle.prepare_invoke();
        for limit in limits {
            invocation.key(format!("{}{}", self.prefix, limit.store_key));
        }
        invocation.arg(delta);
        for limit in limits {
            invocation.arg(limit.ends);
        }
        let mut connection = self.connection.clone();
        self.run("budget", invocation.invoke_async(&mut connection)).await
    }

    /// Counts a call outcome on `upstream` with the fleet's (`lua/circuit_report.lua`).
    pub async fn circuit_report(
        &self,
        upstream: &str,
        ok: bool,
        threshold: u32,
        cooldown: Duration,
    ) -> Result<i64, StoreError> {
        let mut invocation = self.circuit_report.key(format!("{}circuit:v1:{upstream}", self.prefix));
        invocation
            .arg(if ok { "ok" } else { "fail" })
            .arg(threshold)
            .arg(u64::try_from(cooldown.as_millis()).unwrap_or(u64::MAX))
            .arg(self.channel())
            .arg(upstream)
            .arg(self.id);
        let mut connection = self.connection.clone();
        self.run("circuit", invocation.invoke_async(&mut connection)).await
    }

    fn channel(&self) -> String {
        format!("{}circuit:v1", self.prefix)
    }

    /// Until `stop`, passes what other replicas publish about circuits to `news`
    /// (upstream name, what happened); reconnects after a second when Redis goes away.
    pub async fn listen(self: Arc<Self>, stop: CancellationToken, news: impl Fn(&str, CircuitNews) + Send + 'static) {
        while !stop.is_cancelled() {
            let subscribed = async {
                let mut pubsub = tokio::time::timeout(self.connect_timeout, self.client.get_async_pubsub())
                    .await
                    .map_err(|_| StoreError::Timeout(self.connect_timeout))??;
                pubsub.subscribe(self.channel()).await?;
                Ok::<_, StoreError>(pubsub)
            };
            let mut pubsub = tokio::select! {
                () = stop.cancelled() => return,
                subscribed = subscribed => match subscribed {
                    Ok(pubsub) => pubsub,
                    Err(_) => {
                        tokio::select! {
                            () = stop.cancelled() => return,
                            () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        }
                    }
                },
            };
            let mut messages = pubsub.on_message();
            loop {
                let message = tokio::select! {
                    () = stop.cancelled() => return,
                    message = messages.next() => message,
                };
                let Some(message) = message else { break };
                let Ok(text) = message.get_payload::<String>() else { continue };
                if let Some((upstream, said, from)) = CircuitNews::parse(&text) {
                    if from != self.id {
                        news(upstream, said);
                    }
                }
            }
        }
    }

    /// The cached answer under `key`, if any (the response cache).
    pub async fn cache_get(&self, key: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
        let mut connection = self.connection.clone();
        let mut command = redis::cmd("GET");
        command.arg(self.cache_key(key));
        self.run("cache_get", command.query_async(&mut connection)).await
    }

    /// Keeps a cached answer under `key` for `ttl`.
    pub async fn cache_put(&self, key: &[u8; 32], value: Vec<u8>, ttl: Duration) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut command = redis::cmd("SET");
        command.arg(self.cache_key(key)).arg(value).arg("PX").arg(ttl_ms);
        self.run("cache_put", command.query_async(&mut connection)).await
    }

    fn cache_key(&self, key: &[u8; 32]) -> String {
        format!("{}cache:v1:{}", self.prefix, crate::config::hex(key))
    }

    fn bucket_key(&self, digest: &[u8; 32]) -> String {
        format!("{}rate:v1:{}", self.prefix, crate::config::hex(digest))
    }

    /// Runs one command under the command timeout, and keeps the outage bookkeeping.
    async fn run<T>(
        &self,
        operation: &'static str,
        command: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        let result = match tokio::time::timeout(self.command_timeout, command).await {
            Err(_) => Err(StoreError::Timeout(self.command_timeout)),
            Ok(result) => result.map_err(StoreError::from),
        };
        match &result {
            Ok(_) => {
                if self.down.swap(false, Ordering::Relaxed) {
                    info!("state: Redis answers again; rate limits are shared again");
                    self.metrics.state_up(true);
                }
            }
            Err(err) => {
                self.metrics.state_error(operation);
                if !self.down.swap(true, Ordering::Relaxed) {
                    let policy = match self.on_error {
                        OnStateError::Local => {
                            "state.on_error = \"local\": each replica counts on its own until it is back"
                        }
                        OnStateError::Deny => {
                            "state.on_error = \"deny\": requests with limits get 503 until it is back"
                        }
                    };
                    warn!("state: Redis is unreachable ({err}); {policy}");
                    self.metrics.state_up(false);
                }
            }
        }
        result
    }
}

/// What a replica published about an upstream's circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitNews {
    /// The fleet's failures in a row reached the threshold: open for `cooldown`.
    Opened { cooldown: Duration, failures: u32 },
    /// A call succeeded after failures: closed.
    Closed,
}

impl CircuitNews {
    /// `open NAME COOLDOWN_MS FAILURES FROM` or `close NAME 0 0 FROM`.
    fn parse(text: &str) -> Option<(&str, CircuitNews, u64)> {
        let mut words = text.split(' ');
        let (kind, upstream) = (words.next()?, words.next()?);
        let (cooldown_ms, failures): (u64, u32) = (words.next()?.parse().ok()?, words.next()?.parse().ok()?);
        let from = words.next()?.parse().ok()?;
        let news = match kind {
            "open" => CircuitNews::Opened { cooldown: Duration::from_millis(cooldown_ms), failures },
            "close" => CircuitNews::Closed,
            _ => return None,
        };
        Some((upstream, news, from))
    }
}

/// A random id for this process: the clock's nanoseconds mixed with the process id.
fn replica_id() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    nanos.rotate_left(17) ^ u64::from(std::process::id()).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// A per-minute limit as the scripts take it: -1 for none.
fn limit_arg(limit: Option<u64>) -> i64 {
    limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX))
}

//! Warmth: which models are loaded right now, so the run loop can prefer a warm model
//! and skip a cold one whose load would not fit the deadline (DESIGN §4).
//!
//! One background prober per upstream with `warmth = "llama-swap" | "llama-server" |
//! "ollama"` polls every `refresh_ms` and publishes a snapshot through a `watch`
//! channel. The request path only reads: [`Warmth::is_warm`] never waits on the network.
//! A served request marks its model warm at once ([`Warmth::mark_warm`]).
//!
//! - [`state`]    — pure: snapshots, staleness, what a probe's result means, what to log.
//! - [`wire`]     — pure: each server's answer → the loaded model names; the server root.
//! - `probe`      — one probe over HTTP, per source.
//! - `prober`     — the polling loop, stopped by its shutdown token.
//! - [`estimate`] — pure: the learned cold-start time and the deadline check.

pub mod estimate;
mod probe;
mod prober;
pub mod state;
pub mod wire;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{Config, WarmthSource};
use crate::metrics::Metrics;
use crate::shutdown::CancellationToken;

pub use estimate::{cold_start_fits, LoadEstimator, TooCold};
pub use state::{Observation, Snapshot, View};

use probe::Probe;
use prober::Prober;

/// The warmth of every upstream, shared by all requests; cheap to clone.
#[derive(Clone)]
pub struct Warmth {
    inner: Arc<Inner>,
}

struct Inner {
    /// Fixed at construction: the request path looks up without a lock.
    upstreams: HashMap<String, Tracked>,
    /// Learned load times by model alias; locked briefly, once per attempt.
    estimator: Mutex<LoadEstimator>,
    metrics: Metrics,
}

struct Tracked {
    source: WarmthSource,
    refresh: Duration,
    probe_timeout: Duration,
    /// `None` unless the source is probed.
    probe: Option<Probe>,
    /// The upstream's current view: the prober publishes into it, requests mark served
    /// models in it, readers borrow it.
    view: watch::Sender<View>,
    /// `(alias, upstream model name)` of every model this upstream serves.
    models: Vec<(String, String)>,
}

/// The running probers; dropping this stops them too.
pub struct Probers {
    /// Cancelled to stop every prober: a child of the shutdown tree.
    stop: CancellationToken,
    /// Awaited by `stop`, so shutdown returns only once no probe is in flight.
    tasks: Vec<JoinHandle<()>>,
}

impl Probers {
    /// How many upstreams are being probed.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Stops every prober (an in-flight probe is abandoned) and waits until they ended.
    pub async fn stop(mut self) {
        self.stop.cancel();
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
    }
}

impl Drop for Probers {
    /// Dropping the handle stops the probers too (without waiting for them).
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// One upstream's warmth, for `/readyz`.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamReport {
    pub source: &'static str,
    /// `up`, `down`, `stale` (no probe answered for three periods), `pending` (no probe
    /// finished yet); `always` / `unknown` for sources that are not probed.
    pub state: &'static str,
    /// Age of the newest probe, in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_ms: Option<u64>,
    /// Model aliases known warm, and known cold.
    pub warm: Vec<String>,
    pub cold: Vec<String>,
    /// Why the last probe failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Warmth {
    /// Tracks every upstream of `config`. Builds the probe clients; starts nothing.
    pub fn new(config: &Config, metrics: Metrics) -> Result<Self, crate::upstream::BuildError> {
        let mut upstreams = HashMap::new();
        for (name, up) in &config.upstreams {
            let models = config
                .models
                .values()
                .filter(|m| &m.upstream == name)
                .map(|m| (m.alias.clone(), m.name.clone()))
                .collect();
            let tracked = Tracked {
                source: up.warmth,
                refresh: up.refresh,
                probe_timeout: up.probe_timeout,
                probe: Probe::new(up)?,
                view: watch::Sender::new(View::default()),
                models,
            };
            upstreams.insert(name.clone(), tracked);
        }
        let inner = Inner { upstreams, estimator: Mutex::new(LoadEstimator::new()), metrics };
        Ok(Warmth { inner: Arc::new(inner) })
    }

    /// Whether `upstream_model` on `upstream` is loaded: `Some(true)` warm,
    /// `Some(false)` known cold, `None` unknown (no warmth source, no fresh snapshot,
    /// the last probe failed, an unknown upstream). Reads only; never waits.
    pub fn is_warm(&self, upstream: &str, upstream_model: &str) -> Option<bool> {
        let tracked = self.inner.upstreams.get(upstream)?;
        match tracked.source {
            WarmthSource::Always => Some(true),
            WarmthSource::None => None,
            _ => tracked.view.borrow().is_warm(upstream_model, Instant::now(), tracked.refresh),
        }
    }

    /// A request to `upstream_model` on `upstream` was just served: it is warm now,
    /// until a newer probe says otherwise.
    pub fn mark_warm(&self, upstream: &str, upstream_model: &str) {
        if let Some(tracked) = self.inner.upstreams.get(upstream) {
            if tracked.source.is_probed() {
                let now = Instant::now();
                tracked.view.send_modify(|view| view.mark_served(upstream_model, now));
            }
        }
    }

    /// Learns from one finished attempt on model alias `model`: when its warmth was
    /// known, feeds the [`LoadEstimator`] (exported as `tierwise_model_load_seconds`).
    /// (`tierwise_warm_starts_total` is counted from the request's trail.)
    pub fn record_attempt(&self, model: &str, warm: Option<bool>, took: Duration) {
        let Some(warm) = warm else { return };
        let expected = {
            let mut estimator = self.inner.estimator.lock().unwrap_or_else(|e| e.into_inner());
            estimator.record(model, warm, took);
            estimator.expected_load(model)
        };
        if let (false, Some(expected)) = (warm, expected) {
            self.inner.metrics.model_load(model, expected.as_secs_f64());
        }
    }

    /// The learned load time of model alias `model` when cold, if it was ever cold.
    pub fn expected_load(&self, model: &str) -> Option<Duration> {
        self.inner.estimator.lock().unwrap_or_else(|e| e.into_inner()).expected_load(model)
    }

    /// Publishes `observation` for `upstream` as if a probe had just answered (tests,
    /// tools, a run loop exercised without HTTP). Ignored for an unknown upstream.
    pub fn set_observation(&self, upstream: &str, observation: Observation) {
        if let Some(tracked) = self.inner.upstreams.get(upstream) {
            let taken_at = Instant::now();
            tracked.view.send_modify(|view| view.probe = Some(Snapshot { taken_at, observation }));
        }
    }

    /// A receiver of `upstream`'s view: `changed()` resolves after each probe or mark.
    pub fn subscribe(&self, upstream: &str) -> Option<watch::Receiver<View>> {
        Some(self.inner.upstreams.get(upstream)?.view.subscribe())
    }

    /// Starts one prober per probed upstream, on the current tokio runtime. They stop
    /// when `stop` (or a parent of it) is cancelled, or when [`Probers::stop`] is called.
    pub fn start(&self, stop: CancellationToken) -> Probers {
        let mut tasks = Vec::new();
        for (name, tracked) in &self.inner.upstreams {
            let Some(probe) = &tracked.probe else { continue };
            let prober = Prober {
                upstream: name.clone(),
                probe: probe.clone(),
                refresh: tracked.refresh,
                timeout: tracked.probe_timeout,
                view: tracked.view.clone(),
                metrics: self.inner.metrics.clone(),
            };
            tasks.push(tokio::spawn(prober.run(stop.clone())));
        }
        Probers { stop, tasks }
    }

    /// Every upstream's warmth, by name.
    pub fn report(&self) -> BTreeMap<String, UpstreamReport> {
        let now = Instant::now();
        let mut reports = BTreeMap::new();
        for (name, tracked) in &self.inner.upstreams {
            let view = tracked.view.borrow().clone();
            let (mut warm, mut cold) = (Vec::new(), Vec::new());
            for (alias, upstream_model) in &tracked.models {
                match self.is_warm(name, upstream_model) {
                    Some(true) => warm.push(alias.clone()),
                    Some(false) => cold.push(alias.clone()),
                    None => {}
                }
            }
            let probe = view.probe.as_ref();
            let state = match (tracked.source, probe) {
                (WarmthSource::Always, _) => "always",
                (WarmthSource::None, _) => "unknown",
                (_, None) => "pending",
                (_, Some(p)) if !state::is_fresh(p.taken_at, now, tracked.refresh) => "stale",
                (_, Some(p)) if p.observation.is_up() => "up",
                (_, Some(_)) => "down",
            };
            let error = match probe.map(|p| &p.observation) {
                Some(Observation::Down(why)) => Some(why.clone()),
                _ => None,
            };
            let age_ms = probe.map(|p| now.saturating_duration_since(p.taken_at).as_millis() as u64);
            reports.insert(
                name.clone(),
                UpstreamReport { source: tracked.source.as_str(), state, age_ms, warm, cold, error },
            );
        }
        reports
    }
}

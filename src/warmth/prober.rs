//! The background loop for one upstream: every `refresh`, one probe bounded by
//! `probe_timeout`, published as a [`Snapshot`]. It waits in two places, the next tick
//! and the probe, and leaves either at once when told to stop.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, info, warn};

use super::probe::Probe;
use super::state::{Change, Health, Observation, Snapshot, View};
use crate::metrics::Metrics;
use crate::shutdown::CancellationToken;

pub struct Prober {
    pub upstream: String,
    pub probe: Probe,
    pub refresh: Duration,
    pub timeout: Duration,
    /// Where snapshots are published; the request path reads the other end.
    pub view: watch::Sender<View>,
    pub metrics: Metrics,
}

impl Prober {
    /// Polls until `stop` is cancelled.
    pub async fn run(self, stop: CancellationToken) {
        let mut ticker = tokio::time::interval(self.refresh);
        // A slow probe delays the next one instead of causing a burst.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut health = Health::Unknown;
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                _ = ticker.tick() => {}
            }
            let taken_at = Instant::now();
            let observation = tokio::select! {
                biased;
                () = stop.cancelled() => break,
                observation = self.observe() => observation,
            };
            health = self.publish(health, taken_at, observation);
        }
        debug!(upstream = %self.upstream, "warmth prober stopped");
    }

    async fn observe(&self) -> Observation {
        match tokio::time::timeout(self.timeout, self.probe.observe()).await {
            Ok(observation) => observation,
            Err(_) => Observation::Down(format!("no answer within {} ms", self.timeout.as_millis())),
        }
    }

    fn publish(&self, health: Health, taken_at: Instant, observation: Observation) -> Health {
        let (next, change) = health.after(&observation);
        match change {
            Some(Change::Up) => info!(upstream = %self.upstream, "warmth probe: upstream answers"),
            Some(Change::Recovered) => info!(upstream = %self.upstream, "warmth probe: upstream answers again"),
            Some(Change::Down(error)) => warn!(
                upstream = %self.upstream,
                %error,
                "warmth probe failed: its models count as unknown until it answers (logged once)"
            ),
            None => {}
        }
        self.metrics.upstream_up(&self.upstream, observation.is_up());
        self.view.send_modify(|view| view.probe = Some(Snapshot { taken_at, observation }));
        next
    }
}

//! Pure warmth state: what a probe saw, what a served request proved, how old either may
//! be, and when the prober's view of an upstream changes enough to log. No I/O, no
//! clock of its own: every function takes `now`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

/// A snapshot counts as unknown once it is older than this many refresh periods.
pub const STALE_AFTER_PERIODS: u32 = 3;

/// What one probe of an upstream found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// The upstream answered; these upstream model names are loaded (and no others).
    Loaded(HashSet<String>),
    /// The upstream answered and serves one model, whatever its name, which is loaded
    /// (a single-model llama-server whose `/health` is ok).
    Everything,
    /// The probe failed (unreachable, timed out, an unexpected answer): nothing is known.
    Down(String),
}

impl Observation {
    pub fn is_up(&self) -> bool {
        !matches!(self, Observation::Down(_))
    }
}

/// One probe's result and when it was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// When the probe was sent: the upstream's state is at least this recent.
    pub taken_at: Instant,
    pub observation: Observation,
}

/// Everything known about one upstream's warmth; published through a `watch` channel
/// and read, never awaited, by the request path.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// The newest probe, if one has finished.
    pub probe: Option<Snapshot>,
    /// Upstream model names a request was served by, and when: newer than the probe,
    /// they count as warm.
    pub served: HashMap<String, Instant>,
}

impl View {
    /// Whether `model` is loaded: `None` when nothing recent is known. The newest of
    /// the probe and a served request wins; either counts only while younger than
    /// [`STALE_AFTER_PERIODS`] refresh periods.
    pub fn is_warm(&self, model: &str, now: Instant, refresh: Duration) -> Option<bool> {
        let fresh = |at: Instant| is_fresh(at, now, refresh);
        let served = self.served.get(model).copied().filter(|at| fresh(*at));
        let probe = self.probe.as_ref().filter(|p| fresh(p.taken_at));
        match (served, probe) {
            (Some(served), Some(probe)) if served >= probe.taken_at => Some(true),
            (_, Some(probe)) => probe_says(&probe.observation, model),
            (Some(_), None) => Some(true),
            (None, None) => None,
        }
    }

    /// Records that a request to `model` was just served.
    pub fn mark_served(&mut self, model: &str, now: Instant) {
        match self.served.get_mut(model) {
            Some(at) => *at = now,
            None => {
                self.served.insert(model.to_string(), now);
            }
        }
    }
}

fn probe_says(observation: &Observation, model: &str) -> Option<bool> {
    match observation {
        Observation::Loaded(models) => Some(models.contains(model)),
        Observation::Everything => Some(true),
        Observation::Down(_) => None,
    }
}

/// Whether something observed `at` still counts at `now`: at most
/// [`STALE_AFTER_PERIODS`] refresh periods old.
pub fn is_fresh(at: Instant, now: Instant, refresh: Duration) -> bool {
    now.saturating_duration_since(at) <= refresh * STALE_AFTER_PERIODS
}

/// The prober's view of an upstream, which decides what gets logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// No probe has finished yet.
    Unknown,
    Up,
    Down,
}

/// A change worth one log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// First probe answered.
    Up,
    /// Answered again after failing.
    Recovered,
    /// Failed (first probe, or after answering); carries the reason.
    Down(String),
}

impl Health {
    /// The state after a probe, and the change to log, if any: one line per change,
    /// none per poll.
    pub fn after(self, observation: &Observation) -> (Health, Option<Change>) {
        match (self, observation) {
            (Health::Up, Observation::Down(why)) | (Health::Unknown, Observation::Down(why)) => {
                (Health::Down, Some(Change::Down(why.clone())))
            }
            (Health::Down, Observation::Down(_)) => (Health::Down, None),
            (Health::Unknown, _) => (Health::Up, Some(Change::Up)),
            (Health::Down, _) => (Health::Up, Some(Change::Recovered)),
            (Health::Up, _) => (Health::Up, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFRESH: Duration = Duration::from_secs(2);

    fn loaded(names: &[&str]) -> Observation {
        Observation::Loaded(names.iter().map(|n| n.to_string()).collect())
    }

    fn view(at: Instant, observation: Observation) -> View {
        View { probe: Some(Snapshot { taken_at: at, observation }), served: HashMap::new() }
    }

    #[test]
    fn a_fresh_probe_answers_for_its_models() {
        let t0 = Instant::now();
        let v = view(t0, loaded(&["a"]));
        assert_eq!(v.is_warm("a", t0 + REFRESH, REFRESH), Some(true));
        assert_eq!(v.is_warm("b", t0 + REFRESH, REFRESH), Some(false));
        let all = view(t0, Observation::Everything);
        assert_eq!(all.is_warm("anything", t0, REFRESH), Some(true));
    }

    #[test]
    fn nothing_known_is_unknown() {
        let t0 = Instant::now();
        assert_eq!(View::default().is_warm("a", t0, REFRESH), None);
        assert_eq!(view(t0, Observation::Down("refused".into())).is_warm("a", t0, REFRESH), None);
    }

    #[test]
    fn a_snapshot_older_than_three_periods_is_unknown() {
        let t0 = Instant::now();
        let v = view(t0, loaded(&["a"]));
        assert_eq!(v.is_warm("a", t0 + REFRESH * 3, REFRESH), Some(true), "exactly three periods still counts");
        assert_eq!(v.is_warm("a", t0 + REFRESH * 3 + Duration::from_millis(1), REFRESH), None);
        assert_eq!(v.is_warm("b", t0 + REFRESH * 4, REFRESH), None, "stale cold is unknown too");
    }

    #[test]
    fn a_served_request_newer_than_the_probe_wins() {
        let t0 = Instant::now();
        let mut v = view(t0, loaded(&[]));
        assert_eq!(v.is_warm("a", t0, REFRESH), Some(false));
        v.mark_served("a", t0 + Duration::from_millis(10));
        assert_eq!(v.is_warm("a", t0 + Duration::from_millis(10), REFRESH), Some(true));
        assert_eq!(v.is_warm("b", t0 + Duration::from_millis(10), REFRESH), Some(false), "only the served model");
    }

    #[test]
    fn a_probe_newer_than_the_served_request_wins() {
        // Served, then llama-swap swapped it out: the newer probe says cold.
        let t0 = Instant::now();
        let mut v = View::default();
        v.mark_served("a", t0);
        assert_eq!(v.is_warm("a", t0, REFRESH), Some(true), "served with no probe yet");
        v.probe = Some(Snapshot { taken_at: t0 + REFRESH, observation: loaded(&["b"]) });
        assert_eq!(v.is_warm("a", t0 + REFRESH, REFRESH), Some(false));
    }

    #[test]
    fn a_served_mark_goes_stale_like_a_probe() {
        let t0 = Instant::now();
        let mut v = view(t0, Observation::Down("timed out".into()));
        v.mark_served("a", t0);
        assert_eq!(v.is_warm("a", t0 + REFRESH, REFRESH), Some(true), "down probe, but it just answered");
        assert_eq!(v.is_warm("a", t0 + REFRESH * 4, REFRESH), None);
    }

    #[test]
    fn health_logs_once_per_change() {
        let down = Observation::Down("connection refused".into());
        let up = loaded(&["a"]);
        let mut health = Health::Unknown;
        let mut logged = Vec::new();
        for observation in [&up, &up, &down, &down, &down, &up, &up, &down] {
            let (next, change) = health.after(observation);
            health = next;
            logged.extend(change);
        }
        assert_eq!(
            logged,
            vec![
                Change::Up,
                Change::Down("connection refused".into()),
                Change::Recovered,
                Change::Down("connection refused".into())
            ]
        );
        assert_eq!(health, Health::Down);
    }

    #[test]
    fn a_first_failed_probe_is_logged() {
        let (health, change) = Health::Unknown.after(&Observation::Down("timed out after 200 ms".into()));
        assert_eq!(health, Health::Down);
        assert_eq!(change, Some(Change::Down("timed out after 200 ms".into())));
        assert_eq!(Health::Up.after(&Observation::Everything), (Health::Up, None));
    }
}

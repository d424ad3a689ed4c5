//! How long a cold model takes to load, learned from the attempts themselves, and
//! whether a cold start still fits a request's deadline. Pure.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

/// Weight of the newest sample in each moving average.
pub const ALPHA: f64 = 0.3;

/// Per model (alias): an exponentially weighted moving average of how much longer its
/// cold attempts took than its recent warm ones.
///
/// Feed it one measure consistently (e.g. time to the first byte). Until a model has a
/// warm attempt, a cold attempt counts whole as load time: an upper bound.
#[derive(Debug, Clone, Default)]
pub struct LoadEstimator {
    models: HashMap<String, Learned>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Learned {
    /// Moving average of warm attempts, in seconds.
    warm: Option<f64>,
    /// Moving average of the extra time of cold attempts, in seconds.
    load: Option<f64>,
}

impl LoadEstimator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Learns from one attempt on `model` that started `warm` (or cold) and took `took`.
    pub fn record(&mut self, model: &str, warm: bool, took: Duration) {
        let secs = took.as_secs_f64();
        let learned = match self.models.get_mut(model) {
            Some(learned) => learned,
            None => self.models.entry(model.to_string()).or_default(),
        };
        if warm {
            learned.warm = Some(ewma(learned.warm, secs));
        } else {
            let extra = (secs - learned.warm.unwrap_or(0.0)).max(0.0);
            learned.load = Some(ewma(learned.load, extra));
        }
    }

    /// The expected load time of `model` when cold; `None` before its first cold attempt.
    pub fn expected_load(&self, model: &str) -> Option<Duration> {
        let load = self.models.get(model)?.load?;
        Some(Duration::from_secs_f64(load))
    }
}

/// The first sample starts the average; later ones move it by [`ALPHA`].
fn ewma(previous: Option<f64>, sample: f64) -> f64 {
    match previous {
        None => sample,
        Some(avg) => ALPHA * sample + (1.0 - ALPHA) * avg,
    }
}

/// A known-cold model whose expected load does not fit the time left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooCold {
    pub expected_load: Duration,
    pub remaining: Duration,
}

impl fmt::Display for TooCold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cold, expected load {:.1} s exceeds the remaining {:.1} s",
            self.expected_load.as_secs_f64(),
            self.remaining.as_secs_f64()
        )
    }
}

/// The cold-start budget: refuses a step only when its model is known cold, its load
/// time is known, a deadline is set and the load alone would overrun it. Anything
/// unknown lets the step run.
pub fn cold_start_fits(
    warm: Option<bool>,
    expected_load: Option<Duration>,
    remaining: Option<Duration>,
) -> Result<(), TooCold> {
    match (warm, expected_load, remaining) {
        (Some(false), Some(expected_load), Some(remaining)) if expected_load > remaining => {
            Err(TooCold { expected_load, remaining })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn close(actual: Option<Duration>, expected: f64) {
        let actual = actual.expect("an estimate").as_secs_f64();
        assert!((actual - expected).abs() < 1e-9, "expected {expected} s, got {actual} s");
    }

    #[test]
    fn nothing_learned_is_no_estimate() {
        let mut e = LoadEstimator::new();
        assert_eq!(e.expected_load("a"), None);
        e.record("a", true, secs(0.5));
        assert_eq!(e.expected_load("a"), None, "warm attempts alone say nothing about loading");
    }

    #[test]
    fn the_load_is_the_cold_extra_over_the_warm_average() {
        let mut e = LoadEstimator::new();
        e.record("a", true, secs(0.5));
        e.record("a", false, secs(6.5));
        close(e.expected_load("a"), 6.0);
        e.record("a", false, secs(3.5));
        // 0.3 * 3.0 + 0.7 * 6.0
        close(e.expected_load("a"), 5.1);
    }

    #[test]
    fn the_warm_baseline_is_itself_an_average() {
        let mut e = LoadEstimator::new();
        e.record("a", true, secs(1.0));
        e.record("a", true, secs(2.0));
        // warm = 0.3 * 2.0 + 0.7 * 1.0 = 1.3
        e.record("a", false, secs(5.3));
        close(e.expected_load("a"), 4.0);
    }

    #[test]
    fn a_cold_attempt_before_any_warm_one_counts_whole() {
        let mut e = LoadEstimator::new();
        e.record("a", false, secs(7.0));
        close(e.expected_load("a"), 7.0);
        assert_eq!(e.expected_load("b"), None, "models are learned apart");
    }

    #[test]
    fn a_cold_attempt_faster_than_warm_ones_adds_no_load() {
        let mut e = LoadEstimator::new();
        e.record("a", true, secs(2.0));
        e.record("a", false, secs(1.0));
        close(e.expected_load("a"), 0.0);
    }

    #[test]
    fn a_cold_model_is_skipped_only_when_its_load_overruns_the_deadline() {
        let too_cold = cold_start_fits(Some(false), Some(secs(6.1)), Some(secs(2.0))).unwrap_err();
        assert_eq!(too_cold.to_string(), "cold, expected load 6.1 s exceeds the remaining 2.0 s");
        assert_eq!(cold_start_fits(Some(false), Some(secs(1.0)), Some(secs(2.0))), Ok(()));
        assert_eq!(cold_start_fits(Some(true), Some(secs(6.1)), Some(secs(2.0))), Ok(()), "warm");
        assert_eq!(cold_start_fits(None, Some(secs(6.1)), Some(secs(2.0))), Ok(()), "warmth unknown");
        assert_eq!(cold_start_fits(Some(false), None, Some(secs(2.0))), Ok(()), "load never measured");
        assert_eq!(cold_start_fits(Some(false), Some(secs(6.1)), None), Ok(()), "no deadline");
    }
}

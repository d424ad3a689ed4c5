//! A circuit breaker per upstream: after `failures` consecutive failures the upstream is
//! open — steps on it are skipped without a call — for `cooldown`; then one request
//! probes it (half-open) and closes it again on success. Pure state transitions over
//! `tokio::time::Instant`, so tests run with paused time.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    /// Calls go through; `failures` in a row so far.
    Closed { failures: u32 },
    /// No calls until `until`; it opened after `failures` failures.
    Open { until: Instant, failures: u32 },
    /// One probe call is out; everyone else waits for its outcome.
    HalfOpen { failures: u32 },
}

/// Why a call may not be made now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenCircuit {
    pub remaining: Duration,
    pub failures: u32,
}

#[derive(Debug, Clone, Copy)]
pub struct Breaker {
    /// Consecutive failures that open the circuit; 0 disables it.
    pub threshold: u32,
    pub cooldown: Duration,
    pub state: Circuit,
    /// Opened by another replica (shared state), which probes it when the cooldown is
    /// over: this one waits one more cooldown for that probe's outcome before probing.
    waits_for_fleet: bool,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Breaker { threshold, cooldown, state: Circuit::Closed { failures: 0 }, waits_for_fleet: false }
    }

    /// May a call start at `now`? Moves an expired open circuit to half-open (this call
    /// is its probe).
    pub fn allows_call(&mut self, now: Instant) -> Result<(), OpenCircuit> {
        match self.state {
            Circuit::Closed { .. } => Ok(()),
            Circuit::Open { until, failures } if now >= until && self.waits_for_fleet => {
                self.waits_for_fleet = false;
                self.state = Circuit::Open { until: now + self.cooldown, failures };
                Err(OpenCircuit { remaining: self.cooldown, failures })
            }
            Circuit::Open { until, failures } if now >= until => {
                self.state = Circuit::HalfOpen { failures };
                Ok(())
            }
            Circuit::Open { until, failures } => Err(OpenCircuit { remaining: until - now, failures }),
            Circuit::HalfOpen { failures } => Err(OpenCircuit { remaining: Duration::ZERO, failures }),
        }
    }

    pub fn succeeded(&mut self) {
        self.state = Circuit::Closed { failures: 0 };
        self.waits_for_fleet = false;
    }

    /// Another replica saw the fleet's `failures`-th failure in a row and opened the
    /// circuit for `cooldown`; it probes, this one waits.
    pub fn opened_by_fleet(&mut self, now: Instant, cooldown: Duration, failures: u32) {
        if self.threshold == 0 {
            return;
        }
        self.state = Circuit::Open { until: now + cooldown, failures };
        self.waits_for_fleet = true;
    }

    /// Whether this replica has seen a failure since its last success (so a success
    /// is news for the fleet).
    pub fn has_failures(&self) -> bool {
        !matches!(self.state, Circuit::Closed { failures: 0 })
    }

    pub fn failed(&mut self, now: Instant) {
        if self.threshold == 0 {
            return;
        }
        self.state = match self.state {
            Circuit::Closed { failures } if failures + 1 >= self.threshold => {
                Circuit::Open { until: now + self.cooldown, failures: failures + 1 }
            }
            Circuit::Closed { failures } => Circuit::Closed { failures: failures + 1 },
            Circuit::HalfOpen { failures } | Circuit::Open { failures, .. } => {
                Circuit::Open { until: now + self.cooldown, failures: failures + 1 }
            }
        };
    }

    pub fn is_open(&self) -> bool {
        !matches!(self.state, Circuit::Closed { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_n_failures_then_half_opens_after_the_cooldown() {
        let mut b = Breaker::new(3, Duration::from_secs(12));
        let now = Instant::now();
        for _ in 0..2 {
            b.failed(now);
            assert_eq!(b.allows_call(now), Ok(()));
        }
        b.failed(now);
        assert_eq!(b.allows_call(now), Err(OpenCircuit { remaining: Duration::from_secs(12), failures: 3 }));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(b.allows_call(Instant::now()), Err(OpenCircuit { remaining: Duration::from_secs(7), failures: 3 }));
        tokio::time::advance(Duration::from_secs(7)).await;
        assert_eq!(b.allows_call(Instant::now()), Ok(()), "the probe");
        assert_eq!(b.state, Circuit::HalfOpen { failures: 3 });
        assert!(b.allows_call(Instant::now()).is_err(), "one probe at a time");
        b.succeeded();
        assert_eq!(b.state, Circuit::Closed { failures: 0 });
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_opens_it_again() {
        let mut b = Breaker::new(1, Duration::from_secs(10));
        b.failed(Instant::now());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(b.allows_call(Instant::now()), Ok(()));
        b.failed(Instant::now());
        assert_eq!(b.allows_call(Instant::now()), Err(OpenCircuit { remaining: Duration::from_secs(10), failures: 2 }));
    }

    #[tokio::test(start_paused = true)]
    async fn opened_by_the_fleet_it_waits_a_cooldown_for_the_fleets_probe_then_probes_itself() {
        let mut b = Breaker::new(5, Duration::from_secs(10));
        b.opened_by_fleet(Instant::now(), Duration::from_secs(10), 5);
        assert_eq!(b.allows_call(Instant::now()), Err(OpenCircuit { remaining: Duration::from_secs(10), failures: 5 }));
        tokio::time::advance(Duration::from_secs(10)).await;
        // The replica that opened it probes now; this one waits for that outcome.
        assert_eq!(b.allows_call(Instant::now()), Err(OpenCircuit { remaining: Duration::from_secs(10), failures: 5 }));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(b.allows_call(Instant::now()), Ok(()), "no word from the fleet: probe it here");
        b.succeeded();
        assert!(!b.has_failures());
        // A close from the fleet (its probe succeeded) closes it at once.
        b.opened_by_fleet(Instant::now(), Duration::from_secs(10), 7);
        b.succeeded();
        assert_eq!(b.allows_call(Instant::now()), Ok(()));
        let mut off = Breaker::new(0, Duration::from_secs(1));
        off.opened_by_fleet(Instant::now(), Duration::from_secs(10), 5);
        assert_eq!(off.allows_call(Instant::now()), Ok(()), "a disabled breaker stays closed");
    }

    #[test]
    fn a_success_resets_the_count_and_zero_disables() {
        let now = Instant::now();
        let mut b = Breaker::new(2, Duration::from_secs(1));
        b.failed(now);
        b.succeeded();
        b.failed(now);
        assert_eq!(b.allows_call(now), Ok(()));
        let mut off = Breaker::new(0, Duration::from_secs(1));
        for _ in 0..100 {
            off.failed(now);
        }
        assert_eq!(off.allows_call(now), Ok(()));
    }
}

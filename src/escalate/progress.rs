//! What a run has done so far, readable while it runs: a request dropped mid-run (its
//! client left, or the request deadline passed) drops its run with its trail, so the run
//! publishes a copy here before each wait — and the audit line of the dropped request
//! still lists its attempts, its skips and the step it was waiting on.

use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use super::{Trail, Verdict};
use crate::policy::Step;

/// Shared by a request's run (writer) and its response side (reader).
#[derive(Clone, Default)]
pub struct Progress(Arc<Mutex<RunSoFar>>);

#[derive(Clone, Default)]
pub struct RunSoFar {
    pub trail: Trail,
    /// The step being called, retried or verified when this was published, and since when.
    pub waiting_on: Option<(Step, Instant)>,
}

impl RunSoFar {
    /// The trail, with the call that was in flight as an attempt with the verdict
    /// `abandoned`.
    pub fn abandoned(self) -> Trail {
        let mut trail = self.trail;
        if let Some((step, since)) = self.waiting_on {
            trail.attempt(&step, since.elapsed(), Verdict::Abandoned, None);
        }
        trail
    }
}

impl Progress {
    /// The run is about to wait on `step` (or on nothing, with `None`), having done `trail`.
    pub fn publish(&self, trail: &Trail, waiting_on: Option<&Step>) {
        let so_far = RunSoFar { trail: trail.clone(), waiting_on: waiting_on.map(|s| (s.clone(), Instant::now())) };
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = so_far;
    }

    pub fn so_far(&self) -> RunSoFar {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

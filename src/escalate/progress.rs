//! What a run has done so far, readable while it runs: a request dropped mid-run (its
//! client left, or the request deadline passed) drops its run with its trail, so the run
//! publishes a copy here before each wait — and the audit line of the dropped request
//! still lists its attempts, its skips and the step it was waiting on.

use std::sync::{Arc, Mutex};

use super::Trail;
use crate::policy::Step;

/// Shared by a request's run (writer) and its response side (reader).
#[derive(Clone, Default)]
pub struct Progress(Arc<Mutex<Snapshot>>);

#[derive(Clone, Default)]
pub struct Snapshot {
    pub trail: Trail,
    /// The step being called, retried or verified when the snapshot was taken.
    pub waiting_on: Option<Step>,
}

impl Progress {
    /// The run is about to wait on `step` (or on nothing, with `None`), having done `trail`.
    pub fn publish(&self, trail: &Trail, waiting_on: Option<&Step>) {
        let snapshot = Snapshot { trail: trail.clone(), waiting_on: waiting_on.cloned() };
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = snapshot;
    }

    pub fn snapshot(&self) -> Snapshot {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

//! A concurrency limit with a bounded wait queue: at most `max` holders at once (a stream
//! holds its slot until it ends); up to `queue_limit` more wait up to `wait` (and never
//! past a deadline) for a place; the rest are refused as [`Busy`]. Used for
//! `server.max_concurrent_requests` (a refused request gets 503) and for each upstream's
//! `max_concurrent` (a refused call is not made: its step is skipped as busy).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

pub struct Slots {
    /// One permit per call that may run; `None` when unlimited.
    permits: Option<Arc<Semaphore>>,
    max: usize,
    /// Calls waiting for a permit now.
    queued: AtomicUsize,
    queue_limit: usize,
    wait: Duration,
    /// Calls holding a slot now, limited or not (for `tierwise_upstream_in_flight`).
    in_flight: Arc<AtomicUsize>,
}

/// A place to make one call; held (cloned into a stream) until the answer is done.
#[derive(Clone, Debug)]
pub struct Slot(#[expect(dead_code, reason = "held, never read: dropping the last clone frees the place")] Arc<Held>);

#[derive(Debug)]
struct Held {
    _permit: Option<OwnedSemaphorePermit>,
    in_flight: Arc<AtomicUsize>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// No place was free: every slot was taken and the queue was full, or no slot freed up
/// within the wait budget.
#[derive(Debug, Clone, PartialEq)]
pub struct Busy {
    pub max: usize,
    /// How long the call waited in the queue (zero: the queue was full).
    pub waited: Duration,
}

/// A place in a wait queue, given back when dropped — also when the waiting future is
/// dropped because its client hung up.
struct Queued<'a>(&'a AtomicUsize);

impl<'a> Queued<'a> {
    /// A place, if fewer than `limit` are taken.
    fn join(queued: &'a AtomicUsize, limit: usize) -> Option<Self> {
        if queued.fetch_add(1, Ordering::SeqCst) >= limit {
            queued.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Queued(queued))
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl std::fmt::Display for Busy {
    /// "at capacity (4 calls at once; no place freed up within 2000 ms)"
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at capacity ({} calls at once; ", self.max)?;
        if self.waited.is_zero() {
            write!(f, "its queue is full)")
        } else {
            write!(f, "no place freed up within {} ms)", self.waited.as_millis())
        }
    }
}

impl Slots {
    /// `max_concurrent == 0` is unlimited.
    pub fn new(max_concurrent: usize, queue_limit: usize, wait: Duration) -> Self {
        let permits = (max_concurrent > 0).then(|| Arc::new(Semaphore::new(max_concurrent)));
        Slots {
            permits,
            max: max_concurrent,
            queued: AtomicUsize::new(0),
            queue_limit,
            wait,
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Calls holding a slot now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// A slot now, or after waiting in the queue at most the wait budget and never past
    /// `deadline`.
    pub async fn acquire(&self, deadline: Option<Instant>) -> Result<Slot, Busy> {
        let permit = match &self.permits {
            None => None,
            Some(permits) => Some(self.permit(permits, deadline).await?),
        };
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Ok(Slot(Arc::new(Held { _permit: permit, in_flight: self.in_flight.clone() })))
    }

    async fn permit(&self, permits: &Arc<Semaphore>, deadline: Option<Instant>) -> Result<OwnedSemaphorePermit, Busy> {
        if let Ok(permit) = permits.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let Some(_queued) = Queued::join(&self.queued, self.queue_limit) else {
            return Err(Busy { max: self.max, waited: Duration::ZERO });
        };
        let started = Instant::now();
        let budget = match deadline {
            Some(deadline) => self.wait.min(deadline.saturating_duration_since(started)),
            None => self.wait,
        };
        let waited = tokio::time::timeout(budget, permits.clone().acquire_owned()).await;
        match waited {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Busy { max: self.max, waited: started.elapsed() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_full_upstream_queues_then_refuses() {
        let slots = Arc::new(Slots::new(1, 1, Duration::from_millis(200)));
        let held = slots.acquire(None).await.unwrap();
        assert_eq!(slots.in_flight(), 1);
        let waiting = tokio::spawn({
            let slots = slots.clone();
            async move { slots.acquire(None).await.is_ok() }
        });
        tokio::task::yield_now().await;
        // The queue (one place) is taken: refused at once.
        let refused = slots.acquire(None).await.err().unwrap();
        assert_eq!(refused, Busy { max: 1, waited: Duration::ZERO });
        drop(held);
        assert!(waiting.await.unwrap(), "the queued call got the freed slot");
        assert_eq!(slots.in_flight(), 0, "the waiter's slot was dropped with its task");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_gives_up_frees_its_place_in_the_queue() {
        let slots = Arc::new(Slots::new(1, 1, Duration::from_secs(60)));
        let _held = slots.acquire(None).await.unwrap();
        let waiter = tokio::spawn({
            let slots = slots.clone();
            async move { slots.acquire(None).await.is_ok() }
        });
        tokio::task::yield_now().await;
        assert_eq!(slots.queued.load(Ordering::SeqCst), 1);
        // Its client hung up: the waiting future is dropped.
        waiter.abort();
        assert!(waiter.await.unwrap_err().is_cancelled());
        assert_eq!(slots.queued.load(Ordering::SeqCst), 0, "the place in the queue came back");
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_ends_at_the_budget_or_the_deadline_whichever_is_first() {
        let slots = Slots::new(1, 8, Duration::from_millis(500));
        let _held = slots.acquire(None).await.unwrap();
        let started = Instant::now();
        let busy = slots.acquire(None).await.err().unwrap();
        assert_eq!(busy.waited, Duration::from_millis(500));
        assert_eq!(started.elapsed(), Duration::from_millis(500));
        let started = Instant::now();
        let busy = slots.acquire(Some(started + Duration::from_millis(120))).await.err().unwrap();
        assert_eq!(busy.waited, Duration::from_millis(120));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_is_held_until_its_last_clone_is_dropped() {
        let slots = Slots::new(1, 0, Duration::from_millis(10));
        let slot = slots.acquire(None).await.unwrap();
        let in_a_stream = slot.clone();
        drop(slot);
        assert!(slots.acquire(None).await.is_err(), "the stream still holds it");
        drop(in_a_stream);
        assert!(slots.acquire(None).await.is_ok());
    }

    #[tokio::test]
    async fn unlimited_counts_but_never_refuses() {
        let slots = Slots::new(0, 0, Duration::ZERO);
        let held: Vec<Slot> = futures_util::future::join_all((0..100).map(|_| slots.acquire(None)))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(slots.in_flight(), 100);
        drop(held);
        assert_eq!(slots.in_flight(), 0);
    }
}

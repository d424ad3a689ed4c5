//! Load shedding: at most `server.max_concurrent_requests` chat completions run at once;
//! up to `server.queue_limit` more wait up to `server.queue_wait_ms` for a place; the rest
//! get 503 with `Retry-After` in the OpenAI envelope at once. The same [`Slots`] as an
//! upstream's `max_concurrent`, with the server's numbers.

use std::time::Duration;

use http::StatusCode;

use crate::error::ApiError;
use crate::slots::{Slot, Slots};

pub struct Admission {
    /// `None` when unlimited.
    slots: Option<Slots>,
}

impl Admission {
    pub fn new(max_concurrent: usize, queue_limit: usize, wait: Duration) -> Self {
        Admission { slots: (max_concurrent > 0).then(|| Slots::new(max_concurrent, queue_limit, wait)) }
    }

    /// A place to run, held until the response is done (streams included).
    pub async fn admit(&self) -> Result<Option<Slot>, ApiError> {
        let Some(slots) = &self.slots else { return Ok(None) };
        match slots.acquire(None).await {
            Ok(slot) => Ok(Some(slot)),
            Err(busy) if busy.waited.is_zero() => Err(overloaded("tierwise is at capacity and its queue is full")),
            Err(_) => Err(overloaded("tierwise is at capacity: no place freed up in time")),
        }
    }
}

fn overloaded(why: &str) -> ApiError {
    ApiError::Overloaded {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "overloaded",
        message: format!("{why} (server.max_concurrent_requests); retry shortly"),
        retry_after: Some(Duration::from_secs(1)),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn admits_queues_then_sheds() {
        let admission = Arc::new(Admission::new(1, 1, Duration::from_millis(100)));
        let first = admission.admit().await.unwrap();
        assert!(first.is_some());
        // One may wait; a second waiter is refused at once.
        let waiting = tokio::spawn({
            let admission = admission.clone();
            async move { admission.admit().await.map(|p| p.is_some()) }
        });
        tokio::task::yield_now().await;
        let refused = admission.admit().await.unwrap_err();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        drop(first);
        assert!(waiting.await.unwrap().unwrap(), "the waiter got the freed place");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_gives_up_after_the_wait_budget() {
        let admission = Admission::new(1, 8, Duration::from_millis(100));
        let _held = admission.admit().await.unwrap();
        let started = tokio::time::Instant::now();
        assert!(admission.admit().await.is_err());
        assert_eq!(started.elapsed(), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_whose_client_left_while_queued_frees_its_place() {
        let admission = Arc::new(Admission::new(1, 1, Duration::from_secs(60)));
        let _held = admission.admit().await.unwrap();
        let waiter = tokio::spawn({
            let admission = admission.clone();
            async move { admission.admit().await.is_ok() }
        });
        tokio::task::yield_now().await;
        waiter.abort();
        assert!(waiter.await.unwrap_err().is_cancelled());
        // Before the fix the gone waiter kept its place and this one was refused at once.
        let started = tokio::time::Instant::now();
        assert!(admission.admit().await.is_err());
        assert_eq!(started.elapsed(), Duration::from_secs(60), "it queued and waited its budget");
    }

    #[tokio::test]
    async fn zero_means_unlimited() {
        let admission = Admission::new(0, 0, Duration::ZERO);
        for _ in 0..100 {
            assert!(admission.admit().await.unwrap().is_none());
        }
    }
}

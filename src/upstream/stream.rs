//! An upstream's SSE body as a stream of whole events, ending in an error when the
//! upstream breaks off.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::Stream;

use super::error::describe;
use super::sse::{has_done_marker, SseFramer, MAX_EVENT_BYTES};
use super::{Failure, UpstreamError};

/// Whole SSE events from one upstream response. Dropping it drops the upstream
/// connection, which is how a client's hang-up reaches the upstream.
pub struct EventStream {
    upstream: String,
    /// The upstream response body; `None` once it has ended or failed.
    body: Option<BoxStream<'static, reqwest::Result<Bytes>>>,
    framer: SseFramer,
    saw_done: bool,
}

impl EventStream {
    pub fn new(upstream: &str, body: BoxStream<'static, reqwest::Result<Bytes>>) -> Self {
        EventStream { upstream: upstream.to_string(), body: Some(body), framer: SseFramer::default(), saw_done: false }
    }

    fn broke(&mut self, reason: String) -> Poll<Option<Result<Bytes, UpstreamError>>> {
        self.body = None;
        Poll::Ready(Some(Err(UpstreamError::new(&self.upstream, Failure::MidStream(reason)))))
    }
}

impl Stream for EventStream {
    type Item = Result<Bytes, UpstreamError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            let Some(body) = self.body.as_mut() else {
                return Poll::Ready(None);
            };
            match body.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => match self.framer.push(&chunk) {
                    Ok(Some(events)) => {
                        self.saw_done |= has_done_marker(&events);
                        return Poll::Ready(Some(Ok(events)));
                    }
                    Ok(None) => continue,
                    Err(_) => return self.broke(format!("an event exceeded {MAX_EVENT_BYTES} bytes")),
                },
                Poll::Ready(Some(Err(err))) => {
                    let reason = if err.is_timeout() { "timed out".to_string() } else { describe(&err) };
                    return self.broke(reason);
                }
                Poll::Ready(None) => {
                    self.body = None;
                    // An unterminated tail is passed on only if it is the end marker;
                    // anything else is half an event, which no client could parse.
                    let tail = self.framer.take_rest().filter(|t| has_done_marker(t));
                    if let Some(tail) = tail {
                        let mut done = tail.to_vec();
                        done.extend_from_slice(b"\n\n");
                        return Poll::Ready(Some(Ok(Bytes::from(done))));
                    }
                    if !self.saw_done {
                        return self.broke("the stream ended without data: [DONE]".into());
                    }
                    return Poll::Ready(None);
                }
            }
        }
    }
}

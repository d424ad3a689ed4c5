//! An upstream's SSE body as a stream of whole OpenAI SSE events, ending in an error
//! when the upstream breaks off. OpenAI streams pass through byte for byte; Anthropic
//! streams are translated event by event.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::Stream;

use super::anthropic::{StreamFailure, StreamTranslator};
use super::error::describe;
use super::messages;
use super::sse::{ends_responses_stream, first_non_json_event, has_done_marker, SseFramer, MAX_EVENT_BYTES};
use super::{Failure, TimeoutPhase, UpstreamError};

/// Whole OpenAI SSE events from one upstream response. Dropping it drops the upstream
/// connection, which is how a client's hang-up reaches the upstream.
pub struct EventStream {
    upstream: String,
    /// The upstream's total timeout (`timeout_ms`), for a timeout before the first event.
    timeout: Duration,
    /// The upstream response body; `None` once it has ended or failed.
    body: Option<BoxStream<'static, reqwest::Result<Bytes>>>,
    decoder: Decoder,
    /// Whether events were passed on: from then on a failure is a broken stream.
    started: bool,
    /// A failure to report right after the events decoded just before it (boxed: rare,
    /// and it would make every `Reply` larger).
    queued: Option<Box<UpstreamError>>,
    /// The call's place under the upstream's `max_concurrent`, freed when the stream is
    /// dropped.
    slot: Option<super::Slot>,
}

/// Turns an upstream's body bytes into whole OpenAI SSE events.
pub(super) enum Decoder {
    /// OpenAI SSE, passed on as it came, released in whole events.
    OpenAi { framer: SseFramer, saw_done: bool },
    /// Anthropic Messages SSE, translated to `chat.completion.chunk` events.
    Anthropic(Box<StreamTranslator>),
    /// Responses API SSE (`responses = "native"`), passed on as it came; it ends with
    /// `response.completed` (or `.incomplete`, `.failed`, `error`) rather than `[DONE]`.
    Responses { framer: SseFramer, ended: bool },
}

/// The stream cannot go on.
struct Broken {
    /// Events decoded before the failure, to pass on first.
    pending: Bytes,
    /// Why, for a stream the client has already seen part of.
    reason: String,
    /// What the failure is when nothing has reached the client yet, if it is more than
    /// a broken stream (an Anthropic `error` event, a malformed answer).
    early: Option<Box<UpstreamError>>,
}

impl Broken {
    /// A malformed stream: before its first event, the upstream's answer is bad (the
    /// next step may still answer); after it, the stream is broken.
    fn malformed(upstream: &str, pending: Bytes, reason: String) -> Self {
        let early = UpstreamError::new(upstream, Failure::Protocol(reason.clone()));
        Broken { pending, reason, early: Some(Box::new(early)) }
    }
}

impl Decoder {
    pub(super) fn openai() -> Self {
        Decoder::OpenAi { framer: SseFramer::default(), saw_done: false }
    }

    pub(super) fn responses() -> Self {
        Decoder::Responses { framer: SseFramer::default(), ended: false }
    }

    /// `include_usage`: the client's `stream_options.include_usage`.
    pub(super) fn anthropic(include_usage: bool) -> Self {
        Decoder::Anthropic(Box::new(StreamTranslator::new(include_usage)))
    }

    fn push(&mut self, upstream: &str, chunk: &[u8]) -> Result<Bytes, Broken> {
        match self {
            Decoder::OpenAi { framer, saw_done } => framed(framer, upstream, chunk, saw_done, has_done_marker),
            Decoder::Responses { framer, ended } => framed(framer, upstream, chunk, ended, ends_responses_stream),
            Decoder::Anthropic(translator) => translator.push(chunk).map_err(|err| {
                let early = match &err.failure {
                    StreamFailure::Upstream(class) => messages::classified(upstream, class),
                    StreamFailure::Protocol(_) => UpstreamError::new(upstream, Failure::Protocol(err.to_string())),
                };
                Broken { reason: err.to_string(), early: Some(Box::new(early)), pending: err.pending }
            }),
        }
    }

    /// At the end of the body: what is left to pass on, or why the stream is incomplete.
    fn finish(&mut self, upstream: &str) -> Result<Bytes, Broken> {
        match self {
            Decoder::OpenAi { framer, saw_done } => {
                finish_framed(framer, upstream, *saw_done, has_done_marker, "data: [DONE]")
            }
            Decoder::Responses { framer, ended } => {
                finish_framed(framer, upstream, *ended, ends_responses_stream, "response.completed")
            }
            Decoder::Anthropic(_) => {
                // A blank line completes an unterminated last event, if there is one.
                let tail = self.push(upstream, b"\n\n")?;
                let Decoder::Anthropic(translator) = self else {
                    return Ok(tail);
                };
                if translator.finished() {
                    return Ok(tail);
                }
                let early = Failure::Protocol("the stream ended before message_stop".into());
                Err(Broken {
                    pending: tail,
                    reason: "the stream ended without message_stop".into(),
                    early: Some(Box::new(UpstreamError::new(upstream, early))),
                })
            }
        }
    }
}

/// The whole events of `chunk` passed on as they came, once known to be JSON; `ended`
/// learns whether one of them ends the stream (`ends`).
fn framed(
    framer: &mut SseFramer,
    upstream: &str,
    chunk: &[u8],
    ended: &mut bool,
    ends: fn(&[u8]) -> bool,
) -> Result<Bytes, Broken> {
    match framer.push(chunk) {
        Ok(Some(events)) => {
            if let Some((at, why)) = first_non_json_event(&events) {
                let pending = events.slice(..at);
                *ended |= ends(&pending);
                return Err(Broken::malformed(upstream, pending, format!("an event is not JSON ({why})")));
            }
            *ended |= ends(&events);
            Ok(events)
        }
        Ok(None) => Ok(Bytes::new()),
        Err(_) => {
            let reason = format!("an event exceeded {MAX_EVENT_BYTES} bytes");
            Err(Broken::malformed(upstream, Bytes::new(), reason))
        }
    }
}

/// At the end of a passed-on stream: an unterminated tail is passed on only if it ends
/// the stream (`ends`); anything else is half an event, which no client could parse. A
/// stream that never ended (`ended`) is broken: it lacked `end_marker`.
fn finish_framed(
    framer: &mut SseFramer,
    upstream: &str,
    ended: bool,
    ends: fn(&[u8]) -> bool,
    end_marker: &str,
) -> Result<Bytes, Broken> {
    if let Some(tail) = framer.take_rest().filter(|t| ends(t)) {
        let mut last = tail.to_vec();
        last.extend_from_slice(b"\n\n");
        return Ok(Bytes::from(last));
    }
    if !ended {
        return Err(Broken::malformed(upstream, Bytes::new(), format!("the stream ended without {end_marker}")));
    }
    Ok(Bytes::new())
}

impl EventStream {
    /// `timeout`: the upstream's total timeout, which `body` is subject to.
    pub(super) fn new(
        upstream: &str,
        timeout: Duration,
        body: BoxStream<'static, reqwest::Result<Bytes>>,
        decoder: Decoder,
    ) -> Self {
        EventStream {
            upstream: upstream.to_string(),
            timeout,
            body: Some(body),
            decoder,
            started: false,
            queued: None,
            slot: None,
        }
    }

    /// Keeps `slot` taken until the stream is dropped.
    pub(super) fn holding(mut self, slot: super::Slot) -> Self {
        self.slot = Some(slot);
        self
    }

    fn broken(&self, reason: String) -> UpstreamError {
        UpstreamError::new(&self.upstream, Failure::MidStream(reason))
    }
}

impl Stream for EventStream {
    type Item = Result<Bytes, UpstreamError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(err) = this.queued.take() {
                return Poll::Ready(Some(Err(*err)));
            }
            let Some(body) = this.body.as_mut() else {
                return Poll::Ready(None);
            };
            let decoded = match body.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => this.decoder.push(&this.upstream, &chunk),
                Poll::Ready(Some(Err(err))) => {
                    this.body = None;
                    let failure = match (this.started, err.is_timeout()) {
                        (false, true) => Failure::Timeout { phase: TimeoutPhase::Total, after: this.timeout },
                        (false, false) => Failure::Connect(describe(&err)),
                        (true, true) => Failure::MidStream("timed out".to_string()),
                        (true, false) => Failure::MidStream(describe(&err)),
                    };
                    return Poll::Ready(Some(Err(UpstreamError::new(&this.upstream, failure))));
                }
                Poll::Ready(None) => {
                    this.body = None;
                    this.decoder.finish(&this.upstream)
                }
            };
            match decoded {
                Ok(events) if events.is_empty() => continue,
                Ok(events) => {
                    this.started = true;
                    return Poll::Ready(Some(Ok(events)));
                }
                Err(broken) => {
                    this.body = None;
                    let err = match broken.early {
                        Some(early) if !this.started && broken.pending.is_empty() => *early,
                        _ => this.broken(broken.reason),
                    };
                    if broken.pending.is_empty() {
                        return Poll::Ready(Some(Err(err)));
                    }
                    this.started = true;
                    this.queued = Some(Box::new(err));
                    return Poll::Ready(Some(Ok(broken.pending)));
                }
            }
        }
    }
}

//! Calling an upstream that serves the Responses API itself (`responses = "native"`):
//! the client's Responses body goes to `POST {base_url}/responses`, and the `response`
//! object, or its stream events, come back as the upstream sent them.

use bytes::Bytes;
use serde::de::IgnoredAny;
use serde::Deserialize;

use super::stream::Decoder;
use super::{Failure, Reply, Slot, Upstream, UpstreamError};

/// The part of a `response` object checked before it is passed on.
#[derive(Deserialize)]
struct ResponseShape {
    #[expect(dead_code, reason = "read only to check that it is there: a response object has output")]
    output: Vec<IgnoredAny>,
}

impl Upstream {
    /// Whether Responses requests are passed through to this upstream's own endpoint.
    pub fn serves_responses(&self) -> bool {
        self.responses.is_some()
    }

    /// Sends one Responses request (`body`, as the upstream gets it) in `slot`, which a
    /// stream keeps until it ends; a stream is returned once its first event arrived.
    pub async fn respond(&self, slot: &Slot, body: Bytes, stream: bool) -> Result<Reply, UpstreamError> {
        let Some(url) = self.responses.clone() else {
            return Err(self.fail(Failure::Unsupported("it is not configured with responses = \"native\"".into())));
        };
        let started = tokio::time::Instant::now();
        let response = self.succeeded(self.send_to(url.clone(), body.clone()).await?).await?;
        if stream {
            return match self.start_stream(response, Decoder::responses()).await? {
                Reply::Stream { first, rest } => Ok(Reply::ResponseStream { first, rest: rest.holding(slot.clone()) }),
                other => Ok(other),
            };
        }
        let answer = self.read_body(response).await?;
        if let Err(err) = serde_json::from_slice::<ResponseShape>(&answer) {
            return Err(self.fail(Failure::Protocol(format!("not a response object ({err})"))));
        }
        if let Some(replay) = &self.replay {
            replay.put(self.name(), url.as_str(), &body, &answer, started.elapsed());
        }
        Ok(Reply::Response(answer))
    }
}

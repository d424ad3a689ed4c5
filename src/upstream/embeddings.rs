//! Calling an OpenAI-compatible upstream's `POST {base_url}/embeddings`: the answer is
//! passed on byte for byte (base64 vectors included) once it is known to be one.

use bytes::Bytes;
use serde::de::IgnoredAny;
use serde::Deserialize;

use super::{Failure, Reply, Slot, Upstream, UpstreamError};

/// The part of an embeddings answer checked before it is passed on.
#[derive(Deserialize)]
struct EmbeddingsShape {
    #[expect(dead_code, reason = "read only to check that it is there: an embeddings answer has data")]
    data: Vec<IgnoredAny>,
}

impl Upstream {
    /// Sends one embeddings request in `slot`; the answer is passed on byte for byte
    /// once it is known to hold `data`.
    pub async fn embed(&self, _slot: &Slot, body: Bytes) -> Result<Reply, UpstreamError> {
        let Some(url) = self.embeddings.clone() else {
            return Err(self.fail(Failure::Unsupported("Anthropic's API has no embeddings".into())));
        };
        let replay = self.replay.as_ref();
        let started = tokio::time::Instant::now();
        let response = self.succeeded(self.send_to(url.clone(), body.clone()).await?).await?;
        let answer = self.read_body(response).await?;
        if let Err(err) = serde_json::from_slice::<EmbeddingsShape>(&answer) {
            return Err(self.fail(Failure::Protocol(format!("not an embeddings answer ({err})"))));
        }
        if let Some(replay) = replay {
            replay.put(self.name(), url.as_str(), &body, &answer, started.elapsed());
        }
        Ok(Reply::Json(answer))
    }
}

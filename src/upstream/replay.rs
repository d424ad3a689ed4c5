//! A disk cache of upstream answers, for `tierwise eval`: a model asked the same request
//! twice (by two strategies, or two settings of a sweep) answers from the cache the
//! second time, after waiting as long as the first call took — so the run loop, the
//! trail and the latencies are what a live call gives, without the model's work.
//! Only complete JSON answers are kept; streams and failures always go to the upstream.
//!
//! A request that asks for `logprobs` (the `confidence` verifier's) and the same request
//! without are one entry: an answer kept with its logprobs serves both (stripped for the
//! request that did not ask), so the chain's first step and its model asked alone share
//! one answer. An answer kept without serves only requests that do not ask.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The cache: one file per answer under `dir`, named by the SHA-256 of the upstream,
/// its endpoint and the exact request body.
#[derive(Debug)]
pub struct Replay {
    dir: PathBuf,
    /// Answers given from the cache.
    hits: AtomicU64,
    /// Answers kept from live calls.
    kept: AtomicU64,
    /// Give cached answers at once instead of after the live call's recorded time.
    instant: bool,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    /// How long the live call took, in microseconds.
    took_us: u64,
    /// The answer's body, base64.
    body: String,
    /// The request asked for logprobs: the answer has them.
    #[serde(default)]
    logprobs: bool,
}

impl Replay {
    pub fn new(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(Replay { dir, hits: AtomicU64::new(0), kept: AtomicU64::new(0), instant: false })
    }

    /// Cached answers come back at once: the cache fills as fast as the models answer,
    /// and latencies measured meanwhile mean nothing.
    pub fn instant(self, instant: bool) -> Self {
        Replay { instant, ..self }
    }

    fn path(&self, upstream: &str, endpoint: &str, body: &[u8]) -> PathBuf {
        let body = &keyed(body).0;
        let mut key = Vec::with_capacity(body.len() + 64);
        key.extend_from_slice(upstream.as_bytes());
        key.push(0);
        key.extend_from_slice(endpoint.as_bytes());
        key.push(0);
        key.extend_from_slice(body);
        let digest = crate::config::hex(&crate::config::sha256(&key));
        self.dir.join(format!("{digest}.json"))
    }

    /// The answer to this request, and how long the live call took, if it was seen.
    pub fn get(&self, upstream: &str, endpoint: &str, body: &[u8]) -> Option<(Bytes, Duration)> {
        let text = std::fs::read(self.path(upstream, endpoint, body)).ok()?;
        let entry: Entry = serde_json::from_slice(&text).ok()?;
        let wants_logprobs = keyed(body).1;
        if wants_logprobs && !entry.logprobs {
            return None;
        }
        let mut answer = Bytes::from(base64::engine::general_purpose::STANDARD.decode(entry.body).ok()?);
        if entry.logprobs && !wants_logprobs {
            let mut completion: serde_json::Value = serde_json::from_slice(&answer).ok()?;
            crate::escalate::score::logprobs::strip(&mut completion);
            answer = Bytes::from(completion.to_string());
        }
        self.hits.fetch_add(1, Ordering::Relaxed);
        let took = if self.instant { Duration::ZERO } else { Duration::from_micros(entry.took_us) };
        Some((answer, took))
    }

    /// (answers from the cache, live answers kept) so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.hits.load(Ordering::Relaxed), self.kept.load(Ordering::Relaxed))
    }

    /// Keeps a live call's answer (a failure to write is only a missed cache entry).
    pub fn put(&self, upstream: &str, endpoint: &str, body: &[u8], answer: &[u8], took: Duration) {
        let entry = Entry {
            took_us: u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            body: base64::engine::general_purpose::STANDARD.encode(answer),
            logprobs: keyed(body).1,
        };
        let path = self.path(upstream, endpoint, body);
        // Two callers may keep the same answer at once: each writes its own file.
        let temp =
            path.with_extension(format!("{}-{}.tmp", std::process::id(), self.kept.fetch_add(1, Ordering::Relaxed)));
        let written = serde_json::to_vec(&entry).map_err(std::io::Error::other).and_then(|bytes| {
            std::fs::write(&temp, bytes)?;
            std::fs::rename(&temp, &path)
        });
        if let Err(err) = written {
            tracing::warn!(error = %err, path = %path.display(), "cannot write an eval cache entry");
        }
    }
}

/// The body a request is keyed by — its JSON re-encoded in one field order, without
/// `"logprobs": true` — and whether it asked for logprobs. A body that is not a JSON
/// object is its own key.
fn keyed(body: &[u8]) -> (Vec<u8>, bool) {
    let Ok(serde_json::Value::Object(mut fields)) = serde_json::from_slice::<serde_json::Value>(body) else {
        return (body.to_vec(), false);
    };
    let wants = fields.get("logprobs") == Some(&serde_json::Value::Bool(true));
    if wants {
        fields.remove("logprobs");
    }
    (serde_json::to_vec(&fields).unwrap_or_else(|_| body.to_vec()), wants)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_answers_by_upstream_endpoint_and_exact_body() {
        let dir = std::env::temp_dir().join(format!("tierwise-replay-{}", std::process::id()));
        let replay = Replay::new(dir.clone()).unwrap();
        assert_eq!(replay.get("weak", "/v1/chat/completions", b"{}"), None);
        replay.put("weak", "/v1/chat/completions", b"{}", b"{\"id\":1}", Duration::from_millis(812));
        let (answer, took) = replay.get("weak", "/v1/chat/completions", b"{}").unwrap();
        assert_eq!((&answer[..], took), (&b"{\"id\":1}"[..], Duration::from_millis(812)));
        assert_eq!(replay.get("strong", "/v1/chat/completions", b"{}"), None, "another upstream");
        assert_eq!(replay.get("weak", "/v1/chat/completions", b"{\"n\":2}"), None, "another body");
        let instant = Replay::new(dir.clone()).unwrap().instant(true);
        assert_eq!(instant.get("weak", "/v1/chat/completions", b"{}").map(|(_, took)| took), Some(Duration::ZERO));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn an_answer_with_logprobs_serves_the_request_without_them() {
        let dir = std::env::temp_dir().join(format!("tierwise-replay-lp-{}", std::process::id()));
        let replay = Replay::new(dir.clone()).unwrap();
        let (plain, asking) = (br#"{"model":"m","messages":[]}"#, br#"{"messages":[],"model":"m","logprobs":true}"#);
        let answer = br#"{"choices":[{"index":0,"message":{"content":"4"},"logprobs":{"content":[]}}]}"#;
        replay.put("weak", "/e", asking, answer, Duration::from_millis(5));
        assert_eq!(&replay.get("weak", "/e", asking).unwrap().0[..], &answer[..]);
        let stripped: serde_json::Value = serde_json::from_slice(&replay.get("weak", "/e", plain).unwrap().0).unwrap();
        assert_eq!(stripped, serde_json::json!({"choices": [{"index": 0, "message": {"content": "4"}}]}));

        let other = br#"{"model":"other","messages":[]}"#;
        replay.put("weak", "/e", other, br#"{"choices":[]}"#, Duration::from_millis(5));
        assert!(
            replay.get("weak", "/e", br#"{"model":"other","messages":[],"logprobs":true}"#).is_none(),
            "kept without logprobs"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}

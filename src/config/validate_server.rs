//! Validation of `[server]`.

use std::net::SocketAddr;
use std::time::Duration;

use super::raw::RawServer;
use super::validate::{
    positive_ms, Problems, DEFAULT_BODY_LIMIT, DEFAULT_LISTEN, DEFAULT_REQUEST_TIMEOUT_MS, DEFAULT_SHUTDOWN_GRACE_MS,
};
use super::ServerConfig;

/// The smallest head hyper can parse into (its read buffer's minimum).
const MIN_HEADER_BYTES: usize = 8 * 1024;

pub(super) fn validate_server(raw: &RawServer, problems: &mut Problems) -> Option<ServerConfig> {
    let listen_text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen = match listen_text.parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            problems.hint(
                "server.listen",
                format!("\"{listen_text}\" is not an address"),
                "write IP:PORT, e.g. \"127.0.0.1:4141\" or \"0.0.0.0:4141\"",
            );
            None
        }
    };
    let body_limit = raw.body_limit_bytes.unwrap_or(DEFAULT_BODY_LIMIT);
    if body_limit == 0 {
        problems.add("server.body_limit_bytes", "must be greater than 0");
    }
    let request_timeout =
        positive_ms("server.request_timeout_ms", raw.request_timeout_ms, DEFAULT_REQUEST_TIMEOUT_MS, problems);
    let shutdown_grace = Duration::from_millis(raw.shutdown_grace_ms.unwrap_or(DEFAULT_SHUTDOWN_GRACE_MS));
    let sse_keepalive = positive_ms("server.sse_keepalive_ms", raw.sse_keepalive_ms, 3_000, problems);
    let metrics_listen = raw.metrics_listen.as_deref().and_then(|text| match text.parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            problems.hint(
                "server.metrics_listen",
                format!("\"{text}\" is not an address"),
                "write IP:PORT, e.g. \"127.0.0.1:9464\"",
            );
            None
        }
    });
    let max_header_bytes = raw.max_header_bytes.unwrap_or(64 * 1024);
    if max_header_bytes < MIN_HEADER_BYTES {
        problems.hint(
            "server.max_header_bytes",
            format!("{max_header_bytes} is too small"),
            format!("at least {MIN_HEADER_BYTES}"),
        );
    }
    Some(ServerConfig {
        listen: listen?,
        body_limit_bytes: usize::try_from(body_limit).unwrap_or(usize::MAX),
        request_timeout,
        shutdown_grace,
        sse_keepalive,
        trail_in_body: true,
        metrics_listen,
        max_concurrent_requests: raw.max_concurrent_requests.unwrap_or(1024),
        queue_limit: raw.queue_limit.unwrap_or(1024),
        queue_wait: Duration::from_millis(raw.queue_wait_ms.unwrap_or(2_000)),
        header_read_timeout: positive_ms("server.header_read_timeout_ms", raw.header_read_timeout_ms, 30_000, problems),
        max_header_bytes,
        body_read_timeout: positive_ms("server.body_read_timeout_ms", raw.body_read_timeout_ms, 30_000, problems),
        config_poll: Some(raw.config_poll_ms.unwrap_or(2_000)).filter(|ms| *ms > 0).map(Duration::from_millis),
    })
}

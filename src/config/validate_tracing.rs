//! Validation of `[tracing]`, with the standard `OTEL_*` variables for what it leaves
//! unset: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the full traces URL) or
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (the base), `OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL`,
//! `OTEL_EXPORTER_OTLP_(TRACES_)HEADERS`, `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`,
//! `OTEL_SERVICE_NAME`, and `OTEL_SDK_DISABLED`.

use super::raw::RawTracing;
use super::validate::Problems;
use super::{OtlpProtocol, Secret, TracingConfig};

pub(super) fn tracing(
    raw: &RawTracing,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> Option<TracingConfig> {
    let var = |name: &str| env(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return None;
    }
    let protocol_text = raw
        .protocol
        .clone()
        .or_else(|| var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))
        .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"));
    let protocol = match protocol_text.as_deref().unwrap_or("http/protobuf") {
        "http/protobuf" => OtlpProtocol::HttpProtobuf,
        "grpc" => OtlpProtocol::Grpc,
        other => {
            let hint = "\"http/protobuf\" (port 4318) or \"grpc\" (port 4317)";
            problems.hint("tracing.protocol", format!("unsupported protocol \"{other}\""), hint);
            OtlpProtocol::HttpProtobuf
        }
    };
    let base = raw.otlp_endpoint.clone().or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"));
    let endpoint = match (base, var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")) {
        // The per-signal variable is the full URL; a base gets the signal's path (HTTP).
        (None, Some(full)) => full,
        (Some(base), _) => match protocol {
            OtlpProtocol::HttpProtobuf => format!("{}/v1/traces", base.trim_end_matches('/')),
            OtlpProtocol::Grpc => base,
        },
        (None, None) => {
            let set = raw.protocol.is_some() || !raw.headers.is_empty() || raw.sample_ratio.is_some();
            if set || raw.service_name.is_some() {
                problems.hint(
                    "tracing.otlp_endpoint",
                    "missing: [tracing] is set but no endpoint is",
                    "the collector's OTLP URL, e.g. \"http://127.0.0.1:4318\" (or OTEL_EXPORTER_OTLP_ENDPOINT)",
                );
            }
            return None;
        }
    };
    if protocol == OtlpProtocol::Grpc && endpoint.starts_with("https://") {
        problems.hint(
            "tracing.otlp_endpoint",
            "gRPC over TLS is not built in",
            "use protocol = \"http/protobuf\" for an https:// collector (port 4318), or plain http:// for gRPC",
        );
    }
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        problems.hint(
            "tracing.otlp_endpoint",
            format!("\"{endpoint}\" is not an http(s) URL"),
            "e.g. \"http://127.0.0.1:4318\"",
        );
    }
    let mut headers = Vec::new();
    for (name, env_name) in &raw.headers {
        match var(env_name) {
            Some(value) => headers.push((name.clone(), Secret::new(value))),
            None => problems.hint(
                format!("tracing.headers.{name}"),
                format!("the environment variable {env_name} is not set"),
                "name the variable that holds the header's value, and set it",
            ),
        }
    }
    if raw.headers.is_empty() {
        // `OTEL_EXPORTER_OTLP_(TRACES_)HEADERS`: `name=value,name=value` (values URL-encoded).
        let listed = var("OTEL_EXPORTER_OTLP_TRACES_HEADERS").or_else(|| var("OTEL_EXPORTER_OTLP_HEADERS"));
        for pair in listed.unwrap_or_default().split(',') {
            if let Some((name, value)) = pair.split_once('=') {
                headers.push((name.trim().to_string(), Secret::new(percent_decode(value.trim()))));
            }
        }
    }
    let sample_ratio = match raw.sample_ratio {
        Some(ratio) => ratio,
        None => match var("OTEL_TRACES_SAMPLER").as_deref() {
            Some("always_off" | "parentbased_always_off") => 0.0,
            Some("traceidratio" | "parentbased_traceidratio") => {
                var("OTEL_TRACES_SAMPLER_ARG").and_then(|a| a.parse().ok()).unwrap_or(1.0)
            }
            _ => 1.0,
        },
    };
    if !(0.0..=1.0).contains(&sample_ratio) {
        problems.hint("tracing.sample_ratio", format!("{sample_ratio} is not a share"), "from 0 to 1, e.g. 0.1");
    }
    let service_name =
        raw.service_name.clone().or_else(|| var("OTEL_SERVICE_NAME")).unwrap_or_else(|| "tierwise".to_string());
    Some(TracingConfig { endpoint, protocol, headers, sample_ratio, service_name })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

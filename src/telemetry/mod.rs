//! Traces: the spans tierwise makes (one per request, one per attempt and judge call, with
//! events for retries, checks and skips) become OpenTelemetry spans through
//! `tracing-opentelemetry`, and go to an OTLP collector in batches from the SDK's own
//! thread — a request never waits for an export; when the collector is down, spans are
//! dropped and counted. W3C `traceparent` / `tracestate` are read from clients and sent on
//! every upstream call.
//!
//! Off (no `[tracing]` endpoint), none of this is installed: the attempt and judge spans
//! are DEBUG spans of target `tierwise::trace`, which the log filter leaves disabled, and
//! no header is read or written.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::config::{OtlpProtocol, TracingConfig};

/// The target of tierwise's own trace spans and events (attempts, judge calls, checks,
/// skips): DEBUG, so that without traces they cost nothing.
pub const TARGET: &str = "tierwise::trace";

static ENABLED: AtomicBool = AtomicBool::new(false);
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Whether traces are exported (and so propagated).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Spans an export failed to deliver (the collector down or refusing), since start.
pub fn dropped_spans() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// The exporting side, kept until shutdown (which flushes what is queued).
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Starts the batch exporter of `config`.
    pub fn start(config: &TracingConfig) -> Result<Self, String> {
        crate::upstream::install_crypto_provider();
        let headers: HashMap<String, String> =
            config.headers.iter().map(|(name, value)| (name.clone(), value.expose().to_string())).collect();
        let exporter = match config.protocol {
            OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(&config.endpoint)
                .with_headers(headers)
                .build(),
            // tonic needs the runtime this is called in; it lives as long as tierwise.
            OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(&config.endpoint)
                .with_metadata(metadata(&headers))
                .build(),
        }
        .map_err(|e| format!("cannot export traces to {} (tracing.otlp_endpoint): {e}", config.endpoint))?;
        let resource =
            Resource::builder().with_attribute(KeyValue::new("service.name", config.service_name.clone())).build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(Counting(exporter))
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sample_ratio))))
            .with_resource(resource)
            .build();
        ENABLED.store(true, Ordering::Relaxed);
        Ok(Telemetry { provider })
    }

    /// The `tracing` layer that turns spans into OTel spans.
    pub fn layer<S>(&self) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        tracing_opentelemetry::layer().with_tracer(self.provider.tracer("tierwise"))
    }

    /// Exports what is queued and stops the exporter.
    pub fn shutdown(self) {
        let _ = self.provider.force_flush();
        let _ = self.provider.shutdown();
    }
}

/// The export headers as gRPC metadata (a header gRPC cannot carry is left out).
fn metadata(headers: &HashMap<String, String>) -> tonic::metadata::MetadataMap {
    let mut metadata = tonic::metadata::MetadataMap::new();
    for (name, value) in headers {
        let key = tonic::metadata::MetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes());
        if let (Ok(key), Ok(value)) = (key, value.parse()) {
            metadata.insert(key, value);
        }
    }
    metadata
}

/// The exporter, counting the spans of every failed export.
#[derive(Debug)]
struct Counting<E>(E);

impl<E: SpanExporter> SpanExporter for Counting<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len() as u64;
        let result = self.0.export(batch).await;
        if result.is_err() {
            DROPPED.fetch_add(spans, Ordering::Relaxed);
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}

/// Makes `span`'s parent the client's trace (`traceparent`), when traces are on.
pub fn continue_trace(span: &tracing::Span, headers: &HeaderMap) {
    if !enabled() {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&Headers(headers));
    let _ = span.set_parent(parent);
}

/// Adds `traceparent` (and `tracestate`) for the current span to an upstream call's
/// headers, when traces are on.
pub fn propagate(headers: &mut HeaderMap) {
    if !enabled() {
        return;
    }
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut HeadersMut(headers));
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeadersMut<'a>(&'a mut HeaderMap);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(key), HeaderValue::try_from(value)) {
            self.0.insert(name, value);
        }
    }
}

mod spans;

pub use spans::{
    attempt_span, call_span, on_response, record_completion, record_failure, record_request, request_span,
    RequestFields,
};

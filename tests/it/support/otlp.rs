//! An OTLP receiver on 127.0.0.1:0 — OTLP/HTTP (`POST /v1/traces`) or OTLP/gRPC — decoding
//! with the official protobuf definitions (the `opentelemetry-proto` crate), keeping the
//! spans and every export as it arrived.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

#[derive(Default)]
struct Received {
    spans: Vec<Span>,
    /// Every export body as it arrived, for counting planted needles.
    raw: Vec<Bytes>,
    /// The headers of every OTLP/HTTP export.
    headers: Vec<http::HeaderMap>,
}

pub struct Receiver {
    pub addr: std::net::SocketAddr,
    received: Arc<Mutex<Received>>,
}

impl Receiver {
    pub async fn start() -> Self {
        let received = Arc::new(Mutex::new(Received::default()));
        let app = Router::new().route("/v1/traces", post(export)).with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { addr, received }
    }

    /// The same receiver speaking OTLP/gRPC (`TraceService/Export`) on HTTP/2.
    pub async fn start_grpc() -> Self {
        let received = Arc::new(Mutex::new(Received::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = TraceServiceServer::new(Grpc(received.clone()));
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        tokio::spawn(tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming));
        Receiver { addr, received }
    }

    /// The `otlp_endpoint` to configure.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The spans of trace `trace_id` once `count` of them arrived (polled, at most 20 s).
    pub async fn trace(&self, trace_id: &[u8], count: usize) -> Vec<Span> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let spans: Vec<Span> =
                self.received.lock().unwrap().spans.iter().filter(|s| s.trace_id == trace_id).cloned().collect();
            if spans.len() >= count || tokio::time::Instant::now() > deadline {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The value of header `name` on the first OTLP/HTTP export.
    pub fn export_header(&self, name: &str) -> Option<String> {
        let received = self.received.lock().unwrap();
        received.headers.first()?.get(name)?.to_str().ok().map(str::to_string)
    }

    /// How many export bodies contain `needle`.
    pub fn saw(&self, needle: &str) -> usize {
        let received = self.received.lock().unwrap();
        received.raw.iter().filter(|body| body.windows(needle.len()).any(|w| w == needle.as_bytes())).count()
    }
}

async fn export(State(received): State<Arc<Mutex<Received>>>, headers: http::HeaderMap, body: Bytes) -> Vec<u8> {
    let request = ExportTraceServiceRequest::decode(body.as_ref()).expect("an OTLP/protobuf trace export");
    received.lock().unwrap().headers.push(headers);
    keep(&received, request, body);
    // An empty ExportTraceServiceResponse.
    Vec::new()
}

fn keep(received: &Mutex<Received>, request: ExportTraceServiceRequest, raw: Bytes) {
    let mut received = received.lock().unwrap();
    received.raw.push(raw);
    for resource in request.resource_spans {
        for scope in resource.scope_spans {
            received.spans.extend(scope.spans);
        }
    }
}

struct Grpc(Arc<Mutex<Received>>);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let request = request.into_inner();
        let raw = Bytes::from(request.encode_to_vec());
        keep(&self.0, request, raw);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// A span's attribute, as text (strings as they are, numbers and booleans printed).
pub fn attr(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?.value.as_ref()?;
    Some(match value {
        AnyValue::StringValue(s) => s.clone(),
        AnyValue::IntValue(i) => i.to_string(),
        AnyValue::BoolValue(b) => b.to_string(),
        AnyValue::DoubleValue(d) => d.to_string(),
        other => format!("{other:?}"),
    })
}

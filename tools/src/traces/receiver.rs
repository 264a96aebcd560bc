//! OTLP in: the gRPC `TraceService` every OpenTelemetry exporter speaks by default, and the
//! same message over HTTP (`POST /v1/traces`, protobuf), both turned into [`Span`]s at the door.
//!
//! A span that cannot be kept as sent (a trace or span id of the wrong length, or all zeros)
//! is refused alone and counted in the answer's `partial_success`, as the protocol asks, so
//! one bad span does not lose its batch.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1 as otlp;
use prost::Message;

use super::store::{Attributes, Span, SpanEvent, SpanId, SpanLink, SpanStatus, Store, TraceId};

/// What one span may carry into memory: with `max_spans` spans kept, these bound the store's
/// size whatever a sender puts in a span.
const MAX_NAME_CHARS: usize = 256;
const MAX_VALUE_CHARS: usize = 1024;
const MAX_ATTRIBUTES: usize = 128;
const MAX_EVENTS: usize = 32;
const MAX_LINKS: usize = 32;

/// The service name of a resource without `service.name`, as the SDKs spell it.
const UNKNOWN_SERVICE: &str = "unknown_service";

/// Cuts `text` to `max` characters, marking the cut.
fn clip(mut text: String, max: usize) -> String {
    if let Some((at, _)) = text.char_indices().nth(max) {
        text.truncate(at);
        text.push('…');
    }
    text
}

/// An OTLP value as text: strings as they are, arrays and maps in a JSON-like form, bytes in hex.
fn render(value: Option<&AnyValue>) -> String {
    use any_value::Value;
    match value.and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BytesValue(b)) => b.iter().map(|b| format!("{b:02x}")).collect(),
        Some(Value::ArrayValue(a)) => {
            let items: Vec<String> = a.values.iter().map(|v| render(Some(v))).collect();
            format!("[{}]", items.join(", "))
        }
        Some(Value::KvlistValue(kv)) => {
            let items: Vec<String> =
                kv.values.iter().map(|kv| format!("{}={}", kv.key, render(kv.value.as_ref()))).collect();
            format!("{{{}}}", items.join(", "))
        }
    }
}

fn attributes(kvs: &[KeyValue]) -> Attributes {
    kvs.iter()
        .take(MAX_ATTRIBUTES)
        .map(|kv| (clip(kv.key.clone(), MAX_NAME_CHARS), clip(render(kv.value.as_ref()), MAX_VALUE_CHARS)))
        .collect()
}

fn kind(kind: i32) -> &'static str {
    use otlp::span::SpanKind;
    match SpanKind::try_from(kind) {
        Ok(SpanKind::Internal) => "internal",
        Ok(SpanKind::Server) => "server",
        Ok(SpanKind::Client) => "client",
        Ok(SpanKind::Producer) => "producer",
        Ok(SpanKind::Consumer) => "consumer",
        Ok(SpanKind::Unspecified) | Err(_) => "unspecified",
    }
}

fn status(status: Option<&otlp::Status>) -> SpanStatus {
    use otlp::status::StatusCode;
    let Some(status) = status else { return SpanStatus { code: "unset", message: String::new() } };
    let code = match StatusCode::try_from(status.code) {
        Ok(StatusCode::Ok) => "ok",
        Ok(StatusCode::Error) => "error",
        Ok(StatusCode::Unset) | Err(_) => "unset",
    };
    SpanStatus { code, message: clip(status.message.clone(), MAX_VALUE_CHARS) }
}

/// Why a span was refused, for the answer's `error_message`.
fn convert(
    span: &otlp::Span,
    service: &str,
    resource: &Attributes,
    scope: &str,
) -> Result<Span, (&'static str, String)> {
    let trace_id = TraceId::from_bytes(&span.trace_id).map_err(|e| ("trace_id", e.to_string()))?;
    let span_id = SpanId::from_bytes(&span.span_id).map_err(|e| ("span_id", e.to_string()))?;
    let parent_span_id = if span.parent_span_id.is_empty() {
        None
    } else {
        Some(SpanId::from_bytes(&span.parent_span_id).map_err(|e| ("parent_span_id", e.to_string()))?)
    };
    // A link with a malformed id points nowhere; it is left out rather than refusing the span.
    let links = span
        .links
        .iter()
        .filter_map(|l| {
            Some(SpanLink {
                trace_id: TraceId::from_bytes(&l.trace_id).ok()?,
                span_id: SpanId::from_bytes(&l.span_id).ok()?,
                attributes: attributes(&l.attributes),
            })
        })
        .take(MAX_LINKS)
        .collect();
    let events = span
        .events
        .iter()
        .take(MAX_EVENTS)
        .map(|e| SpanEvent {
            name: clip(e.name.clone(), MAX_NAME_CHARS),
            time_unix_nano: e.time_unix_nano,
            attributes: attributes(&e.attributes),
        })
        .collect();
    Ok(Span {
        trace_id,
        span_id,
        parent_span_id,
        name: clip(span.name.clone(), MAX_NAME_CHARS),
        service: service.to_owned(),
        kind: kind(span.kind),
        start_unix_nano: span.start_time_unix_nano,
        end_unix_nano: span.end_time_unix_nano,
        attributes: attributes(&span.attributes),
        resource: resource.clone(),
        scope: scope.to_owned(),
        links,
        events,
        status: status(span.status.as_ref()),
    })
}

/// The spans of one export request, and the refused ones with the first reason.
pub fn spans(request: &ExportTraceServiceRequest) -> (Vec<Span>, i64, Option<String>) {
    let (mut kept, mut refused, mut reason) = (Vec::new(), 0i64, None);
    for rs in &request.resource_spans {
        let mut resource = rs.resource.as_ref().map(|r| attributes(&r.attributes)).unwrap_or_default();
        let service = resource.remove("service.name").unwrap_or_else(|| UNKNOWN_SERVICE.to_owned());
        for ss in &rs.scope_spans {
            let scope = ss.scope.as_ref().map(|s| clip(s.name.clone(), MAX_NAME_CHARS)).unwrap_or_default();
            for span in &ss.spans {
                match convert(span, &service, &resource, &scope) {
                    Ok(span) => kept.push(span),
                    Err((field, why)) => {
                        refused += 1;
                        if reason.is_none() {
                            reason = Some(format!("span {field}: {why}"));
                        }
                    }
                }
            }
        }
    }
    (kept, refused, reason)
}

/// Stores one export and answers as the protocol asks: an empty `partial_success` when every
/// span was kept, else how many were not and why.
pub fn export(store: &Store, request: &ExportTraceServiceRequest) -> ExportTraceServiceResponse {
    let (spans, mut refused, mut reason) = spans(request);
    let inserted = store.insert(spans);
    if inserted.dropped > 0 {
        refused += i64::try_from(inserted.dropped).unwrap_or(i64::MAX);
        if reason.is_none() {
            let max = store.limits().max_spans;
            reason = Some(format!("a trace holds at most {max} spans here (max_spans); the rest were dropped"));
        }
    }
    super::record_metrics(store, inserted, refused);
    let partial_success = (refused > 0)
        .then(|| ExportTracePartialSuccess { rejected_spans: refused, error_message: reason.unwrap_or_default() });
    ExportTraceServiceResponse { partial_success }
}

/// The gRPC side: `opentelemetry.proto.collector.trace.v1.TraceService/Export`.
#[derive(Debug, Clone)]
pub struct Receiver {
    pub store: Arc<Store>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        Ok(tonic::Response::new(export(&self.store, request.get_ref())))
    }
}

/// Largest OTLP/HTTP body accepted, the same as tonic's default gRPC message limit.
pub const MAX_HTTP_BODY: usize = 4 * 1024 * 1024;

/// `POST /v1/traces` with an `application/x-protobuf` body: OTLP/HTTP, for exporters set to
/// `http/protobuf`. JSON bodies are refused with 415 (the viewer is built without serde for
/// the protocol's types).
pub async fn http_export(State(store): State<Arc<Store>>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.starts_with("application/x-protobuf") {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "OTLP/HTTP here takes Content-Type: application/x-protobuf\n")
            .into_response();
    }
    match ExportTraceServiceRequest::decode(body) {
        Ok(request) => {
            let answer = export(&store, &request);
            ([(header::CONTENT_TYPE, "application/x-protobuf")], answer.encode_to_vec()).into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("not an OTLP ExportTraceServiceRequest: {e}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::resource::v1::Resource;

    use super::*;

    fn kv(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }) }
    }

    fn request(spans: Vec<otlp::Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![otlp::ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", any_value::Value::StringValue("orders".into())),
                        kv("host.name", any_value::Value::StringValue("box".into())),
                    ],
                    ..Resource::default()
                }),
                scope_spans: vec![otlp::ScopeSpans { spans, ..otlp::ScopeSpans::default() }],
                schema_url: String::new(),
            }],
        }
    }

    #[test]
    fn values_render_as_text_and_bad_ids_refuse_only_their_span() {
        let good = otlp::Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: "x".repeat(300),
            kind: otlp::span::SpanKind::Server as i32,
            attributes: vec![
                kv("shard", any_value::Value::IntValue(3)),
                kv(
                    "list",
                    any_value::Value::ArrayValue(opentelemetry_proto::tonic::common::v1::ArrayValue {
                        values: vec![
                            AnyValue { value: Some(any_value::Value::BoolValue(true)) },
                            AnyValue { value: Some(any_value::Value::DoubleValue(1.5)) },
                        ],
                    }),
                ),
            ],
            ..otlp::Span::default()
        };
        let bad = otlp::Span { trace_id: vec![1; 15], span_id: vec![3; 8], ..otlp::Span::default() };
        let (kept, refused, reason) = spans(&request(vec![good, bad]));
        assert_eq!(refused, 1);
        assert_eq!(reason.as_deref(), Some("span trace_id: must be 32 hexadecimal digits"));
        let span = &kept[0];
        assert_eq!((span.service.as_str(), span.kind), ("orders", "server"));
        assert_eq!(span.attributes["shard"], "3");
        assert_eq!(span.attributes["list"], "[true, 1.5]");
        assert_eq!(span.resource["host.name"], "box");
        assert!(!span.resource.contains_key("service.name"));
        assert_eq!(span.name.chars().count(), MAX_NAME_CHARS + 1);
    }
}

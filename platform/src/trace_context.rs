//! W3C trace context (`traceparent`, `tracestate`) across HTTP, gRPC metadata and Kafka
//! headers: the sibling of [`crate::correlation`], written once so every hop speaks it alike.
//!
//! A process that exports traces ([`crate::telemetry`]) has an OpenTelemetry context on each
//! `tracing` span. Outgoing, [`inject`] writes the context of a span into whatever carries the
//! call (a `HeaderMap`, tonic metadata, Kafka headers, an outbox row's `traceparent` column);
//! incoming, [`set_parent`] makes a fresh span the child of what a carrier says. A missing or
//! malformed `traceparent` is not an error: the span simply starts a new trace (the W3C rule:
//! ignore what cannot be parsed). The correlation id is independent of all this and stays as it
//! is: a trace is what a collector shows, the correlation id is what logs and rows carry.
//!
//! In a process that does not export (no OTLP endpoint configured), spans have no OpenTelemetry
//! context, so nothing is injected and extraction is a no-op: nothing to pay for.

use std::sync::LazyLock;

pub use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The header (HTTP), metadata key (gRPC) and Kafka header carrying the trace and parent span.
pub const TRACEPARENT: &str = "traceparent";
/// Vendor state that travels with [`TRACEPARENT`].
pub const TRACESTATE: &str = "tracestate";

/// The longest `traceparent`/`tracestate` value accepted from a carrier (the W3C limit for
/// `tracestate` is 512 bytes); a longer one is ignored rather than parsed.
const MAX_VALUE_LEN: usize = 512;

static PROPAGATOR: LazyLock<TraceContextPropagator> = LazyLock::new(TraceContextPropagator::new);

/// The OpenTelemetry context of `span` (empty when the process does not export).
pub fn context_of(span: &tracing::Span) -> Context {
    span.context()
}

/// Whether `cx` names a real span (a parsed `traceparent`, or a span of an exporting process).
pub fn is_valid(cx: &Context) -> bool {
    cx.span().span_context().is_valid()
}

/// Writes `span`'s context into a carrier through `set(key, value)`; nothing when the span has
/// no valid context.
pub fn inject(span: &tracing::Span, set: impl FnMut(&'static str, String)) {
    inject_context(&span.context(), set);
}

/// [`inject`] for an OpenTelemetry context.
pub fn inject_context(cx: &Context, set: impl FnMut(&'static str, String)) {
    if !is_valid(cx) {
        return;
    }
    struct Setter<F>(F);
    impl<F: FnMut(&'static str, String)> Injector for Setter<F> {
        fn set(&mut self, key: &str, value: String) {
            // The propagator only writes these two keys; naming them as 'static lets every
            // carrier (tonic's metadata keys among them) take them without allocating.
            match key {
                TRACEPARENT => (self.0)(TRACEPARENT, value),
                TRACESTATE if !value.is_empty() => (self.0)(TRACESTATE, value),
                _ => {}
            }
        }
    }
    PROPAGATOR.inject_context(cx, &mut Setter(set));
}

/// The `traceparent` of the current span, for a carrier written later than the request (the
/// outbox row the relay publishes).
pub fn current_traceparent() -> Option<String> {
    let mut out = None;
    inject(&tracing::Span::current(), |k, v| {
        if k == TRACEPARENT {
            out = Some(v);
        }
    });
    out
}

/// The context a carrier names, read through `get(key)`; an empty context (new root) when it
/// names none or a malformed one.
pub fn extract<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Context {
    struct Getter<'a> {
        traceparent: Option<&'a str>,
        tracestate: Option<&'a str>,
    }
    impl Extractor for Getter<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            match key {
                TRACEPARENT => self.traceparent,
                TRACESTATE => self.tracestate,
                _ => None,
            }
        }
        fn keys(&self) -> Vec<&str> {
            vec![TRACEPARENT, TRACESTATE]
        }
    }
    let short = |key| get(key).filter(|v| v.len() <= MAX_VALUE_LEN);
    let getter = Getter { traceparent: short(TRACEPARENT).filter(|v| well_formed(v)), tracestate: short(TRACESTATE) };
    let cx = PROPAGATOR.extract_with_context(&Context::new(), &getter);
    if is_valid(&cx) { cx } else { Context::new() }
}

/// Whether `v` has the W3C shape `vv-<32 hex>-<16 hex>-ff` in lower case (a later version may
/// append fields). The SDK's parser alone takes a short id as if zero-padded.
fn well_formed(v: &str) -> bool {
    let lower_hex = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let mut parts = v.split('-');
    [2, 32, 16, 2].iter().all(|&n| parts.next().is_some_and(|p| lower_hex(p, n)))
}

/// The context a bare `traceparent` value names (an outbox row's column).
pub fn from_traceparent(traceparent: Option<&str>) -> Context {
    extract(|k| if k == TRACEPARENT { traceparent } else { None })
}

/// Makes `span` (just created, not yet entered) the child of `cx` when `cx` is valid; keeps its
/// ordinary parent otherwise. Never fails: a span that is not traced is left as it is.
pub fn set_parent(span: &tracing::Span, cx: Context) {
    if is_valid(&cx) {
        let _ = span.set_parent(cx);
    }
}

/// Links `span` to the span `cx` names (a batch span to each of its records'), when valid.
pub fn add_link(span: &tracing::Span, cx: &Context) {
    if is_valid(cx) {
        span.add_link(cx.span().span_context().clone());
    }
}

pub mod http {
    //! `traceparent` in HTTP headers: extracted by [`crate::correlation::middleware`], injected
    //! into outgoing reqwest calls.
    use axum::http::{HeaderMap, HeaderValue};
    use opentelemetry::Context;

    /// The context the request's headers name (an empty one for none or a malformed one).
    pub fn extract(headers: &HeaderMap) -> Context {
        super::extract(|k| headers.get(k).and_then(|v| v.to_str().ok()))
    }

    /// Adds `span`'s context to `headers`.
    pub fn inject(span: &tracing::Span, headers: &mut HeaderMap) {
        super::inject(span, |k, v| {
            if let Ok(v) = HeaderValue::from_str(&v) {
                headers.insert(k, v);
            }
        });
    }

    /// `req` with `span`'s context in its headers: what every outgoing reqwest call goes through.
    pub fn inject_reqwest(span: &tracing::Span, mut req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let mut headers = HeaderMap::new();
        inject(span, &mut headers);
        if !headers.is_empty() {
            req = req.headers(headers);
        }
        req
    }
}

#[cfg(feature = "grpc")]
pub mod grpc {
    //! `traceparent` in tonic metadata, next to [`crate::correlation::grpc`].
    use opentelemetry::Context;

    /// The context a gRPC request's metadata names.
    pub fn extract<T>(req: &tonic::Request<T>) -> Context {
        let md = req.metadata();
        super::extract(|k| md.get(k).and_then(|v| v.to_str().ok()))
    }

    /// Puts `span`'s context on an outgoing gRPC request.
    pub fn inject<T>(span: &tracing::Span, req: &mut tonic::Request<T>) {
        let md = req.metadata_mut();
        super::inject(span, |k, v| {
            if let Ok(v) = v.parse() {
                md.insert(k, v);
            }
        });
    }
}

#[cfg(feature = "kafka")]
pub mod kafka {
    //! `traceparent` as a Kafka record header, next to `x-correlation-id`.
    use opentelemetry::Context;
    use rdkafka::message::{Header, Headers, OwnedHeaders};

    /// The context a record's headers name.
    pub fn extract<H: Headers>(headers: Option<&H>) -> Context {
        let Some(hs) = headers else { return Context::new() };
        let value = |key: &str| {
            hs.iter().find(|h| h.key == key).and_then(|h| h.value).and_then(|v| std::str::from_utf8(v).ok())
        };
        super::extract(value)
    }

    /// `headers` with `cx`'s `traceparent` (and `tracestate`) added.
    pub fn inject(cx: &Context, mut headers: OwnedHeaders) -> OwnedHeaders {
        let mut pairs = Vec::with_capacity(2);
        super::inject_context(cx, |k, v| pairs.push((k, v)));
        for (key, value) in &pairs {
            headers = headers.insert(Header { key, value: Some(value.as_str()) });
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState};

    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn remote() -> Context {
        let sc = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        Context::new().with_remote_span_context(sc)
    }

    fn trace_id(cx: &Context) -> TraceId {
        cx.span().span_context().trace_id()
    }

    #[test]
    fn traceparent_round_trips_through_http_headers() {
        let mut headers = axum::http::HeaderMap::new();
        inject_context(&remote(), |k, v| {
            headers.insert(k, v.parse().unwrap());
        });
        assert_eq!(headers[TRACEPARENT], PARENT);
        let back = http::extract(&headers);
        assert_eq!(trace_id(&back), trace_id(&remote()));
        assert_eq!(back.span().span_context().span_id(), remote().span().span_context().span_id());
    }

    #[cfg(feature = "grpc")]
    #[test]
    fn traceparent_round_trips_through_grpc_metadata() {
        let mut req = tonic::Request::new(());
        inject_context(&remote(), |k, v| {
            req.metadata_mut().insert(k, v.parse().unwrap());
        });
        assert_eq!(req.metadata().get(TRACEPARENT).unwrap(), PARENT);
        assert_eq!(trace_id(&grpc::extract(&req)), trace_id(&remote()));
    }

    #[cfg(feature = "kafka")]
    #[test]
    fn traceparent_round_trips_through_kafka_headers() {
        let headers = kafka::inject(&remote(), rdkafka::message::OwnedHeaders::new());
        assert_eq!(trace_id(&kafka::extract(Some(&headers))), trace_id(&remote()));
        assert!(!is_valid(&kafka::extract::<rdkafka::message::OwnedHeaders>(None)));
    }

    #[test]
    fn the_outbox_column_round_trips() {
        let mut column = None;
        inject_context(&remote(), |k, v| {
            if k == TRACEPARENT {
                column = Some(v);
            }
        });
        assert_eq!(trace_id(&from_traceparent(column.as_deref())), trace_id(&remote()));
    }

    #[test]
    fn a_malformed_or_missing_traceparent_is_a_new_root_never_an_error() {
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // all-zero trace id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // all-zero span id
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // forbidden version
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  // short trace id
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // upper case
        ] {
            assert!(!is_valid(&from_traceparent(Some(bad))), "{bad:?} was accepted");
        }
        let long = format!("{PARENT}{}", " ".repeat(MAX_VALUE_LEN));
        assert!(!is_valid(&from_traceparent(Some(&long))));
        assert!(!is_valid(&from_traceparent(None)));
        assert!(!is_valid(&http::extract(&axum::http::HeaderMap::new())));
        // A span given an invalid parent keeps its own: no panic, no error.
        set_parent(&tracing::Span::none(), from_traceparent(Some("garbage")));
    }

    #[test]
    fn nothing_is_injected_without_a_valid_context() {
        let mut n = 0;
        inject_context(&Context::new(), |_, _| n += 1);
        inject(&tracing::Span::none(), |_, _| n += 1);
        assert_eq!(n, 0);
        assert_eq!(current_traceparent(), None);
    }
}

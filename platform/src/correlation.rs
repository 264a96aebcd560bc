//! The `x-correlation-id` that follows one request across HTTP, gRPC metadata and Kafka headers.
//!
//! The HTTP [`middleware`] accepts a caller's id (when well formed) or makes one, returns it on
//! the response, records it on the request span, and holds it in a task-local for the request's
//! lifetime, so outgoing calls read it with [`CorrelationId::current`] instead of threading it
//! through every signature.
//!
//! The W3C trace context (`traceparent`) travels the same hops beside it, in
//! [`crate::trace_context`]: the middleware makes the request span the child of the caller's.

use std::fmt;
use std::time::Instant;

use axum::extract::{FromRequestParts, MatchedPath, Request};
use axum::http::HeaderValue;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// Header name on HTTP, key in gRPC metadata, header on Kafka records.
pub const HEADER: &str = "x-correlation-id";

/// The longest id kept; a longer one is replaced.
pub const MAX_LEN: usize = 128;
/// The ids [`CorrelationId::parse`] keeps, as a regular expression (for the OpenAPI documents).
pub const PATTERN: &str = "^[A-Za-z0-9._:-]{1,128}$";

tokio::task_local! {
    static CURRENT: CorrelationId;
}

/// A correlation id: 1–128 characters of `[A-Za-z0-9._:-]`, so it is safe in headers, logs
/// and metric-free contexts alike.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CorrelationId(String);

impl CorrelationId {
    /// `None` for an empty, over-long or oddly charactered value: such a value is replaced, not
    /// propagated.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = !s.is_empty()
            && s.len() <= MAX_LEN
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        ok.then(|| Self(s.to_owned()))
    }

    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id of the request this task is serving, if any.
    pub fn current() -> Option<Self> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// Runs `fut` with `self` as the current id (for consumers and relays, which have no HTTP
    /// request but do carry an id from a Kafka header or an outbox row).
    pub async fn scope<F: Future>(self, fut: F) -> F::Output {
        CURRENT.scope(self, fut).await
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CorrelationId({})", self.0)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CorrelationId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<Self>().cloned().unwrap_or_else(Self::generate))
    }
}

/// The ops endpoints every service serves (platform::ops), traced in logs but not exported.
const OPS_ROUTES: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// HTTP middleware: correlation id in, span, request metrics, correlation id out.
pub async fn middleware(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(CorrelationId::parse)
        .unwrap_or_else(CorrelationId::generate);
    req.extensions_mut().insert(id.clone());
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().clone();
    macro_rules! request_span {
        ($target:expr) => {
            tracing::info_span!(
                target: $target,
                "http",
                otel.name = %format_args!("{method} {route}"),
                otel.kind = "server",
                correlation_id = %id,
                %method,
                route = %route,
                http.response.status_code = tracing::field::Empty,
            )
        };
    }
    // Probes and scrapes (Prometheus every 5 s, each readiness check) would outnumber the
    // orders in any trace store; their spans get a target the trace export leaves out.
    let span = if OPS_ROUTES.contains(&route.as_str()) {
        request_span!(crate::telemetry::OPS_TARGET)
    } else {
        request_span!("platform::correlation")
    };
    // The caller's trace continues here (a malformed `traceparent` starts a new one).
    crate::trace_context::set_parent(&span, crate::trace_context::http::extract(req.headers()));
    let started = Instant::now();
    let mut res = CURRENT.scope(id.clone(), next.run(req).instrument(span.clone())).await;
    let status = res.status().as_u16();
    let elapsed = started.elapsed();
    metrics::counter!("http_requests_total", "method" => method.to_string(), "route" => route.clone(), "status" => status.to_string()).increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method.to_string(), "route" => route)
        .record(elapsed.as_secs_f64());
    span.record("http.response.status_code", status);
    span.in_scope(|| tracing::info!(status, latency_ms = elapsed.as_secs_f64() * 1000.0, "request done"));
    if let Ok(v) = HeaderValue::from_str(id.as_str()) {
        res.headers_mut().insert(HEADER, v);
    }
    res
}

#[cfg(feature = "grpc")]
pub mod grpc {
    //! Correlation ids in gRPC metadata.
    use super::{CorrelationId, HEADER};

    /// The id a gRPC request carries, or a new one.
    pub fn from_request<T>(req: &tonic::Request<T>) -> CorrelationId {
        req.metadata()
            .get(HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(CorrelationId::parse)
            .unwrap_or_else(CorrelationId::generate)
    }

    /// Puts the current task's id (if any) on an outgoing gRPC request.
    pub fn inject<T>(req: &mut tonic::Request<T>) {
        if let Some(id) = CorrelationId::current()
            && let Ok(v) = id.as_str().parse()
        {
            req.metadata_mut().insert(HEADER, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_ordinary_ids_and_refuses_odd_ones() {
        assert!(CorrelationId::parse("abc-123_x.y:z").is_some());
        assert!(CorrelationId::parse("").is_none());
        assert!(CorrelationId::parse("has space").is_none());
        assert!(CorrelationId::parse("new\nline").is_none());
        assert!(CorrelationId::parse(&"a".repeat(129)).is_none());
        assert!(CorrelationId::parse(&"a".repeat(128)).is_some());
        assert!(PATTERN.ends_with(&format!("{{1,{MAX_LEN}}}$")), "PATTERN and MAX_LEN disagree");
    }

    #[tokio::test]
    async fn current_is_set_inside_scope_only() {
        assert!(CorrelationId::current().is_none());
        let id = CorrelationId::parse("c-1").unwrap();
        let seen = id.clone().scope(async { CorrelationId::current() }).await;
        assert_eq!(seen, Some(id));
    }
}

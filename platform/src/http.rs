//! Serving HTTP, and reading JSON bodies with errors a client can act on.

use std::io;

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;

/// Largest request body any service accepts unless it says otherwise.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// Wraps a service's routes with what every service has: the ops endpoints, the correlation-id
/// middleware and a body limit.
pub fn app(routes: Router, readiness: crate::ops::Readiness) -> Router {
    // Install the recorder before the first request, or early metrics go to the no-op one.
    crate::metrics::handle();
    routes
        .merge(crate::ops::router(readiness))
        .layer(DefaultBodyLimit::max(DEFAULT_BODY_LIMIT))
        .layer(axum::middleware::from_fn(crate::correlation::middleware))
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then lets in-flight requests end.
pub async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) -> io::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned()).await
}

/// A JSON body whose every failure is a clear 4xx: malformed JSON → 400 `BAD_REQUEST`, a
/// missing or mistyped field → 400 `VALIDATION_ERROR` naming it, wrong content type → 415,
/// too large → 413. Never a 500.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => {
            // serde's message, e.g. "email: missing field `email`" — the path names the field.
            let text = e.body_text();
            let detail = text.trim_start_matches("Failed to deserialize the JSON body into the target type: ");
            let field = detail.split_once(": ").map_or("body", |(f, _)| f).to_owned();
            let field = if field.contains(' ') { "body".to_owned() } else { field };
            ApiError::Validation {
                message: detail.to_owned(),
                fields: vec![crate::error::FieldError::new(field, detail)],
            }
        }
        JsonRejection::JsonSyntaxError(e) => ApiError::BadRequest(format!("malformed JSON body: {}", e.body_text())),
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::UnsupportedMediaType("expected a body with Content-Type: application/json".into())
        }
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::PayloadTooLarge(format!("request body is larger than {DEFAULT_BODY_LIMIT} bytes"))
        }
        other => ApiError::BadRequest(other.body_text()),
    }
}

/// A bound HTTP listener with its router: built apart from run, so a test can read the port
/// the OS picked before serving starts.
pub struct Server {
    listener: TcpListener,
    port: u16,
    router: Router,
}

impl Server {
    /// Binds `addr` (port 0 picks a free port, as tests do).
    pub async fn bind(addr: std::net::SocketAddr, router: Router) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let port = listener.local_addr()?.port();
        Ok(Self { listener, port, router })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown` is cancelled, then lets in-flight requests end.
    pub async fn run(self, shutdown: CancellationToken) -> io::Result<()> {
        serve(self.listener, self.router, shutdown).await
    }
}

/// Middleware bounding a request's whole handling: past `limit` the caller gets a 503 with
/// `Retry-After` (in the usual JSON shape) instead of waiting on a stuck dependency. Mount with
/// `axum::middleware::from_fn_with_state(limit, platform::http::deadline)`.
pub async fn deadline(
    axum::extract::State(limit): axum::extract::State<std::time::Duration>,
    req: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => {
            metrics::counter!("http_request_timeouts_total").increment(1);
            ApiError::Unavailable {
                message: format!("the request did not finish within {} ms; retry shortly", limit.as_millis()),
                retry_after_secs: 1,
            }
            .into_response()
        }
    }
}

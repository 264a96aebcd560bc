//! Serving HTTP, and reading requests with errors a client can act on: every refusal, from an
//! unknown path to a malformed query string, is a 4xx in the [`ApiError`] JSON shape.

use std::io;

use axum::Router;
use axum::extract::path::ErrorKind;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, Uri};
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;

/// Largest request body any service accepts unless it says otherwise.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// Wraps a service's routes with what every service has: the ops endpoints, a JSON 404 for an
/// unknown path and 405 for a wrong method, the correlation-id middleware and a body limit.
/// A service with an OpenAPI document uses [`crate::openapi::app`] instead, which adds the
/// same and serves the document.
pub fn app(routes: Router, readiness: crate::ops::Readiness) -> Router {
    wrap(routes.merge(crate::ops::router(readiness)))
}

/// What [`app`] adds around a router that already holds every route.
pub(crate) fn wrap(routes: Router) -> Router {
    // Install the recorder before the first request, or early metrics go to the no-op one.
    crate::metrics::handle();
    routes
        // After every route is in: the 405 fallback applies to the routes present when set.
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(DEFAULT_BODY_LIMIT))
        .layer(axum::middleware::from_fn(crate::correlation::middleware))
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then lets in-flight requests end.
pub async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) -> io::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned()).await
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no such path: {}", crate::error::shown(uri.path())))
}

/// axum keeps its `Allow` header on this answer.
async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "{} is not allowed on {}; see the Allow header",
        crate::error::shown(method.as_str()),
        crate::error::shown(uri.path())
    ))
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
            // serde's message, e.g. "email: invalid type: integer `5`, expected a string" — the
            // path names the field. It may quote the value, so `ApiError::field` clips it.
            let text = e.body_text();
            let detail = text.trim_start_matches("Failed to deserialize the JSON body into the target type: ");
            match detail.split_once(": ") {
                Some((field, message)) if !field.contains(' ') => ApiError::field(field, message),
                _ => ApiError::field("body", detail),
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

/// Path parameters whose every failure is a clear 4xx: text that is not UTF-8 once
/// percent-decoded, or that does not parse into `T`, is a 400 naming the parameter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Self(v)),
            Err(rejection) => Err(path_rejection(rejection)),
        }
    }
}

fn path_rejection(rejection: PathRejection) -> ApiError {
    let PathRejection::FailedToDeserializePathParams(e) = rejection else {
        // Extracting `Path` on a route without parameters: our bug, not the client's.
        return ApiError::internal(anyhow::anyhow!("path parameters: {}", rejection.body_text()));
    };
    match e.into_kind() {
        ErrorKind::InvalidUtf8InPathParam { key } => ApiError::field(key, "is not valid UTF-8 once percent-decoded"),
        ErrorKind::ParseErrorAtKey { key, expected_type, .. } => {
            ApiError::field(key, format!("must be a {expected_type}"))
        }
        ErrorKind::DeserializeError { key, message, .. } => ApiError::field(key, message),
        ErrorKind::ParseError { expected_type, .. } | ErrorKind::ParseErrorAtIndex { expected_type, .. } => {
            ApiError::BadRequest(format!("a path parameter must be a {expected_type}"))
        }
        kind @ (ErrorKind::WrongNumberOfParameters { .. } | ErrorKind::UnsupportedType { .. }) => {
            ApiError::internal(anyhow::anyhow!("path parameters: {kind}"))
        }
        other => ApiError::BadRequest(format!("invalid path: {other}")),
    }
}

/// A query string whose every failure is a clear 400: a parameter given twice, or one that does
/// not parse into its field, is named; anything else says the query string is malformed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Self(v)),
            Err(rejection) => Err(query_rejection(&rejection)),
        }
    }
}

fn query_rejection(rejection: &QueryRejection) -> ApiError {
    let text = rejection.body_text();
    let detail = text.trim_start_matches("Failed to deserialize query string: ");
    // serde_urlencoded's words: "duplicate field `limit`", "unknown field `x`, expected …".
    let quoted = detail.split('`').nth(1).filter(|f| !f.is_empty());
    match quoted {
        Some(field) if detail.starts_with("duplicate field") => ApiError::field(field, "must be given at most once"),
        _ => ApiError::BadRequest(format!("malformed query string: {}", crate::error::shown(detail))),
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

    /// Serves until `shutdown` is cancelled, then lets in-flight requests end. Logs `listening`
    /// with the port first: how a supervisor (or a test) started on port 0 learns it.
    pub async fn run(self, shutdown: CancellationToken) -> io::Result<()> {
        tracing::info!(port = self.port, "listening");
        serve(self.listener, self.router, shutdown).await
    }

    /// Serves with `work` (a consumer, a supervisor) running beside until `shutdown`: either
    /// one ending or failing stops the other, and both are awaited, so the work finishes what
    /// it has at hand (a batch, a lease) before this returns.
    pub async fn run_beside<F, W>(self, shutdown: CancellationToken, work: F) -> anyhow::Result<()>
    where
        F: FnOnce(CancellationToken) -> W,
        W: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let stop = shutdown.child_token();
        let working = work(stop.clone());
        let worker = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let result = working.await;
                stop.cancel();
                result
            })
        };
        let served = self.run(stop.clone()).await;
        stop.cancel();
        let worked = worker.await;
        served?;
        worked??;
        Ok(())
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

#[cfg(test)]
mod tests {
    use axum::routing::{get, post};
    use serde::Deserialize;
    use serde_json::{Value, json};

    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Page {
        limit: Option<u32>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        role: Option<u32>,
    }

    /// A tiny service through [`app`], served on a free port, as every service is.
    async fn spawn() -> (String, CancellationToken) {
        let routes = Router::new()
            .route("/items/{id}", get(|Path(id): Path<String>| async move { id }))
            .route("/items", get(|Query(p): Query<Page>| async move { format!("{:?}", p.limit) }))
            .route("/echo", post(|Json(b): Json<Body>| async move { format!("{:?}", b.role) }));
        let server = Server::bind("127.0.0.1:0".parse().unwrap(), app(routes, crate::ops::Readiness::new(Vec::new())))
            .await
            .unwrap();
        let (url, stop) = (format!("http://127.0.0.1:{}", server.port()), CancellationToken::new());
        tokio::spawn(server.run(stop.clone()));
        (url, stop)
    }

    /// Status, headers and the body as JSON (asserting it is JSON at all).
    async fn call(req: reqwest::RequestBuilder) -> (u16, reqwest::header::HeaderMap, Value, usize) {
        let res = req.send().await.unwrap();
        let (status, headers) = (res.status().as_u16(), res.headers().clone());
        let text = res.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {text:?}"));
        (status, headers, body, text.len())
    }

    #[tokio::test]
    async fn unknown_paths_and_wrong_methods_answer_in_the_error_shape() {
        let (url, _stop) = spawn().await;
        let client = reqwest::Client::new();
        let (status, _, body, _) = call(client.get(format!("{url}/nope"))).await;
        assert_eq!((status, &body["error"]), (404, &json!("NOT_FOUND")), "{body}");
        assert!(body["message"].as_str().unwrap().contains("/nope"), "{body}");
        let (status, headers, body, _) = call(client.delete(format!("{url}/items/1"))).await;
        assert_eq!((status, &body["error"]), (405, &json!("METHOD_NOT_ALLOWED")), "{body}");
        assert!(body["message"].as_str().unwrap().contains("DELETE"), "{body}");
        assert_eq!(headers["allow"], "GET,HEAD");
        // The ops endpoints, merged in by `app`, too.
        let (status, _, body, _) = call(client.post(format!("{url}/healthz"))).await;
        assert_eq!((status, &body["error"]), (405, &json!("METHOD_NOT_ALLOWED")), "{body}");
        // And what works still works.
        let res = client.get(format!("{url}/items/abc")).send().await.unwrap();
        assert_eq!((res.status().as_u16(), res.text().await.unwrap()), (200, "abc".to_owned()));
    }

    #[tokio::test]
    async fn bad_path_and_query_strings_are_400_naming_the_parameter() {
        let (url, _stop) = spawn().await;
        let client = reqwest::Client::new();
        // %FF decodes to a byte that is not UTF-8.
        let (status, _, body, _) = call(client.get(format!("{url}/items/%FF"))).await;
        assert_eq!((status, &body["error"]), (400, &json!("VALIDATION_ERROR")), "{body}");
        assert_eq!(body["details"]["fields"][0]["field"], "id", "{body}");
        assert!(body["message"].as_str().unwrap().contains("UTF-8"), "{body}");
        let (status, _, body, _) = call(client.get(format!("{url}/items?limit=1&limit=2"))).await;
        assert_eq!((status, &body["error"]), (400, &json!("VALIDATION_ERROR")), "{body}");
        assert_eq!(body["details"]["fields"][0]["field"], "limit", "{body}");
        for query in ["limit=many", "other=1", "limit=%FF"] {
            let (status, _, body, _) = call(client.get(format!("{url}/items?{query}"))).await;
            assert_eq!((status, &body["error"]), (400, &json!("BAD_REQUEST")), "{query}: {body}");
            assert!(body["message"].as_str().unwrap().starts_with("malformed query string"), "{body}");
        }
    }

    #[tokio::test]
    async fn a_huge_value_is_not_echoed_back_whole() {
        let (url, _stop) = spawn().await;
        let client = reqwest::Client::new();
        let huge = "x".repeat(60 * 1024);
        // serde's message quotes the value it could not read; the answer quotes a bit of it.
        let (status, _, body, len) = call(client.post(format!("{url}/echo")).json(&json!({ "role": huge }))).await;
        assert_eq!((status, &body["error"]), (400, &json!("VALIDATION_ERROR")), "{body}");
        assert_eq!(body["details"]["fields"][0]["field"], "role", "{body}");
        assert!(len < 2048, "a {len}-byte answer to a 60 KB value");
        // The same for an unknown field's name, and a query parameter.
        let (status, _, _, len) = call(client.post(format!("{url}/echo")).json(&json!({ huge.clone(): 1 }))).await;
        assert!(status == 400 && len < 2048, "{status}: {len} bytes");
        let (status, _, _, len) = call(client.get(format!("{url}/items?limit={}", "9".repeat(8000)))).await;
        assert!(status == 400 && len < 2048, "{status}: {len} bytes");
        let (status, _, _, len) = call(client.get(format!("{url}/{}", "p".repeat(8000)))).await;
        assert!(status == 404 && len < 2048, "{status}: {len} bytes");
    }
}

//! The one error type at a service boundary, mapped in this file and nowhere else to HTTP
//! (status + `{error, message, details?}`) and to `tonic::Status` (feature `grpc`).
//!
//! `error` in the body is a stable code clients branch on (`VALIDATION_ERROR`, `SOLD_OUT`, …);
//! `message` is for people. Internal causes are logged once with their chain and never shown.

use std::borrow::Cow;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

/// The most characters of a client's value a message quotes (see [`shown`]).
pub const MAX_SHOWN_CHARS: usize = 64;
/// The most characters of any one message a client gets back (field names included), so an
/// answer stays small whatever the request held.
pub const MAX_MESSAGE_CHARS: usize = 300;

/// `text` cut to `max_chars` characters, with `…` when something was cut.
pub fn clip(text: &str, max_chars: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max_chars) {
        None => Cow::Borrowed(text),
        Some((end, _)) => Cow::Owned(format!("{}…", &text[..end])),
    }
}

/// A client's value as a message may quote it: at most [`MAX_SHOWN_CHARS`] characters. The one
/// helper for every message that names what was sent, so a 60 KB field never comes back whole.
pub fn shown(value: &str) -> Cow<'_, str> {
    clip(value, MAX_SHOWN_CHARS)
}

/// One offending input field and what is wrong with it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FieldError {
    /// The field as the request spells it: `email`, `ticketTypes[0].priceInCents`, a query
    /// parameter, a path parameter, or a header such as `Idempotency-Key`.
    pub field: String,
    pub message: String,
}

impl FieldError {
    /// Both parts are cut to [`MAX_MESSAGE_CHARS`]: they may quote the client's input (serde's
    /// messages do).
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        let (field, message) = (field.into(), message.into());
        Self {
            field: clip(&field, MAX_MESSAGE_CHARS).into_owned(),
            message: clip(&message, MAX_MESSAGE_CHARS).into_owned(),
        }
    }
}

/// Collects per-field parse results, so one answer names every bad field rather than the first.
#[derive(Debug, Default)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    /// The value when `result` is `Ok`; otherwise records the error under `field`.
    pub fn check<T>(&mut self, field: impl Into<String>, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(m) => {
                self.0.push(FieldError::new(field, m));
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The validation error naming every recorded field.
    pub fn into_error(self) -> ApiError {
        ApiError::fields(self.0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Input that does not parse into the domain: 400 `VALIDATION_ERROR` naming the fields.
    #[error("{message}")]
    Validation { message: String, fields: Vec<FieldError> },
    /// A request that cannot be read at all (bad JSON, bad header): 400 `BAD_REQUEST`.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// A known path asked with a method it does not serve: 405 `METHOD_NOT_ALLOWED`.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 409 with a specific code: `CONFLICT`, `SOLD_OUT`, `INSUFFICIENT_STOCK`, …
    #[error("{message}")]
    Conflict { code: &'static str, message: String, details: Option<Value> },
    /// 422 with a specific code: `REGION_MISMATCH`, `IDEMPOTENCY_KEY_REUSED`, …
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String, details: Option<Value> },
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{message}")]
    TooManyRequests { message: String, retry_after_secs: u64 },
    /// A dependency is down or slow: 503 with `Retry-After`, safe for the client to retry.
    #[error("{message}")]
    Unavailable { message: String, retry_after_secs: u64 },
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// A validation error about one field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let f = FieldError::new(field, message);
        Self::Validation { message: format!("{}: {}", f.field, f.message), fields: vec![f] }
    }

    pub fn fields(fields: Vec<FieldError>) -> Self {
        let message = fields.iter().map(|f| format!("{}: {}", f.field, f.message)).collect::<Vec<_>>().join("; ");
        Self::Validation { message, fields }
    }

    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        Self::Internal(err.into())
    }

    /// The stable code of this error, shared by HTTP bodies and GraphQL `extensions.code`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Validation { .. } => "VALIDATION_ERROR",
            Self::BadRequest(_) => "BAD_REQUEST",
            Self::Unauthorized(_) => "UNAUTHORIZED",
            Self::Forbidden(_) => "FORBIDDEN",
            Self::NotFound(_) => "NOT_FOUND",
            Self::MethodNotAllowed(_) => "METHOD_NOT_ALLOWED",
            Self::Conflict { code, .. } | Self::Unprocessable { code, .. } => code,
            Self::PayloadTooLarge(_) => "PAYLOAD_TOO_LARGE",
            Self::UnsupportedMediaType(_) => "UNSUPPORTED_MEDIA_TYPE",
            Self::TooManyRequests { .. } => "TOO_MANY_REQUESTS",
            Self::Unavailable { .. } => "UNAVAILABLE",
            Self::Internal(_) => "INTERNAL",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Validation { .. } | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The seconds the `Retry-After` header of this answer says, if it has one.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::TooManyRequests { retry_after_secs, .. } | Self::Unavailable { retry_after_secs, .. } => {
                Some(*retry_after_secs)
            }
            _ => None,
        }
    }

    /// The JSON body clients see.
    pub fn body(&self) -> Value {
        let details = match self {
            Self::Validation { fields, .. } => Some(json!({ "fields": fields })),
            Self::Conflict { details, .. } | Self::Unprocessable { details, .. } => details.clone(),
            _ => None,
        };
        let message = self.to_string();
        let body = ErrorBody { error: self.code(), message: clip(&message, MAX_MESSAGE_CHARS).into_owned(), details };
        serde_json::to_value(body).unwrap_or(Value::Null)
    }
}

/// The body of every error answer, whatever the status.
// What `ApiError::body` writes, and (as the `ErrorBody` schema) what the OpenAPI documents
// promise: one type for both.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A stable code to branch on: `VALIDATION_ERROR`, `BAD_REQUEST`, `UNAUTHORIZED`,
    /// `FORBIDDEN`, `NOT_FOUND`, `METHOD_NOT_ALLOWED`, `PAYLOAD_TOO_LARGE`,
    /// `UNSUPPORTED_MEDIA_TYPE`, `TOO_MANY_REQUESTS`, `UNAVAILABLE`, `INTERNAL`, or a conflict's
    /// own code (`CONFLICT`, `SOLD_OUT`, `IDEMPOTENCY_KEY_REUSED`, …).
    #[schema(example = "VALIDATION_ERROR")]
    pub error: &'static str,
    /// For people, not for branching on; at most 300 characters.
    pub message: String,
    /// Present for some codes only: `fields` for `VALIDATION_ERROR` (and a `CONFLICT` about a
    /// field); others are named where the code is documented.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = details_schema)]
    pub details: Option<Value>,
}

/// `details`: an object that may name fields, and may carry more keys (a code's own).
fn details_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{AdditionalProperties, ArrayBuilder, ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "fields",
            ArrayBuilder::new().items(utoipa::openapi::Ref::from_schema_name(<FieldError as utoipa::ToSchema>::name())),
        )
        .additional_properties(Some(AdditionalProperties::FreeForm(true)))
        .build()
}

/// Whether `e` means the database cannot be reached right now (no connection within the pool's
/// timeout, a closed pool, a broken socket, a failed TLS handshake): an outage the client may
/// retry, not a bug. The one place this is decided; every service maps its database errors here.
pub fn db_unavailable(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_))
}

impl ApiError {
    /// A database error as the client sees it: unreachable (see [`db_unavailable`]) is a
    /// retryable 503 saying `what` is unavailable, anything else is internal (logged, not shown).
    pub fn from_db(e: sqlx::Error, what: &str) -> Self {
        if db_unavailable(&e) {
            Self::Unavailable { message: format!("{what} is unavailable; retry shortly"), retry_after_secs: 2 }
        } else {
            Self::internal(e)
        }
    }
}

/// Database results at a boundary (realworld-axum-sqlx `ResultExt`): `?` after one call, not a
/// `.map_err` per statement.
pub trait ResultExt<T> {
    /// Maps the error with [`ApiError::from_db`], naming `what` ("the accounts database").
    fn or_unavailable(self, what: &str) -> Result<T, ApiError>;

    /// A violation of the unique or check constraint (or unique index) `name` becomes `f()`;
    /// any other error is kept for the caller's own mapping.
    fn on_constraint<E: From<sqlx::Error>>(self, name: &str, f: impl FnOnce() -> E) -> Result<T, E>;
}

impl<T> ResultExt<T> for Result<T, sqlx::Error> {
    fn or_unavailable(self, what: &str) -> Result<T, ApiError> {
        self.map_err(|e| ApiError::from_db(e, what))
    }

    fn on_constraint<E: From<sqlx::Error>>(self, name: &str, f: impl FnOnce() -> E) -> Result<T, E> {
        self.map_err(|e| match &e {
            sqlx::Error::Database(db) if db.constraint() == Some(name) => f(),
            _ => E::from(e),
        })
    }
}

impl ApiError {
    /// Logs this error once, as it leaves for the client: a server fault (5xx) at ERROR, with
    /// the internal cause's chain; a client's mistake (4xx: validation, conflict, unauthorized,
    /// throttled, …) at INFO, since it is the service working as meant. Messages are clipped.
    fn log(&self) {
        let (status, code) = (self.status().as_u16(), self.code());
        match self {
            Self::Internal(cause) => tracing::error!(status, code, error = format!("{cause:#}"), "internal error"),
            _ if self.status().is_server_error() => {
                tracing::error!(status, code, message = %clip(&self.to_string(), MAX_MESSAGE_CHARS), "request failed");
            }
            _ => tracing::info!(status, code, message = %clip(&self.to_string(), MAX_MESSAGE_CHARS), "request refused"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();
        let mut res = (self.status(), axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after()
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        res
    }
}

#[cfg(feature = "grpc")]
impl From<ApiError> for tonic::Status {
    fn from(err: ApiError) -> Self {
        use tonic::Code;
        err.log();
        let code = match &err {
            ApiError::Validation { .. }
            | ApiError::BadRequest(_)
            | ApiError::PayloadTooLarge(_)
            | ApiError::UnsupportedMediaType(_) => Code::InvalidArgument,
            ApiError::Unauthorized(_) => Code::Unauthenticated,
            ApiError::Forbidden(_) => Code::PermissionDenied,
            ApiError::NotFound(_) => Code::NotFound,
            ApiError::MethodNotAllowed(_) => Code::Unimplemented,
            ApiError::Conflict { .. } => Code::Aborted,
            ApiError::Unprocessable { .. } => Code::FailedPrecondition,
            ApiError::TooManyRequests { .. } => Code::ResourceExhausted,
            ApiError::Unavailable { .. } => Code::Unavailable,
            ApiError::Internal(_) => Code::Internal,
        };
        tonic::Status::new(code, clip(&err.to_string(), MAX_MESSAGE_CHARS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_body_names_fields() {
        let err = ApiError::field("email", "not an email address");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            err.body(),
            json!({"error": "VALIDATION_ERROR", "message": "email: not an email address",
                   "details": {"fields": [{"field": "email", "message": "not an email address"}]}})
        );
    }

    #[test]
    fn internal_hides_its_cause() {
        let err = ApiError::internal(anyhow::anyhow!("connection to 10.0.0.5 refused"));
        assert_eq!(err.body(), json!({"error": "INTERNAL", "message": "internal error"}));
    }

    #[test]
    fn unreachable_database_is_unavailable_and_the_rest_internal() {
        for e in
            [sqlx::Error::PoolTimedOut, sqlx::Error::PoolClosed, sqlx::Error::Io(std::io::ErrorKind::BrokenPipe.into())]
        {
            let err = Err::<(), _>(e).or_unavailable("the test database").unwrap_err();
            assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(err.to_string(), "the test database is unavailable; retry shortly");
        }
        let err = Err::<(), _>(sqlx::Error::RowNotFound).or_unavailable("the test database").unwrap_err();
        assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn clip_cuts_on_characters_and_marks_the_cut() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("ééééé", 3), "ééé…");
        assert_eq!(shown(&"x".repeat(1000)).chars().count(), MAX_SHOWN_CHARS + 1);
        let err = ApiError::field("name", "y".repeat(60_000));
        assert!(err.body().to_string().len() < 2 * MAX_MESSAGE_CHARS + 200, "{}", err.body());
    }

    /// Records the level of every event logged while it is the default subscriber.
    #[derive(Clone, Default)]
    struct Levels(std::sync::Arc<std::sync::Mutex<Vec<tracing::Level>>>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Levels {
        fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
            self.0.lock().unwrap().push(*event.metadata().level());
        }
    }

    #[test]
    fn client_errors_are_logged_as_info_and_server_errors_as_error() {
        use tracing_subscriber::layer::SubscriberExt;
        let levels = Levels::default();
        let subscriber = tracing_subscriber::registry().with(levels.clone());
        tracing::subscriber::with_default(subscriber, || {
            for err in [
                ApiError::field("email", "not an email address"),
                ApiError::Unauthorized("invalid email or password".into()),
                ApiError::Conflict { code: "CONFLICT", message: "taken".into(), details: None },
                ApiError::TooManyRequests { message: "slow down".into(), retry_after_secs: 1 },
                ApiError::NotFound("no such path".into()),
            ] {
                let _ = err.into_response();
            }
            let _ = ApiError::internal(anyhow::anyhow!("boom")).into_response();
            let _ = ApiError::Unavailable { message: "db down".into(), retry_after_secs: 2 }.into_response();
        });
        use tracing::Level;
        let expected = [Level::INFO, Level::INFO, Level::INFO, Level::INFO, Level::INFO, Level::ERROR, Level::ERROR];
        assert_eq!(*levels.0.lock().unwrap(), expected);
    }

    #[test]
    fn unavailable_sets_retry_after() {
        let res = ApiError::Unavailable { message: "shard sa-1 is down".into(), retry_after_secs: 2 }.into_response();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[header::RETRY_AFTER], "2");
    }
}

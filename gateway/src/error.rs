//! The gateway's one error type and, in this file only, its two mappings: from a downstream
//! answer (status + `{error, message, details}`) or transport failure, and to a GraphQL error
//! with `extensions.code`.
//!
//! Codes are the gateway's contract with clients: `UNAUTHENTICATED`, `FORBIDDEN`,
//! `NOT_FOUND`, `BAD_USER_INPUT`, `CONFLICT`, `SOLD_OUT`, `INSUFFICIENT_STOCK`,
//! `REGION_MISMATCH`, `UNAVAILABLE`, `INTERNAL`. The message is the downstream's, meant for
//! people; internal causes (and anything naming an internal address) are logged, never shown.

use platform::code;
use serde_json::{Value, json};

use crate::downstream::Service;

/// Deliberately not `Display`: async-graphql turns any `Display` error into a GraphQL error
/// by its text alone, which would drop the code. Without it, `?` in a resolver can only go
/// through [`GatewayError::to_graphql`].
#[derive(Debug, Clone)]
pub enum GatewayError {
    /// No token, a bad or expired one, or wrong credentials.
    Unauthenticated(String),
    Forbidden(String),
    NotFound(String),
    /// Input the gateway or a service refused; `details` names the fields when known.
    BadUserInput {
        message: String,
        details: Option<Value>,
    },
    /// A state conflict with a specific code: `CONFLICT`, `SOLD_OUT`, `INSUFFICIENT_STOCK` or
    /// `REGION_MISMATCH`, with the service's details (`remaining`, the two regions, …).
    Conflict {
        code: &'static str,
        message: String,
        details: Option<Value>,
    },
    /// A service down, slow or shedding load: safe to retry, after `retry_after_secs` if set.
    Unavailable {
        message: String,
        retry_after_secs: Option<u64>,
    },
    /// Anything else. The cause was logged where this was made; clients see only the code.
    Internal,
}

/// The code of a request the engine refused before any resolver ran (syntax, unknown fields,
/// bad variables, depth or complexity over the limit) or never saw (a body too large or not a
/// GraphQL request): the client's input, like any other bad input.
pub const REQUEST_ERROR_CODE: &str = "BAD_USER_INPUT";

impl GatewayError {
    /// Logs `cause` once, with its chain, and returns the opaque internal error.
    pub fn internal(context: &str, cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, context, "internal error");
        Self::Internal
    }

    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::BadUserInput { message: message.into(), details: None }
    }

    /// A bad input naming one field, in the same `details.fields` shape the services use.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::BadUserInput {
            message: format!("{field}: {message}"),
            details: Some(json!({ "fields": [{ "field": field, "message": message }] })),
        }
    }

    /// The message for people: the service's own words where it gave some.
    pub fn message(&self) -> &str {
        match self {
            Self::Unauthenticated(m) | Self::Forbidden(m) | Self::NotFound(m) => m,
            Self::BadUserInput { message, .. } | Self::Conflict { message, .. } | Self::Unavailable { message, .. } => {
                message
            }
            Self::Internal => "internal error",
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) => "UNAUTHENTICATED",
            Self::Forbidden(_) => "FORBIDDEN",
            Self::NotFound(_) => "NOT_FOUND",
            Self::BadUserInput { .. } => "BAD_USER_INPUT",
            Self::Conflict { code, .. } => code,
            Self::Unavailable { .. } => "UNAVAILABLE",
            Self::Internal => "INTERNAL",
        }
    }

    /// A service's error answer. `body` is its JSON when it had one; `retry_after` its
    /// `Retry-After` header.
    pub fn from_downstream(service: Service, status: u16, body: Option<&Value>, retry_after: Option<u64>) -> Self {
        let code = body.and_then(|b| b["error"].as_str()).unwrap_or_default();
        let message = body
            .and_then(|b| b["message"].as_str())
            .map_or_else(|| format!("the {service} service answered {status}"), str::to_owned);
        let details = body.and_then(|b| b.get("details")).filter(|d| !d.is_null()).cloned();
        if let Some(known) = code::PASSED_THROUGH.iter().find(|c| **c == code) {
            return Self::Conflict { code: known, message, details };
        }
        match (status, code) {
            (_, "UNAUTHORIZED") | (401, _) => Self::Unauthenticated(message),
            (_, "FORBIDDEN") | (403, _) => Self::Forbidden(message),
            (_, "NOT_FOUND") | (404, _) => Self::NotFound(message),
            // The same key sent with another request: the client's conflict, named as such.
            (_, code::IDEMPOTENCY_KEY_REUSED) => {
                Self::Conflict { code: code::CONFLICT, message, details: Some(json!({ "reason": code })) }
            }
            (409, _) => Self::Conflict { code: code::CONFLICT, message, details },
            // Login throttling: retry later, like any shed load.
            (_, "TOO_MANY_REQUESTS") | (429, _) | (502..=504, _) | (_, "UNAVAILABLE") => {
                Self::Unavailable { message, retry_after_secs: retry_after }
            }
            // Any other 4xx is the request's fault, never the gateway's.
            (400..=499, _) => Self::BadUserInput { message, details },
            _ => Self::internal(&format!("{service} answered {status} {code}"), message),
        }
    }

    /// A call that got no answer: timed out, refused, cut. The message names the service, never
    /// its address (reqwest's error text holds the URL, so it is only logged).
    pub fn transport(service: Service, timeout_ms: u64, err: &reqwest::Error) -> Self {
        tracing::warn!(%service, error = %err, timeout = err.is_timeout(), "downstream call failed");
        let message = if err.is_timeout() {
            format!("the {service} service did not answer within {timeout_ms} ms; retry shortly")
        } else {
            format!("the {service} service is unreachable; retry shortly")
        };
        Self::Unavailable { message, retry_after_secs: Some(1) }
    }

    /// The GraphQL error clients see: the message and `extensions.code`, plus `details` and
    /// `retryAfter` when there are some.
    pub fn to_graphql(&self) -> async_graphql::Error {
        metrics::counter!("gateway_errors_total", "code" => self.code()).increment(1);
        let mut ext = async_graphql::ErrorExtensionValues::default();
        ext.set("code", self.code());
        match self {
            Self::BadUserInput { details: Some(d), .. } | Self::Conflict { details: Some(d), .. } => {
                if let Ok(v) = async_graphql::Value::from_json(d.clone()) {
                    ext.set("details", v);
                }
            }
            Self::Unavailable { retry_after_secs: Some(s), .. } => ext.set("retryAfter", *s),
            _ => {}
        }
        async_graphql::Error { message: self.message().to_owned(), source: None, extensions: Some(ext) }
    }
}

impl From<GatewayError> for async_graphql::Error {
    fn from(err: GatewayError) -> Self {
        err.to_graphql()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(status: u16, body: Value) -> GatewayError {
        GatewayError::from_downstream(Service::Orders, status, Some(&body), None)
    }

    #[test]
    fn service_codes_become_graphql_codes() {
        let cases = [
            (401, json!({"error": "UNAUTHORIZED", "message": "m"}), "UNAUTHENTICATED"),
            (403, json!({"error": "FORBIDDEN", "message": "m"}), "FORBIDDEN"),
            (404, json!({"error": "NOT_FOUND", "message": "m"}), "NOT_FOUND"),
            (400, json!({"error": "VALIDATION_ERROR", "message": "m"}), "BAD_USER_INPUT"),
            (400, json!({"error": "BAD_REQUEST", "message": "m"}), "BAD_USER_INPUT"),
            (409, json!({"error": "CONFLICT", "message": "m"}), "CONFLICT"),
            (409, json!({"error": "SOLD_OUT", "message": "m"}), "SOLD_OUT"),
            (409, json!({"error": "INSUFFICIENT_STOCK", "message": "m"}), "INSUFFICIENT_STOCK"),
            (422, json!({"error": "REGION_MISMATCH", "message": "m"}), "REGION_MISMATCH"),
            (422, json!({"error": "IDEMPOTENCY_KEY_REUSED", "message": "m"}), "CONFLICT"),
            (429, json!({"error": "TOO_MANY_REQUESTS", "message": "m"}), "UNAVAILABLE"),
            (503, json!({"error": "UNAVAILABLE", "message": "m"}), "UNAVAILABLE"),
            (500, json!({"error": "INTERNAL", "message": "internal error"}), "INTERNAL"),
            (502, json!(null), "UNAVAILABLE"),
            // Any other 4xx is the client's request, not the gateway failing.
            (405, json!({"error": "METHOD_NOT_ALLOWED", "message": "m"}), "BAD_USER_INPUT"),
            (410, json!(null), "BAD_USER_INPUT"),
        ];
        for (status, body, code) in cases {
            assert_eq!(map(status, body.clone()).code(), code, "{status} {body}");
        }
    }

    #[test]
    fn graphql_error_keeps_message_and_details() {
        let err = map(
            409,
            json!({"error": "INSUFFICIENT_STOCK", "message": "only 2 tickets left", "details": {"remaining": 2}}),
        );
        let gql = err.to_graphql();
        assert_eq!(gql.message, "only 2 tickets left");
        let ext = gql.extensions.unwrap_or_default();
        assert_eq!(ext.get("code"), Some(&async_graphql::Value::from("INSUFFICIENT_STOCK")));
        let details = ext.get("details").map(|d| d.clone().into_json().unwrap_or_default());
        assert_eq!(details, Some(json!({"remaining": 2})));
    }

    #[test]
    fn internal_shows_nothing_of_its_cause() {
        let err = GatewayError::internal("test", "connect to 10.1.2.3:5432 refused");
        assert_eq!(err.to_graphql().message, "internal error");
    }
}

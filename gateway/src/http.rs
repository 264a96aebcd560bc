//! `/graphql`: GraphiQL on GET ([`crate::graphiql`], assets under `/graphiql/`), operations on
//! POST.
//!
//! The handler is ours rather than async-graphql-axum's so that the body limit, the
//! correlation id and the error shape are the platform's: a body too large is a 413, a body
//! that is not a GraphQL request a 400, both in the GraphQL error shape with a code. It is also
//! where a repeated public read is answered from its stored bytes before any parsing
//! ([`answer_cached`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use platform::correlation::CorrelationId;
use serde_json::json;
use sha2::{Digest, Sha256};
use tracing::Instrument as _;

use crate::downstream::{Caller, Service};
use crate::error::{GatewayError, REQUEST_ERROR_CODE};
use crate::limits::Limits;
use crate::schema::{Gateway, GatewaySchema, Scope};

#[derive(Clone)]
pub struct AppState {
    pub schema: GatewaySchema,
    /// For documents of introspection fields only: no depth limit (see
    /// [`crate::schema::build_introspection`]).
    pub introspection: GatewaySchema,
    pub gateway: Arc<Gateway>,
    /// The body limit, to name it when a request exceeds it.
    pub max_body_bytes: usize,
    /// Bounds checked on the parsed document before the engine validates it.
    pub limits: Limits,
    /// Bound on executing one request; past it the work is dropped.
    pub request_timeout: Duration,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/graphql", get(crate::graphiql::page).post(graphql))
        // Inner to the platform's default limit, so this one applies to /graphql.
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .merge(crate::graphiql::router())
        .with_state(state)
}

/// Whether `doc`'s answer is the same for every caller and depends only on cache generations:
/// every operation is a query whose root fields are `events`, `event` or `__typename`
/// (no fragments at the root, which could hide anything). Such an answer may be stored whole
/// and served again to the same body from the bytes ([`crate::cache::Cache::response`]); the
/// generations its reads were built on decide when it is stale, as they do for pages.
fn is_public_read(doc: &async_graphql::parser::types::ExecutableDocument) -> bool {
    use async_graphql::parser::types::{OperationType, Selection};
    doc.operations.iter().all(|(_, op)| {
        op.node.ty == OperationType::Query
            && op.node.selection_set.node.items.iter().all(|s| match &s.node {
                Selection::Field(f) => matches!(f.node.name.node.as_str(), "events" | "event" | "__typename"),
                Selection::FragmentSpread(_) | Selection::InlineFragment(_) => false,
            })
    })
}

/// A stored answer: its `data` as stored, and the extensions of a request that asked no
/// service and made one cache hit.
fn answer_cached(data: &str) -> Response {
    metrics::counter!("gateway_graphql_requests_total", "outcome" => "ok").increment(1);
    const EXTENSIONS: &str =
        r#","extensions":{"downstreamCalls":{"accounts":0,"orders":0,"projector":0},"cache":{"hits":1,"misses":0}}}"#;
    let mut body = String::with_capacity(data.len() + EXTENSIONS.len() + 8);
    body.push_str(r#"{"data":"#);
    body.push_str(data);
    body.push_str(EXTENSIONS);
    ([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A request the GraphQL engine never saw: `status` with one error carrying `code`.
fn refused(status: StatusCode, message: String) -> Response {
    metrics::counter!("gateway_graphql_requests_total", "outcome" => "refused").increment(1);
    let body = json!({ "errors": [{ "message": message, "extensions": { "code": REQUEST_ERROR_CODE } }] });
    (status, axum::Json(body)).into_response()
}

#[tracing::instrument(skip_all, fields(operation))]
async fn graphql(
    State(state): State<AppState>,
    correlation_id: CorrelationId,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let message = format!("the request body is larger than {} bytes", state.max_body_bytes);
            return refused(StatusCode::PAYLOAD_TOO_LARGE, message);
        }
        Err(e) => return refused(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let digest: [u8; 32] = Sha256::digest(&body).into();
    if let Some(data) = state.gateway.cache.response(&digest).await {
        return answer_cached(&data);
    }
    let mut request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return refused(
                StatusCode::BAD_REQUEST,
                format!("the body is not a GraphQL request ({{\"query\": …, \"variables\": …}}): {e}"),
            );
        }
    };
    if let Some(name) = &request.operation_name {
        tracing::Span::current().record("operation", name.as_str());
    }
    // Parsed here (the engine reuses it) to bound its cost before the engine's validation,
    // which walks every fragment spread inlined, synchronously, where nothing can interrupt it.
    let operation_name = request.operation_name.clone();
    let (refused, introspection, storable, span_name) = match request.parsed_query() {
        Ok(doc) => (
            state.limits.check(doc).err().map(|m| async_graphql::ServerError::new(m, None)),
            crate::limits::is_introspection(doc),
            is_public_read(doc),
            span_name(doc, operation_name.as_deref()),
        ),
        Err(e) => (Some(e), false, false, "graphql".to_owned()),
    };
    // The operation's span, named by its type and name (`mutation CreateOrder`), never by its
    // variables or text; the downstream calls of its resolvers and loaders are its children.
    let operation = tracing::info_span!("graphql operation", otel.name = %span_name);
    let caller = operation.in_scope(|| Caller::from_headers(&headers, correlation_id));
    let tally = caller.tally.clone();
    let mut response = match refused {
        Some(error) => async_graphql::Response::from_errors(vec![error]),
        // Nothing of the request outlives this future: a timeout or a client gone drops it, and
        // the tasks its loader spawned go with its scope.
        None => {
            let request = request.data(Scope::new(state.gateway.clone(), caller));
            let (schema, request) = if introspection {
                (&state.introspection, request.only_introspection())
            } else {
                (&state.schema, request)
            };
            match tokio::time::timeout(state.request_timeout, schema.execute(request).instrument(operation)).await {
                Ok(response) => response,
                Err(_) => {
                    metrics::counter!("gateway_request_timeouts_total").increment(1);
                    let error = GatewayError::Unavailable {
                        message: format!(
                            "the request did not finish within {} ms; retry shortly",
                            state.request_timeout.as_millis()
                        ),
                        retry_after_secs: Some(1),
                    };
                    async_graphql::Response::from_errors(vec![
                        error.to_graphql().into_server_error(async_graphql::Pos::default()),
                    ])
                }
            }
        }
    };

    // Errors the engine raised itself (syntax, validation, depth and complexity limits, bad
    // variables) carry no code; every resolver error does. Give the former theirs.
    for error in &mut response.errors {
        let ext = error.extensions.get_or_insert_with(Default::default);
        if ext.get("code").is_none() {
            ext.set("code", REQUEST_ERROR_CODE);
            metrics::counter!("gateway_errors_total", "code" => REQUEST_ERROR_CODE).increment(1);
        }
    }
    let outcome = if response.errors.is_empty() { "ok" } else { "error" };
    metrics::counter!("gateway_graphql_requests_total", "outcome" => outcome).increment(1);
    if storable
        && response.errors.is_empty()
        && let Ok(data) = serde_json::to_string(&response.data)
    {
        let deps = std::mem::take(&mut *tally.deps());
        state.gateway.cache.put_response(&digest, &deps, &data).await;
    }
    response.extensions.insert(
        "downstreamCalls".into(),
        async_graphql::Value::from_json(json!({
            "accounts": tally.calls(Service::Accounts),
            "orders": tally.calls(Service::Orders),
            "projector": tally.calls(Service::Projector),
        }))
        .unwrap_or_default(),
    );
    response.extensions.insert(
        "cache".into(),
        async_graphql::Value::from_json(json!({
            "hits": tally.cache_hits.load(Ordering::Relaxed),
            "misses": tally.cache_misses.load(Ordering::Relaxed),
        }))
        .unwrap_or_default(),
    );
    axum::Json(response).into_response()
}

/// `<type> <name>` of the operation a request runs (`mutation CreateOrder`; `query` alone for
/// an anonymous one): what the trace shows for it. Never the variables or the document's text.
fn span_name(doc: &async_graphql::parser::types::ExecutableDocument, name: Option<&str>) -> String {
    use async_graphql::parser::types::{DocumentOperations, OperationType};
    let (ty, found) = match &doc.operations {
        DocumentOperations::Single(op) => (Some(op.node.ty), None),
        DocumentOperations::Multiple(ops) => {
            // Named operations are all here, even a document's only one (run without naming it).
            let chosen = match name {
                Some(n) => ops.iter().find(|(k, _)| k.as_str() == n),
                None if ops.len() == 1 => ops.iter().next(),
                None => None,
            };
            (chosen.map(|(_, op)| op.node.ty), chosen.map(|(k, _)| k.to_string()))
        }
    };
    let ty = match ty {
        Some(OperationType::Query) => "query",
        Some(OperationType::Mutation) => "mutation",
        Some(OperationType::Subscription) => "subscription",
        None => "graphql",
    };
    match found {
        Some(n) => format!("{ty} {n}"),
        None => ty.to_owned(),
    }
}

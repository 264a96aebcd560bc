//! The JSON side, for scripts and tests: `GET /api/traces` (the list, with the front page's
//! filters) and `GET /api/traces/{trace_id}` (one trace, every span). Errors in the shape every
//! service answers with (`platform::error::ApiError`).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use platform::error::ApiError;
use platform::http::{Path, Query};
use serde::{Deserialize, Serialize};

use super::store::{AttrFilter, Filter, Span, Store, TraceId, TraceSummary};

/// Traces listed when `limit` is not given, and the most one request may ask for.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 2000;

/// The list's filters, the same on the page and in JSON.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only traces with a span of this service; empty means any.
    pub service: Option<String>,
    /// Only traces at least this many milliseconds long (fractions allowed: `0.5`).
    pub min_ms: Option<String>,
    /// `key=value` (a span or resource attribute), or a bare value matching any attribute:
    /// how a correlation id finds its trace.
    pub attr: Option<String>,
    /// At most this many traces, newest first (default 100, at most 2000).
    pub limit: Option<String>,
}

impl ListQuery {
    /// The query as a store filter, or a 400 naming the parameter. Parameters arrive as text
    /// so an empty form field (`min_ms=`) means "no filter" rather than an error.
    pub fn filter(&self) -> Result<Filter, ApiError> {
        let given = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
        let min_duration_nanos = match given(&self.min_ms) {
            None => None,
            Some(ms) => {
                let ms: f64 = ms.parse().map_err(|_| ApiError::field("min_ms", "must be a number of milliseconds"))?;
                if !ms.is_finite() || ms < 0.0 {
                    return Err(ApiError::field("min_ms", "must be zero or more milliseconds"));
                }
                // Non-negative and finite, checked above; `as` saturates past u64::MAX.
                Some((ms * 1e6) as u64)
            }
        };
        let limit = match given(&self.limit) {
            None => DEFAULT_LIMIT,
            Some(n) => match n.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => return Err(ApiError::field("limit", format!("must be a whole number from 1 to {MAX_LIMIT}"))),
            },
        };
        Ok(Filter {
            service: given(&self.service),
            min_duration_nanos,
            attr: given(&self.attr).as_deref().and_then(AttrFilter::parse),
            limit,
        })
    }
}

/// A trace id from a path, or a 400 saying what a trace id looks like.
pub fn trace_id(text: &str) -> Result<TraceId, ApiError> {
    TraceId::parse(text).map_err(|e| ApiError::field("trace_id", e.to_string()))
}

pub fn not_found(id: TraceId) -> ApiError {
    ApiError::NotFound(format!("no trace {id} here: never received, or evicted (the viewer keeps the newest only)"))
}

#[derive(Debug, Serialize)]
pub struct TraceList {
    pub traces: Vec<TraceSummary>,
}

#[derive(Debug, Serialize)]
pub struct TraceDetail {
    #[serde(flatten)]
    pub summary: TraceSummary,
    /// Every span, in arrival order; `parentSpanId` gives the tree.
    pub spans: Vec<Span>,
}

async fn list(
    State(store): State<Arc<Store>>,
    Query(query): Query<ListQuery>,
) -> Result<axum::Json<TraceList>, ApiError> {
    let filter = query.filter()?;
    Ok(axum::Json(TraceList { traces: store.list(&filter) }))
}

async fn one(State(store): State<Arc<Store>>, Path(id): Path<String>) -> Result<axum::Json<TraceDetail>, ApiError> {
    let id = trace_id(&id)?;
    let (summary, spans) = store.get(id).ok_or_else(|| not_found(id))?;
    Ok(axum::Json(TraceDetail { summary, spans }))
}

pub fn routes() -> Router<Arc<Store>> {
    Router::new().route("/api/traces", get(list)).route("/api/traces/{trace_id}", get(one))
}

//! The read API: `GET /api/v1/read/...`, JSON in camelCase, errors as [`ApiError`].
//!
//! - `events/{eventId}/sales`: ADMIN, or the event's organizer (asked of orders, whose
//!   `GET /api/v1/events/{id}` is public; its 404 passes through).
//! - `customers/{customerId}/orders?first=&after=`: that customer or ADMIN; newest first,
//!   opaque cursor.
//! - `orders/{orderId}/timeline`: the order's customer or ADMIN (ADMIN only while the
//!   projector has not seen the order's OrderCreated); 404 for an order never seen.
//!
//! Every answer carries `asOf`, the newest event time the LIVE generation applied; reads never
//! wait for the consumer. The answers are [`platform::contract::read_models`]' types, the ones
//! the gateway decodes.

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRef, RawQuery, State};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use platform::auth::{Authenticated, Claims, Role, Verifier};
use platform::contract::read_models::{CustomerOrders, EventSales, Id, OrderTimeline};
use platform::error::{ApiError, FieldErrors};
use platform::http::Path;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::reads::{self, After};

/// Most items one page of a customer's orders may ask for.
pub const MAX_FIRST: i64 = 100;
const DEFAULT_FIRST: i64 = 20;

#[derive(Clone)]
pub struct AppState {
    /// The `read_models` database (readers use the public views only).
    pub pool: PgPool,
    pub verifier: Verifier,
    /// The orders service, asked who organizes an event.
    pub orders: Arc<OrdersClient>,
}

impl FromRef<AppState> for Verifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

/// Who organizes an event, from orders' public event endpoint.
#[derive(Debug)]
pub struct OrdersClient {
    pub client: reqwest::Client,
    /// e.g. `http://127.0.0.1:3002`.
    pub base_url: String,
}

impl OrdersClient {
    /// The event's organizer; 404 from orders is a 404 here, anything else unexpected a 503.
    async fn organizer(&self, event_id: Uuid) -> Result<Uuid, ApiError> {
        let url = format!("{}/api/v1/events/{event_id}", self.base_url.trim_end_matches('/'));
        let unavailable = |why: String| {
            tracing::warn!(%event_id, why, "orders could not say who organizes the event");
            ApiError::Unavailable {
                message: "the orders service cannot say who organizes this event right now; retry shortly".into(),
                retry_after_secs: 2,
            }
        };
        let res = self.client.get(&url).send().await.map_err(|e| unavailable(e.to_string()))?;
        match res.status().as_u16() {
            200 => {}
            404 => return Err(ApiError::NotFound(format!("no event with id {event_id}"))),
            other => return Err(unavailable(format!("status {other}"))),
        }
        let body: Value = res.json().await.map_err(|e| unavailable(e.to_string()))?;
        body["organizerId"]
            .as_str()
            .and_then(|s| Uuid::try_parse(s).ok())
            .ok_or_else(|| unavailable("no organizerId in the event".into()))
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/read/events/{event_id}/sales", get(event_sales))
        .route("/api/v1/read/customers/{customer_id}/orders", get(customer_orders))
        .route("/api/v1/read/orders/{order_id}/timeline", get(timeline))
        .with_state(state)
}

fn uuid(field: &'static str, raw: &str) -> Result<Uuid, ApiError> {
    Uuid::try_parse(raw).map_err(|_| ApiError::field(field, format!("`{}` is not a UUID", platform::error::shown(raw))))
}

fn is_admin(claims: &Claims) -> bool {
    claims.role == Role::Admin
}

/// A database that cannot be reached is a retryable 503; anything else is internal.
fn db_error(e: sqlx::Error) -> ApiError {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => {
            ApiError::Unavailable {
                message: "the read models database is unavailable; retry shortly".into(),
                retry_after_secs: 2,
            }
        }
        other => ApiError::internal(other),
    }
}

#[tracing::instrument(skip_all, fields(event_id = %platform::error::shown(&raw)))]
async fn event_sales(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    Path(raw): Path<String>,
) -> Result<axum::Json<EventSales>, ApiError> {
    let event_id = uuid("eventId", &raw)?;
    if !is_admin(&claims) {
        let organizer = state.orders.organizer(event_id).await?;
        if organizer != claims.sub {
            return Err(ApiError::Forbidden("only the event's organizer or an ADMIN may see its sales".into()));
        }
    }
    let (ticket_types, as_of) = reads::event_sales(&state.pool, event_id).await.map_err(db_error)?;
    Ok(axum::Json(EventSales { event_id: Id(event_id), as_of, ticket_types }))
}

/// `first` (1..=100, default 20) and `after` (a cursor from `nextCursor`), each a 400 naming
/// it when wrong.
fn page(query: Option<&str>) -> Result<(i64, Option<After>), ApiError> {
    let mut errors = FieldErrors::default();
    let (mut first, mut after) = (Some(DEFAULT_FIRST), None);
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "first" => {
                first = errors.check(
                    "first",
                    v.parse::<i64>()
                        .ok()
                        .filter(|n| (1..=MAX_FIRST).contains(n))
                        .ok_or_else(|| format!("must be an integer from 1 to {MAX_FIRST}")),
                );
            }
            "after" => after = errors.check("after", decode_cursor(&v).map(Some)).flatten(),
            _ => {}
        }
    }
    match first {
        Some(first) if errors.is_empty() => Ok((first, after)),
        _ => Err(errors.into_error()),
    }
}

fn encode_cursor(a: After) -> String {
    URL_SAFE_NO_PAD.encode(format!(
        "{}|{}",
        a.created_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        a.order_id
    ))
}

fn decode_cursor(raw: &str) -> Result<After, String> {
    let bad = || "not a cursor this API returned".to_owned();
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(raw).map_err(|_| bad())?).map_err(|_| bad())?;
    let (at, id) = text.split_once('|').ok_or_else(bad)?;
    Ok(After {
        created_at: DateTime::parse_from_rfc3339(at).map_err(|_| bad())?.with_timezone(&Utc),
        order_id: Uuid::try_parse(id).map_err(|_| bad())?,
    })
}

#[tracing::instrument(skip_all, fields(customer_id = %platform::error::shown(&raw)))]
async fn customer_orders(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    Path(raw): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<CustomerOrders>, ApiError> {
    let customer_id = uuid("customerId", &raw)?;
    let (first, after) = page(query.as_deref())?;
    if !is_admin(&claims) && claims.sub != customer_id {
        return Err(ApiError::Forbidden("only the customer or an ADMIN may list a customer's orders".into()));
    }
    let (items, more, as_of) =
        reads::customer_orders(&state.pool, customer_id, first, after).await.map_err(db_error)?;
    let next_cursor = if more {
        items
            .last()
            .and_then(|o| o.created_at.map(|at| encode_cursor(After { created_at: at.0, order_id: o.order_id.0 })))
    } else {
        None
    };
    Ok(axum::Json(CustomerOrders { customer_id: Id(customer_id), as_of, items, next_cursor }))
}

#[tracing::instrument(skip_all, fields(order_id = %platform::error::shown(&raw)))]
async fn timeline(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    Path(raw): Path<String>,
) -> Result<axum::Json<OrderTimeline>, ApiError> {
    let order_id = uuid("orderId", &raw)?;
    let t = reads::timeline(&state.pool, order_id).await.map_err(db_error)?;
    if !t.seen {
        return Err(ApiError::NotFound(format!("no order with id {order_id} has been projected")));
    }
    let allowed = is_admin(&claims) || t.customer_id == Some(claims.sub);
    if !allowed {
        return Err(ApiError::Forbidden("only the order's customer or an ADMIN may see its timeline".into()));
    }
    Ok(axum::Json(OrderTimeline {
        order_id: Id(order_id),
        customer_id: t.customer_id.map(Id),
        as_of: t.as_of,
        events: t.events,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_names_the_field() {
        let a = After { created_at: "2026-11-25T03:00:00.123456Z".parse().unwrap(), order_id: Uuid::now_v7() };
        let q = format!("first=5&after={}", encode_cursor(a));
        assert_eq!(page(Some(&q)).unwrap(), (5, Some(a)));
        assert_eq!(page(None).unwrap(), (20, None));
        for (q, field) in [("first=0", "first"), ("first=101", "first"), ("first=x", "first"), ("after=zz", "after")] {
            let err = page(Some(q)).unwrap_err();
            assert_eq!(err.body()["details"]["fields"][0]["field"], field, "{q}");
        }
    }
}

//! The orders' HTTP side: order bodies parsed into [`NewOrder`], paths into ids, answered with
//! [`platform::contract`] types.

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use platform::auth::{Authenticated, Role};
use platform::code;
use platform::contract::{CancelOrderPayload, CreateOrderPayload, Order, Page, PayOrderPayload};
use platform::error::{ApiError, FieldErrors};
use platform::http::Json;
use platform::http::{Path, Query};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::domain::{NewOrder, Quantity};
use crate::idempotency::{Answer, Guard};
use crate::listing::PageAt;
use crate::{AppState, lifecycle, listing, orders};

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/orders", post(create))
        .route("/api/v1/orders/{id}", get(by_id))
        .route("/api/v1/orders/{id}/pay", post(pay))
        .route("/api/v1/orders/{id}/cancel", post(cancel))
        .route("/api/v1/customers/me/orders", get(my_orders))
        .route("/api/v1/customers/{id}/orders", get(customer_orders))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateBody {
    region: Option<String>,
    event_id: Option<String>,
    ticket_type_id: Option<String>,
    quantity: Option<i64>,
}

fn parse(state: &AppState, body: &CreateBody) -> Result<NewOrder, ApiError> {
    let mut errors = FieldErrors::default();
    let region = errors.check("region", state.required_region(body.region.as_deref()));
    let routed = |raw: &Option<String>| match raw.as_deref().map(str::trim) {
        None | Some("") => Err("is required".to_owned()),
        Some(raw) => state
            .placement
            .snapshot()
            .router
            .route_str(raw)
            .map_err(|_| format!("`{}` is not a valid id", platform::error::shown(raw))),
    };
    let event = errors.check("eventId", routed(&body.event_id));
    let ticket_type = errors.check("ticketTypeId", routed(&body.ticket_type_id));
    let quantity = errors.check(
        "quantity",
        body.quantity.ok_or_else(|| "is required".to_owned()).and_then(|q| Quantity::parse(q, state.max_per_order)),
    );
    let (Some(region), Some((event_id, route)), Some((ticket_type_id, tt_route)), Some(quantity)) =
        (region, event, ticket_type, quantity)
    else {
        return Err(errors.into_error());
    };
    // The event's id says where it lives: a region tag that disagrees is the client's mistake.
    if route.region != region {
        return Err(ApiError::Unprocessable {
            code: code::REGION_MISMATCH,
            message: format!("the order is tagged {region} but event {event_id} lives in {}", route.region),
            details: Some(json!({"requestedRegion": region.as_str(), "eventRegion": route.region.as_str()})),
        });
    }
    if tt_route.region != route.region || tt_route.partition != route.partition {
        return Err(ApiError::field("ticketTypeId", "does not belong to the event"));
    }
    Ok(NewOrder { event_id, ticket_type_id, region: route.region, partition: route.partition, quantity })
}

/// `POST /api/v1/orders` (a CUSTOMER): 201 with the order's id, total and region, or the first
/// answer again for a repeated `Idempotency-Key`. The Redis stock lock is held around the
/// placement to space out buyers of one ticket type (the database guard is what prevents
/// overselling).
#[tracing::instrument(skip_all, fields(customer = %claims.sub))]
async fn create(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    headers: HeaderMap,
    Json(body): Json<CreateBody>,
) -> Result<Answer<CreateOrderPayload>, ApiError> {
    let key = crate::idempotency::key(&headers)?;
    let order = parse(&state, &body)?;
    orders::check_customer(&state, claims.sub).await?;
    let request_hash = Sha256::digest(
        format!("{}|{}|{}|{}", order.region, order.event_id, order.ticket_type_id, order.quantity.get()).as_bytes(),
    )
    .to_vec();
    let guard = Guard { owner: claims.sub, operation: "create_order", key: key.as_ref(), request_hash: &request_hash };
    let lock = state.lock.acquire(order.ticket_type_id).await;
    let result = orders::place(&state, &guard, &order).await;
    if let Some(held) = lock {
        state.lock.release(held).await;
    }
    result
}

/// `GET /api/v1/orders/{id}`: an order, to its customer or an ADMIN.
#[tracing::instrument(skip_all, fields(order_id = %platform::error::shown(&raw)))]
async fn by_id(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    Path(raw): Path<String>,
) -> Result<axum::Json<Order>, ApiError> {
    orders::order(&state, state.parse_id(&raw, "order")?, &claims).await.map(axum::Json)
}

/// `POST /api/v1/orders/{id}/pay`: see [`lifecycle::pay`].
#[tracing::instrument(skip_all, fields(order_id = %platform::error::shown(&raw)))]
async fn pay(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    Path(raw): Path<String>,
) -> Result<axum::Json<PayOrderPayload>, ApiError> {
    lifecycle::pay(&state, state.parse_id(&raw, "order")?, claims.sub).await.map(axum::Json)
}

/// `POST /api/v1/orders/{id}/cancel`: see [`lifecycle::cancel`].
#[tracing::instrument(skip_all, fields(order_id = %platform::error::shown(&raw)))]
async fn cancel(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    Path(raw): Path<String>,
) -> Result<axum::Json<CancelOrderPayload>, ApiError> {
    lifecycle::cancel(&state, state.parse_id(&raw, "order")?, claims.sub).await.map(axum::Json)
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

/// `GET /api/v1/customers/me/orders`: the caller's orders in every region, newest first.
#[tracing::instrument(skip_all, fields(customer = %claims.sub))]
async fn my_orders(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    Query(q): Query<PageQuery>,
) -> Result<axum::Json<Page<Order>>, ApiError> {
    orders_of(&state, claims.sub, &q).await
}

/// `GET /api/v1/customers/{id}/orders`: the same listing for a named customer, to that
/// customer or an ADMIN (the gateway's `ordersByCustomer` for admins).
#[tracing::instrument(skip_all, fields(customer = %platform::error::shown(&raw), caller = %claims.sub))]
async fn customer_orders(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    Path(raw): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<axum::Json<Page<Order>>, ApiError> {
    let customer = Uuid::parse_str(&raw)
        .map_err(|_| ApiError::field("id", format!("`{}` is not a customer id", platform::error::shown(&raw))))?;
    if customer != claims.sub && claims.role != Role::Admin {
        return Err(ApiError::Forbidden("only the customer or an ADMIN may list these orders".into()));
    }
    orders_of(&state, customer, &q).await
}

async fn orders_of(state: &AppState, customer: Uuid, q: &PageQuery) -> Result<axum::Json<Page<Order>>, ApiError> {
    let mut errors = FieldErrors::default();
    let at = PageAt::parse(&mut errors, q.limit.as_deref(), q.cursor.as_deref()).ok_or_else(|| errors.into_error())?;
    listing::orders_of(state, customer, at).await.map(axum::Json)
}

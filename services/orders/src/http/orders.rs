//! The orders' HTTP side: order bodies parsed into [`NewOrder`], paths into ids, answered with
//! [`platform::contract`] types.

use axum::extract::State;
use axum::http::HeaderMap;
use platform::auth::{Authenticated, Role};
use platform::code;
use platform::contract::{CancelOrderPayload, CreateOrderPayload, Order, Page, PayOrderPayload};
use platform::error::{ApiError, ErrorBody, FieldErrors};
use platform::http::Json;
use platform::http::{Path, Query};
use platform::openapi::{BadRequest, DependencyFailures, Forbidden, Unauthorized};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{AuthenticatedWrite, IdPath, OrderAccess, PageParams};
use crate::domain::{NewOrder, Quantity};
use crate::idempotency::{Answer, Guard, IdempotencyKeyHeader};
use crate::listing::PageAt;
use crate::{AppState, lifecycle, listing, orders};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(create))
        .routes(routes!(by_id))
        .routes(routes!(pay))
        .routes(routes!(cancel))
        .routes(routes!(my_orders))
        .routes(routes!(customer_orders))
}

/// Every field optional here so that one answer names every missing one; the document says
/// what a valid body holds.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = CreateOrderBody)]
struct CreateBody {
    /// The event's region; it must be the one the event lives in (422 otherwise).
    #[schema(value_type = String, required = true, example = "NA")]
    region: Option<String>,
    #[schema(value_type = uuid::Uuid, required = true)]
    event_id: Option<String>,
    /// One of the event's ticket types.
    #[schema(value_type = uuid::Uuid, required = true)]
    ticket_type_id: Option<String>,
    /// Tickets to buy: 1 to the deployment's `max_quantity_per_order` (10 by default).
    #[schema(value_type = i32, required = true, minimum = 1, example = 2)]
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

/// Place an order
///
/// For a CUSTOMER: reserves the tickets (PENDING until paid, cancelled, or expired unpaid).
/// With an `Idempotency-Key`, a repeat of the same request gets the first answer again.
// The Redis stock lock is held around the placement to space out buyers of one ticket type
// (the database guard is what prevents overselling); the idempotency hint is written before
// it (`Guard::note`).
#[utoipa::path(post, path = "/api/v1/orders", tag = "orders", operation_id = "createOrder",
    security(("bearerAuth" = [])), params(IdempotencyKeyHeader), request_body = CreateBody,
    responses(
        (status = 201, description = "Placed (or the first answer to this `Idempotency-Key`)",
         body = CreateOrderPayload),
        AuthenticatedWrite,
        (status = 403, description = "`FORBIDDEN`: only customers place orders", body = ErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such event or ticket type, or the customer is gone",
         body = ErrorBody),
        (status = 409, description = "`SOLD_OUT`, or `INSUFFICIENT_STOCK` with `details.remaining`",
         body = ErrorBody),
        (status = 422, description = "`REGION_MISMATCH` (`details.requestedRegion`, `details.eventRegion`): the \
         event lives in another region; or `IDEMPOTENCY_KEY_REUSED`: the key came with another request",
         body = ErrorBody),
    ))]
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
    // The lock and the idempotency hint are both one Redis round trip: overlapped, they cost
    // one (and a Redis outage costs one connect timeout, not two).
    let (lock, noted) = tokio::join!(state.lock.acquire(order.ticket_type_id), guard.note(&state));
    let result = orders::place(&state, &guard, noted, &order).await;
    if let Some(held) = lock {
        state.lock.release(held).await;
    }
    result
}

/// Read an order
///
/// To its customer or an ADMIN.
#[utoipa::path(get, path = "/api/v1/orders/{id}", tag = "orders", operation_id = "getOrder",
    security(("bearerAuth" = [])), params(IdPath),
    responses((status = 200, description = "The order", body = Order), OrderAccess))]
#[tracing::instrument(skip_all, fields(order_id = %platform::error::shown(&raw)))]
async fn by_id(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    Path(IdPath { id: raw }): Path<IdPath>,
) -> Result<axum::Json<Order>, ApiError> {
    orders::order(&state, state.parse_id(&raw, "order")?, &claims).await.map(axum::Json)
}

/// Pay an order
///
/// By its customer, while PENDING and within its reservation; paying a paid order again
/// answers the same.
// See [`lifecycle::pay`].
#[utoipa::path(post, path = "/api/v1/orders/{id}/pay", tag = "orders", operation_id = "payOrder",
    security(("bearerAuth" = [])), params(IdPath),
    responses(
        (status = 200, description = "Paid", body = PayOrderPayload),
        OrderAccess,
        (status = 409, description = "`ORDER_CANCELLED`, or `RESERVATION_EXPIRED`: it was not paid in time",
         body = ErrorBody),
    ))]
#[tracing::instrument(skip_all, fields(order_id = %platform::error::shown(&raw)))]
async fn pay(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    Path(IdPath { id: raw }): Path<IdPath>,
) -> Result<axum::Json<PayOrderPayload>, ApiError> {
    lifecycle::pay(&state, state.parse_id(&raw, "order")?, claims.sub).await.map(axum::Json)
}

/// Cancel an order
///
/// By its customer, while PENDING: the tickets go back on sale. Cancelling a cancelled order
/// again answers the same.
// See [`lifecycle::cancel`].
#[utoipa::path(post, path = "/api/v1/orders/{id}/cancel", tag = "orders", operation_id = "cancelOrder",
    security(("bearerAuth" = [])), params(IdPath),
    responses(
        (status = 200, description = "Cancelled", body = CancelOrderPayload),
        OrderAccess,
        (status = 409, description = "`ORDER_PAID`: a paid order is not cancelled", body = ErrorBody),
    ))]
#[tracing::instrument(skip_all, fields(order_id = %platform::error::shown(&raw)))]
async fn cancel(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    Path(IdPath { id: raw }): Path<IdPath>,
) -> Result<axum::Json<CancelOrderPayload>, ApiError> {
    lifecycle::cancel(&state, state.parse_id(&raw, "order")?, claims.sub).await.map(axum::Json)
}

/// My orders
///
/// The caller's orders in every region, newest first; a page at a time.
#[utoipa::path(get, path = "/api/v1/customers/me/orders", tag = "orders", operation_id = "listMyOrders",
    security(("bearerAuth" = [])), params(PageParams),
    responses((status = 200, description = "A page of orders", body = Page<Order>), BadRequest, Unauthorized,
        DependencyFailures))]
#[tracing::instrument(skip_all, fields(customer = %claims.sub))]
async fn my_orders(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    Query(q): Query<PageParams>,
) -> Result<axum::Json<Page<Order>>, ApiError> {
    orders_of(&state, claims.sub, &q).await
}

/// A customer's orders
///
/// The same listing for a named customer, to that customer or an ADMIN.
// The gateway's `ordersByCustomer` for admins.
#[utoipa::path(get, path = "/api/v1/customers/{id}/orders", tag = "orders", operation_id = "listCustomerOrders",
    security(("bearerAuth" = [])),
    params(("id" = uuid::Uuid, Path, description = "The customer's user id"), PageParams),
    responses((status = 200, description = "A page of orders", body = Page<Order>), BadRequest, Unauthorized,
        Forbidden, DependencyFailures))]
#[tracing::instrument(skip_all, fields(customer = %platform::error::shown(&raw), caller = %claims.sub))]
async fn customer_orders(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    Path(IdPath { id: raw }): Path<IdPath>,
    Query(q): Query<PageParams>,
) -> Result<axum::Json<Page<Order>>, ApiError> {
    let customer = Uuid::parse_str(&raw)
        .map_err(|_| ApiError::field("id", format!("`{}` is not a customer id", platform::error::shown(&raw))))?;
    if customer != claims.sub && claims.role != Role::Admin {
        return Err(ApiError::Forbidden("only the customer or an ADMIN may list these orders".into()));
    }
    orders_of(&state, customer, &q).await
}

async fn orders_of(state: &AppState, customer: Uuid, q: &PageParams) -> Result<axum::Json<Page<Order>>, ApiError> {
    let mut errors = FieldErrors::default();
    let at = PageAt::parse(&mut errors, q.limit.as_deref(), q.cursor.as_deref()).ok_or_else(|| errors.into_error())?;
    listing::orders_of(state, customer, at).await.map(axum::Json)
}

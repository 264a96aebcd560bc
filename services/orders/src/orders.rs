//! Placing an order, and reading one: one transaction on the event's shard holds the stock
//! update, the order, the idempotency record and the outbox row; all commit or none do. The
//! HTTP side is [`crate::http::orders`], the statements [`crate::store::orders`].

use std::time::Instant;

use chrono::Utc;
use platform::auth::{Claims, Role};
use platform::code;
use platform::contract::{CreateOrderPayload, Order, Region};
use platform::error::ApiError;
use platform::events::{OrderCreated, OrderEvent};
use proto::accounts::v1::{GetUserByIdRequest, UserRole};
use serde_json::json;
use shard_router::{Route, ids};
use tracing::Instrument as _;
use uuid::Uuid;

use crate::AppState;
use crate::domain::{Cents, NewOrder};
use crate::hints::Lookup;
use crate::idempotency::{Answer, Guard};
use crate::shard::{Key, WorkError, count};
use crate::store::orders::{self as store, NewOrderRow, Shortage};

/// The caller must exist in accounts and be a CUSTOMER; accounts unreachable is retryable.
/// The one place the proto's role meets ours. A yes is remembered for
/// `customer_cache_ttl_ms` ([`crate::customers`]), so a deleted or demoted account stops
/// buying within that TTL; a no or a failure is never remembered.
pub async fn check_customer(state: &AppState, customer: Uuid) -> Result<(), ApiError> {
    let asked_at = Instant::now();
    if state.customers.is_confirmed(customer, asked_at) {
        metrics::counter!("orders_customer_cache_total", "outcome" => "hit").increment(1);
        return Ok(());
    }
    metrics::counter!("orders_customer_cache_total", "outcome" => "miss").increment(1);
    let mut client = state.accounts.clone();
    let mut req = tonic::Request::new(GetUserByIdRequest { id: customer.to_string() });
    platform::correlation::grpc::inject(&mut req);
    let span = tracing::info_span!(
        "grpc client",
        otel.name = "accounts.v1.AccountsService/GetUserById",
        otel.kind = "client",
        rpc.system = "grpc",
        rpc.method = "GetUserById",
    );
    platform::trace_context::grpc::inject(&span, &mut req);
    match client.get_user_by_id(req).instrument(span).await {
        Ok(user) if user.get_ref().role == i32::from(UserRole::Customer) => {
            state.customers.confirm(customer, asked_at);
            Ok(())
        }
        Ok(_) => Err(ApiError::Forbidden("only customers place orders".into())),
        Err(s) if s.code() == tonic::Code::NotFound => Err(ApiError::NotFound("the customer does not exist".into())),
        Err(s) => {
            tracing::warn!(code = ?s.code(), message = s.message(), "accounts lookup failed");
            Err(ApiError::Unavailable {
                message: "the accounts service is unavailable; retry shortly".into(),
                retry_after_secs: 1,
            })
        }
    }
}

/// Places `order` for its customer (`guard.owner`) on the shard owning the event's partition
/// (see [`crate::shard`] for the fence and the retry after a move). `noted` is what
/// [`Guard::note`] said for this request.
pub async fn place(
    state: &AppState,
    guard: &Guard<'_>,
    noted: Lookup,
    order: &NewOrder,
) -> Result<Answer<CreateOrderPayload>, ApiError> {
    if guard.key.is_some()
        && let Ok(home) = state.placement.snapshot().router.shard_for(&order.region, order.partition).cloned()
        && let Some(answer) = guard.seen_elsewhere(state, &home, noted).await?
    {
        return Ok(answer);
    }
    let at = Key::Partition(order.region.clone(), order.partition);
    state.write(at, guard.operation, |route| place_once(state, route, guard, order)).await
}

/// The order transaction: stock, order, outbox row and idempotency record commit together.
async fn place_once(
    state: &AppState,
    route: Route,
    guard: &Guard<'_>,
    order: &NewOrder,
) -> Result<Answer<CreateOrderPayload>, WorkError> {
    let stx = state.begin(&route).await?;
    let answer = guard
        .run(stx, async |tx| {
            let price = match store::take_stock(tx, order.event_id, order.ticket_type_id, order.quantity.get()).await? {
                Ok(price) => price,
                Err(short) => {
                    count("orders_stock_conflicts_total", &route, 1);
                    return Err(stock_error(order, short).into());
                }
            };
            let price = Cents::parse(price).map_err(|m| ApiError::internal(anyhow::anyhow!("stored price: {m}")))?;
            let total = price
                .times(order.quantity)
                .ok_or_else(|| ApiError::field("quantity", "the total price is out of range"))?;
            let placement =
                ids::Placement { region_tag: ids::region_tag(route.region.as_str()), partition: route.partition };
            let row = NewOrderRow {
                id: ids::new_id(placement),
                customer: guard.owner,
                event: order.event_id,
                ticket_type: order.ticket_type_id,
                quantity: order.quantity.get(),
                total_price_in_cents: total,
            };
            store::insert(tx, &route, &row).await?;
            let event = OrderEvent::OrderCreated(OrderCreated {
                order_id: row.id,
                customer_id: row.customer,
                event_id: row.event,
                ticket_type_id: row.ticket_type,
                quantity: row.quantity,
                total_price_in_cents: total,
                occurred_at: Utc::now(),
                region: route.region.to_string(),
                version: 1,
            });
            store::write_outbox(tx, route.partition, &event).await?;
            Ok(CreateOrderPayload {
                order_id: row.id,
                total_price_in_cents: total,
                region: Region(route.region.to_string()),
            })
        })
        .await?;
    if let Answer::Fresh(created) = &answer {
        count("orders_created_total", &route, 1);
        tracing::info!(order_id = %created.order_id, region = %route.region, shard = %route.shard, "order created");
    }
    Ok(answer)
}

/// Why no stock could be taken, as the buyer sees it.
fn stock_error(order: &NewOrder, short: Shortage) -> ApiError {
    match short {
        Shortage::Left(0) => {
            ApiError::Conflict { code: code::SOLD_OUT, message: "this ticket type is sold out".into(), details: None }
        }
        Shortage::Left(left) => ApiError::Conflict {
            code: code::INSUFFICIENT_STOCK,
            message: format!("only {left} tickets left"),
            details: Some(json!({ "remaining": left })),
        },
        Shortage::Missing => {
            ApiError::NotFound(format!("no ticket type {} in event {}", order.ticket_type_id, order.event_id))
        }
    }
}

/// The order `id`, to its customer or an ADMIN.
pub async fn order(state: &AppState, id: Uuid, caller: &Claims) -> Result<Order, ApiError> {
    let found = state.read_one(id, |pool| async move { store::order(&pool, id).await }).await?;
    let order = found.ok_or_else(|| ApiError::NotFound(format!("no order with id {id}")))?;
    if order.customer_id != caller.sub && caller.role != Role::Admin {
        return Err(ApiError::Forbidden("only the order's customer or an ADMIN may see it".into()));
    }
    Ok(order)
}

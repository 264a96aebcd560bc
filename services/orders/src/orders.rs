//! Creating an order: one transaction on the event's shard holds the stock update, the order,
//! the idempotency record and the outbox row; all commit or none do.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use platform::auth::{Authenticated, Role};
use platform::code;
use platform::error::{ApiError, FieldErrors};
use platform::events::{OrderCreated, OrderEvent};
use platform::http::{Json, Path};
use proto::accounts::v1::{GetUserByIdRequest, UserRole};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use shard_router::live;
use shard_router::{Fenced, RegionName, Route, ids};
use uuid::Uuid;

use crate::AppState;
use crate::domain::{Cents, IdempotencyKey, Quantity};
use crate::idempotency::{Answer, Guard};
use crate::shard::{Key, WorkError};

pub fn router(state: AppState) -> Router {
    Router::new().route("/api/v1/orders", post(create)).route("/api/v1/orders/{id}", get(by_id)).with_state(state)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateBody {
    region: Option<String>,
    event_id: Option<String>,
    ticket_type_id: Option<String>,
    quantity: Option<i64>,
}

struct NewOrder {
    event_id: Uuid,
    ticket_type_id: Uuid,
    /// The event's region and partition, from its id: where the order lives too.
    region: RegionName,
    partition: u16,
    quantity: Quantity,
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

/// The caller must exist in accounts and be a CUSTOMER; accounts unreachable is retryable.
async fn check_customer(state: &AppState, customer: Uuid) -> Result<(), ApiError> {
    let mut client = state.accounts.clone();
    let mut req = tonic::Request::new(GetUserByIdRequest { id: customer.to_string() });
    platform::correlation::grpc::inject(&mut req);
    match client.get_user_by_id(req).await {
        Ok(user) if user.get_ref().role == i32::from(UserRole::Customer) => Ok(()),
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

#[tracing::instrument(skip_all, fields(customer = %claims.sub))]
async fn create(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    headers: HeaderMap,
    Json(body): Json<CreateBody>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let key = crate::idempotency::key(&headers)?;
    let order = parse(&state, &body)?;
    check_customer(&state, claims.sub).await?;
    let request_hash = Sha256::digest(
        format!("{}|{}|{}|{}", order.region, order.event_id, order.ticket_type_id, order.quantity.get()).as_bytes(),
    )
    .to_vec();

    let lock = state.lock.acquire(order.ticket_type_id).await;
    let result = place(&state, claims.sub, &order, key.as_ref(), &request_hash).await;
    if let Some(held) = lock {
        state.lock.release(held).await;
    }
    let (status, body) = result?;
    Ok((StatusCode::from_u16(status).unwrap_or(StatusCode::CREATED), axum::Json(body)))
}

/// Appends `event` to the shard's outbox inside the caller's transaction, with the request's
/// correlation id, so it is published exactly when the change it announces commits.
pub(crate) async fn write_outbox(
    tx: &mut sqlx::PgConnection,
    partition: i16,
    event: &OrderEvent,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into outbox (aggregate_id, partition, event_type, payload, correlation_id) values ($1, $2, $3, $4, $5)",
    )
    .bind(event.order_id())
    .bind(partition)
    .bind(event.name())
    .bind(sqlx::types::Json(event))
    .bind(platform::correlation::CorrelationId::current().map(|c| c.to_string()))
    .execute(tx)
    .await
    .map(drop)
}

/// Places the order on the shard owning the event's partition (see [`crate::shard`] for the
/// fence and the retry after a move). Returns the status and body to answer (the stored ones
/// on a replay).
async fn place(
    state: &AppState,
    customer: Uuid,
    order: &NewOrder,
    key: Option<&IdempotencyKey>,
    request_hash: &[u8],
) -> Result<(u16, Value), ApiError> {
    let at = Key::Partition(order.region.clone(), order.partition);
    if let Some(key) = key {
        let home = state.placement.snapshot().router.shard_for(&order.region, order.partition).cloned();
        if let Ok(home) = home
            && let Some(answer) =
                crate::idempotency::seen_elsewhere(state, &home, customer, "create_order", key, request_hash).await?
        {
            return Ok(answer);
        }
    }
    state.write(at, "create_order", |route| place_once(state, route, customer, order, key, request_hash)).await
}

/// The order transaction: stock, order, outbox row and idempotency record commit together.
async fn place_once(
    state: &AppState,
    route: Route,
    customer: Uuid,
    order: &NewOrder,
    key: Option<&IdempotencyKey>,
    request_hash: &[u8],
) -> Result<(u16, Value), WorkError> {
    let db = |e: sqlx::Error| state.db_error(&route, e);
    let mut stx = state.begin(&route).await?;
    let guard = Guard { owner: customer, operation: "create_order", key, request_hash };
    let work = async |tx: &mut sqlx::PgConnection| {
        // The stock guard: never below zero, whatever the lock did.
        let taken: Option<(i64,)> = sqlx::query_as(
            "update ticket_types set remaining_quantity = remaining_quantity - $3 \
             where id = $1 and event_id = $2 and remaining_quantity >= $3 returning price_in_cents",
        )
        .bind(order.ticket_type_id)
        .bind(order.event_id)
        .bind(order.quantity.get())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let Some((price,)) = taken else {
            let remaining: Option<(i32,)> =
                sqlx::query_as("select remaining_quantity from ticket_types where id = $1 and event_id = $2")
                    .bind(order.ticket_type_id)
                    .bind(order.event_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?;
            let labels = [("region", route.region.to_string()), ("shard", route.shard.to_string())];
            metrics::counter!("orders_stock_conflicts_total", &labels).increment(1);
            return Err(WorkError::Api(match remaining {
                None => {
                    ApiError::NotFound(format!("no ticket type {} in event {}", order.ticket_type_id, order.event_id))
                }
                Some((0,)) => ApiError::Conflict {
                    code: code::SOLD_OUT,
                    message: "this ticket type is sold out".into(),
                    details: None,
                },
                Some((left,)) => ApiError::Conflict {
                    code: code::INSUFFICIENT_STOCK,
                    message: format!("only {left} tickets left"),
                    details: Some(json!({ "remaining": left })),
                },
            }));
        };
        let price = Cents::parse(price).map_err(|m| ApiError::internal(anyhow::anyhow!("stored price: {m}")))?;
        let total = price
            .times(order.quantity)
            .ok_or_else(|| ApiError::field("quantity", "the total price is out of range"))?;

        let placement =
            ids::Placement { region_tag: ids::region_tag(route.region.as_str()), partition: route.partition };
        let order_id = ids::new_id(placement);
        let partition = live::partition_i16(route.partition);
        sqlx::query(
            "insert into orders (id, partition, region, customer_id, event_id, ticket_type_id, quantity, total_price_in_cents) \
             values ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(order_id)
        .bind(partition)
        .bind(route.region.as_str())
        .bind(customer)
        .bind(order.event_id)
        .bind(order.ticket_type_id)
        .bind(order.quantity.get())
        .bind(total)
        .execute(&mut *tx)
        .await
        .map_err(db)?;

        let event = OrderEvent::OrderCreated(OrderCreated {
            order_id,
            customer_id: customer,
            event_id: order.event_id,
            ticket_type_id: order.ticket_type_id,
            quantity: order.quantity.get(),
            total_price_in_cents: total,
            occurred_at: Utc::now(),
            region: route.region.to_string(),
            version: 1,
        });
        write_outbox(tx, partition, &event).await.map_err(db)?;
        let body = json!({ "orderId": order_id, "totalPriceInCents": total, "region": route.region.as_str() });
        Ok((201, body))
    };
    let (status, body) = match guard.run(stx.conn(), route.partition, db, work).await? {
        Answer::Replay(status, body) => return Ok((status, body)),
        Answer::Fresh(status, body) => (status, body),
    };
    stx.tx.commit().await.map_err(db)?;
    let labels = [("region", route.region.to_string()), ("shard", route.shard.to_string())];
    metrics::counter!("orders_created_total", &labels).increment(1);
    tracing::info!(order_id = body["orderId"].as_str().unwrap_or_default(), region = %route.region, shard = %route.shard, "order created");
    Ok((status, body))
}

/// An order as the API shows it (single reads and listings alike).
#[derive(Debug, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OrderRow {
    pub(crate) id: Uuid,
    region: String,
    customer_id: Uuid,
    event_id: Uuid,
    ticket_type_id: Uuid,
    quantity: i32,
    total_price_in_cents: i64,
    status: String,
    pub(crate) created_at: DateTime<Utc>,
    paid_at: Option<DateTime<Utc>>,
    cancelled_at: Option<DateTime<Utc>>,
    cancel_reason: Option<String>,
    /// 1 at creation, one more per change: the `version` of the order's latest event.
    version: i32,
    /// Whether the shard it was read from serves its partition now (rows a move left behind
    /// are not served).
    #[serde(skip)]
    pub(crate) readable: bool,
}

pub(crate) const ORDER_COLUMNS: &str = "id, region, customer_id, event_id, ticket_type_id, quantity, \
     total_price_in_cents, status, created_at, paid_at, cancelled_at, cancel_reason, version, partition_readable(region, partition) as readable";

/// An order, to its customer or an ADMIN.
#[tracing::instrument(skip_all, fields(order_id = %raw))]
async fn by_id(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    Path(raw): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let id = state.parse_id(&raw, "order")?;
    let row = state.read(Key::Id(id), |route| read_order(&state, route, id)).await?;
    let row = row.ok_or_else(|| ApiError::NotFound(format!("no order with id {id}")))?;
    if row.customer_id != claims.sub && claims.role != Role::Admin {
        return Err(ApiError::Forbidden("only the order's customer or an ADMIN may see it".into()));
    }
    serde_json::to_value(&row).map(axum::Json).map_err(ApiError::internal)
}

/// The order from the shard `route` names, if that shard serves its partition.
async fn read_order(state: &AppState, route: Route, id: Uuid) -> Result<Option<OrderRow>, WorkError> {
    let pool = state.pool(&route.shard)?;
    let row: Option<OrderRow> = sqlx::query_as(&format!("select {ORDER_COLUMNS} from orders where id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(|e| state.db_error(&route, e))?;
    match row {
        Some(row) if row.readable => Ok(Some(row)),
        Some(_) => Err(WorkError::Fenced(Fenced::NotOwned)),
        None => crate::shard::readable(state, &route).await.map(|()| None),
    }
}

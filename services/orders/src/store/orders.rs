//! `orders`, the stock they take from `ticket_types`, and the `outbox` rows announcing their
//! changes. Every change of an order is a conditional update (on the stock left, on the status),
//! so the database, not the caller's reading of a row, decides a race.

use std::time::Duration;

use chrono::{DateTime, Utc};
use platform::contract::{CancelReason, Cursor, Order, OrderStatus};
use platform::events::OrderEvent;
use shard_router::{Partition, Route};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::Readable;

/// An order's columns as [`Order`] has them.
const ORDER_COLUMNS: &str = "id, region, customer_id, event_id, ticket_type_id, quantity, total_price_in_cents, status, \
     created_at, paid_at, cancelled_at, cancel_reason, version";

/// The order `id`, if this shard holds it.
pub async fn order(pool: &PgPool, id: Uuid) -> Result<Option<Readable<Order>>, sqlx::Error> {
    super::readable_by_id(pool, ORDER_COLUMNS, "orders", id).await
}

/// Up to `limit` of `customer`'s orders this shard serves, newest first, after `after`.
pub async fn orders_of(
    pool: &PgPool,
    customer: Uuid,
    after: Option<Cursor>,
    limit: i64,
) -> Result<Vec<Order>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select {ORDER_COLUMNS} from orders where customer_id = $1 and partition_readable(region, partition) \
         and ($2::timestamptz is null or (created_at, id) < ($2, $3)) \
         order by created_at desc, id desc limit $4"
    ))
    .bind(customer)
    .bind(after.map(|c| c.at))
    .bind(after.map(|c| c.id))
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Why no stock was taken for an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shortage {
    /// No such ticket type in the event.
    Missing,
    /// Fewer than asked for are left (0: sold out).
    Left(i32),
}

/// Takes `quantity` tickets of `ticket_type` (of `event`) and returns its price in cents. The
/// stock guard: never below zero, whatever the lock did.
pub async fn take_stock(
    tx: &mut PgConnection,
    event: Uuid,
    ticket_type: Uuid,
    quantity: i32,
) -> Result<Result<i64, Shortage>, sqlx::Error> {
    let taken: Option<i64> = sqlx::query_scalar(
        "update ticket_types set remaining_quantity = remaining_quantity - $3 \
         where id = $1 and event_id = $2 and remaining_quantity >= $3 returning price_in_cents",
    )
    .bind(ticket_type)
    .bind(event)
    .bind(quantity)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(price) = taken {
        return Ok(Ok(price));
    }
    let left: Option<i32> =
        sqlx::query_scalar("select remaining_quantity from ticket_types where id = $1 and event_id = $2")
            .bind(ticket_type)
            .bind(event)
            .fetch_optional(tx)
            .await?;
    Ok(Err(left.map_or(Shortage::Missing, Shortage::Left)))
}

/// A new order's row.
#[derive(Debug)]
pub struct NewOrderRow {
    pub id: Uuid,
    pub customer: Uuid,
    pub event: Uuid,
    pub ticket_type: Uuid,
    pub quantity: i32,
    pub total_price_in_cents: i64,
}

/// Inserts `order` as PENDING, version 1, on `route`'s partition.
pub async fn insert(tx: &mut PgConnection, route: &Route, order: &NewOrderRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into orders (id, partition, region, customer_id, event_id, ticket_type_id, quantity, total_price_in_cents) \
         values ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(order.id)
    .bind(route.partition)
    .bind(route.region.as_str())
    .bind(order.customer)
    .bind(order.event)
    .bind(order.ticket_type)
    .bind(order.quantity)
    .bind(order.total_price_in_cents)
    .execute(tx)
    .await
    .map(drop)
}

/// Appends `event` to the shard's outbox inside the caller's transaction, with the request's
/// correlation id and trace context (the current span's `traceparent`: the relay publishes
/// later, on a task of its own, and sends it on as a Kafka header), so it is published exactly
/// when the change it announces commits. Every event of an order goes through here.
pub async fn write_outbox(tx: &mut PgConnection, partition: Partition, event: &OrderEvent) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into outbox (aggregate_id, partition, event_type, payload, correlation_id, traceparent) \
         values ($1, $2, $3, $4, $5, $6)",
    )
    .bind(event.order_id())
    .bind(partition)
    .bind(event.name())
    .bind(sqlx::types::Json(event))
    .bind(platform::correlation::CorrelationId::current().map(|c| c.to_string()))
    .bind(platform::trace_context::current_traceparent())
    .execute(tx)
    .await
    .map(drop)
}

/// An order's row, locked for a change.
#[derive(Debug, sqlx::FromRow)]
pub struct Locked {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub event_id: Uuid,
    pub ticket_type_id: Uuid,
    pub quantity: i32,
    pub status: OrderStatus,
    pub partition: Partition,
    pub version: i32,
    pub cancel_reason: Option<CancelReason>,
    pub cancelled_at: Option<DateTime<Utc>>,
    /// Whether its reservation has run out (by the database's clock, as the sweeper sees it).
    pub expired: bool,
}

/// The order `id` locked for update, with whether it is past `ttl`.
pub async fn lock(tx: &mut PgConnection, id: Uuid, ttl: Duration) -> Result<Option<Locked>, sqlx::Error> {
    sqlx::query_as(
        "select id, customer_id, event_id, ticket_type_id, quantity, status, partition, version, cancel_reason,
                cancelled_at, created_at < now() - make_interval(secs => $2) as expired
         from orders where id = $1 for update",
    )
    .bind(id)
    .bind(ttl.as_secs_f64())
    .fetch_optional(tx)
    .await
}

/// PENDING → CANCELLED for `order`, its tickets back in stock. The status guard makes a second
/// call a no-op (`None`), so stock is returned once whatever calls this. Returns the new
/// version and the time of the cancel.
pub async fn cancel(
    tx: &mut PgConnection,
    order: &Locked,
    reason: CancelReason,
) -> Result<Option<(i32, DateTime<Utc>)>, sqlx::Error> {
    let changed: Option<(i32, DateTime<Utc>)> = sqlx::query_as(
        "update orders set status = 'CANCELLED', cancel_reason = $2, cancelled_at = now(), version = version + 1
         where id = $1 and status = 'PENDING' returning version, cancelled_at",
    )
    .bind(order.id)
    .bind(reason.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    if changed.is_some() {
        sqlx::query("update ticket_types set remaining_quantity = remaining_quantity + $2 where id = $1")
            .bind(order.ticket_type_id)
            .bind(order.quantity)
            .execute(tx)
            .await?;
    }
    Ok(changed)
}

/// PENDING → PAID for a locked pending order; the new version and the time of payment.
pub async fn mark_paid(tx: &mut PgConnection, id: Uuid) -> Result<(i32, DateTime<Utc>), sqlx::Error> {
    sqlx::query_as(
        "update orders set status = 'PAID', paid_at = now(), version = version + 1 where id = $1
         returning version, paid_at",
    )
    .bind(id)
    .fetch_one(tx)
    .await
}

/// Advisory-lock class of the expiry sweeper (`'swep'`); the key is constant, one lock per
/// shard database.
const SWEEP_LOCK: (i32, i32) = (0x7377_6570, 0);

/// Up to `limit` (region, partition) pairs with reservations past `ttl` that this shard owns,
/// oldest first. Rows a move is copying in, or left behind after it, are not looked at.
pub async fn due_partitions(pool: &PgPool, ttl: Duration, limit: i64) -> Result<Vec<(String, Partition)>, sqlx::Error> {
    sqlx::query_as(
        "select o.region, o.partition from orders o
         join partition_owner po on po.region = o.region and po.partition = o.partition and po.state = 'OWNED'
         where o.status = 'PENDING' and o.created_at < now() - make_interval(secs => $1)
         group by o.region, o.partition order by min(o.created_at) limit $2",
    )
    .bind(ttl.as_secs_f64())
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Takes the shard's sweep lock for this transaction; `false` when another process holds it.
pub async fn try_sweep_lock(tx: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("select pg_try_advisory_xact_lock($1, $2)")
        .bind(SWEEP_LOCK.0)
        .bind(SWEEP_LOCK.1)
        .fetch_one(tx)
        .await
}

/// Up to `limit` expired pending orders of `route`'s partition, oldest first, locked (skipping
/// those another transaction holds).
pub async fn expired(
    tx: &mut PgConnection,
    route: &Route,
    ttl: Duration,
    limit: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "select id from orders
         where region = $1 and partition = $2 and status = 'PENDING'
           and created_at < now() - make_interval(secs => $3)
         order by created_at limit $4 for update skip locked",
    )
    .bind(route.region.as_str())
    .bind(route.partition)
    .bind(ttl.as_secs_f64())
    .bind(limit)
    .fetch_all(tx)
    .await
}

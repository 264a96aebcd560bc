//! The read side: queries on the public views (the LIVE generation), each request in one
//! transaction whose first statement reads a view. Reading a view holds a lock the switch
//! needs to replace it, so a switch cannot commit between a request's statements: its rows
//! and its `asOf` come from one generation. Rows decode into the read API's own types
//! ([`platform::contract::read_models`]), so what the API serialises is what it read.

use chrono::{DateTime, Utc};
use platform::contract::read_models::{CustomerOrder, TicketTypeSales, TimelineEvent, Timestamp};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// Where a page of a customer's orders starts: after this `(created_at, order_id)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct After {
    pub created_at: DateTime<Utc>,
    pub order_id: Uuid,
}

/// The LIVE generation's `last_event_at`.
async fn as_of(conn: &mut PgConnection) -> Result<Option<Timestamp>, sqlx::Error> {
    sqlx::query_scalar("select last_event_at from projection_generation where state = 'LIVE'")
        .fetch_optional(conn)
        .await
        .map(Option::flatten)
}

/// Sales of every ticket type of `event_id`, and `asOf`.
pub async fn event_sales(
    pool: &PgPool,
    event_id: Uuid,
) -> Result<(Vec<TicketTypeSales>, Option<Timestamp>), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let rows = sqlx::query_as(
        "select ticket_type_id, region, orders, orders_paid, orders_cancelled, tickets_sold, tickets_paid,
                tickets_cancelled, revenue_in_cents
         from event_sales where event_id = $1 order by ticket_type_id",
    )
    .bind(event_id)
    .fetch_all(&mut *tx)
    .await?;
    let at = as_of(&mut tx).await?;
    tx.commit().await?;
    Ok((rows, at))
}

/// Up to `first` orders of `customer_id` after `after`, newest first, plus whether more
/// follow; and `asOf`.
pub async fn customer_orders(
    pool: &PgPool,
    customer_id: Uuid,
    first: i64,
    after: Option<After>,
) -> Result<(Vec<CustomerOrder>, bool, Option<Timestamp>), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let mut rows: Vec<CustomerOrder> = sqlx::query_as(
        "select order_id, event_id, ticket_type_id, quantity, total_price_in_cents, status, region, created_at,
                paid_at, cancelled_at, cancel_reason, version
         from customer_orders
         where customer_id = $1 and ($2::timestamptz is null or (created_at, order_id) < ($2, $3))
         order by created_at desc, order_id desc
         limit $4",
    )
    .bind(customer_id)
    .bind(after.map(|a| a.created_at))
    .bind(after.map(|a| a.order_id))
    .bind(first + 1)
    .fetch_all(&mut *tx)
    .await?;
    let at = as_of(&mut tx).await?;
    tx.commit().await?;
    let more = rows.len() > usize::try_from(first).unwrap_or(usize::MAX);
    rows.truncate(usize::try_from(first).unwrap_or(usize::MAX));
    Ok((rows, more, at))
}

/// An order's timeline: whether the projector has seen it, its customer (when known), its
/// events in version order, and `asOf`.
pub struct Timeline {
    pub seen: bool,
    pub customer_id: Option<Uuid>,
    pub events: Vec<TimelineEvent>,
    pub as_of: Option<Timestamp>,
}

pub async fn timeline(pool: &PgPool, order_id: Uuid) -> Result<Timeline, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let order: Option<Option<Uuid>> = sqlx::query_scalar("select customer_id from customer_orders where order_id = $1")
        .bind(order_id)
        .fetch_optional(&mut *tx)
        .await?;
    let events: Vec<TimelineEvent> = sqlx::query_as(
        "select version, event_name, occurred_at, source, outbox_id, correlation_id, kafka_partition, kafka_offset
         from order_timeline where order_id = $1 order by version",
    )
    .bind(order_id)
    .fetch_all(&mut *tx)
    .await?;
    let at = as_of(&mut tx).await?;
    tx.commit().await?;
    Ok(Timeline { seen: order.is_some() || !events.is_empty(), customer_id: order.flatten(), events, as_of: at })
}

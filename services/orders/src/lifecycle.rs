//! What happens to an order after it is placed: paid, cancelled by its customer, or cancelled
//! when its reservation expires. Each change is one shard transaction holding the order's row
//! lock, the status change, the stock returned (for a cancel) and the outbox row, so one order
//! has exactly one outcome however its pay, cancel and expiry race: whichever locks the row
//! first decides, and the others see the new status.
//!
//! The expiry sweeper ([`sweep`]) runs in every orders process for every shard; a shard-wide
//! advisory lock taken in each of its transactions lets one process at a time sweep a shard,
//! and each batch is one partition's, behind that partition's ownership fence like any write.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use chrono::{DateTime, Utc};
use platform::auth::Authenticated;
use platform::code;
use platform::error::ApiError;
use platform::events::{CancelReason, OrderCancelled, OrderEvent, OrderPaid};
use platform::http::Path;
use serde::Serialize;
use shard_router::{Fenced, RegionName, Route, ShardName, live};
use sqlx::PgConnection;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::AppState;
use crate::shard::{Key, WorkError};

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/orders/{id}/pay", post(pay))
        .route("/api/v1/orders/{id}/cancel", post(cancel))
        .with_state(state)
}

/// An order's status, as stored and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    Pending,
    Paid,
    Cancelled,
}

impl OrderStatus {
    fn parse(s: &str) -> Result<Self, ApiError> {
        match s {
            "PENDING" => Ok(Self::Pending),
            "PAID" => Ok(Self::Paid),
            "CANCELLED" => Ok(Self::Cancelled),
            other => Err(ApiError::internal(anyhow::anyhow!("stored order status `{other}`"))),
        }
    }
}

/// The answer to pay: the order's id and status.
#[derive(Debug, Serialize)]
pub struct Paid {
    id: Uuid,
    status: OrderStatus,
}

/// The answer to cancel (the same for a repeated cancel).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cancelled {
    id: Uuid,
    status: OrderStatus,
    cancel_reason: CancelReason,
    cancelled_at: DateTime<Utc>,
    /// The event the order is for (the gateway drops its cached copy) and its region.
    event_id: Uuid,
    region: String,
    version: i32,
}

/// An order's row, locked for a change.
#[derive(Debug, sqlx::FromRow)]
struct Locked {
    id: Uuid,
    customer_id: Uuid,
    event_id: Uuid,
    ticket_type_id: Uuid,
    quantity: i32,
    status: String,
    partition: i16,
    version: i32,
    cancel_reason: Option<String>,
    cancelled_at: Option<DateTime<Utc>>,
    /// Whether its reservation has run out (by the database's clock, as the sweeper sees it).
    expired: bool,
}

/// The order `id` locked for update, with whether it is past `ttl`.
async fn lock(tx: &mut PgConnection, id: Uuid, ttl: Duration) -> Result<Option<Locked>, sqlx::Error> {
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

/// A fenced transaction on `route` holding order `id`'s row lock, the order's customer being
/// `caller`: where every change of an order starts.
async fn begin_locked(
    state: &AppState,
    route: &Route,
    id: Uuid,
    caller: Uuid,
    verb: &str,
) -> Result<(crate::shard::ShardTx, Locked), WorkError> {
    let mut stx = state.begin(route).await?;
    let order = lock(stx.conn(), id, state.reservation_ttl).await.map_err(|e| state.db_error(route, e))?;
    let order = order.ok_or_else(|| ApiError::NotFound(format!("no order with id {id}")))?;
    if order.customer_id != caller {
        return Err(ApiError::Forbidden(format!("only the order's customer may {verb} it")).into());
    }
    Ok((stx, order))
}

/// PENDING → CANCELLED for a locked order: status, stock back, outbox row, in the caller's
/// transaction. The status guard in the update makes a second call a no-op (`None`), so stock
/// is returned once whatever calls this.
async fn cancel_locked(
    tx: &mut PgConnection,
    order: &Locked,
    reason: CancelReason,
    region: &RegionName,
) -> Result<Option<Cancelled>, sqlx::Error> {
    let changed: Option<(i32, DateTime<Utc>)> = sqlx::query_as(
        "update orders set status = 'CANCELLED', cancel_reason = $2, cancelled_at = now(), version = version + 1
         where id = $1 and status = 'PENDING' returning version, cancelled_at",
    )
    .bind(order.id)
    .bind(reason.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    let Some((version, cancelled_at)) = changed else { return Ok(None) };
    sqlx::query("update ticket_types set remaining_quantity = remaining_quantity + $2 where id = $1")
        .bind(order.ticket_type_id)
        .bind(order.quantity)
        .execute(&mut *tx)
        .await?;
    let event = OrderEvent::OrderCancelled(OrderCancelled {
        order_id: order.id,
        reason,
        cancelled_at,
        region: region.to_string(),
        version,
    });
    crate::orders::write_outbox(tx, order.partition, &event).await?;
    Ok(Some(Cancelled {
        id: order.id,
        status: OrderStatus::Cancelled,
        cancel_reason: reason,
        cancelled_at,
        event_id: order.event_id,
        region: region.to_string(),
        version,
    }))
}

fn count(name: &'static str, route: &Route, n: u64) {
    let labels = [("region", route.region.to_string()), ("shard", route.shard.to_string())];
    metrics::counter!(name, &labels).increment(n);
}

/// PENDING → PAID with an OrderPaid outbox row in the same transaction. Paying a PAID order
/// answers the same again (safe to retry); a cancelled one, or one whose reservation ran out,
/// is a conflict naming why (an expired one is cancelled right there, as the sweeper would).
#[tracing::instrument(skip_all, fields(order_id = %raw))]
async fn pay(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    Path(raw): Path<String>,
) -> Result<axum::Json<Paid>, ApiError> {
    let id = state.parse_id(&raw, "order")?;
    state.write(Key::Id(id), "pay_order", |route| pay_once(&state, route, id, claims.sub)).await.map(axum::Json)
}

fn expired_error() -> ApiError {
    ApiError::Conflict {
        code: code::RESERVATION_EXPIRED,
        message: "the order's reservation expired before it was paid; its tickets were released".into(),
        details: None,
    }
}

async fn pay_once(state: &AppState, route: Route, id: Uuid, caller: Uuid) -> Result<Paid, WorkError> {
    let db = |e: sqlx::Error| state.db_error(&route, e);
    let (mut stx, order) = begin_locked(state, &route, id, caller, "pay").await?;
    let tx = stx.conn();
    match OrderStatus::parse(&order.status)? {
        OrderStatus::Paid => return Ok(Paid { id, status: OrderStatus::Paid }),
        OrderStatus::Cancelled if order.cancel_reason.as_deref() == Some(CancelReason::Expired.as_str()) => {
            return Err(expired_error().into());
        }
        OrderStatus::Cancelled => {
            return Err(ApiError::Conflict {
                code: code::ORDER_CANCELLED,
                message: "a cancelled order cannot be paid".into(),
                details: None,
            }
            .into());
        }
        OrderStatus::Pending if order.expired => {
            cancel_locked(tx, &order, CancelReason::Expired, &route.region).await.map_err(db)?;
            stx.tx.commit().await.map_err(db)?;
            count("orders_expired_total", &route, 1);
            return Err(expired_error().into());
        }
        OrderStatus::Pending => {}
    }
    let (version, paid_at): (i32, DateTime<Utc>) = sqlx::query_as(
        "update orders set status = 'PAID', paid_at = now(), version = version + 1 where id = $1
         returning version, paid_at",
    )
    .bind(id)
    .fetch_one(&mut *tx)
    .await
    .map_err(db)?;
    let event = OrderEvent::OrderPaid(OrderPaid { order_id: id, paid_at, region: route.region.to_string(), version });
    crate::orders::write_outbox(tx, order.partition, &event).await.map_err(db)?;
    stx.tx.commit().await.map_err(db)?;
    count("orders_paid_total", &route, 1);
    Ok(Paid { id, status: OrderStatus::Paid })
}

/// PENDING → CANCELLED (reason `CUSTOMER`, or `EXPIRED` when its reservation had already run
/// out), its customer only. Cancelling again answers the same; a PAID order is a conflict.
#[tracing::instrument(skip_all, fields(order_id = %raw))]
async fn cancel(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    Path(raw): Path<String>,
) -> Result<axum::Json<Cancelled>, ApiError> {
    let id = state.parse_id(&raw, "order")?;
    state.write(Key::Id(id), "cancel_order", |route| cancel_once(&state, route, id, claims.sub)).await.map(axum::Json)
}

async fn cancel_once(state: &AppState, route: Route, id: Uuid, caller: Uuid) -> Result<Cancelled, WorkError> {
    let db = |e: sqlx::Error| state.db_error(&route, e);
    let (mut stx, order) = begin_locked(state, &route, id, caller, "cancel").await?;
    let tx = stx.conn();
    match OrderStatus::parse(&order.status)? {
        OrderStatus::Paid => Err(ApiError::Conflict {
            code: code::ORDER_PAID,
            message: "a paid order cannot be cancelled".into(),
            details: None,
        }
        .into()),
        OrderStatus::Cancelled => {
            let stored = |what: &str| ApiError::internal(anyhow::anyhow!("cancelled order {id} without {what}"));
            Ok(Cancelled {
                id,
                status: OrderStatus::Cancelled,
                cancel_reason: order
                    .cancel_reason
                    .as_deref()
                    .and_then(CancelReason::parse)
                    .ok_or_else(|| stored("a reason"))?,
                cancelled_at: order.cancelled_at.ok_or_else(|| stored("a time"))?,
                event_id: order.event_id,
                region: route.region.to_string(),
                version: order.version,
            })
        }
        OrderStatus::Pending => {
            let reason = if order.expired { CancelReason::Expired } else { CancelReason::Customer };
            let done = cancel_locked(tx, &order, reason, &route.region).await.map_err(db)?;
            let done = done.ok_or_else(|| ApiError::internal(anyhow::anyhow!("locked pending order {id} changed")))?;
            stx.tx.commit().await.map_err(db)?;
            count(if order.expired { "orders_expired_total" } else { "orders_cancelled_total" }, &route, 1);
            Ok(done)
        }
    }
}

/// Advisory-lock class of the expiry sweeper (`'swep'`); the key is constant, one lock per
/// shard database.
const SWEEP_LOCK: (i32, i32) = (0x7377_6570, 0);
/// Partitions looked at per round of one shard.
const PARTITIONS_PER_ROUND: i64 = 64;

/// Cancels expired reservations on every shard, every `interval`, until `stop`.
pub async fn sweep(state: AppState, interval: Duration, batch: i64, stop: CancellationToken) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let shards: Vec<ShardName> = state.pools.all().map(|(name, _)| name.clone()).collect();
        for shard in shards {
            match sweep_shard(&state, &shard, batch).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(%shard, cancelled = n, "expired reservations cancelled"),
                Err(e) => tracing::warn!(%shard, error = %e, "expiry sweep failed; retried next round"),
            }
        }
    }
}

/// One round on `shard`: up to [`PARTITIONS_PER_ROUND`] partitions with expired reservations,
/// up to `batch` orders each. Only partitions the shard owns are looked at: rows a move is
/// copying in, or left behind after it, must not crowd out the shard's own (the fence would
/// refuse them anyway). Returns how many orders it cancelled.
pub async fn sweep_shard(state: &AppState, shard: &ShardName, batch: i64) -> Result<u64, sqlx::Error> {
    let Some(pool) = state.pools.get(shard) else { return Ok(0) };
    let ttl = state.reservation_ttl.as_secs_f64();
    let due: Vec<(String, i16)> = sqlx::query_as(
        "select o.region, o.partition from orders o
         join partition_owner po on po.region = o.region and po.partition = o.partition and po.state = 'OWNED'
         where o.status = 'PENDING' and o.created_at < now() - make_interval(secs => $1)
         group by o.region, o.partition order by min(o.created_at) limit $2",
    )
    .bind(ttl)
    .bind(PARTITIONS_PER_ROUND)
    .fetch_all(pool)
    .await?;
    let mut cancelled = 0;
    for (region, partition) in due {
        let (Some(region), Ok(partition)) =
            (state.shards.region_named(&region).map(|r| r.name.clone()), u16::try_from(partition))
        else {
            continue;
        };
        let route = Route { region, partition, shard: shard.clone() };
        let mut tx = pool.begin().await?;
        let mine: bool = sqlx::query_scalar("select pg_try_advisory_xact_lock($1, $2)")
            .bind(SWEEP_LOCK.0)
            .bind(SWEEP_LOCK.1)
            .fetch_one(&mut *tx)
            .await?;
        if !mine {
            // Another process is sweeping this shard now.
            return Ok(cancelled);
        }
        match live::fence_write(&mut tx, &route.region, route.partition).await {
            Ok(_) => {}
            // Not this shard's partition (any more, or not yet): its owner sweeps it.
            Err(e) if Fenced::from_error(&e).is_some() => continue,
            Err(e) => return Err(e),
        }
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "select id from orders
             where region = $1 and partition = $2 and status = 'PENDING'
               and created_at < now() - make_interval(secs => $3)
             order by created_at limit $4 for update skip locked",
        )
        .bind(route.region.as_str())
        .bind(live::partition_i16(route.partition))
        .bind(ttl)
        .bind(batch)
        .fetch_all(&mut *tx)
        .await?;
        let mut done = 0;
        for id in ids {
            if let Some(order) = lock(&mut tx, id, state.reservation_ttl).await?
                && cancel_locked(&mut tx, &order, CancelReason::Expired, &route.region).await?.is_some()
            {
                done += 1;
            }
        }
        tx.commit().await?;
        count("orders_expired_total", &route, done);
        cancelled += done;
    }
    Ok(cancelled)
}

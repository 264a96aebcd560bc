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

use platform::code;
use platform::contract::{CancelOrderPayload, CancelReason, OrderStatus, PayOrderPayload, Region};
use platform::error::ApiError;
use platform::events::{OrderCancelled, OrderEvent, OrderPaid};
use shard_router::{Fenced, RegionName, Route, ShardName, live};
use sqlx::PgConnection;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::AppState;
use crate::shard::{Key, ShardTx, WorkError, count};
use crate::store::orders::{self as store, Locked};

/// Partitions looked at per round of one shard.
pub const PARTITIONS_PER_ROUND: i64 = 64;

/// A fenced transaction on `route` holding order `id`'s row lock, the order's customer being
/// `caller`: where every change of an order starts.
async fn begin_locked(
    state: &AppState,
    route: &Route,
    id: Uuid,
    caller: Uuid,
    verb: &str,
) -> Result<(ShardTx, Locked), WorkError> {
    let mut stx = state.begin(route).await?;
    let order = store::lock(stx.conn(), id, state.reservation_ttl).await?;
    let order = order.ok_or_else(|| ApiError::NotFound(format!("no order with id {id}")))?;
    if order.customer_id != caller {
        return Err(ApiError::Forbidden(format!("only the order's customer may {verb} it")).into());
    }
    Ok((stx, order))
}

/// PENDING → CANCELLED for a locked order: status, stock back, outbox row, in the caller's
/// transaction. A second call is a no-op (`None`), so stock is returned once whatever calls
/// this.
async fn cancel_locked(
    tx: &mut PgConnection,
    order: &Locked,
    reason: CancelReason,
    region: &RegionName,
) -> Result<Option<CancelOrderPayload>, sqlx::Error> {
    let Some((version, cancelled_at)) = store::cancel(tx, order, reason).await? else { return Ok(None) };
    let event = OrderEvent::OrderCancelled(OrderCancelled {
        order_id: order.id,
        reason,
        cancelled_at,
        region: region.to_string(),
        version,
    });
    store::write_outbox(tx, order.partition, &event).await?;
    Ok(Some(CancelOrderPayload {
        id: order.id,
        status: OrderStatus::Cancelled,
        cancel_reason: reason,
        cancelled_at,
        event_id: order.event_id,
        region: Region(region.to_string()),
        version,
    }))
}

/// PENDING → PAID with an OrderPaid outbox row in the same transaction, by the order's customer.
/// Paying a PAID order answers the same again (safe to retry); a cancelled one, or one whose
/// reservation ran out, is a conflict naming why (an expired one is cancelled right there, as
/// the sweeper would).
pub async fn pay(state: &AppState, id: Uuid, caller: Uuid) -> Result<PayOrderPayload, ApiError> {
    state.write(Key::Id(id), "pay_order", |route| pay_once(state, route, id, caller)).await
}

fn expired_error() -> ApiError {
    ApiError::Conflict {
        code: code::RESERVATION_EXPIRED,
        message: "the order's reservation expired before it was paid; its tickets were released".into(),
        details: None,
    }
}

async fn pay_once(state: &AppState, route: Route, id: Uuid, caller: Uuid) -> Result<PayOrderPayload, WorkError> {
    let (mut stx, order) = begin_locked(state, &route, id, caller, "pay").await?;
    let paid = PayOrderPayload { id, status: OrderStatus::Paid };
    match order.status {
        OrderStatus::Paid => return Ok(paid),
        OrderStatus::Cancelled if order.cancel_reason == Some(CancelReason::Expired) => {
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
            cancel_locked(stx.conn(), &order, CancelReason::Expired, &route.region).await?;
            stx.tx.commit().await?;
            count("orders_expired_total", &route, 1);
            return Err(expired_error().into());
        }
        OrderStatus::Pending => {}
    }
    let (version, paid_at) = store::mark_paid(stx.conn(), id).await?;
    let event = OrderEvent::OrderPaid(OrderPaid { order_id: id, paid_at, region: route.region.to_string(), version });
    store::write_outbox(stx.conn(), order.partition, &event).await?;
    stx.tx.commit().await?;
    count("orders_paid_total", &route, 1);
    Ok(paid)
}

/// PENDING → CANCELLED (reason `CUSTOMER`, or `EXPIRED` when its reservation had already run
/// out), its customer only. Cancelling again answers the same; a PAID order is a conflict.
pub async fn cancel(state: &AppState, id: Uuid, caller: Uuid) -> Result<CancelOrderPayload, ApiError> {
    state.write(Key::Id(id), "cancel_order", |route| cancel_once(state, route, id, caller)).await
}

async fn cancel_once(state: &AppState, route: Route, id: Uuid, caller: Uuid) -> Result<CancelOrderPayload, WorkError> {
    let (mut stx, order) = begin_locked(state, &route, id, caller, "cancel").await?;
    match order.status {
        OrderStatus::Paid => Err(ApiError::Conflict {
            code: code::ORDER_PAID,
            message: "a paid order cannot be cancelled".into(),
            details: None,
        }
        .into()),
        OrderStatus::Cancelled => {
            let stored = |what: &str| ApiError::internal(anyhow::anyhow!("cancelled order {id} without {what}"));
            Ok(CancelOrderPayload {
                id,
                status: OrderStatus::Cancelled,
                cancel_reason: order.cancel_reason.ok_or_else(|| stored("a reason"))?,
                cancelled_at: order.cancelled_at.ok_or_else(|| stored("a time"))?,
                event_id: order.event_id,
                region: Region(route.region.to_string()),
                version: order.version,
            })
        }
        OrderStatus::Pending => {
            let reason = if order.expired { CancelReason::Expired } else { CancelReason::Customer };
            let done = cancel_locked(stx.conn(), &order, reason, &route.region).await?;
            let done = done.ok_or_else(|| ApiError::internal(anyhow::anyhow!("locked pending order {id} changed")))?;
            stx.tx.commit().await?;
            count(if order.expired { "orders_expired_total" } else { "orders_cancelled_total" }, &route, 1);
            Ok(done)
        }
    }
}

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
    let ttl = state.reservation_ttl;
    let mut cancelled = 0;
    for (region, partition) in store::due_partitions(pool, ttl, PARTITIONS_PER_ROUND).await? {
        let Some(region) = state.shards.region_named(&region).map(|r| r.name.clone()) else { continue };
        let route = Route { region, partition, shard: shard.clone() };
        let mut tx = pool.begin().await?;
        if !store::try_sweep_lock(&mut tx).await? {
            // Another process is sweeping this shard now.
            return Ok(cancelled);
        }
        match live::fence_write(&mut tx, &route.region, route.partition).await {
            Ok(_) => {}
            // Not this shard's partition (any more, or not yet): its owner sweeps it.
            Err(e) if Fenced::from_error(&e).is_some() => continue,
            Err(e) => return Err(e),
        }
        let mut done = 0;
        for id in store::expired(&mut tx, &route, ttl, batch).await? {
            if let Some(order) = store::lock(&mut tx, id, ttl).await?
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

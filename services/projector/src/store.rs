//! A batch of events applied to one generation's tables, inside the consumer runtime's
//! transaction (which also moves the checkpoints).
//!
//! [`apply_batch`], set-based (one statement per step for the whole batch):
//! 1. `order_timeline` rows, `on conflict (order_id, version) do nothing`: the timeline is
//!    the inbox. A record delivered again (rewound checkpoints, a relay that published twice,
//!    a rebuild's replay into a generation that already has it) finds its `(order_id,
//!    version)` row and has no effect; only the rows inserted now go on. Not keyed by
//!    `(source, outbox_id)`: a shard restored from a snapshot hands outbox ids out again.
//! 2. `customer_orders`, one upsert per order touched: facts fill in once (never change),
//!    status and version move only to a higher version. Never assuming order across
//!    partitions: an OrderPaid v2 before its OrderCreated v1 leaves a partial row (facts
//!    null, PAID v2) that v1 completes without regressing.
//! 3. `event_sales` moves by each touched order's contribution after the batch minus before
//!    it (read with the row locked): a batch costs its own orders, not every order of a hot
//!    ticket type, and the sum stays what a recount of `customer_orders` would give, under
//!    any delivery order (an order whose facts are not known yet counts for nothing). The
//!    inbox guarantees each change is applied once; the audit (`./dev audit`) recounts.
//! 4. The generation's bookkeeping (`applied`, `duplicates`, `last_event_at`).

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use platform::consumer::{Applied, Valid};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::event::{Incoming, Kind};
use crate::generations::Generation;

/// What a batch changed in one order's row, folded from its new events.
#[derive(Debug, Default)]
struct Patch {
    customer_id: Option<Uuid>,
    event_id: Option<Uuid>,
    ticket_type_id: Option<Uuid>,
    quantity: Option<i32>,
    total: Option<i64>,
    created_at: Option<DateTime<Utc>>,
    paid_at: Option<DateTime<Utc>>,
    cancelled_at: Option<DateTime<Utc>>,
    cancel_reason: Option<&'static str>,
    /// Status and version of the newest event in the batch.
    status: &'static str,
    version: i32,
    region: String,
}

impl Patch {
    fn add(&mut self, e: &Incoming) {
        match &e.kind {
            Kind::Created { customer_id, event_id, ticket_type_id, quantity, total_price_in_cents } => {
                self.customer_id = Some(*customer_id);
                self.event_id = Some(*event_id);
                self.ticket_type_id = Some(*ticket_type_id);
                self.quantity = Some(*quantity);
                self.total = Some(*total_price_in_cents);
                self.created_at = Some(e.occurred_at);
            }
            Kind::Paid => self.paid_at = Some(e.occurred_at),
            Kind::Cancelled { reason } => {
                self.cancelled_at = Some(e.occurred_at);
                self.cancel_reason = Some(reason.as_str());
            }
        }
        if e.version > self.version {
            self.version = e.version;
            self.status = e.kind.status();
        }
        if self.region.is_empty() {
            self.region.clone_from(&e.region);
        }
    }
}

/// An order's row as far as sales go.
#[derive(Debug, sqlx::FromRow)]
struct SalesRow {
    order_id: Uuid,
    event_id: Option<Uuid>,
    ticket_type_id: Option<Uuid>,
    region: String,
    status: String,
    quantity: Option<i32>,
    total_price_in_cents: Option<i64>,
}

impl SalesRow {
    /// What the order counts for in its ticket type's sales; nothing while its facts are
    /// unknown (only a later event of it has been seen).
    fn counts(&self) -> Option<((Uuid, Uuid), Sales)> {
        let (event, tt, q, total) = (self.event_id?, self.ticket_type_id?, self.quantity?, self.total_price_in_cents?);
        let (paid, cancelled) = (self.status == "PAID", self.status == "CANCELLED");
        let q = i64::from(q);
        let flag = |b: bool| i64::from(b);
        Some((
            (event, tt),
            Sales {
                orders: 1,
                orders_paid: flag(paid),
                orders_cancelled: flag(cancelled),
                tickets_sold: if cancelled { 0 } else { q },
                tickets_paid: if paid { q } else { 0 },
                tickets_cancelled: if cancelled { q } else { 0 },
                revenue_in_cents: if paid { total } else { 0 },
            },
        ))
    }
}

/// One ticket type's sales, or a change of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Sales {
    orders: i64,
    orders_paid: i64,
    orders_cancelled: i64,
    tickets_sold: i64,
    tickets_paid: i64,
    tickets_cancelled: i64,
    revenue_in_cents: i64,
}

impl Sales {
    fn add(&mut self, other: &Self, sign: i64) {
        self.orders += sign * other.orders;
        self.orders_paid += sign * other.orders_paid;
        self.orders_cancelled += sign * other.orders_cancelled;
        self.tickets_sold += sign * other.tickets_sold;
        self.tickets_paid += sign * other.tickets_paid;
        self.tickets_cancelled += sign * other.tickets_cancelled;
        self.revenue_in_cents += sign * other.revenue_in_cents;
    }
}

/// Applies `batch` to generation `g`. Errors are returned as they are: the runtime cannot
/// tell a database that is down from one that refuses, and must not skip the batch either way.
#[tracing::instrument(skip_all, fields(generation = %g, records = batch.len()))]
pub async fn apply_batch(
    conn: &mut PgConnection,
    g: Generation,
    batch: &[Valid<Incoming>],
) -> Result<Applied<u64>, sqlx::Error> {
    let s = g.schema();
    // An order's version twice in one batch: the first occurrence is the one applied, as one
    // by one.
    let mut versions = HashSet::new();
    let firsts: Vec<&Valid<Incoming>> =
        batch.iter().filter(|v| versions.insert((v.value.order_id, v.value.version))).collect();

    let claimed: HashSet<(Uuid, i32)> = sqlx::query_as::<_, (Uuid, i32)>(&format!(
        "insert into {s}.order_timeline
           (order_id, version, event_name, occurred_at, source, outbox_id, correlation_id, kafka_partition, kafka_offset)
         select * from unnest($1::uuid[], $2::int[], $3::text[], $4::timestamptz[], $5::text[], $6::text[], $7::text[],
                              $8::int[], $9::bigint[])
         on conflict (order_id, version) do nothing
         returning order_id, version"
    ))
    .bind(firsts.iter().map(|v| v.value.order_id).collect::<Vec<_>>())
    .bind(firsts.iter().map(|v| v.value.version).collect::<Vec<_>>())
    .bind(firsts.iter().map(|v| v.value.kind.event_name()).collect::<Vec<_>>())
    .bind(firsts.iter().map(|v| v.value.occurred_at).collect::<Vec<_>>())
    .bind(firsts.iter().map(|v| v.value.source.as_str()).collect::<Vec<_>>())
    .bind(firsts.iter().map(|v| v.value.outbox_id.as_str()).collect::<Vec<_>>())
    .bind(firsts.iter().map(|v| v.value.correlation_id.as_deref()).collect::<Vec<_>>())
    .bind(firsts.iter().map(|v| v.partition).collect::<Vec<_>>())
    .bind(firsts.iter().map(|v| v.offset).collect::<Vec<_>>())
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .collect();
    let new: Vec<&Incoming> =
        firsts.iter().map(|v| &v.value).filter(|e| claimed.contains(&(e.order_id, e.version))).collect();

    if !new.is_empty() {
        let mut patches: BTreeMap<Uuid, Patch> = BTreeMap::new();
        for e in &new {
            patches.entry(e.order_id).or_default().add(e);
        }
        // Each touched order's row before this batch, locked: what it counted for until now.
        let before: BTreeMap<Uuid, SalesRow> = sqlx::query_as::<_, SalesRow>(&format!(
            "select order_id, event_id, ticket_type_id, region, status, quantity, total_price_in_cents
             from {s}.customer_orders where order_id = any($1) for update"
        ))
        .bind(patches.keys().copied().collect::<Vec<_>>())
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|r| (r.order_id, r))
        .collect();
        let after: Vec<SalesRow> = sqlx::query_as::<_, SalesRow>(&format!(
            "insert into {s}.customer_orders as c
               (order_id, customer_id, event_id, ticket_type_id, quantity, total_price_in_cents, status, region,
                created_at, paid_at, cancelled_at, cancel_reason, version)
             select * from unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::int[], $6::bigint[], $7::text[],
                                  $8::text[], $9::timestamptz[], $10::timestamptz[], $11::timestamptz[], $12::text[],
                                  $13::int[])
             on conflict (order_id) do update set
               customer_id = coalesce(c.customer_id, excluded.customer_id),
               event_id = coalesce(c.event_id, excluded.event_id),
               ticket_type_id = coalesce(c.ticket_type_id, excluded.ticket_type_id),
               quantity = coalesce(c.quantity, excluded.quantity),
               total_price_in_cents = coalesce(c.total_price_in_cents, excluded.total_price_in_cents),
               created_at = coalesce(c.created_at, excluded.created_at),
               paid_at = coalesce(c.paid_at, excluded.paid_at),
               cancelled_at = coalesce(c.cancelled_at, excluded.cancelled_at),
               cancel_reason = coalesce(c.cancel_reason, excluded.cancel_reason),
               status = case when excluded.version > c.version then excluded.status else c.status end,
               version = greatest(c.version, excluded.version),
               updated_at = now()
             returning order_id, event_id, ticket_type_id, region, status, quantity, total_price_in_cents"
        ))
        .bind(patches.keys().copied().collect::<Vec<_>>())
        .bind(patches.values().map(|p| p.customer_id).collect::<Vec<_>>())
        .bind(patches.values().map(|p| p.event_id).collect::<Vec<_>>())
        .bind(patches.values().map(|p| p.ticket_type_id).collect::<Vec<_>>())
        .bind(patches.values().map(|p| p.quantity).collect::<Vec<_>>())
        .bind(patches.values().map(|p| p.total).collect::<Vec<_>>())
        .bind(patches.values().map(|p| p.status).collect::<Vec<_>>())
        .bind(patches.values().map(|p| p.region.as_str()).collect::<Vec<_>>())
        .bind(patches.values().map(|p| p.created_at).collect::<Vec<_>>())
        .bind(patches.values().map(|p| p.paid_at).collect::<Vec<_>>())
        .bind(patches.values().map(|p| p.cancelled_at).collect::<Vec<_>>())
        .bind(patches.values().map(|p| p.cancel_reason).collect::<Vec<_>>())
        .bind(patches.values().map(|p| p.version).collect::<Vec<_>>())
        .fetch_all(&mut *conn)
        .await?;
        // Sales move by what each order counts for now minus what it counted for before, so a
        // batch costs its own orders, not every order of a hot ticket type.
        let mut deltas: BTreeMap<(Uuid, Uuid), (String, Sales)> = BTreeMap::new();
        for row in &after {
            for (sign, r) in [(-1, before.get(&row.order_id)), (1, Some(row))] {
                if let Some((key, counts)) = r.and_then(SalesRow::counts) {
                    let entry = deltas.entry(key).or_insert_with(|| (row.region.clone(), Sales::default()));
                    entry.1.add(&counts, sign);
                }
            }
        }
        deltas.retain(|_, (_, d)| *d != Sales::default());
        if !deltas.is_empty() {
            let column = |f: fn(&Sales) -> i64| deltas.values().map(|(_, d)| f(d)).collect::<Vec<i64>>();
            sqlx::query(&format!(
                "insert into {s}.event_sales as e
                   (event_id, ticket_type_id, region, orders, orders_paid, orders_cancelled, tickets_sold, tickets_paid,
                    tickets_cancelled, revenue_in_cents)
                 select * from unnest($1::uuid[], $2::uuid[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[],
                                      $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[])
                 on conflict (event_id, ticket_type_id) do update set
                   orders = e.orders + excluded.orders, orders_paid = e.orders_paid + excluded.orders_paid,
                   orders_cancelled = e.orders_cancelled + excluded.orders_cancelled,
                   tickets_sold = e.tickets_sold + excluded.tickets_sold,
                   tickets_paid = e.tickets_paid + excluded.tickets_paid,
                   tickets_cancelled = e.tickets_cancelled + excluded.tickets_cancelled,
                   revenue_in_cents = e.revenue_in_cents + excluded.revenue_in_cents, updated_at = now()"
            ))
            .bind(deltas.keys().map(|k| k.0).collect::<Vec<_>>())
            .bind(deltas.keys().map(|k| k.1).collect::<Vec<_>>())
            .bind(deltas.values().map(|(r, _)| r.as_str()).collect::<Vec<_>>())
            .bind(column(|d| d.orders))
            .bind(column(|d| d.orders_paid))
            .bind(column(|d| d.orders_cancelled))
            .bind(column(|d| d.tickets_sold))
            .bind(column(|d| d.tickets_paid))
            .bind(column(|d| d.tickets_cancelled))
            .bind(column(|d| d.revenue_in_cents))
            .execute(&mut *conn)
            .await?;
        }
    }

    let applied = i64::try_from(new.len()).unwrap_or(i64::MAX);
    let duplicates = i64::try_from(batch.len() - new.len()).unwrap_or(i64::MAX);
    let newest = new.iter().map(|e| e.occurred_at).max();
    sqlx::query(
        "update projection_generation set
           applied = applied + $2, duplicates = duplicates + $3,
           last_event_at = greatest(last_event_at, $4),
           last_applied_at = case when $2 > 0 then now() else last_applied_at end
         where generation = $1",
    )
    .bind(g.get())
    .bind(applied)
    .bind(duplicates)
    .bind(newest)
    .execute(&mut *conn)
    .await?;
    Ok(Applied {
        applied: u64::try_from(applied).unwrap_or(0),
        duplicates: u64::try_from(duplicates).unwrap_or(0),
        detail: u64::try_from(applied).unwrap_or(0),
    })
}

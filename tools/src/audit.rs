//! The read-model audit: the projector's tables against the shards' own, after a load run.
//!
//! What the shards hold is the truth; the read models must say the same once the projector
//! has caught up. Checked, for every ticket type on every shard (rows of partitions the shard
//! serves only, so a partition's leftovers after a move are not counted twice):
//! - the stock invariant: `remaining = total − tickets of orders not cancelled`, never negative;
//! - `event_sales` equals the shard's region and count of orders, paid and cancelled orders, tickets sold,
//!   paid and cancelled, and the paid revenue;
//!
//! and for every order:
//! - `customer_orders` has it with the shard's status and version;
//! - `order_timeline` lists exactly versions 1..=version, OrderCreated first and the event of
//!   its final status last.
//!
//! The projection is eventually consistent, so [`run`] compares again until the two agree or
//! `wait` has passed, and reports the last disagreement.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use platform::contract::read_models::TicketTypeSales;
use shard_router::ShardMap;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

/// One ticket type on its shard: its stock, and its sales counted from the shard's orders as
/// the projector's `event_sales` counts them.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Stock {
    total_quantity: i32,
    remaining_quantity: i32,
    #[sqlx(flatten)]
    sales: TicketTypeSales,
}

/// What `event_sales` says of a ticket type without a row: nobody ordered it.
fn unsold(truth: &TicketTypeSales) -> TicketTypeSales {
    TicketTypeSales {
        orders: 0,
        orders_paid: 0,
        orders_cancelled: 0,
        tickets_sold: 0,
        tickets_paid: 0,
        tickets_cancelled: 0,
        revenue_in_cents: 0,
        ..truth.clone()
    }
}

/// What the audit looked at, and what it found wrong.
#[derive(Debug, Default)]
pub struct Report {
    pub shards: usize,
    pub ticket_types: usize,
    pub orders: usize,
    pub timeline_events: usize,
    pub violations: Vec<String>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

const SHARD_STOCK: &str = "select tt.id as ticket_type_id, e.region, tt.total_quantity, tt.remaining_quantity,
        count(o.id) as orders,
        count(o.id) filter (where o.status = 'PAID') as orders_paid,
        count(o.id) filter (where o.status = 'CANCELLED') as orders_cancelled,
        coalesce(sum(o.quantity) filter (where o.status <> 'CANCELLED'), 0)::bigint as tickets_sold,
        coalesce(sum(o.quantity) filter (where o.status = 'PAID'), 0)::bigint as tickets_paid,
        coalesce(sum(o.quantity) filter (where o.status = 'CANCELLED'), 0)::bigint as tickets_cancelled,
        coalesce(sum(o.total_price_in_cents) filter (where o.status = 'PAID'), 0)::bigint as revenue_in_cents
     from ticket_types tt join events e on e.id = tt.event_id left join orders o on o.ticket_type_id = tt.id
     where partition_readable(e.region, tt.partition)
     group by tt.id, e.region";

const READ_SALES: &str =
    "select ticket_type_id, region, orders, orders_paid, orders_cancelled, tickets_sold, tickets_paid,
        tickets_cancelled, revenue_in_cents from event_sales";

/// One comparison of the shards in `map` with the read models at `read_models`.
pub async fn audit_once(shards: &[(String, PgPool)], read_models: &PgPool) -> Result<Report, sqlx::Error> {
    let mut report = Report { shards: shards.len(), ..Report::default() };
    let mut truth: BTreeMap<Uuid, TicketTypeSales> = BTreeMap::new();
    let mut orders: BTreeMap<Uuid, (String, i32)> = BTreeMap::new();
    for (name, pool) in shards {
        let stock: Vec<Stock> = sqlx::query_as(SHARD_STOCK).fetch_all(pool).await?;
        for s in stock {
            let remaining = s.total_quantity - i32::try_from(s.sales.tickets_sold).unwrap_or(i32::MAX);
            if s.remaining_quantity != remaining || s.remaining_quantity < 0 {
                report.violations.push(format!(
                    "{name}: ticket type {}: remaining {} but total {} − sold {} = {remaining}",
                    s.sales.ticket_type_id, s.remaining_quantity, s.total_quantity, s.sales.tickets_sold
                ));
            }
            truth.insert(s.sales.ticket_type_id.0, s.sales);
        }
        let rows: Vec<(Uuid, String, i32)> =
            sqlx::query_as("select id, status, version from orders where partition_readable(region, partition)")
                .fetch_all(pool)
                .await?;
        for (id, status, version) in rows {
            orders.insert(id, (status, version));
        }
    }
    report.ticket_types = truth.len();
    report.orders = orders.len();

    let projected: Vec<TicketTypeSales> = sqlx::query_as(READ_SALES).fetch_all(read_models).await?;
    let seen: BTreeMap<Uuid, TicketTypeSales> = projected.into_iter().map(|p| (p.ticket_type_id.0, p)).collect();
    for (tt, want) in &truth {
        let got = seen.get(tt).cloned().unwrap_or_else(|| unsold(want));
        if &got != want {
            report.violations.push(format!("event_sales of ticket type {tt}: {got:?}, the shard says {want:?}"));
        }
    }
    for tt in seen.keys().filter(|tt| !truth.contains_key(*tt)) {
        report.violations.push(format!("event_sales has ticket type {tt}, which no shard holds"));
    }

    let projected: BTreeMap<Uuid, (String, i32)> =
        sqlx::query_as::<_, (Uuid, String, i32)>("select order_id, status, version from customer_orders")
            .fetch_all(read_models)
            .await?
            .into_iter()
            .map(|(id, s, v)| (id, (s, v)))
            .collect();
    let timelines: BTreeMap<Uuid, (Vec<i32>, Vec<String>)> = sqlx::query_as::<_, (Uuid, Vec<i32>, Vec<String>)>(
        "select order_id, array_agg(version order by version), array_agg(event_name order by version)
         from order_timeline group by order_id",
    )
    .fetch_all(read_models)
    .await?
    .into_iter()
    .map(|(id, v, n)| (id, (v, n)))
    .collect();
    report.timeline_events = timelines.values().map(|(v, _)| v.len()).sum();
    for (id, (status, version)) in &orders {
        match projected.get(id) {
            Some((s, v)) if s == status && v == version => {}
            Some((s, v)) => report
                .violations
                .push(format!("customer_orders: order {id} is {s} v{v}, the shard says {status} v{version}")),
            None => report.violations.push(format!("customer_orders: order {id} ({status} v{version}) is missing")),
        }
        let expected: Vec<i32> = (1..=*version).collect();
        let last = match status.as_str() {
            "PAID" => "OrderPaid",
            "CANCELLED" => "OrderCancelled",
            _ => "OrderCreated",
        };
        match timelines.get(id) {
            Some((versions, names))
                if *versions == expected
                    && names.first().map(String::as_str) == Some("OrderCreated")
                    && names.last().map(String::as_str) == Some(last) => {}
            Some((versions, names)) => report.violations.push(format!(
                "order_timeline: order {id} lists versions {versions:?} {names:?}; want 1..={version} ending in {last}"
            )),
            None => report.violations.push(format!("order_timeline: order {id} has no events")),
        }
    }
    for id in projected.keys().filter(|id| !orders.contains_key(*id)) {
        report.violations.push(format!("customer_orders has order {id}, which no shard serves"));
    }
    Ok(report)
}

/// Connects to every shard of `map` and to `read_models_url`, then audits until the two
/// agree or `wait` has passed; returns the last report.
pub async fn run(map: &ShardMap, read_models_url: &str, wait: Duration) -> anyhow::Result<Report> {
    let connect =
        |url: &str| PgPoolOptions::new().max_connections(2).acquire_timeout(Duration::from_secs(10)).connect_lazy(url);
    let shards = map
        .shards()
        .map(|s| Ok((s.name.to_string(), connect(s.url.expose())?)))
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let read_models = connect(read_models_url)?;
    let deadline = Instant::now() + wait;
    loop {
        let report = audit_once(&shards, &read_models).await?;
        if report.passed() || Instant::now() >= deadline {
            return Ok(report);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

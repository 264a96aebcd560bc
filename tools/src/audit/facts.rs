//! What the audit reads: every shard's rows, the live placement, the notifications, the DLQ
//! and the read models, each as plain data for the checks in [`super::checks`].
//!
//! Reading and judging are apart so the rules are unit-tested on hand-made facts, and a
//! check never sees a half-read source: a source that cannot be read fails the whole audit
//! (exit 2), it does not report violations.

use std::collections::BTreeMap;
use std::time::Duration;

use platform::contract::read_models::TicketTypeSales;
use platform::events::headers;
use sqlx::PgPool;
use uuid::Uuid;

/// One row of a shard's `partition_owner`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Owner {
    pub region: String,
    pub partition: i16,
    pub state: String,
    pub moved_to: Option<String>,
}

/// One ticket type on its shard: its stock, whether its partition may be read there, and its
/// sales counted from the shard's orders as the projector's `event_sales` counts them.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Stock {
    pub total_quantity: i32,
    pub remaining_quantity: i32,
    pub readable: bool,
    #[sqlx(flatten)]
    pub sales: TicketTypeSales,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Order {
    pub id: Uuid,
    pub region: String,
    pub partition: i16,
    pub status: String,
    pub version: i32,
    pub readable: bool,
}

/// One outbox row; `version` is the event's, from its payload.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Outbox {
    pub id: i64,
    pub aggregate_id: Uuid,
    pub event_type: String,
    pub status: String,
    pub version: Option<i32>,
}

/// How many rows of one table a shard holds for one partition.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PartitionRows {
    pub region: String,
    pub partition: i16,
    pub table_name: String,
    pub rows: i64,
}

/// Everything the audit reads from one shard.
#[derive(Debug, Clone, Default)]
pub struct Shard {
    pub name: String,
    pub owners: Vec<Owner>,
    pub stock: Vec<Stock>,
    pub orders: Vec<Order>,
    pub outbox: Vec<Outbox>,
    pub rows: Vec<PartitionRows>,
}

/// A partition move that has not finished (`partition_move`, phase not DONE or ABORTED): its
/// partitions may have rows on both shards.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Move {
    pub id: i64,
    pub region: String,
    pub source: String,
    pub dest: String,
    pub partitions: Vec<i16>,
    pub phase: String,
}

impl Move {
    pub fn covers(&self, region: &str, partition: i16) -> bool {
        self.region == region && self.partitions.contains(&partition)
    }
}

/// A DLQ record, by who dead-lettered it and the outbox row it carries.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeadLetter {
    /// `dlq-source`: `orders-relay`, `notifications` or `projector`.
    pub by: String,
    pub shard: String,
    pub outbox_id: String,
}

/// The projector's read models.
#[derive(Debug, Clone, Default)]
pub struct ReadModels {
    pub sales: Vec<TicketTypeSales>,
    /// `customer_orders`: order → (status, version).
    pub orders: BTreeMap<Uuid, (String, i32)>,
    /// `order_timeline`: order → (versions, event names), in version order.
    pub timelines: BTreeMap<Uuid, (Vec<i32>, Vec<String>)>,
}

/// Everything one audit pass read.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub shards: Vec<Shard>,
    /// The live map: (region, partition) → shard.
    pub placement: BTreeMap<(String, i16), String>,
    pub moves: Vec<Move>,
    /// `notifications`: (source shard, outbox id) → how many.
    pub notifications: BTreeMap<(String, String), i64>,
    pub dead_letters: Vec<DeadLetter>,
    pub read_models: ReadModels,
}

/// Where the facts come from.
#[derive(Debug, Clone)]
pub struct Sources {
    /// Every shard of `shards.toml`, by name.
    pub shards: Vec<(String, PgPool)>,
    pub placement: PgPool,
    pub read_models: PgPool,
    pub notifications: PgPool,
    /// The broker and the DLQ topic.
    pub kafka_bootstrap: String,
    pub dlq_topic: String,
}

/// Which sources a pass reads: only those its checks need.
#[derive(Debug, Clone, Copy, Default)]
pub struct Needs {
    pub placement: bool,
    pub notifications: bool,
    pub dead_letters: bool,
    pub read_models: bool,
}

const STOCK: &str = "select tt.id as ticket_type_id, e.region, tt.total_quantity, tt.remaining_quantity,
        partition_readable(e.region, tt.partition) as readable,
        count(o.id) as orders,
        count(o.id) filter (where o.status = 'PAID') as orders_paid,
        count(o.id) filter (where o.status = 'CANCELLED') as orders_cancelled,
        coalesce(sum(o.quantity) filter (where o.status <> 'CANCELLED'), 0)::bigint as tickets_sold,
        coalesce(sum(o.quantity) filter (where o.status = 'PAID'), 0)::bigint as tickets_paid,
        coalesce(sum(o.quantity) filter (where o.status = 'CANCELLED'), 0)::bigint as tickets_cancelled,
        coalesce(sum(o.total_price_in_cents) filter (where o.status = 'PAID'), 0)::bigint as revenue_in_cents
     from ticket_types tt join events e on e.id = tt.event_id left join orders o on o.ticket_type_id = tt.id
     group by tt.id, e.region";

const ORDERS: &str =
    "select id, region, partition, status, version, partition_readable(region, partition) as readable from orders";

const OUTBOX: &str =
    "select id, aggregate_id, event_type, status, (payload->>'version')::integer as version from outbox";

const ROWS: &str = "select region, partition, 'orders' as table_name, count(*) as rows from orders group by 1, 2
    union all select e.region, t.partition, 'ticket_types', count(*) from ticket_types t join events e on e.id = t.event_id group by 1, 2
    union all select region, partition, 'events', count(*) from events group by 1, 2";

async fn shard(name: &str, pool: &PgPool) -> Result<Shard, sqlx::Error> {
    Ok(Shard {
        name: name.to_owned(),
        owners: sqlx::query_as("select region, partition, state, moved_to from partition_owner")
            .fetch_all(pool)
            .await?,
        stock: sqlx::query_as(STOCK).fetch_all(pool).await?,
        orders: sqlx::query_as(ORDERS).fetch_all(pool).await?,
        outbox: sqlx::query_as(OUTBOX).fetch_all(pool).await?,
        rows: sqlx::query_as(ROWS).fetch_all(pool).await?,
    })
}

async fn read_models(pool: &PgPool) -> Result<ReadModels, sqlx::Error> {
    let sales = sqlx::query_as(
        "select ticket_type_id, region, orders, orders_paid, orders_cancelled, tickets_sold, tickets_paid,
            tickets_cancelled, revenue_in_cents from event_sales",
    )
    .fetch_all(pool)
    .await?;
    let orders = sqlx::query_as::<_, (Uuid, String, i32)>("select order_id, status, version from customer_orders")
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(|(id, s, v)| (id, (s, v)))
        .collect();
    let timelines = sqlx::query_as::<_, (Uuid, Vec<i32>, Vec<String>)>(
        "select order_id, array_agg(version order by version), array_agg(event_name order by version)
         from order_timeline group by order_id",
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|(id, v, n)| (id, (v, n)))
    .collect();
    Ok(ReadModels { sales, orders, timelines })
}

/// The DLQ's records that carry an outbox row (records without the headers are not ours).
async fn dead_letters(bootstrap: &str, topic: &str) -> anyhow::Result<Vec<DeadLetter>> {
    let records = platform::kafka::read_topic(bootstrap, topic, Duration::from_secs(30)).await?;
    Ok(records
        .iter()
        .filter(|r| !r.header(headers::OUTBOX_ID).is_empty())
        .map(|r| DeadLetter {
            by: r.header(headers::DLQ_SOURCE).to_owned(),
            shard: r.header(headers::SHARD).to_owned(),
            outbox_id: r.header(headers::OUTBOX_ID).to_owned(),
        })
        .collect())
}

impl Sources {
    /// One pass over the sources `needs` names (the shards always).
    pub async fn read(&self, needs: Needs) -> anyhow::Result<Facts> {
        let mut facts = Facts::default();
        for (name, pool) in &self.shards {
            facts.shards.push(shard(name, pool).await.map_err(|e| anyhow::anyhow!("reading shard {name}: {e}"))?);
        }
        if needs.placement {
            let rows: Vec<(String, i16, String)> =
                sqlx::query_as("select region, partition, shard from partition_placement")
                    .fetch_all(&self.placement)
                    .await
                    .map_err(|e| anyhow::anyhow!("reading the live placement: {e}"))?;
            facts.placement = rows.into_iter().map(|(r, p, s)| ((r, p), s)).collect();
            facts.moves = sqlx::query_as(
                "select id, region, source, dest, partitions, phase from partition_move
                 where phase not in ('DONE', 'ABORTED')",
            )
            .fetch_all(&self.placement)
            .await
            .map_err(|e| anyhow::anyhow!("reading the partition moves: {e}"))?;
        }
        if needs.notifications {
            let rows: Vec<(String, String, i64)> =
                sqlx::query_as("select source, outbox_id, count(*) from notifications group by 1, 2")
                    .fetch_all(&self.notifications)
                    .await
                    .map_err(|e| anyhow::anyhow!("reading notifications: {e}"))?;
            facts.notifications = rows.into_iter().map(|(s, o, n)| ((s, o), n)).collect();
        }
        if needs.dead_letters {
            facts.dead_letters = dead_letters(&self.kafka_bootstrap, &self.dlq_topic)
                .await
                .map_err(|e| anyhow::anyhow!("reading the DLQ {}: {e}", self.dlq_topic))?;
        }
        if needs.read_models {
            facts.read_models =
                read_models(&self.read_models).await.map_err(|e| anyhow::anyhow!("reading the read models: {e}"))?;
        }
        Ok(facts)
    }
}

impl Sources {
    /// Lazy pools (two connections each) on every shard of `map` and the given databases;
    /// nothing connects before the first read.
    pub fn connect_lazy(
        map: &shard_router::ShardMap,
        placement: &str,
        read_models: &str,
        notifications: &str,
        kafka_bootstrap: &str,
        dlq_topic: &str,
    ) -> Result<Self, sqlx::Error> {
        let connect = |url: &str| {
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(2)
                .acquire_timeout(Duration::from_secs(10))
                .connect_lazy(url)
        };
        Ok(Self {
            shards: map
                .shards()
                .map(|s| Ok::<_, sqlx::Error>((s.name.to_string(), connect(s.url.expose())?)))
                .collect::<Result<_, _>>()?,
            placement: connect(placement)?,
            read_models: connect(read_models)?,
            notifications: connect(notifications)?,
            kafka_bootstrap: kafka_bootstrap.to_owned(),
            dlq_topic: dlq_topic.to_owned(),
        })
    }
}

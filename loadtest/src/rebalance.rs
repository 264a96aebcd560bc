//! `rebalance`: orders, payments and idempotent retries through the gateway while
//! `orders-rebalance apply` moves partitions, then the audit.
//!
//! The stack must run on a `shards.toml` that asks for a move (a shard added or removed; the
//! `docs/rebalancing.md` walks through it). Requests are labelled by whether their event's
//! partition is one that moves (`moving`) or not (`staying`), and by the phase they were sent
//! in (`before`, `during`, `after` the apply), so the report compares p99 during the switch with
//! p99 before, and the other partitions with themselves. The apply's output lines are the
//! chart's phase marks; its journal gives the write pause per move. The audit afterwards reads
//! the shards, the live map and the notifications database directly.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use serde_json::{Value, json};
use shard_router::{LiveStore, Partition, PartitionMap, ShardMap};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::client::{Gql, ops};
use crate::mix::random;
use crate::setup::EventFixture;
use crate::stats::{Key, Outcome};
use crate::workload::Workload;

const PHASES: [&str; 3] = ["before", "during", "after"];

/// Where the rebalance scenario finds what it drives and audits.
#[derive(Debug, Clone)]
pub struct Options {
    pub placement_url: String,
    pub notifications_url: String,
    /// Seconds into the measured window when the apply starts.
    pub after: Duration,
    pub batch: usize,
    /// The `orders-rebalance` binary.
    pub bin: PathBuf,
    pub shards_file: PathBuf,
}

/// The partitions of each region that the plan moves.
pub async fn moving_partitions(map: &ShardMap, placement_url: &str) -> anyhow::Result<BTreeSet<(String, Partition)>> {
    let store = LiveStore::connect_lazy(placement_url, Duration::from_secs(5))?;
    let live = store.load(map).await.with_context(|| format!("reading the live placement at {placement_url}"))?;
    let desired = PartitionMap::desired(map);
    Ok(live.moves_to(&desired).into_iter().map(|m| (m.region.to_string(), m.partition)).collect())
}

/// The region and partition an id carries.
fn partition_of(map: &ShardMap, id: &str) -> Option<(String, Partition)> {
    let (_, placement) = shard_router::ids::parse(id).ok()?;
    let region = map.regions().find(|r| r.tag == placement.region_tag)?;
    Some((region.name.to_string(), placement.partition))
}

#[derive(Debug)]
struct Target {
    /// The `createOrder` variables, built once.
    variables: Value,
    label: Arc<str>,
    ticket_type: String,
}

/// An order the gateway acknowledged.
#[derive(Debug, Clone, Serialize)]
pub struct Acked {
    pub id: String,
    pub ticket_type: String,
    #[serde(skip)]
    key: String,
    #[serde(skip)]
    target: usize,
    #[serde(skip)]
    customer: usize,
    pub paid: bool,
}

/// The load: each request is a new order (fresh key), a replay of an acknowledged order's key
/// (which must answer the same order), or the payment of an acknowledged order.
#[derive(Debug)]
pub struct Load {
    gql: Gql,
    targets: Vec<Target>,
    customers: Vec<String>,
    seed: u64,
    pub phase: AtomicU8,
    acked: Mutex<Vec<Acked>>,
    to_pay: Mutex<VecDeque<usize>>,
}

impl Load {
    pub fn new(
        gql: Gql,
        map: &ShardMap,
        events: &[EventFixture],
        customers: Vec<String>,
        moving: &BTreeSet<(String, Partition)>,
        seed: u64,
    ) -> Self {
        let mut targets = Vec::new();
        for e in events {
            let label: Arc<str> = match partition_of(map, &e.id) {
                Some(p) if moving.contains(&p) => "moving".into(),
                _ => "staying".into(),
            };
            for tt in &e.ticket_types {
                targets.push(Target {
                    variables: json!({"input": {"region": e.region.as_ref(), "eventId": e.id, "ticketTypeId": tt, "quantity": 1}}),
                    label: label.clone(),
                    ticket_type: tt.clone(),
                });
            }
        }
        Self {
            gql,
            targets,
            customers,
            seed,
            phase: AtomicU8::new(0),
            acked: Mutex::new(Vec::new()),
            to_pay: Mutex::new(VecDeque::new()),
        }
    }

    pub fn acked(&self) -> Vec<Acked> {
        self.acked.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn key(&self, op: &'static str, label: &Arc<str>) -> Key {
        Key { op, region: PHASES[usize::from(self.phase.load(Ordering::Relaxed).min(2))].into(), shard: label.clone() }
    }

    async fn create(&self, target: usize, customer: usize, key: &str) -> Result<String, String> {
        let data = self
            .gql
            .send(ops::CREATE_ORDER, self.targets[target].variables.clone(), Some(&self.customers[customer]), Some(key))
            .await
            .map_err(|f| f.code)?;
        data.pointer("/createOrder/orderId")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| "NO_ORDER_ID".into())
    }
}

impl Workload for Load {
    async fn one(&self, seq: u64) -> (Key, Outcome) {
        let kind = random(self.seed ^ 11, seq) % 100;
        // A replay of an acknowledged order's key: must answer that very order.
        if kind < 15 {
            let pick = {
                let acked = self.acked.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                (!acked.is_empty()).then(|| acked[(random(self.seed ^ 12, seq) % acked.len() as u64) as usize].clone())
            };
            if let Some(a) = pick {
                let label = self.targets[a.target].label.clone();
                let outcome = match self.create(a.target, a.customer, &a.key).await {
                    Ok(id) if id == a.id => Ok(()),
                    Ok(_) => Err("REPLAY_MADE_ANOTHER_ORDER".to_owned()),
                    Err(code) => Err(code),
                };
                return (self.key("createOrder (replay)", &label), outcome);
            }
        }
        if kind < 45 {
            let next = self.to_pay.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop_front();
            if let Some(i) = next {
                let (id, customer, target) = {
                    let acked = self.acked.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    (acked[i].id.clone(), acked[i].customer, acked[i].target)
                };
                let label = self.targets[target].label.clone();
                let outcome =
                    self.gql.send(ops::PAY_ORDER, json!({"id": id}), Some(&self.customers[customer]), None).await;
                if outcome.is_ok() {
                    self.acked.lock().unwrap_or_else(std::sync::PoisonError::into_inner)[i].paid = true;
                }
                return (self.key("payOrder", &label), outcome.map(drop).map_err(|f| f.code));
            }
        }
        let target = (random(self.seed ^ 13, seq) % self.targets.len() as u64) as usize;
        let customer = (seq % self.customers.len() as u64) as usize;
        let key = uuid::Uuid::new_v4().to_string();
        let label = self.targets[target].label.clone();
        let outcome = match self.create(target, customer, &key).await {
            Ok(id) => {
                let ticket_type = self.targets[target].ticket_type.clone();
                let mut acked = self.acked.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                acked.push(Acked { id, ticket_type, key, target, customer, paid: false });
                if seq.is_multiple_of(2) {
                    self.to_pay.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push_back(acked.len() - 1);
                }
                Ok(())
            }
            Err(code) => Err(code),
        };
        (self.key("createOrder", &label), outcome)
    }
}

/// A line of the apply's output, at the second of the measured window it was printed.
#[derive(Debug, Clone, Serialize)]
pub struct Mark {
    pub second: f64,
    pub text: String,
}

/// What the apply did, from its output and its journal.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Apply {
    pub started_s: f64,
    pub finished_s: Option<f64>,
    pub exit_ok: bool,
    pub marks: Vec<Mark>,
    pub moves: Vec<MoveFigures>,
    /// Write pause per moved partition (each partition's is its batch's), ms.
    pub pause_p50_ms: f64,
    pub pause_p99_ms: f64,
    pub pause_max_ms: f64,
    pub rows_copied: i64,
    /// Rows copied per second of copy time.
    pub copy_rows_per_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MoveFigures {
    pub id: i64,
    pub partitions: i32,
    pub rows_copied: i64,
    pub freeze_ms: f64,
    pub copy_s: f64,
    pub total_s: f64,
}

/// Runs the apply at `opts.after` into the window (whose start is `origin`), phase by phase.
pub async fn drive(
    opts: Options,
    origin: tokio::time::Instant,
    load: Arc<Load>,
    done: Arc<AtomicBool>,
) -> anyhow::Result<Apply> {
    tokio::time::sleep_until(origin + opts.after).await;
    let mut out = Apply { started_s: origin.elapsed().as_secs_f64(), ..Apply::default() };
    load.phase.store(1, Ordering::Relaxed);
    let mut child = tokio::process::Command::new(&opts.bin)
        .args(["apply", "--batch", &opts.batch.to_string()])
        .env("TICKET_HUB_ORDERS__SHARDS_FILE", &opts.shards_file)
        .env("TICKET_HUB_ORDERS__PLACEMENT_URL", &opts.placement_url)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", opts.bin.display()))?;
    let mut lines = BufReader::new(child.stdout.take().context("apply stdout")?).lines();
    while let Some(line) = lines.next_line().await? {
        eprintln!("apply: {line}");
        out.marks.push(Mark { second: origin.elapsed().as_secs_f64(), text: line });
    }
    out.exit_ok = child.wait().await?.success();
    out.finished_s = Some(origin.elapsed().as_secs_f64());
    load.phase.store(2, Ordering::Relaxed);
    done.store(true, Ordering::Relaxed);
    Ok(out)
}

/// id, partitions, rows copied, freeze ms, seconds to the switch, seconds to the end.
type JournalRow = (i64, i32, Option<i64>, Option<f64>, Option<f64>, Option<f64>);

/// Adds the journal's figures of the moves made since `since` to `apply`.
pub async fn figures(
    apply: &mut Apply,
    placement_url: &str,
    since: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(placement_url).await?;
    let rows: Vec<JournalRow> = sqlx::query_as(
        "select id, cardinality(partitions), rows_copied, freeze_ms, \
                extract(epoch from switched_at - created_at)::float8, extract(epoch from finished_at - created_at)::float8 \
         from partition_move where created_at >= $1 and phase = 'DONE' order by id",
    )
    .bind(since)
    .fetch_all(&pool)
    .await?;
    let mut pauses: Vec<f64> = Vec::new();
    for (id, partitions, rows_copied, freeze_ms, switched_s, total_s) in rows {
        let freeze_ms = freeze_ms.unwrap_or(0.0);
        // The copy is what comes before the catch-up and the freeze: switch time minus pause.
        let copy_s = (switched_s.unwrap_or(0.0) - freeze_ms / 1000.0).max(0.0);
        pauses.extend(std::iter::repeat_n(freeze_ms, usize::try_from(partitions).unwrap_or(0)));
        apply.moves.push(MoveFigures {
            id,
            partitions,
            rows_copied: rows_copied.unwrap_or(0),
            freeze_ms,
            copy_s,
            total_s: total_s.unwrap_or(0.0),
        });
    }
    pauses.sort_by(f64::total_cmp);
    let pct = |q: f64| pauses.get(((pauses.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0.0);
    apply.pause_p50_ms = pct(0.5);
    apply.pause_p99_ms = pct(0.99);
    apply.pause_max_ms = pauses.last().copied().unwrap_or(0.0);
    apply.rows_copied = apply.moves.iter().map(|m| m.rows_copied).sum();
    let copy_s: f64 = apply.moves.iter().map(|m| m.copy_s).sum();
    apply.copy_rows_per_s = if copy_s > 0.0 { apply.rows_copied as f64 / copy_s } else { 0.0 };
    Ok(())
}

/// The audit after the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Audit {
    pub acknowledged_orders: usize,
    /// Acknowledged orders not found on the shard the live map names (or not PAID when their
    /// payment was acknowledged).
    pub missing_at_home: usize,
    /// Acknowledged orders also present on another shard of the region.
    pub on_another_shard: usize,
    /// Ticket types whose `remaining` is not `total - sold` on their owner, on any shard.
    pub stock_mismatches: i64,
    /// Ticket types of the run where fewer were sold than acknowledged, or more than total.
    pub oversold_or_lost: usize,
    /// Orders of the run whose events did not reach notifications once each and in order.
    pub events_out_of_order_or_repeated: usize,
    pub events_missing: usize,
    pub notifications: i64,
    pub notifications_expected: i64,
    /// Replication objects, frozen or incoming partitions left on any shard.
    pub leftovers: Vec<String>,
}

impl Audit {
    pub fn ok(&self) -> bool {
        self.missing_at_home == 0
            && self.on_another_shard == 0
            && self.stock_mismatches == 0
            && self.oversold_or_lost == 0
            && self.events_out_of_order_or_repeated == 0
            && self.events_missing == 0
            && self.notifications == self.notifications_expected
            && self.leftovers.is_empty()
    }
}

pub async fn audit(map: &ShardMap, opts: &Options, acked: &[Acked], wait: Duration) -> anyhow::Result<Audit> {
    let mut a = Audit { acknowledged_orders: acked.len(), ..Audit::default() };
    let store = LiveStore::connect_lazy(&opts.placement_url, Duration::from_secs(5))?;
    let live = store.load(map).await?;
    let mut pools = BTreeMap::new();
    for shard in map.shards() {
        let pool = sqlx::postgres::PgPoolOptions::new().max_connections(2).connect(shard.url.expose()).await?;
        pools.insert(shard.name.to_string(), (shard.region.to_string(), pool));
    }
    // Each acknowledged order at its home and nowhere else.
    let mut by_shard: BTreeMap<String, Vec<(uuid::Uuid, bool)>> = BTreeMap::new();
    for o in acked {
        let Some((region, partition)) = partition_of(map, &o.id) else { continue };
        let region = shard_router::RegionName::parse(&region).map_err(anyhow::Error::msg)?;
        let Some(owner) = live.owner(&region, partition) else { continue };
        let id = uuid::Uuid::parse_str(&o.id)?;
        by_shard.entry(owner.to_string()).or_default().push((id, o.paid));
    }
    for (shard, (_, pool)) in &pools {
        let home: Vec<(uuid::Uuid, bool)> = by_shard.get(shard).cloned().unwrap_or_default();
        let ids: Vec<uuid::Uuid> = home.iter().map(|(id, _)| *id).collect();
        let found: Vec<(uuid::Uuid, String)> =
            sqlx::query_as("select id, status from orders where id = any($1)").bind(&ids).fetch_all(pool).await?;
        let found: BTreeMap<uuid::Uuid, String> = found.into_iter().collect();
        a.missing_at_home += home
            .iter()
            .filter(|(id, paid)| match found.get(id) {
                None => true,
                Some(status) => *paid && status != "PAID",
            })
            .count();
        let elsewhere: Vec<uuid::Uuid> =
            by_shard.iter().filter(|(s, _)| *s != shard).flat_map(|(_, v)| v.iter().map(|(id, _)| *id)).collect();
        let n: i64 = sqlx::query_scalar("select count(*) from orders where id = any($1)")
            .bind(&elsewhere)
            .fetch_one(pool)
            .await?;
        a.on_another_shard += usize::try_from(n).unwrap_or(0);
        a.stock_mismatches += sqlx::query_scalar::<_, i64>(
            "select count(*) from ticket_types t where exists (select 1 from partition_owner o where o.region = \
             (select e.region from events e where e.id = t.event_id) and o.partition = t.partition and o.state = 'OWNED') \
             and t.remaining_quantity <> t.total_quantity - coalesce((select sum(quantity) from orders o \
             where o.ticket_type_id = t.id and o.status <> 'CANCELLED'), 0)",
        )
        .fetch_one(pool)
        .await?;
        let left: Vec<String> = sqlx::query_scalar(
            "select 'slot ' || slot_name::text from pg_replication_slots where slot_name like 'th_move_%' \
               and database = current_database() \
             union all select 'publication ' || pubname::text from pg_publication where pubname like 'th_move_%' \
             union all select 'subscription ' || subname::text from pg_subscription where subname like 'th_move_%' \
             union all select state || ' partition ' || partition from partition_owner where state in ('FROZEN', 'INCOMING')",
        )
        .fetch_all(pool)
        .await?;
        a.leftovers.extend(left.into_iter().map(|l| format!("{shard}: {l}")));
    }
    // Sold per ticket type against what was acknowledged.
    let mut acked_per_tt: BTreeMap<&str, i64> = BTreeMap::new();
    for o in acked {
        *acked_per_tt.entry(o.ticket_type.as_str()).or_default() += 1;
    }
    for (tt, n) in &acked_per_tt {
        let id = uuid::Uuid::parse_str(tt)?;
        let mut counted = false;
        for (_, pool) in pools.values() {
            let row: Option<(i32, i32, bool)> = sqlx::query_as(
                "select t.total_quantity, t.remaining_quantity, exists (select 1 from partition_owner o where \
                 o.partition = t.partition and o.state = 'OWNED') from ticket_types t where t.id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?;
            if let Some((total, remaining, true)) = row {
                counted = true;
                let sold = i64::from(total - remaining);
                if sold < *n || remaining < 0 {
                    a.oversold_or_lost += 1;
                }
            }
        }
        if !counted {
            a.oversold_or_lost += 1;
        }
    }
    // Every event of the run's orders in notifications once, OrderCreated before OrderPaid
    // on the topic (the inbox records where each was read).
    let ids: Vec<uuid::Uuid> = acked.iter().filter_map(|o| uuid::Uuid::parse_str(&o.id).ok()).collect();
    let paid: BTreeSet<uuid::Uuid> =
        acked.iter().filter(|o| o.paid).filter_map(|o| uuid::Uuid::parse_str(&o.id).ok()).collect();
    a.notifications_expected = (ids.len() + paid.len()) as i64;
    let notif = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&opts.notifications_url).await?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        a.notifications = sqlx::query_scalar("select count(*) from notifications where order_id = any($1)")
            .bind(&ids)
            .fetch_one(&notif)
            .await?;
        if a.notifications >= a.notifications_expected || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let rows: Vec<(uuid::Uuid, String, i32, i64)> = sqlx::query_as(
        "select order_id, event_name, kafka_partition, kafka_offset from inbox where order_id = any($1) \
         order by order_id, kafka_partition, kafka_offset",
    )
    .bind(&ids)
    .fetch_all(&notif)
    .await?;
    let mut seen: BTreeMap<uuid::Uuid, Vec<String>> = BTreeMap::new();
    for (id, name, _, _) in rows {
        seen.entry(id).or_default().push(name);
    }
    for id in &ids {
        let got = seen.get(id).cloned().unwrap_or_default();
        let want: &[&str] = if paid.contains(id) { &["OrderCreated", "OrderPaid"] } else { &["OrderCreated"] };
        if got.len() < want.len() && want.starts_with(&got.iter().map(String::as_str).collect::<Vec<_>>()) {
            a.events_missing += 1;
        } else if got != want {
            // A paid order whose payment answer was lost may rightly show OrderPaid too.
            let extra_paid = got == ["OrderCreated", "OrderPaid"] && !paid.contains(id);
            if !extra_paid {
                a.events_out_of_order_or_repeated += 1;
            }
        }
    }
    Ok(a)
}

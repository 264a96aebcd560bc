//! The flash sale: every buyer sends one order for one ticket at the same instant. What counts
//! is what was sold, what was refused and why, whether anything was oversold (counted in the
//! shard's own tables, not taken from the answers), and how long buyers waited.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use tokio::sync::Barrier;
use tokio::time::Instant;

use crate::client::{Gql, ops};
use crate::setup::EventFixture;
use crate::stats::{Key, Outcome, Percentiles, Recorder};

/// The sale's result.
#[derive(Debug, Clone, Serialize)]
pub struct FlashSale {
    pub region: String,
    pub shard: String,
    pub buyers: usize,
    pub tickets: u32,
    pub sold: u64,
    /// Refusals by code (`SOLD_OUT` is the only right one once stock is gone).
    pub rejected: BTreeMap<String, u64>,
    /// Tickets in orders beyond the stock, from the shard's `orders` table: must be 0.
    pub oversold: i64,
    /// Orders in the shard's table for the ticket type, and the stock left there.
    pub orders_in_db: i64,
    pub remaining_in_db: i64,
    /// From the common start to the answer of the last successful order, when all sold.
    pub sell_out_ms: Option<f64>,
    /// Buyers answered within one second of the start.
    pub answered_within_1s: usize,
    #[serde(flatten)]
    pub latency: Percentiles,
}

/// Runs the sale for `buyers` (tokens) on the single ticket type of `event`.
pub async fn run(gql: &Gql, buyers: &[String], event: &EventFixture, tickets: u32) -> (FlashSale, Recorder) {
    let ticket_type = event.ticket_types[0].clone();
    // Open a connection per buyer first, so the sale measures the service, not TCP handshakes
    // all landing on the same millisecond.
    let warm = buyers.iter().map(|_| gql.send("query Warm { __typename }", json!({}), None, None));
    futures::future::join_all(warm).await;

    let barrier = Arc::new(Barrier::new(buyers.len() + 1));
    let mut tasks = tokio::task::JoinSet::new();
    for buyer in buyers {
        let (gql, barrier, buyer) = (gql.clone(), barrier.clone(), buyer.clone());
        let vars = json!({"input": {"region": &*event.region, "eventId": event.id, "ticketTypeId": ticket_type, "quantity": 1}});
        tasks.spawn(async move {
            barrier.wait().await;
            let key = uuid::Uuid::new_v4().to_string();
            let outcome = gql.send(ops::CREATE_ORDER, vars, Some(&buyer), Some(&key)).await;
            (Instant::now(), outcome.map(drop).map_err(|f| f.code))
        });
    }
    // Let every buyer reach the barrier, then release them together.
    tokio::task::yield_now().await;
    barrier.wait().await;
    let start = Instant::now();
    let mut answers: Vec<(Instant, Outcome)> = Vec::with_capacity(buyers.len());
    while let Some(joined) = tasks.join_next().await {
        if let Ok(a) = joined {
            answers.push(a);
        }
    }

    let key = Key { op: "createOrder", region: event.region.clone(), shard: event.shard.clone() };
    let mut recorder = Recorder::new();
    let mut rejected = BTreeMap::new();
    let mut sold = 0;
    let mut last_sale = None;
    for (at, outcome) in &answers {
        let latency = *at - start;
        recorder.record(&key, latency, latency, outcome);
        match outcome {
            Ok(()) => {
                sold += 1;
                last_sale = last_sale.max(Some(latency));
            }
            Err(code) => *rejected.entry(code.clone()).or_insert(0) += 1,
        }
    }
    let within = answers.iter().filter(|(at, _)| *at - start <= Duration::from_secs(1)).count();
    let series = recorder.series().get(&key).map(|s| Percentiles::of(&s.latency));
    let sale = FlashSale {
        region: event.region.to_string(),
        shard: event.shard.to_string(),
        buyers: buyers.len(),
        tickets,
        sold,
        rejected,
        oversold: 0,
        orders_in_db: 0,
        remaining_in_db: 0,
        sell_out_ms: (sold >= u64::from(tickets)).then(|| last_sale.unwrap_or_default().as_secs_f64() * 1000.0),
        answered_within_1s: within,
        latency: series.unwrap_or(Percentiles::ZERO),
    };
    (sale, recorder)
}

/// Counts the ticket type's orders and stock on its shard: the oversell check does not trust
/// the answers.
pub async fn check_stock(url: &str, ticket_type: &str, sale: &mut FlashSale) -> anyhow::Result<()> {
    let id: uuid::Uuid = ticket_type.parse()?;
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(url).await?;
    let (total, remaining): (i32, i32) =
        sqlx::query_as("select total_quantity, remaining_quantity from ticket_types where id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await?;
    let (orders, tickets): (i64, i64) =
        sqlx::query_as("select count(*), coalesce(sum(quantity), 0) from orders where ticket_type_id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await?;
    pool.close().await;
    sale.orders_in_db = orders;
    sale.remaining_in_db = i64::from(remaining);
    sale.oversold = (tickets - i64::from(total)).max(0);
    anyhow::ensure!(
        tickets + i64::from(remaining) == i64::from(total),
        "stock does not add up: {tickets} sold + {remaining} left != {total}"
    );
    Ok(())
}

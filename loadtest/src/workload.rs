//! What one request of each duration-bound scenario is. A request is a pure function of its
//! sequence number (and the seed), so workers share no state but the fixture.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::cli::BrowseQuery;
use crate::client::{Gql, body, ops};
use crate::mix::{Mix, random};
use crate::setup::Fixture;
use crate::stats::{Key, Outcome};

/// One request of a scenario.
pub trait Workload: Send + Sync + 'static {
    /// Sends request number `seq` and says what it was and how it ended.
    fn one(&self, seq: u64) -> impl Future<Output = (Key, Outcome)> + Send;
}

/// A request ready to send: its body serialized once, and the shard its data lives on.
#[derive(Debug)]
struct Target {
    shard: Arc<str>,
    body: String,
    /// The variables of `body`, for the requests whose answer is read (`mixed`'s orders).
    variables: serde_json::Value,
}

/// A region's requests, at the index the mix picks.
#[derive(Debug)]
struct RegionTargets {
    name: Arc<str>,
    /// `events(region, first: 20)`.
    page: String,
    /// `event(id)` of each event.
    events: Vec<Target>,
    /// `createOrder` of one ticket of each ticket type.
    orders: Vec<Target>,
}

/// Salts that keep the independent choices of one request uncorrelated.
const SALT_REGION: u64 = 1;
const SALT_TARGET: u64 = 2;
const SALT_KIND: u64 = 3;

/// Shared by the scenarios: the client, the fixture arranged by mix index, the choices.
#[derive(Debug)]
pub struct Common {
    gql: Gql,
    mix: Mix,
    regions: Vec<RegionTargets>,
    customers: Vec<String>,
    seed: u64,
}

impl Common {
    pub fn new(gql: Gql, mix: Mix, fixture: &Fixture, seed: u64) -> anyhow::Result<Self> {
        let regions = mix
            .regions()
            .map(|r| {
                let events = fixture.events.get(r).cloned().unwrap_or_default();
                anyhow::ensure!(!events.is_empty(), "the setup made no events in region {r}");
                let orders = fixture
                    .ticket_types(r)
                    .into_iter()
                    .map(|(event, ticket_type)| {
                        let variables =
                            json!({"input": {"region": r, "eventId": event.id, "ticketTypeId": ticket_type, "quantity": 1}});
                        Target { body: body(ops::CREATE_ORDER, &variables), variables, shard: event.shard }
                    })
                    .collect();
                Ok(RegionTargets {
                    name: r.into(),
                    page: body(ops::EVENTS, &json!({"region": r, "first": 20})),
                    events: events
                        .iter()
                        .map(|e| Target {
                            shard: e.shard.clone(),
                            body: body(&ops::event(&e.id), &json!({})),
                            variables: serde_json::Value::Null,
                        })
                        .collect(),
                    orders,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        anyhow::ensure!(!fixture.customers.is_empty(), "the setup made no customers");
        Ok(Self { gql, mix, regions, customers: fixture.customers.clone(), seed })
    }

    fn region(&self, seq: u64) -> &RegionTargets {
        &self.regions[self.mix.pick(random(self.seed ^ SALT_REGION, seq))]
    }

    fn choose<'a, T>(&self, items: &'a [T], seq: u64) -> &'a T {
        &items[(random(self.seed ^ SALT_TARGET, seq) % items.len() as u64) as usize]
    }

    /// A `createOrder` for one ticket, with a fresh idempotency key so the service runs its
    /// whole keyed transaction (claim, stock, order, outbox, record).
    async fn order(&self, seq: u64, hot: bool) -> (Key, Outcome) {
        let region = self.region(seq);
        let target = if hot { &region.orders[0] } else { self.choose(&region.orders, seq) };
        let customer = &self.customers[(seq % self.customers.len() as u64) as usize];
        let key = uuid::Uuid::new_v4().to_string();
        let outcome = self.gql.fire(&target.body, Some(customer), Some(&key)).await;
        let key = Key { op: "createOrder", region: region.name.clone(), shard: target.shard.clone() };
        (key, outcome.map_err(|f| f.code))
    }

    /// A page of a region's events: one region, all of its shards.
    async fn events(&self, seq: u64) -> (Key, Outcome) {
        let region = self.region(seq);
        let outcome = self.gql.fire(&region.page, None, None).await;
        (Key { op: "events", region: region.name.clone(), shard: "*".into() }, outcome.map_err(|f| f.code))
    }

    /// One event by id, routed to its shard.
    async fn event(&self, seq: u64) -> (Key, Outcome) {
        let region = self.region(seq);
        let target = self.choose(&region.events, seq);
        let outcome = self.gql.fire(&target.body, None, None).await;
        (Key { op: "event", region: region.name.clone(), shard: target.shard.clone() }, outcome.map_err(|f| f.code))
    }

    fn kind(&self, seq: u64) -> u64 {
        random(self.seed ^ SALT_KIND, seq) % 100
    }
}

/// `orders`: region-tagged `createOrder`.
#[derive(Debug)]
pub struct Orders {
    pub common: Common,
    /// Every order of a region on its first ticket type.
    pub hot: bool,
}

impl Workload for Orders {
    fn one(&self, seq: u64) -> impl Future<Output = (Key, Outcome)> + Send {
        self.common.order(seq, self.hot)
    }
}

/// `browse`: `events` pages and `event(id)` reads.
#[derive(Debug)]
pub struct Browse {
    pub common: Common,
    pub query: BrowseQuery,
}

impl Workload for Browse {
    async fn one(&self, seq: u64) -> (Key, Outcome) {
        match self.query {
            BrowseQuery::Events => self.common.events(seq).await,
            BrowseQuery::Event => self.common.event(seq).await,
            BrowseQuery::Both if self.common.kind(seq) < 50 => self.common.events(seq).await,
            BrowseQuery::Both => self.common.event(seq).await,
        }
    }
}

/// `mixed`: half `events` pages, a quarter `event(id)`, a quarter the order lifecycle:
/// `createOrder` (17 %), then `payOrder` (4 %) or `cancelOrder` (4 %) of an order this run
/// placed, so the stock goes both ways and every order event kind is published.
#[derive(Debug)]
pub struct Mixed {
    pub common: Common,
    /// Orders placed and not yet paid or cancelled: (id, customer index, region, shard).
    pub open: Mutex<VecDeque<Placed>>,
}

/// An order this run placed.
#[derive(Debug, Clone)]
pub struct Placed {
    id: String,
    customer: usize,
    region: Arc<str>,
    shard: Arc<str>,
}

impl Mixed {
    pub fn new(common: Common) -> Self {
        Self { common, open: Mutex::new(VecDeque::new()) }
    }

    /// Most open orders remembered; older ones are left to expire.
    const OPEN_MAX: usize = 10_000;

    async fn place(&self, seq: u64) -> (Key, Outcome) {
        let c = &self.common;
        let region = c.region(seq);
        let target = c.choose(&region.orders, seq);
        let customer = (seq % c.customers.len() as u64) as usize;
        let key = Key { op: "createOrder", region: region.name.clone(), shard: target.shard.clone() };
        let vars = &target.variables;
        let outcome = c.gql.send(ops::CREATE_ORDER, vars.clone(), Some(&c.customers[customer]), None).await;
        match outcome {
            Ok(data) => {
                if let Some(id) = data.pointer("/createOrder/orderId").and_then(serde_json::Value::as_str) {
                    let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    if open.len() >= Self::OPEN_MAX {
                        open.pop_front();
                    }
                    let placed = Placed {
                        id: id.to_owned(),
                        customer,
                        region: region.name.clone(),
                        shard: target.shard.clone(),
                    };
                    open.push_back(placed);
                }
                (key, Ok(()))
            }
            Err(f) => (key, Err(f.code)),
        }
    }

    /// Pays or cancels the oldest open order; places one when none is open.
    async fn settle(&self, seq: u64, pay: bool) -> (Key, Outcome) {
        let next = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop_front();
        let Some(order) = next else { return self.place(seq).await };
        let (op, query) = if pay { ("payOrder", ops::PAY_ORDER) } else { ("cancelOrder", ops::CANCEL_ORDER) };
        let token = &self.common.customers[order.customer];
        let outcome = self.common.gql.send(query, json!({"id": order.id}), Some(token), None).await;
        (Key { op, region: order.region, shard: order.shard }, outcome.map(drop).map_err(|f| f.code))
    }
}

impl Workload for Mixed {
    async fn one(&self, seq: u64) -> (Key, Outcome) {
        match self.common.kind(seq) {
            0..50 => self.common.events(seq).await,
            50..75 => self.common.event(seq).await,
            75..92 => self.place(seq).await,
            92..96 => self.settle(seq, true).await,
            _ => self.settle(seq, false).await,
        }
    }
}

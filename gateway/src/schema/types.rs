//! The GraphQL types. What orders answers is served as it is: the [`platform::contract`] types
//! (feature `graphql`) are the output types for events, ticket types, order payloads, roles,
//! statuses and regions, so a body decodes straight into what the schema shows and nothing is
//! declared twice. Here are the types only the gateway has: its inputs, the region list, the
//! projector's read models, and [`Order`], the contract's order plus its event.

use async_graphql::{ComplexObject, Context, InputObject, MergedObject, Object, Result, SimpleObject};
use platform::contract;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::schema::scope;

pub use platform::contract::{
    CancelOrderPayload, CancelReason, CreateEventPayload, CreateOrderPayload, Event, OrderStatus, Page,
    PayOrderPayload, Region, Role, ShardPlacement,
};

/// A region and the shards serving it.
#[derive(Debug, Clone, SimpleObject)]
#[graphql(complex)]
pub struct RegionInfo {
    pub name: Region,
    /// Physical shards `shards.toml` lists for the region (names only; no addresses).
    pub shards: Vec<String>,
    /// Logical partitions of the region, spread over its shards.
    pub partitions: i32,
}

/// Where a region's partitions live now (the live map orders routes by), against what
/// `shards.toml` asks for.
#[derive(Debug, Clone, SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LivePlacement {
    /// The live map's epoch, raised by every move.
    pub epoch: i64,
    /// Partitions placed differently from `shards.toml`: a plan waiting to be applied.
    pub pending_moves: i32,
    pub shards: Vec<ShardPlacement>,
}

#[ComplexObject]
impl RegionInfo {
    /// The live placement of the region, from orders (not cached: it changes with moves).
    async fn placement(&self, ctx: &Context<'_>) -> Result<LivePlacement> {
        let scope = super::scope(ctx)?;
        let answer: contract::Placement = super::gateway(ctx)?
            .downstream
            .get(crate::downstream::Service::Orders, "/api/v1/placement", "/api/v1/placement", &scope.caller)
            .await?;
        let region = answer
            .regions
            .into_iter()
            .find(|r| r.region == self.name.0)
            .ok_or_else(|| async_graphql::Error::new(format!("orders does not serve region {}", self.name.0)))?;
        Ok(LivePlacement { epoch: answer.epoch, pending_moves: region.pending_moves, shards: region.shards })
    }
}

#[derive(Debug, Clone, SimpleObject, Deserialize)]
pub struct User {
    pub id: async_graphql::ID,
    pub email: String,
    pub name: String,
    pub role: Role,
}

#[derive(InputObject)]
pub struct SignupInput {
    pub email: String,
    pub name: String,
    #[graphql(secret)]
    pub password: String,
    /// CUSTOMER (the default) or ORGANIZER; ADMIN only through `accounts create-admin`.
    pub role: Option<Role>,
}

#[derive(Debug, SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignupPayload {
    pub user_id: async_graphql::ID,
}

#[derive(InputObject)]
pub struct LoginInput {
    pub email: String,
    #[graphql(secret)]
    pub password: String,
}

#[derive(SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginPayload {
    /// Send as `Authorization: Bearer <accessToken>`.
    pub access_token: String,
    pub expires_at: String,
}

// An order: the contract's fields and cursor, then its event. No doc comment: it would become
// the schema's description of `Order`, which has none.
#[derive(Debug, Clone, MergedObject)]
pub struct Order(pub contract::Order, OrderEvent);

impl From<contract::Order> for Order {
    fn from(order: contract::Order) -> Self {
        let event = OrderEvent(order.event_id);
        Self(order, event)
    }
}

/// The part of [`Order`] only the gateway can answer: the order's event, by its id.
#[derive(Debug, Clone, Copy)]
pub struct OrderEvent(Uuid);

#[Object]
impl OrderEvent {
    /// The event the order is for, batched and cached across a list of orders.
    async fn event(&self, ctx: &Context<'_>) -> Result<Option<Event>> {
        Ok(scope(ctx)?.event_by_id(self.0).await?)
    }
}

#[derive(Debug, InputObject, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateEventTicketTypeInput {
    pub name: String,
    pub price_in_cents: i64,
    pub total_quantity: i64,
}

#[derive(Debug, InputObject, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateEventInput {
    /// Where the event lives; its orders must carry the same tag.
    pub region: Region,
    pub title: String,
    pub description: Option<String>,
    pub venue: String,
    /// RFC 3339, e.g. `2027-01-20T20:00:00Z`.
    pub starts_at: String,
    pub ends_at: String,
    pub ticket_types: Vec<CreateEventTicketTypeInput>,
}

#[derive(Debug, InputObject, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateOrderInput {
    /// The event's region; a different one is refused with REGION_MISMATCH.
    pub region: Region,
    pub event_id: async_graphql::ID,
    pub ticket_type_id: async_graphql::ID,
    pub quantity: i32,
}

/// Sales of one ticket type, from the read model (eventually consistent; see `asOf`).
#[derive(Debug, Clone, SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TicketTypeSales {
    pub ticket_type_id: async_graphql::ID,
    pub region: Region,
    /// Orders placed, whatever became of them.
    pub orders: i64,
    pub orders_paid: i64,
    pub orders_cancelled: i64,
    /// Tickets held by orders not cancelled (pending or paid).
    pub tickets_sold: i64,
    pub tickets_paid: i64,
    pub tickets_cancelled: i64,
    /// Totals of the paid orders, in cents.
    pub revenue_in_cents: i64,
}

/// An event's sales per ticket type, as the projector last saw them.
#[derive(Debug, Clone, SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventSales {
    pub event_id: async_graphql::ID,
    /// When the last event the read model applied happened (RFC 3339); null before any.
    pub as_of: Option<String>,
    pub ticket_types: Vec<TicketTypeSales>,
}

/// One order in a customer's read model.
#[derive(Debug, Clone, SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerOrder {
    pub order_id: async_graphql::ID,
    /// Null while only a later event of the order has been seen.
    pub event_id: Option<async_graphql::ID>,
    pub ticket_type_id: Option<async_graphql::ID>,
    pub quantity: Option<i32>,
    pub total_price_in_cents: Option<i64>,
    pub status: OrderStatus,
    pub region: Region,
    pub created_at: Option<String>,
    pub paid_at: Option<String>,
    pub cancelled_at: Option<String>,
    pub cancel_reason: Option<CancelReason>,
    pub version: i32,
}

/// A page of a customer's orders from the read model, newest first.
#[derive(Debug, Clone, SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerOrders {
    pub customer_id: async_graphql::ID,
    pub as_of: Option<String>,
    pub items: Vec<CustomerOrder>,
    /// Pass as `after` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// One event in an order's timeline, with where it came from.
#[derive(Debug, Clone, SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimelineEvent {
    pub version: i32,
    pub event_name: String,
    pub occurred_at: String,
    /// The shard whose outbox published it.
    pub source: String,
    pub outbox_id: String,
    pub correlation_id: Option<String>,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
}

/// An order's events in version order.
#[derive(Debug, Clone, SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderTimeline {
    pub order_id: async_graphql::ID,
    pub customer_id: Option<async_graphql::ID>,
    pub as_of: Option<String>,
    pub events: Vec<TimelineEvent>,
}

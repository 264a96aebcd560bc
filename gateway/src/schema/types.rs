//! The GraphQL types. What orders and the projector answer is served as it is: the
//! [`platform::contract`] types (feature `graphql`) are the output types for events, ticket
//! types, order payloads, roles, statuses and regions, and [`platform::contract::read_models`]'
//! for the projector's read models, so a body decodes straight into what the schema shows and
//! nothing is declared twice. Here are the types only the gateway has: its inputs, the region
//! list, and [`Order`], the contract's order plus its event.

use async_graphql::{ComplexObject, Context, InputObject, MergedObject, Object, Result, SimpleObject};
use platform::contract;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::schema::scope;

pub use platform::contract::read_models::{CustomerOrders, EventSales, OrderTimeline};
pub use platform::contract::{
    CancelOrderPayload, CreateEventPayload, CreateOrderPayload, Event, Page, PayOrderPayload, Region, Role,
    ShardPlacement,
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

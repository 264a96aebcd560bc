//! The GraphQL types: the seed's names, plus regions. Output types deserialize straight from
//! the services' JSON (the same camelCase names), so a cached body and a fresh one decode alike.

use async_graphql::{
    ComplexObject, Context, Enum, InputObject, InputValueError, InputValueResult, Result, Scalar, ScalarType,
    SimpleObject, Value,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::schema::scope;

/// A region of the shard map (`shards.toml`), such as `NA` or `SA`: the home of an event and
/// of everything sold for it. Written as a string (`"NA"`) or bare (`NA`); a name the shard
/// map does not hold is refused with BAD_USER_INPUT listing the known ones (query `regions`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Region(pub String);

/// A region of the shard map (`shards.toml`), such as `NA` or `SA`; query `regions` for the
/// list. Written `"NA"` in variables or bare `NA` in a query; a name the map does not hold is
/// refused with BAD_USER_INPUT naming the known ones.
#[Scalar(name = "Region")]
impl ScalarType for Region {
    fn parse(value: Value) -> InputValueResult<Self> {
        let raw = match &value {
            Value::String(s) => s.as_str(),
            Value::Enum(name) => name.as_str(),
            _ => return Err(InputValueError::expected_type(value.clone())),
        };
        shard_router::RegionName::parse(raw.trim())
            .map(|r| Self(r.as_str().to_owned()))
            .map_err(|m| InputValueError::custom(platform::error::clip(&m, platform::error::MAX_MESSAGE_CHARS)))
    }

    fn is_valid(value: &Value) -> bool {
        matches!(value, Value::String(_) | Value::Enum(_))
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.clone())
    }
}

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

#[derive(Debug, Clone, SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardPlacement {
    pub shard: String,
    /// Partitions the shard owns now.
    pub live_partitions: i32,
    /// Partitions `shards.toml` asks it to own.
    pub desired_partitions: i32,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PlacementAnswer {
    epoch: i64,
    regions: Vec<RegionPlacementAnswer>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegionPlacementAnswer {
    region: String,
    pending_moves: i32,
    shards: Vec<ShardPlacement>,
}

#[ComplexObject]
impl RegionInfo {
    /// The live placement of the region, from orders (not cached: it changes with moves).
    async fn placement(&self, ctx: &Context<'_>) -> Result<LivePlacement> {
        let scope = super::scope(ctx)?;
        let answer: PlacementAnswer = super::gateway(ctx)?
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UserRole {
    Customer,
    Organizer,
    Admin,
}

impl UserRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "CUSTOMER",
            Self::Organizer => "ORGANIZER",
            Self::Admin => "ADMIN",
        }
    }
}

#[derive(Debug, Clone, SimpleObject, Deserialize)]
pub struct User {
    pub id: async_graphql::ID,
    pub email: String,
    pub name: String,
    pub role: UserRole,
}

#[derive(Debug, Clone, SimpleObject, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TicketType {
    pub id: async_graphql::ID,
    pub name: String,
    pub price_in_cents: i64,
    pub total_quantity: i32,
    pub remaining_quantity: i32,
}

/// An event; `startsAt`, `endsAt` and `createdAt` are RFC 3339 timestamps in UTC.
#[derive(Debug, Clone, SimpleObject, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[graphql(complex)]
pub struct Event {
    pub id: async_graphql::ID,
    pub region: Region,
    pub organizer_id: async_graphql::ID,
    pub title: String,
    pub description: Option<String>,
    pub venue: String,
    pub starts_at: String,
    pub ends_at: String,
    pub created_at: String,
    pub ticket_types: Vec<TicketType>,
}

/// The orders service's keyset cursor: base64url of `{"at": <sort timestamp>, "id": <id>}`.
/// Made here per item because a GraphQL list has no page-level field to carry it.
fn cursor(at: &str, id: &str) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::json!({ "at": at, "id": id }).to_string())
}

#[ComplexObject]
impl Event {
    /// Pass as `after` to `events` to get the events that follow this one.
    async fn cursor(&self) -> String {
        cursor(&self.starts_at, &self.id)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    Pending,
    Paid,
    Cancelled,
}

#[derive(Debug, Clone, SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase")]
#[graphql(complex)]
pub struct Order {
    pub id: async_graphql::ID,
    pub region: Region,
    pub customer_id: async_graphql::ID,
    pub event_id: async_graphql::ID,
    pub ticket_type_id: async_graphql::ID,
    pub quantity: i32,
    pub total_price_in_cents: i64,
    pub status: OrderStatus,
    pub created_at: String,
    pub paid_at: Option<String>,
    pub cancelled_at: Option<String>,
    pub cancel_reason: Option<CancelReason>,
    /// 1 at creation, one more per change.
    pub version: i32,
}

#[ComplexObject]
impl Order {
    /// Pass as `after` to `ordersByCustomer` to get the (older) orders that follow this one.
    async fn cursor(&self) -> String {
        cursor(&self.created_at, &self.id)
    }

    /// The event the order is for, batched and cached across a list of orders.
    async fn event(&self, ctx: &Context<'_>) -> Result<Option<Event>> {
        let scope = scope(ctx)?;
        Ok(scope.event(&self.event_id).await?)
    }
}

/// A page of a listing as the orders service answers it.
#[derive(Debug, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
}

#[derive(InputObject)]
pub struct SignupInput {
    pub email: String,
    pub name: String,
    #[graphql(secret)]
    pub password: String,
    /// CUSTOMER (the default) or ORGANIZER; ADMIN only through `accounts create-admin`.
    pub role: Option<UserRole>,
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

#[derive(Debug, SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateEventPayload {
    pub event_id: async_graphql::ID,
    pub region: Region,
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

#[derive(Debug, SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateOrderPayload {
    pub order_id: async_graphql::ID,
    pub total_price_in_cents: i64,
    pub region: Region,
}

#[derive(Debug, SimpleObject, Deserialize)]
pub struct PayOrderPayload {
    pub id: async_graphql::ID,
    pub status: OrderStatus,
}

/// Why an order was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CancelReason {
    /// Its customer cancelled it.
    Customer,
    /// Its reservation expired unpaid.
    Expired,
}

#[derive(Debug, SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelOrderPayload {
    pub id: async_graphql::ID,
    pub status: OrderStatus,
    pub cancel_reason: CancelReason,
    pub cancelled_at: String,
    /// The order's version after the cancel (1 at creation, one more per change).
    pub version: i32,
    #[graphql(skip)]
    pub event_id: String,
    #[graphql(skip)]
    pub region: String,
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

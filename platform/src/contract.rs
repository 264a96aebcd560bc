//! The HTTP contract of the orders API, written once: the bodies orders answers with and the
//! gateway reads. orders serialises these types, the gateway deserialises them and (feature
//! `graphql`) serves them as its GraphQL output types, so a field renamed on one side breaks the
//! build, not a client. [`Role`] is here too: what a user may do (`CUSTOMER`, `ORGANIZER`,
//! `ADMIN`), in tokens, in every API and in GraphQL (as `UserRole`).
//!
//! The JSON is the seed's: camelCase names, ids as UUID strings, RFC 3339 timestamps in UTC,
//! enums in SCREAMING_CASE. GraphQL keeps what `gateway/schema.graphql` has always said: ids are
//! `ID`, timestamps `String`, regions the `Region` scalar.
//!
//! With `graphql`, a doc comment on these types or their fields *is* the published schema's
//! description. So only the descriptions the schema has are doc comments here; notes for Rust
//! readers are plain comments. The order statuses and cancel reasons are also the database's
//! spelling (text columns), so they decode straight from rows.
//!
//! [`read_models`] is the same for the projector's read API (sales, a customer's orders, an
//! order's timeline), which the gateway serves and the audit checks.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use crate::events::CancelReason;

#[cfg(feature = "graphql")]
use async_graphql::ID;

pub mod read_models;

// What a user may do. No doc comment: it would become `UserRole`'s description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum), graphql(name = "UserRole"))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Role {
    Customer,
    Organizer,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "CUSTOMER",
            Self::Organizer => "ORGANIZER",
            Self::Admin => "ADMIN",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "CUSTOMER" => Some(Self::Customer),
            "ORGANIZER" => Some(Self::Organizer),
            "ADMIN" => Some(Self::Admin),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

// An order's status, as stored and shown: PENDING until paid or cancelled, then final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[sqlx(type_name = "text", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    Pending,
    Paid,
    Cancelled,
}

/// A region's name on the wire, such as `NA`: the home of an event and of everything sold for
/// it. Checked against the shard map where it comes in (orders, the gateway's arguments); here
/// it is only carried.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct Region(pub String);

impl Region {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

// A ticket type of an event, with the stock left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
#[serde(rename_all = "camelCase")]
pub struct TicketType {
    #[cfg_attr(feature = "graphql", graphql(skip, derived(name = "id", into = "ID", owned, with = "gql::id")))]
    pub id: Uuid,
    pub name: String,
    pub price_in_cents: i64,
    pub total_quantity: i32,
    pub remaining_quantity: i32,
}

/// An event; `startsAt`, `endsAt` and `createdAt` are RFC 3339 timestamps in UTC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject), graphql(complex))]
#[serde(rename_all = "camelCase")]
pub struct Event {
    #[cfg_attr(feature = "graphql", graphql(skip, derived(name = "id", into = "ID", owned, with = "gql::id")))]
    pub id: Uuid,
    pub region: Region,
    #[cfg_attr(
        feature = "graphql",
        graphql(skip, derived(name = "organizer_id", into = "ID", owned, with = "gql::id"))
    )]
    pub organizer_id: Uuid,
    pub title: String,
    #[schema(required = true)]
    pub description: Option<String>,
    pub venue: String,
    #[cfg_attr(
        feature = "graphql",
        graphql(skip, derived(name = "starts_at", into = "String", owned, with = "gql::time"))
    )]
    pub starts_at: DateTime<Utc>,
    #[cfg_attr(
        feature = "graphql",
        graphql(skip, derived(name = "ends_at", into = "String", owned, with = "gql::time"))
    )]
    pub ends_at: DateTime<Utc>,
    #[cfg_attr(
        feature = "graphql",
        graphql(skip, derived(name = "created_at", into = "String", owned, with = "gql::time"))
    )]
    pub created_at: DateTime<Utc>,
    // Sorted by price, then name; aggregated on the shard as JSON (one round trip per read).
    #[sqlx(json)]
    pub ticket_types: Vec<TicketType>,
}

// An order as the API shows it, single reads and listings alike. In GraphQL it is served
// inside the gateway's `Order`, which adds the order's event; this part's own type name never
// reaches the schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject), graphql(complex, name = "OrderFields"))]
#[serde(rename_all = "camelCase")]
pub struct Order {
    #[cfg_attr(feature = "graphql", graphql(skip, derived(name = "id", into = "ID", owned, with = "gql::id")))]
    pub id: Uuid,
    pub region: Region,
    #[cfg_attr(
        feature = "graphql",
        graphql(skip, derived(name = "customer_id", into = "ID", owned, with = "gql::id"))
    )]
    pub customer_id: Uuid,
    #[cfg_attr(feature = "graphql", graphql(skip, derived(name = "event_id", into = "ID", owned, with = "gql::id")))]
    pub event_id: Uuid,
    #[cfg_attr(
        feature = "graphql",
        graphql(skip, derived(name = "ticket_type_id", into = "ID", owned, with = "gql::id"))
    )]
    pub ticket_type_id: Uuid,
    pub quantity: i32,
    pub total_price_in_cents: i64,
    pub status: OrderStatus,
    #[cfg_attr(
        feature = "graphql",
        graphql(skip, derived(name = "created_at", into = "String", owned, with = "gql::time"))
    )]
    pub created_at: DateTime<Utc>,
    #[cfg_attr(
        feature = "graphql",
        graphql(skip, derived(name = "paid_at", into = "Option<String>", owned, with = "gql::time_opt"))
    )]
    #[schema(required = true)]
    pub paid_at: Option<DateTime<Utc>>,
    #[cfg_attr(
        feature = "graphql",
        graphql(skip, derived(name = "cancelled_at", into = "Option<String>", owned, with = "gql::time_opt"))
    )]
    #[schema(required = true)]
    pub cancelled_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub cancel_reason: Option<CancelReason>,
    /// 1 at creation, one more per change.
    pub version: i32,
}

/// One page of a listing, and where the next one starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; null on the last page.
    // A [`Cursor`], encoded.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// Where a page ends: the sort key of its last item (an event's start, an order's creation,
/// and the id). Handed out base64url-encoded, so it is safe in a query string and opaque to
/// clients; orders makes it for a page, the gateway for each item (a GraphQL list has no
/// page-level field to carry it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub at: DateTime<Utc>,
    pub id: Uuid,
}

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn decode(raw: &str) -> Result<Self, String> {
        URL_SAFE_NO_PAD
            .decode(raw)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| "is not a cursor this API returned".to_owned())
    }
}

// The answer to creating an event (and to a replay of that request).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
#[serde(rename_all = "camelCase")]
pub struct CreateEventPayload {
    #[cfg_attr(feature = "graphql", graphql(skip, derived(name = "event_id", into = "ID", owned, with = "gql::id")))]
    pub event_id: Uuid,
    pub region: Region,
}

// The answer to placing an order (and to a replay of that request).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
#[serde(rename_all = "camelCase")]
pub struct CreateOrderPayload {
    #[cfg_attr(feature = "graphql", graphql(skip, derived(name = "order_id", into = "ID", owned, with = "gql::id")))]
    pub order_id: Uuid,
    pub total_price_in_cents: i64,
    pub region: Region,
}

// The answer to paying an order (the same for a repeated payment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct PayOrderPayload {
    #[cfg_attr(feature = "graphql", graphql(skip, derived(name = "id", into = "ID", owned, with = "gql::id")))]
    pub id: Uuid,
    pub status: OrderStatus,
}

// The answer to cancelling an order (the same for a repeated cancel).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
#[serde(rename_all = "camelCase")]
pub struct CancelOrderPayload {
    #[cfg_attr(feature = "graphql", graphql(skip, derived(name = "id", into = "ID", owned, with = "gql::id")))]
    pub id: Uuid,
    pub status: OrderStatus,
    pub cancel_reason: CancelReason,
    #[cfg_attr(
        feature = "graphql",
        graphql(skip, derived(name = "cancelled_at", into = "String", owned, with = "gql::time"))
    )]
    pub cancelled_at: DateTime<Utc>,
    /// The event the order is for: the gateway drops its cached copy (stock came back).
    #[cfg_attr(feature = "graphql", graphql(skip))]
    pub event_id: Uuid,
    /// The event's region, whose cached pages the gateway drops.
    #[cfg_attr(feature = "graphql", graphql(skip))]
    pub region: Region,
    /// The order's version after the cancel (1 at creation, one more per change).
    pub version: i32,
}

/// `GET /api/v1/placement`: the live map orders routes by, next to what `shards.toml` asks for
/// (shard names and counts only; no addresses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    /// The live map's epoch, raised by every move.
    pub epoch: i64,
    pub regions: Vec<RegionPlacement>,
}

/// One region of [`Placement`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegionPlacement {
    pub region: String,
    pub partitions: u16,
    /// Partitions whose live owner is not the one `shards.toml` asks for.
    pub pending_moves: i32,
    pub shards: Vec<ShardPlacement>,
}

// One shard of a region's placement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
#[serde(rename_all = "camelCase")]
pub struct ShardPlacement {
    pub shard: String,
    /// Partitions the shard owns now.
    pub live_partitions: i32,
    /// Partitions `shards.toml` asks it to own.
    pub desired_partitions: i32,
}

/// How the contract is served in GraphQL: ids as `ID`, timestamps as the same RFC 3339 strings
/// the JSON carries, the `Region` scalar, and the cursors of listed items.
#[cfg(feature = "graphql")]
mod gql {
    use async_graphql::{ComplexObject, ID, InputValueError, InputValueResult, Scalar, ScalarType, Value};
    use chrono::{DateTime, SecondsFormat, Utc};
    use uuid::Uuid;

    use super::{Cursor, Event, Order, Region};

    pub(super) fn id(id: Uuid) -> ID {
        ID(id.to_string())
    }

    /// The spelling of chrono's `Serialize`, so GraphQL shows the JSON's very string.
    pub(super) fn time(at: DateTime<Utc>) -> String {
        at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }

    pub(super) fn time_opt(at: Option<DateTime<Utc>>) -> Option<String> {
        at.map(time)
    }

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
                .map_err(|m| InputValueError::custom(crate::error::clip(&m, crate::error::MAX_MESSAGE_CHARS)))
        }

        fn is_valid(value: &Value) -> bool {
            matches!(value, Value::String(_) | Value::Enum(_))
        }

        fn to_value(&self) -> Value {
            Value::String(self.0.clone())
        }
    }

    #[ComplexObject]
    impl Event {
        /// Pass as `after` to `events` to get the events that follow this one.
        async fn cursor(&self) -> String {
            Cursor { at: self.starts_at, id: self.id }.encode()
        }
    }

    #[ComplexObject]
    impl Order {
        /// Pass as `after` to `ordersByCustomer` to get the (older) orders that follow this one.
        async fn cursor(&self) -> String {
            Cursor { at: self.created_at, id: self.id }.encode()
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn timestamps_read_as_the_json_has_them() {
            for raw in ["2026-01-20T20:00:00Z", "2026-01-20T20:00:00.123456Z", "2026-01-20T20:00:00.100Z"] {
                let at: DateTime<Utc> = raw.parse().unwrap();
                assert_eq!(serde_json::to_value(at).unwrap(), serde_json::Value::String(time(at)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_strangers() {
        let c = Cursor { at: "2026-01-20T20:00:00Z".parse().unwrap(), id: Uuid::nil() };
        assert_eq!(Cursor::decode(&c.encode()), Ok(c));
        assert!(Cursor::decode("not-a-cursor").is_err());
    }

    #[test]
    fn enums_keep_their_wire_spelling() {
        assert_eq!(serde_json::to_value(OrderStatus::Cancelled).unwrap(), "CANCELLED");
        assert_eq!(serde_json::to_value(Role::Organizer).unwrap(), "ORGANIZER");
        assert_eq!(Role::parse("ADMIN"), Some(Role::Admin));
    }
}

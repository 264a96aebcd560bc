//! The contract of `orders.events`: topic names, record headers and the event payloads.
//!
//! Producers (the outbox relays) and consumers (notifications, the projector) compile against
//! these types, so a field renamed on one side breaks the build, not production. Payloads keep
//! the seed's JSON shape (`eventName` tag, camelCase) and add the region.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The keyed topic every shard's relay publishes to (key = order id).
pub const ORDERS_TOPIC: &str = "orders.events";
/// Where messages go that could not be published or consumed, with the reason in a header.
pub const ORDERS_DLQ_TOPIC: &str = "orders.events.dlq";

/// Record header names.
pub mod headers {
    /// The event type, e.g. `OrderCreated`.
    pub const TYPE: &str = "type";
    /// The outbox row id: the consumer-side idempotency key.
    pub const OUTBOX_ID: &str = "outbox-id";
    pub const REGION: &str = "region";
    pub const SHARD: &str = "shard";
    pub const CORRELATION_ID: &str = crate::correlation::HEADER;
    /// On DLQ records: why the message was dead-lettered.
    pub const DLQ_REASON: &str = "dlq-reason";
    /// On DLQ records: who dead-lettered it (`orders-relay`, or the consumer service's name).
    pub const DLQ_SOURCE: &str = "dlq-source";
    /// The `dlq-source` of the rows the outbox relay dead-lettered (consumers write their
    /// service name).
    pub const DLQ_SOURCE_RELAY: &str = "orders-relay";
}

/// An event about an order, tagged by `eventName`.
///
/// Every event carries the order's `version` after the change it announces: 1 for
/// `OrderCreated`, then one more per change (paid, cancelled). A consumer applies an order's
/// events in version order and idempotently (a version it has seen changes nothing), so it
/// never needs the topic to deliver one order's events in order, or once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "eventName", deny_unknown_fields)]
pub enum OrderEvent {
    OrderCreated(OrderCreated),
    OrderPaid(OrderPaid),
    OrderCancelled(OrderCancelled),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrderCreated {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub event_id: Uuid,
    pub ticket_type_id: Uuid,
    pub quantity: i32,
    pub total_price_in_cents: i64,
    pub occurred_at: DateTime<Utc>,
    pub region: String,
    /// Always 1. Records published before versions existed have none: theirs is 1.
    #[serde(default = "version_1")]
    pub version: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrderPaid {
    pub order_id: Uuid,
    pub paid_at: DateTime<Utc>,
    pub region: String,
    /// Records published before versions existed have none: an order then changed only once
    /// (PENDING → PAID), so theirs is 2. The topic keeps every record for replays, so those
    /// records must stay readable.
    #[serde(default = "version_2")]
    pub version: i32,
}

fn version_1() -> i32 {
    1
}

fn version_2() -> i32 {
    2
}

/// A `PENDING` order was cancelled and its tickets returned to stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrderCancelled {
    pub order_id: Uuid,
    pub reason: CancelReason,
    pub cancelled_at: DateTime<Utc>,
    pub region: String,
    pub version: i32,
}

/// Why an order was cancelled.
// Also the HTTP answers' and the database's spelling, and (feature `graphql`) the GraphQL enum:
// these doc comments are its published descriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[sqlx(type_name = "text", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CancelReason {
    /// Its customer cancelled it.
    Customer,
    /// Its reservation expired unpaid.
    // After `reservation_ttl_secs`, by the sweeper or at a payment that came too late.
    Expired,
}

impl CancelReason {
    /// The wire and database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "CUSTOMER",
            Self::Expired => "EXPIRED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "CUSTOMER" => Some(Self::Customer),
            "EXPIRED" => Some(Self::Expired),
            _ => None,
        }
    }
}

impl OrderEvent {
    /// The `eventName`, also the `type` header.
    pub fn name(&self) -> &'static str {
        match self {
            Self::OrderCreated(_) => "OrderCreated",
            Self::OrderPaid(_) => "OrderPaid",
            Self::OrderCancelled(_) => "OrderCancelled",
        }
    }

    /// The order's version after this event.
    pub fn version(&self) -> i32 {
        match self {
            Self::OrderCreated(e) => e.version,
            Self::OrderPaid(e) => e.version,
            Self::OrderCancelled(e) => e.version,
        }
    }

    /// The aggregate the event is about: the record key, so one order's events stay in order.
    pub fn order_id(&self) -> Uuid {
        match self {
            Self::OrderCreated(e) => e.order_id,
            Self::OrderPaid(e) => e.order_id,
            Self::OrderCancelled(e) => e.order_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wire_shape_matches_the_seed_contract() {
        let id = Uuid::nil();
        let at: DateTime<Utc> = "2026-01-20T20:00:00Z".parse().unwrap();
        let created = OrderEvent::OrderCreated(OrderCreated {
            order_id: id,
            customer_id: id,
            event_id: id,
            ticket_type_id: id,
            quantity: 2,
            total_price_in_cents: 10_000,
            occurred_at: at,
            region: "NA".into(),
            version: 1,
        });
        let v = serde_json::to_value(&created).unwrap();
        assert_eq!(
            v,
            json!({"eventName": "OrderCreated", "orderId": id, "customerId": id, "eventId": id, "ticketTypeId": id,
                   "quantity": 2, "totalPriceInCents": 10000, "occurredAt": "2026-01-20T20:00:00Z", "region": "NA", "version": 1})
        );
        assert_eq!(serde_json::from_value::<OrderEvent>(v).unwrap(), created);
        let paid = json!({"eventName": "OrderPaid", "orderId": id, "paidAt": "2026-01-20T21:00:00+01:00",
                          "region": "SA", "version": 2});
        assert_eq!(serde_json::from_value::<OrderEvent>(paid).unwrap().name(), "OrderPaid");
        let cancelled = json!({"eventName": "OrderCancelled", "orderId": id, "reason": "EXPIRED",
                               "cancelledAt": "2026-01-20T21:00:00Z", "region": "SA", "version": 2});
        let cancelled = serde_json::from_value::<OrderEvent>(cancelled).unwrap();
        assert!(matches!(&cancelled, OrderEvent::OrderCancelled(c) if c.reason == CancelReason::Expired));
        assert_eq!(cancelled.version(), 2);
        // Records from before versions: OrderCreated is 1, OrderPaid 2.
        let old = json!({"eventName": "OrderPaid", "orderId": id, "paidAt": "2026-01-20T21:00:00Z", "region": "SA"});
        assert_eq!(serde_json::from_value::<OrderEvent>(old).unwrap().version(), 2);
    }

    #[test]
    fn unknown_event_names_and_fields_are_refused() {
        assert!(serde_json::from_value::<OrderEvent>(json!({"eventName": "OrderShipped"})).is_err());
        let extra = json!({"eventName": "OrderPaid", "orderId": Uuid::nil(), "paidAt": "2026-01-20T21:00:00Z", "region": "SA", "version": 2, "x": 1});
        assert!(serde_json::from_value::<OrderEvent>(extra).is_err());
        let reason = json!({"eventName": "OrderCancelled", "orderId": Uuid::nil(), "reason": "BORED",
                            "cancelledAt": "2026-01-20T21:00:00Z", "region": "SA", "version": 2});
        assert!(serde_json::from_value::<OrderEvent>(reason).is_err());
    }
}

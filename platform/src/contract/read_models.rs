//! The projector's read API, written once: the rows of its public views (`event_sales`,
//! `customer_orders`, `order_timeline`) and the answers of `GET /api/v1/read/...` that carry
//! them. The projector decodes its rows into these and serialises them, the gateway decodes
//! its answers into them and (feature `graphql`) serves them as its GraphQL types, and the
//! audit compares the shards' truth with the same rows.
//!
//! The same rules as the rest of [`crate::contract`]: camelCase JSON, a doc comment is the
//! published schema's description (notes for Rust readers are plain comments). Ids and
//! timestamps are [`Id`] and [`Timestamp`], which carry their JSON and GraphQL spelling
//! themselves, so no field needs an attribute to be served.
//!
//! Every answer carries `asOf`: the newest event time the LIVE generation applied, `None`
//! (null) before it applied any.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{CancelReason, OrderStatus, Region};

/// An id: a UUID string in JSON, a UUID column in the views, an `ID` in GraphQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct Id(pub Uuid);

/// An instant: RFC 3339 in UTC in JSON (chrono's spelling), a `timestamptz` in the views, the
/// same text as a GraphQL `String`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct Timestamp(pub DateTime<Utc>);

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Sales of one ticket type, from the read model (eventually consistent; see `asOf`).
// One row of `event_sales`. A ticket type nobody ordered has no row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
#[serde(rename_all = "camelCase")]
pub struct TicketTypeSales {
    pub ticket_type_id: Id,
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
// `GET /api/v1/read/events/{eventId}/sales`; ticket types in id order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
#[serde(rename_all = "camelCase")]
pub struct EventSales {
    pub event_id: Id,
    /// When the last event the read model applied happened (RFC 3339); null before any.
    pub as_of: Option<Timestamp>,
    pub ticket_types: Vec<TicketTypeSales>,
}

/// One order in a customer's read model.
// One row of `customer_orders`. The facts (event … created_at) come from OrderCreated; an
// OrderPaid or OrderCancelled seen first gives a row with only status, region and version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
#[serde(rename_all = "camelCase")]
pub struct CustomerOrder {
    pub order_id: Id,
    /// Null while only a later event of the order has been seen.
    pub event_id: Option<Id>,
    pub ticket_type_id: Option<Id>,
    pub quantity: Option<i32>,
    pub total_price_in_cents: Option<i64>,
    pub status: OrderStatus,
    pub region: Region,
    pub created_at: Option<Timestamp>,
    pub paid_at: Option<Timestamp>,
    pub cancelled_at: Option<Timestamp>,
    pub cancel_reason: Option<CancelReason>,
    // The highest version the projector has seen.
    pub version: i32,
}

/// A page of a customer's orders from the read model, newest first.
// `GET /api/v1/read/customers/{customerId}/orders?first=&after=`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
#[serde(rename_all = "camelCase")]
pub struct CustomerOrders {
    pub customer_id: Id,
    pub as_of: Option<Timestamp>,
    pub items: Vec<CustomerOrder>,
    /// Pass as `after` for the next page; null on the last.
    // The projector's own opaque cursor, not a contract `Cursor`.
    pub next_cursor: Option<String>,
}

/// One event in an order's timeline, with where it came from.
// One row of `order_timeline`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
#[serde(rename_all = "camelCase")]
pub struct TimelineEvent {
    pub version: i32,
    // `OrderCreated`, `OrderPaid` or `OrderCancelled` (a check on the table); a `String` in the
    // schema.
    pub event_name: String,
    pub occurred_at: Timestamp,
    /// The shard whose outbox published it.
    pub source: String,
    pub outbox_id: String,
    pub correlation_id: Option<String>,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
}

/// An order's events in version order.
// `GET /api/v1/read/orders/{orderId}/timeline`; `customerId` is null while the order's
// OrderCreated has not been seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
#[serde(rename_all = "camelCase")]
pub struct OrderTimeline {
    pub order_id: Id,
    pub customer_id: Option<Id>,
    pub as_of: Option<Timestamp>,
    pub events: Vec<TimelineEvent>,
}

/// How [`Id`] and [`Timestamp`] are served: as the built-in `ID` and `String`, with the text the
/// JSON has, so the schema is the one the gateway always published.
#[cfg(feature = "graphql")]
mod gql {
    use std::borrow::Cow;

    use async_graphql::parser::types::Field;
    use async_graphql::registry::Registry;
    use async_graphql::{ContextSelectionSet, ID, OutputType, Positioned, ServerResult, Value};

    use super::{Id, Timestamp};
    use crate::contract::gql::{id, time};

    /// Serves `$wrapper` as the GraphQL type of `$shown`, converted by `$show`.
    macro_rules! served_as {
        ($wrapper:ty, $shown:ty, $show:expr) => {
            impl OutputType for $wrapper {
                fn type_name() -> Cow<'static, str> {
                    <$shown as OutputType>::type_name()
                }

                fn create_type_info(registry: &mut Registry) -> String {
                    <$shown as OutputType>::create_type_info(registry)
                }

                async fn resolve(
                    &self,
                    ctx: &ContextSelectionSet<'_>,
                    field: &Positioned<Field>,
                ) -> ServerResult<Value> {
                    let show: fn(&$wrapper) -> $shown = $show;
                    show(self).resolve(ctx, field).await
                }
            }
        };
    }

    served_as!(Id, ID, |i| id(i.0));
    served_as!(Timestamp, String, |t| time(t.0));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use serde_json::json;

    use super::*;

    /// The answer's JSON is what the projector served with `json!` before these types: the
    /// same names, nulls written out, timestamps in chrono's spelling.
    #[test]
    fn an_answer_keeps_its_json() {
        let order_id = Id(Uuid::nil());
        let at = Timestamp("2026-11-25T03:05:00.120Z".parse().unwrap());
        let answer = OrderTimeline {
            order_id,
            customer_id: None,
            as_of: Some(at),
            events: vec![TimelineEvent {
                version: 1,
                event_name: "OrderCreated".into(),
                occurred_at: at,
                source: "na-1".into(),
                outbox_id: "7".into(),
                correlation_id: None,
                kafka_partition: 0,
                kafka_offset: 3,
            }],
        };
        let want = json!({
            "orderId": order_id, "customerId": null, "asOf": "2026-11-25T03:05:00.120Z",
            "events": [{"version": 1, "eventName": "OrderCreated", "occurredAt": "2026-11-25T03:05:00.120Z",
                "source": "na-1", "outboxId": "7", "correlationId": null, "kafkaPartition": 0, "kafkaOffset": 3}],
        });
        assert_eq!(serde_json::to_value(&answer).unwrap(), want);
        assert_eq!(serde_json::from_value::<OrderTimeline>(want).unwrap(), answer);
    }
}

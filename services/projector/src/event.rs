//! What a record of `orders.events` must be before it may touch a read model.
//!
//! [`parse`] turns a record's headers and payload into an [`Incoming`] of checked values, or
//! a [`Rejection`] for the DLQ. The wire shape is `platform::events::OrderEvent` (shared with
//! the relays); on top of it come the rules serde cannot express: versions (1 for
//! OrderCreated, at least 2 after it), positive quantities, non-negative cents, a region, and
//! headers naming the record's source and outbox id (the inbox key). Inner code never
//! re-checks an [`Incoming`].

use chrono::{DateTime, Utc};
use platform::consumer::Rejection;
use platform::events::{CancelReason, OrderEvent, headers};
use rdkafka::Message;
use rdkafka::message::{Headers, OwnedMessage};
use uuid::Uuid;

/// Longest region name or header value accepted: they become database keys and log fields.
const MAX_TOKEN: usize = 128;

/// What an event says, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// The order's facts: who bought what, for how much.
    Created {
        customer_id: Uuid,
        event_id: Uuid,
        ticket_type_id: Uuid,
        quantity: i32,
        total_price_in_cents: i64,
    },
    Paid,
    Cancelled {
        reason: CancelReason,
    },
}

impl Kind {
    pub fn event_name(&self) -> &'static str {
        match self {
            Self::Created { .. } => "OrderCreated",
            Self::Paid => "OrderPaid",
            Self::Cancelled { .. } => "OrderCancelled",
        }
    }

    /// The order's status once this event is the newest one.
    pub fn status(&self) -> &'static str {
        match self {
            Self::Created { .. } => "PENDING",
            Self::Paid => "PAID",
            Self::Cancelled { .. } => "CANCELLED",
        }
    }
}

/// A valid event with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    pub order_id: Uuid,
    /// The order's version after this event (1 for OrderCreated).
    pub version: i32,
    /// When it happened: created, paid or cancelled at.
    pub occurred_at: DateTime<Utc>,
    pub region: String,
    pub kind: Kind,
    /// The `shard` header: with `outbox_id`, the inbox key (outbox ids are numbered per shard).
    pub source: String,
    pub outbox_id: String,
    pub correlation_id: Option<String>,
}

fn reject(code: &'static str, what: impl std::fmt::Display) -> Rejection {
    let mut reason = format!("{code}: {what}");
    if reason.len() > 500 {
        let mut end = 500;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    Rejection { code, reason }
}

/// A header as a token: 1–128 visible ASCII characters.
fn token(name: &'static str, raw: Option<&[u8]>) -> Result<String, Rejection> {
    let raw = raw.ok_or_else(|| reject("missing-header", format!("missing header `{name}`")))?;
    let s = std::str::from_utf8(raw).map_err(|_| reject("bad-header", format!("header `{name}`: not UTF-8")))?;
    if s.is_empty() || s.len() > MAX_TOKEN || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(reject("bad-header", format!("header `{name}`: must be 1–128 visible ASCII characters")));
    }
    Ok(s.to_owned())
}

/// Parses one record; the same bytes always give the same answer.
pub fn parse(msg: &OwnedMessage) -> Result<Incoming, Rejection> {
    let (mut event_type, mut outbox_id, mut source, mut correlation) = (None, None, None, None);
    if let Some(hs) = msg.headers() {
        for h in hs.iter() {
            match h.key {
                headers::TYPE => event_type = h.value,
                headers::OUTBOX_ID => outbox_id = h.value,
                headers::SHARD => source = h.value,
                headers::CORRELATION_ID => correlation = h.value,
                _ => {}
            }
        }
    }
    let payload = msg.payload().ok_or_else(|| reject("no-payload", "the record has no payload"))?;
    let event: OrderEvent =
        serde_json::from_slice(payload).map_err(|e| reject("wrong-shape", format!("not an order event: {e}")))?;
    let event_type = token(headers::TYPE, event_type)?;
    if event_type != event.name() {
        return Err(reject(
            "type-mismatch",
            format!("header `type` is `{event_type}` but the payload's eventName is `{}`", event.name()),
        ));
    }
    let source = token(headers::SHARD, source)?;
    let outbox_id = token(headers::OUTBOX_ID, outbox_id)?;
    // A correlation id is for tracing only: an unusable one is dropped, not a reason to refuse.
    let correlation_id = correlation.and_then(|c| token(headers::CORRELATION_ID, Some(c)).ok());
    let (order_id, version, occurred_at, region, kind) = match event {
        OrderEvent::OrderCreated(e) => {
            if e.version != 1 {
                return Err(reject("invalid-field", format!("version: OrderCreated must be 1, got {}", e.version)));
            }
            if e.quantity <= 0 {
                return Err(reject("invalid-field", format!("quantity: must be positive, got {}", e.quantity)));
            }
            if e.total_price_in_cents < 0 {
                return Err(reject(
                    "invalid-field",
                    format!("totalPriceInCents: must not be negative, got {}", e.total_price_in_cents),
                ));
            }
            let kind = Kind::Created {
                customer_id: e.customer_id,
                event_id: e.event_id,
                ticket_type_id: e.ticket_type_id,
                quantity: e.quantity,
                total_price_in_cents: e.total_price_in_cents,
            };
            (e.order_id, e.version, e.occurred_at, e.region, kind)
        }
        OrderEvent::OrderPaid(e) => (e.order_id, e.version, e.paid_at, e.region, Kind::Paid),
        OrderEvent::OrderCancelled(e) => {
            (e.order_id, e.version, e.cancelled_at, e.region, Kind::Cancelled { reason: e.reason })
        }
    };
    if !matches!(kind, Kind::Created { .. }) && version < 2 {
        return Err(reject(
            "invalid-field",
            format!("version: {} must be at least 2, got {version}", kind.event_name()),
        ));
    }
    if region.is_empty() || region.len() > MAX_TOKEN {
        return Err(reject("invalid-field", "region: must be 1–128 characters"));
    }
    Ok(Incoming { order_id, version, occurred_at, region, kind, source, outbox_id, correlation_id })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use rdkafka::Timestamp;
    use rdkafka::message::{Header, OwnedHeaders};
    use serde_json::{Value, json};

    use super::*;

    fn record(payload: &Value, hs: &[(&str, &str)]) -> OwnedMessage {
        let mut owned = OwnedHeaders::new();
        for (k, v) in hs {
            owned = owned.insert(Header { key: k, value: Some(*v) });
        }
        OwnedMessage::new(
            Some(payload.to_string().into_bytes()),
            None,
            "t".into(),
            Timestamp::NotAvailable,
            0,
            0,
            Some(owned),
        )
    }

    fn created(version: i32, quantity: i32) -> Value {
        json!({"eventName": "OrderCreated", "orderId": Uuid::nil(), "customerId": Uuid::nil(), "eventId": Uuid::nil(),
               "ticketTypeId": Uuid::nil(), "quantity": quantity, "totalPriceInCents": 5000,
               "occurredAt": "2026-11-25T03:00:00Z", "region": "NA", "version": version})
    }

    const HS: [(&str, &str); 4] =
        [("type", "OrderCreated"), ("outbox-id", "7"), ("shard", "na-1"), ("x-correlation-id", "c-1")];

    #[test]
    fn a_valid_record_keeps_its_inbox_key_and_correlation() {
        let got = parse(&record(&created(1, 2), &HS)).unwrap();
        assert_eq!((got.source.as_str(), got.outbox_id.as_str(), got.version), ("na-1", "7", 1));
        assert_eq!(got.correlation_id.as_deref(), Some("c-1"));
        assert_eq!(got.kind.status(), "PENDING");
    }

    #[test]
    fn refuses_what_could_corrupt_a_read_model() {
        let cases = [
            (record(&created(2, 2), &HS), "invalid-field"),
            (record(&created(1, 0), &HS), "invalid-field"),
            (record(&created(1, 2), &HS[..2]), "missing-header"),
            (record(&created(1, 2), &[("type", "OrderPaid"), ("outbox-id", "7"), ("shard", "na-1")]), "type-mismatch"),
            (record(&json!({"eventName": "OrderShipped"}), &HS), "wrong-shape"),
            (
                record(
                    &json!({"eventName": "OrderPaid", "orderId": Uuid::nil(), "paidAt": "2026-11-25T03:00:00Z",
                            "region": "NA", "version": 1}),
                    &[("type", "OrderPaid"), ("outbox-id", "7"), ("shard", "na-1")],
                ),
                "invalid-field",
            ),
        ];
        for (msg, code) in cases {
            assert_eq!(parse(&msg).unwrap_err().code, code);
        }
    }
}

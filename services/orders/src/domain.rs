//! Orders input parsed once at the door. Handlers turn request bodies into these; services,
//! the store and routing code never re-check them.
//!
//! Money is integer cents in `i64`, and every product of price and quantity is checked.

use chrono::{DateTime, FixedOffset, Utc};
use shard_router::Partition;

/// Most tickets one ticket type may hold.
pub const MAX_TOTAL_QUANTITY: i32 = 1_000_000;
/// Most one ticket may cost: 1,000,000.00 in the currency's minor unit.
pub const MAX_PRICE_IN_CENTS: i64 = 100_000_000;
/// Most ticket types one event may have.
pub const MAX_TICKET_TYPES: usize = 50;

/// A positive price in cents, at most [`MAX_PRICE_IN_CENTS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cents(i64);

impl Cents {
    pub fn parse(v: i64) -> Result<Self, String> {
        if v <= 0 {
            Err("must be a positive number of cents".into())
        } else if v > MAX_PRICE_IN_CENTS {
            Err(format!("must be at most {MAX_PRICE_IN_CENTS} cents"))
        } else {
            Ok(Self(v))
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }

    /// Price × quantity, `None` on overflow (impossible within today's bounds, checked anyway
    /// so a raised bound can never wrap money).
    pub fn times(self, quantity: Quantity) -> Option<i64> {
        self.0.checked_mul(i64::from(quantity.0))
    }
}

/// How many tickets one order buys: 1 to the configured maximum per order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity(i32);

impl Quantity {
    pub fn parse(v: i64, max_per_order: i32) -> Result<Self, String> {
        match i32::try_from(v) {
            Ok(q) if (1..=max_per_order).contains(&q) => Ok(Self(q)),
            _ => Err(format!("must be between 1 and {max_per_order}")),
        }
    }

    pub fn get(self) -> i32 {
        self.0
    }
}

/// How many tickets a ticket type offers: 1 to [`MAX_TOTAL_QUANTITY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TotalQuantity(i32);

impl TotalQuantity {
    pub fn parse(v: i64) -> Result<Self, String> {
        match i32::try_from(v) {
            Ok(q) if (1..=MAX_TOTAL_QUANTITY).contains(&q) => Ok(Self(q)),
            _ => Err(format!("must be between 1 and {MAX_TOTAL_QUANTITY}")),
        }
    }

    pub fn get(self) -> i32 {
        self.0
    }
}

/// Trimmed text of bounded length in characters (titles, venues, ticket type names), with no
/// control characters but line breaks and tabs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(String);

impl Text {
    pub fn parse(raw: &str, max_chars: usize) -> Result<Self, String> {
        let s = raw.trim();
        match s.chars().count() {
            0 => Err("is required".into()),
            n if n > max_chars => Err(format!("must be at most {max_chars} characters")),
            _ => platform::parse::printable(s, true).map(|()| Self(s.to_owned())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An RFC 3339 timestamp that states its offset (`Z` or `±hh:mm`): a local time without one
/// is ambiguous for an event that people travel to.
pub fn timestamp(raw: &str) -> Result<DateTime<Utc>, String> {
    DateTime::<FixedOffset>::parse_from_rfc3339(raw.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| "must be an RFC 3339 timestamp with offset, e.g. 2026-01-20T20:00:00Z".into())
}

/// When an event happens: starts strictly before it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventWindow {
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

impl EventWindow {
    pub fn new(starts_at: DateTime<Utc>, ends_at: DateTime<Utc>) -> Result<Self, String> {
        if starts_at < ends_at { Ok(Self { starts_at, ends_at }) } else { Err("must be after startsAt".into()) }
    }
}

/// A client's `Idempotency-Key`: 1–255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let ok = (1..=255).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_graphic());
        if ok { Ok(Self(raw.to_owned())) } else { Err("must be 1-255 visible ASCII characters".into()) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A valid new event, every field parsed.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub region: shard_router::RegionName,
    pub title: Text,
    pub description: Option<Text>,
    pub venue: Text,
    pub window: EventWindow,
    /// 1 to [`MAX_TICKET_TYPES`].
    pub ticket_types: Vec<NewTicketType>,
}

#[derive(Debug, Clone)]
pub struct NewTicketType {
    pub name: Text,
    pub price: Cents,
    pub total: TotalQuantity,
}

/// A valid new order: the ticket type is the event's, and the region the event's own.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub event_id: uuid::Uuid,
    pub ticket_type_id: uuid::Uuid,
    /// The event's region and partition, from its id: where the order lives too.
    pub region: shard_router::RegionName,
    pub partition: Partition,
    pub quantity: Quantity,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cents_bounds() {
        assert!(Cents::parse(0).is_err());
        assert!(Cents::parse(-5).is_err());
        assert!(Cents::parse(MAX_PRICE_IN_CENTS + 1).is_err());
        assert_eq!(Cents::parse(5000).map(Cents::get), Ok(5000));
    }

    proptest! {
        #[test]
        fn totals_never_wrap(price in 1i64..=MAX_PRICE_IN_CENTS, q in 1i64..=10) {
            let total = Cents::parse(price).unwrap().times(Quantity::parse(q, 10).unwrap());
            prop_assert_eq!(total, Some(price * q));
        }

        #[test]
        fn quantities_outside_bounds_are_refused(q in proptest::num::i64::ANY) {
            let parsed = Quantity::parse(q, 10);
            prop_assert_eq!(parsed.is_ok(), (1..=10).contains(&q));
        }
    }

    #[test]
    fn quantities() {
        assert!(Quantity::parse(0, 10).is_err());
        assert!(Quantity::parse(11, 10).is_err());
        assert!(Quantity::parse(i64::from(i32::MAX) + 1, i32::MAX).is_err());
        assert!(TotalQuantity::parse(0).is_err());
        assert!(TotalQuantity::parse(i64::from(MAX_TOTAL_QUANTITY) + 1).is_err());
        assert_eq!(TotalQuantity::parse(100).map(TotalQuantity::get), Ok(100));
    }

    #[test]
    fn text() {
        assert!(Text::parse("   ", 255).is_err());
        assert_eq!(Text::parse(" Indie Night ", 255).unwrap().as_str(), "Indie Night");
        assert!(Text::parse(&"a".repeat(256), 255).is_err());
        assert!(Text::parse("a\u{0}b", 255).is_err());
    }

    #[test]
    fn timestamps_need_an_offset_and_order() {
        assert!(timestamp("2026-01-20T20:00:00Z").is_ok());
        assert_eq!(timestamp("2026-01-20T21:00:00+01:00").unwrap(), timestamp("2026-01-20T20:00:00Z").unwrap());
        assert!(timestamp("2026-01-20T20:00:00").is_err());
        assert!(timestamp("2026-01-20").is_err());
        let (a, b) = (timestamp("2026-01-20T20:00:00Z").unwrap(), timestamp("2026-01-20T23:00:00Z").unwrap());
        assert!(EventWindow::new(a, b).is_ok());
        assert!(EventWindow::new(b, a).is_err());
        assert!(EventWindow::new(a, a).is_err());
    }

    #[test]
    fn idempotency_keys() {
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse("has space").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
        assert!(IdempotencyKey::parse("order-2026-01-20:abc").is_ok());
    }
}

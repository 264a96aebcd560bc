//! What a record on `orders.events` must be before it may have an effect.
//!
//! [`parse`] turns a record's headers and payload into an [`Envelope`] of domain types, or says
//! why it cannot ([`Invalid`], whose [`Invalid::reason`] becomes the `dlq-reason` header). The
//! wire shape is `platform::events::OrderEvent`, shared with the relays, so a renamed field
//! breaks the build; on top of serde's shape check come the rules serde cannot express:
//! canonical UUIDs, RFC 3339 timestamps, positive quantities, non-negative cents and a region
//! this deployment knows. Inner code never re-checks an [`Envelope`].

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use chrono::{DateTime, Utc};
use platform::events::{CancelReason, OrderEvent, headers};
use serde_json::Value;
use uuid::Uuid;

/// Why a record cannot be applied. Each is final: the same bytes fail the same way on every
/// delivery, so the record goes to the DLQ instead of being retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("the record has no payload")]
    NoPayload,
    #[error("the payload is not JSON: {0}")]
    NotJson(String),
    #[error("the payload has no string `eventName`")]
    NoEventName,
    #[error("unknown eventName `{0}`")]
    UnknownEvent(String),
    /// Missing or mistyped fields, unknown fields, a value of the wrong type.
    #[error("the payload does not match {event}: {detail}")]
    Shape { event: &'static str, detail: String },
    /// The shape is right but a value breaks a rule.
    #[error("{field}: {message}")]
    Field { field: &'static str, message: String },
    #[error("missing header `{0}`")]
    MissingHeader(&'static str),
    #[error("header `{header}`: {message}")]
    BadHeader { header: &'static str, message: String },
    #[error("header `type` is `{header}` but the payload's eventName is `{payload}`")]
    TypeMismatch { header: String, payload: &'static str },
}

impl Invalid {
    /// A stable code for metrics labels and for the start of the `dlq-reason` header.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoPayload => "no-payload",
            Self::NotJson(_) => "not-json",
            Self::NoEventName | Self::Shape { .. } => "wrong-shape",
            Self::UnknownEvent(_) => "unknown-event",
            Self::Field { .. } => "invalid-field",
            Self::MissingHeader(_) => "missing-header",
            Self::BadHeader { .. } => "bad-header",
            Self::TypeMismatch { .. } => "type-mismatch",
        }
    }

    /// The `dlq-reason` header: `<code>: <what is wrong>`, so tools can branch on the code and
    /// people can read the rest.
    pub fn reason(&self) -> String {
        format!("{}: {self}", self.code())
    }
}

/// The regions this deployment serves: the names of `shards.toml`'s `[regions]` table, and
/// nothing else of that file (this service knows nothing of shards).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownRegions(BTreeSet<String>);

impl KnownRegions {
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(names: I) -> Self {
        Self(names.into_iter().map(Into::into).collect())
    }

    /// Reads the region names from a shard map file.
    pub fn from_shards_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        let doc: toml::Table = text.parse().map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let regions = doc
            .get("regions")
            .and_then(toml::Value::as_table)
            .ok_or_else(|| anyhow::anyhow!("{}: no [regions] table", path.display()))?;
        anyhow::ensure!(!regions.is_empty(), "{}: [regions] names no region", path.display());
        Ok(Self::new(regions.keys().cloned()))
    }

    pub fn parse(&self, s: &str) -> Result<Region, String> {
        if self.0.contains(s) {
            Ok(Region(s.to_owned()))
        } else {
            let known: Vec<&str> = self.0.iter().map(String::as_str).collect();
            Err(format!("unknown region `{s}` (known: {})", known.join(", ")))
        }
    }
}

/// A region this deployment serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region(String);

impl Region {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Tickets in an order: at least one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity(i32);

impl Quantity {
    pub fn parse(n: i32) -> Result<Self, String> {
        if n > 0 { Ok(Self(n)) } else { Err(format!("must be positive, got {n}")) }
    }

    pub fn get(self) -> i32 {
        self.0
    }
}

/// An amount in cents: never negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cents(i64);

impl Cents {
    pub fn parse(n: i64) -> Result<Self, String> {
        if n >= 0 { Ok(Self(n)) } else { Err(format!("must not be negative, got {n}")) }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Cents {
    /// `12345` → `123.45`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

/// A header value used as an identifier (`outbox-id`, `shard`): 1–128 visible ASCII characters,
/// so it is safe as a database key and in logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Token(String);

impl Token {
    pub fn parse(raw: &[u8]) -> Result<Self, String> {
        let s = std::str::from_utf8(raw).map_err(|_| "not UTF-8".to_owned())?;
        if s.is_empty() || s.len() > 128 || !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must be 1–128 visible ASCII characters".into());
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An order was placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub event_id: Uuid,
    pub ticket_type_id: Uuid,
    pub quantity: Quantity,
    pub total: Cents,
    pub occurred_at: DateTime<Utc>,
    pub region: Region,
}

/// An order was paid. Carries no customer id (the seed contract), see the store for the
/// recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paid {
    pub order_id: Uuid,
    pub paid_at: DateTime<Utc>,
    pub region: Region,
}

/// A pending order was cancelled (by its customer, or because its reservation expired).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancelled {
    pub order_id: Uuid,
    pub reason: CancelReason,
    pub cancelled_at: DateTime<Utc>,
    pub region: Region,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Created(Created),
    Paid(Paid),
    Cancelled(Cancelled),
}

impl Event {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Created(_) => "OrderCreated",
            Self::Paid(_) => "OrderPaid",
            Self::Cancelled(_) => "OrderCancelled",
        }
    }

    pub fn order_id(&self) -> Uuid {
        match self {
            Self::Created(e) => e.order_id,
            Self::Paid(e) => e.order_id,
            Self::Cancelled(e) => e.order_id,
        }
    }

    pub fn region(&self) -> &Region {
        match self {
            Self::Created(e) => &e.region,
            Self::Paid(e) => &e.region,
            Self::Cancelled(e) => &e.region,
        }
    }
}

/// A valid record: its idempotency key and its event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The `shard` header: outbox ids are unique per source only.
    pub source: Token,
    /// The `outbox-id` header.
    pub outbox_id: Token,
    pub event: Event,
}

/// The headers [`parse`] reads, as raw bytes (`None` when absent).
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordHeaders<'a> {
    pub event_type: Option<&'a [u8]>,
    pub outbox_id: Option<&'a [u8]>,
    pub source: Option<&'a [u8]>,
}

const CREATED_UUIDS: [&str; 4] = ["orderId", "customerId", "eventId", "ticketTypeId"];
/// `OrderPaid` and `OrderCancelled` name only the order.
const PAID_UUIDS: [&str; 1] = ["orderId"];

/// Validates one record. Never panics, whatever the bytes.
pub fn parse(h: RecordHeaders<'_>, payload: Option<&[u8]>, regions: &KnownRegions) -> Result<Envelope, Invalid> {
    let payload = payload.filter(|p| !p.is_empty()).ok_or(Invalid::NoPayload)?;
    let value: Value = serde_json::from_slice(payload).map_err(|e| Invalid::NotJson(clip(&e.to_string(), 200)))?;
    let name = value.get("eventName").and_then(Value::as_str).ok_or(Invalid::NoEventName)?;
    let (name, uuids, at_field): (&'static str, &[&'static str], &'static str) = match name {
        "OrderCreated" => ("OrderCreated", &CREATED_UUIDS, "occurredAt"),
        "OrderPaid" => ("OrderPaid", &PAID_UUIDS, "paidAt"),
        "OrderCancelled" => ("OrderCancelled", &PAID_UUIDS, "cancelledAt"),
        other => return Err(Invalid::UnknownEvent(truncate(other))),
    };
    // Values serde would accept too leniently: UUIDs in braces, URN or unhyphenated form, and
    // timestamps that are not RFC 3339. Checked on the raw strings so the reason names the field.
    for field in uuids {
        if let Some(s) = value.get(*field).and_then(Value::as_str) {
            canonical_uuid(s).map_err(|message| Invalid::Field { field, message })?;
        }
    }
    if let Some(s) = value.get(at_field).and_then(Value::as_str) {
        DateTime::parse_from_rfc3339(s).map_err(|e| Invalid::Field {
            field: at_field,
            message: format!("`{}` is not an RFC 3339 timestamp: {e}", truncate(s)),
        })?;
    }
    let wire: OrderEvent =
        serde_json::from_value(value).map_err(|e| Invalid::Shape { event: name, detail: clip(&e.to_string(), 200) })?;

    let event = match wire {
        OrderEvent::OrderCreated(e) => Event::Created(Created {
            order_id: e.order_id,
            customer_id: e.customer_id,
            event_id: e.event_id,
            ticket_type_id: e.ticket_type_id,
            quantity: Quantity::parse(e.quantity).map_err(|message| Invalid::Field { field: "quantity", message })?,
            total: Cents::parse(e.total_price_in_cents)
                .map_err(|message| Invalid::Field { field: "totalPriceInCents", message })?,
            occurred_at: e.occurred_at,
            region: regions.parse(&e.region).map_err(|message| Invalid::Field { field: "region", message })?,
        }),
        OrderEvent::OrderPaid(e) => Event::Paid(Paid {
            order_id: e.order_id,
            paid_at: e.paid_at,
            region: regions.parse(&e.region).map_err(|message| Invalid::Field { field: "region", message })?,
        }),
        OrderEvent::OrderCancelled(e) => Event::Cancelled(Cancelled {
            order_id: e.order_id,
            reason: e.reason,
            cancelled_at: e.cancelled_at,
            region: regions.parse(&e.region).map_err(|message| Invalid::Field { field: "region", message })?,
        }),
    };

    let outbox_id = header_token(h.outbox_id, headers::OUTBOX_ID)?;
    let source = header_token(h.source, headers::SHARD)?;
    // The relay sets `type` from the outbox row; disagreeing with the payload means one of the
    // two is wrong, and guessing which would apply the wrong effect.
    if let Some(raw) = h.event_type
        && raw != event.name().as_bytes()
    {
        return Err(Invalid::TypeMismatch { header: truncate(&String::from_utf8_lossy(raw)), payload: event.name() });
    }
    Ok(Envelope { source, outbox_id, event })
}

fn header_token(raw: Option<&[u8]>, header: &'static str) -> Result<Token, Invalid> {
    Token::parse(raw.ok_or(Invalid::MissingHeader(header))?).map_err(|message| Invalid::BadHeader { header, message })
}

fn canonical_uuid(s: &str) -> Result<Uuid, String> {
    match Uuid::try_parse(s) {
        Ok(id) if s.len() == 36 => Ok(id),
        _ => Err(format!("`{}` is not a UUID in hyphenated form", truncate(s))),
    }
}

/// Echoed input is cut, so a huge value cannot blow up a header or a log line.
fn truncate(s: &str) -> String {
    platform::error::shown(s).into_owned()
}

/// `s` cut to `max` characters (serde's messages quote the offending value).
fn clip(s: &str, max: usize) -> String {
    platform::error::clip(s, max).into_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use serde_json::json;

    fn regions() -> KnownRegions {
        KnownRegions::new(["NA", "SA"])
    }

    fn headers() -> RecordHeaders<'static> {
        RecordHeaders { event_type: Some(b"OrderCreated"), outbox_id: Some(b"17"), source: Some(b"na-1") }
    }

    fn created() -> Value {
        json!({"eventName": "OrderCreated", "orderId": Uuid::now_v7(), "customerId": Uuid::now_v7(),
               "eventId": Uuid::now_v7(), "ticketTypeId": Uuid::now_v7(), "quantity": 2,
               "totalPriceInCents": 10000, "occurredAt": "2026-01-20T20:00:00Z", "region": "NA", "version": 1})
    }

    fn run(h: RecordHeaders<'_>, v: &Value) -> Result<Envelope, Invalid> {
        parse(h, Some(v.to_string().as_bytes()), &regions())
    }

    fn with(field: &str, value: Value) -> Value {
        let mut v = created();
        v[field] = value;
        v
    }

    #[test]
    fn a_valid_created_event_becomes_domain_types() {
        let env = run(headers(), &created()).unwrap();
        assert_eq!(env.outbox_id.as_str(), "17");
        assert_eq!(env.source.as_str(), "na-1");
        let Event::Created(c) = env.event else { panic!("not Created") };
        assert_eq!((c.quantity.get(), c.total.to_string(), c.region.as_str()), (2, "100.00".into(), "NA"));
    }

    #[test]
    fn a_valid_paid_event_with_an_offset_timestamp() {
        let v = json!({"eventName": "OrderPaid", "orderId": Uuid::now_v7(), "paidAt": "2026-01-20T21:00:00+01:00", "region": "SA", "version": 2});
        let h = RecordHeaders { event_type: Some(b"OrderPaid"), ..headers() };
        let env = run(h, &v).unwrap();
        assert_eq!(env.event.name(), "OrderPaid");
        assert_eq!(env.event.region().as_str(), "SA");
    }

    #[test]
    fn each_broken_rule_has_its_own_reason() {
        let code = |h, v: &Value| run(h, v).unwrap_err().code();
        assert_eq!(parse(headers(), Some(b"not json"), &regions()).unwrap_err().code(), "not-json");
        assert_eq!(parse(headers(), None, &regions()).unwrap_err().code(), "no-payload");
        assert_eq!(code(headers(), &json!({"hello": 1})), "wrong-shape");
        assert_eq!(code(headers(), &json!([1, 2])), "wrong-shape");
        assert_eq!(code(headers(), &json!({"eventName": "OrderShipped"})), "unknown-event");
        assert_eq!(code(headers(), &with("quantity", json!(0))), "invalid-field");
        assert_eq!(code(headers(), &with("quantity", json!("2"))), "wrong-shape");
        assert_eq!(code(headers(), &with("totalPriceInCents", json!(-1))), "invalid-field");
        assert_eq!(code(headers(), &with("region", json!("EU"))), "invalid-field");
        assert_eq!(code(headers(), &with("extra", json!(1))), "wrong-shape");
        let no_id = RecordHeaders { outbox_id: None, ..headers() };
        assert_eq!(run(no_id, &created()).unwrap_err(), Invalid::MissingHeader("outbox-id"));
        let no_source = RecordHeaders { source: None, ..headers() };
        assert_eq!(run(no_source, &created()).unwrap_err(), Invalid::MissingHeader("shard"));
        let odd_id = RecordHeaders { outbox_id: Some(b"has space"), ..headers() };
        assert_eq!(code(odd_id, &created()), "bad-header");
        let wrong_type = RecordHeaders { event_type: Some(b"OrderPaid"), ..headers() };
        assert_eq!(code(wrong_type, &created()), "type-mismatch");
    }

    #[test]
    fn uuids_must_be_hyphenated_and_timestamps_rfc3339() {
        let simple = Uuid::now_v7().simple().to_string();
        let err = run(headers(), &with("customerId", json!(simple))).unwrap_err();
        assert!(matches!(err, Invalid::Field { field: "customerId", .. }), "{err:?}");
        let err = run(headers(), &with("eventId", json!("nope"))).unwrap_err();
        assert!(matches!(err, Invalid::Field { field: "eventId", .. }), "{err:?}");
        for at in ["2026-01-20", "20/01/2026 20:00", "2026-01-20T20:00:00"] {
            let err = run(headers(), &with("occurredAt", json!(at))).unwrap_err();
            assert!(matches!(err, Invalid::Field { field: "occurredAt", .. }), "{at}: {err:?}");
        }
    }

    #[test]
    fn reasons_are_bounded_and_start_with_the_code() {
        let long = "x".repeat(10_000);
        let err = run(headers(), &json!({"eventName": long})).unwrap_err();
        assert!(err.reason().starts_with("unknown-event: "), "{}", err.reason());
        assert!(err.reason().len() < 200);
        // serde quotes the mistyped value in its message.
        let err = run(headers(), &with("quantity", json!(long))).unwrap_err();
        assert!(err.reason().starts_with("wrong-shape: "), "{}", err.reason());
        assert!(err.reason().len() < 300, "{}", err.reason());
    }

    #[test]
    fn regions_are_read_from_the_shard_map_names_only() {
        let dir = std::env::temp_dir().join(format!("regions-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("shards.toml");
        std::fs::write(&file, "[regions.NA]\nshards = [\"na-1\"]\n[regions.EU]\nx = 1\n[shards.na-1]\nurl = \"\"\n")
            .unwrap();
        let r = KnownRegions::from_shards_file(&file).unwrap();
        assert_eq!(r, KnownRegions::new(["EU", "NA"]));
        std::fs::write(&file, "[shards.na-1]\n").unwrap();
        assert!(KnownRegions::from_shards_file(&file).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

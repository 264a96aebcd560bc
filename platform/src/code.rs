//! The stable `error` codes of HTTP answers that more than one crate reads: the services write
//! them, the gateway passes them on to GraphQL clients. Spelled once here so a typo on either
//! side is a compile error, not a silent `CONFLICT`. Codes of the `ApiError` variants themselves
//! (`VALIDATION_ERROR`, `NOT_FOUND`, …) live with the variants in [`crate::error`].

/// A state conflict with no more specific code (409).
pub const CONFLICT: &str = "CONFLICT";
/// The ticket type has no tickets left (409).
pub const SOLD_OUT: &str = "SOLD_OUT";
/// Fewer tickets left than asked for; `details.remaining` says how many (409).
pub const INSUFFICIENT_STOCK: &str = "INSUFFICIENT_STOCK";
/// The order names a region its event does not live in (422).
pub const REGION_MISMATCH: &str = "REGION_MISMATCH";
/// An `Idempotency-Key` sent again with a different request (422).
pub const IDEMPOTENCY_KEY_REUSED: &str = "IDEMPOTENCY_KEY_REUSED";
/// Cancelling an order that is paid (409).
pub const ORDER_PAID: &str = "ORDER_PAID";
/// Paying an order that was cancelled (409).
pub const ORDER_CANCELLED: &str = "ORDER_CANCELLED";
/// Paying an order whose reservation ran out (409).
pub const RESERVATION_EXPIRED: &str = "RESERVATION_EXPIRED";

/// The conflict codes the gateway hands on to its clients unchanged.
pub const PASSED_THROUGH: [&str; 7] =
    [CONFLICT, SOLD_OUT, INSUFFICIENT_STOCK, REGION_MISMATCH, ORDER_PAID, ORDER_CANCELLED, RESERVATION_EXPIRED];

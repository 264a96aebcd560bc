//! The notifications service, started for real against a fresh database and per-test topics on
//! the real broker; records produced as the relay produces them.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests: a failed expectation is a failed test")]

mod api {
    pub mod delivery;
    pub mod dlq;
    pub mod helpers;
    pub mod ops;
    pub mod outage;
    pub mod stall;
    pub mod standby;
    pub mod throughput;
}

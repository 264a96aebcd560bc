//! The orders service and the relay process, started for real against fresh shard databases
//! and a real accounts service (tokens through its JWKS).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests: a failed expectation is a failed test")]

mod api {
    pub mod abuse;
    pub mod customers;
    pub mod events;
    pub mod helpers;
    pub mod hints;
    pub mod lifecycle;
    pub mod ops;
    pub mod orders;
    pub mod placement;
    pub mod rebalance;
    pub mod relay;
}

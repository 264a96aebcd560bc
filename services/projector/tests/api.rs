//! The projector, started for real against a fresh `read_models` database and per-test
//! topics on the real broker; records produced as the relays produce them.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests: a failed expectation is a failed test")]

mod api {
    pub mod helpers;
    pub mod http;
    pub mod ops;
    pub mod projection;
    pub mod rebuild;
}

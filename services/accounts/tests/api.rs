//! The accounts service, started for real against a fresh database and Redis prefix.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests: a failed expectation is a failed test")]

mod api {
    pub mod abuse;
    pub mod grpc;
    pub mod helpers;
    pub mod http;
    pub mod ops;
}

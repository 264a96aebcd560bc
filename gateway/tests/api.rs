//! The gateway, started for real in front of the real accounts and orders services, each test
//! on fresh databases and its own Redis key prefix.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests: a failed expectation is a failed test")]

mod api {
    pub mod abuse;
    pub mod cache;
    pub mod errors;
    pub mod flows;
    pub mod graphiql;
    pub mod helpers;
    pub mod measure;
    pub mod ops;
    pub mod read_models;
    pub mod readme;
}

//! The services of Ticket Hub started together for one test: accounts, orders on fresh shard
//! databases, and the gateway in front when asked for, each on port 0, with named test users
//! and typed requests to orders.
//!
//! ```ignore
//! let s = Stack::builder().down("sa-1").with_gateway().start().await;
//! let customer = s.user("CUSTOMER").await;
//! ```
//!
//! A dev-dependency only (see `Cargo.toml`). Isolation and teardown come from [`testkit`]:
//! fresh databases dropped afterwards, one Redis prefix for the whole stack, and the shards'
//! teardown assertion (no FAILED outbox row unless the test expects it).
//!
//! # Layout
//! - [`stack`]: [`Stack`], its [`StackBuilder`], [`TestUser`], and requests to orders.
//! - [`services`]: each service's test settings and start, for a test that runs one more
//!   (a second orders, a gateway with other settings) or only accounts.
//! - [`pipeline`]: [`Pipeline`], the relay and both consumers behind a stack.

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "test support: a failed expectation is a failed test")]

pub mod pipeline;
pub mod services;
pub mod stack;

pub use pipeline::Pipeline;
pub use stack::{Stack, StackBuilder, TestUser, event_body, order_body};

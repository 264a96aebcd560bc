//! The test stack's tests, in one binary: every service's defaults, and one order's trace
//! across every service.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests: a failed expectation is a failed test")]

mod api {
    pub mod defaults;
    pub mod traces;
}

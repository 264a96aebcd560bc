//! The test stack's tests, in one binary: every service's defaults, and one order's trace
//! across every service.

mod defaults;
mod traces;

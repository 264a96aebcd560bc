//! Generated gRPC code for Ticket Hub's internal contracts.
//!
//! # Layout
//! - [`accounts::v1`]: `AccountsService/GetUserById`, served by accounts, called by orders.
//!
//! orders has no gRPC contract: its `OrdersService` was generated but never served, and every
//! caller (the gateway today) reads orders over HTTP, so it was deleted rather than
//! kept as a second, untested way in.

#![allow(clippy::all, clippy::pedantic, missing_docs, reason = "generated code")]

pub mod accounts {
    pub mod v1 {
        tonic::include_proto!("accounts.v1");
    }
}

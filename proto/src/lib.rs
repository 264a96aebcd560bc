//! Generated gRPC code for Ticket Hub's internal contracts.
//!
//! # Layout
//! - [`accounts::v1`]: `AccountsService/GetUserById`, served by accounts, called by orders.
//! - [`orders::v1`]: `OrdersService/GetOrderById`.

#![allow(clippy::all, clippy::pedantic, missing_docs, reason = "generated code")]

pub mod accounts {
    pub mod v1 {
        tonic::include_proto!("accounts.v1");
    }
}

pub mod orders {
    pub mod v1 {
        tonic::include_proto!("orders.v1");
    }
}

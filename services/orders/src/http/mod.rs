//! The orders HTTP API: each handler parses the request into domain types (see
//! [`crate::domain`]), calls one service function, and answers with a [`platform::contract`]
//! type. Nothing here runs SQL or knows a shard.
//!
//! # Layout
//! - [`catalog`]: `POST /api/v1/events`, `GET /api/v1/events/{id}`, `GET /api/v1/events`.
//! - [`orders`]: `POST /api/v1/orders`, `GET /api/v1/orders/{id}`, pay, cancel, and the
//!   customer's order listings.
//! - here: [`router`], and how a keyed write's [`Answer`] goes out.

pub mod catalog;
pub mod orders;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::AppState;
use crate::idempotency::Answer;

/// Every route of the API (the placement view is [`crate::placement::router`]).
pub fn router(state: AppState) -> Router {
    catalog::router(state.clone()).merge(orders::router(state))
}

/// A fresh answer is a 201 with its body; a replay is the stored status and body, as stored.
impl<T: Serialize> IntoResponse for Answer<T> {
    fn into_response(self) -> Response {
        match self {
            Self::Fresh(body) => (StatusCode::CREATED, axum::Json(body)).into_response(),
            Self::Replay { status, body } => {
                (StatusCode::from_u16(status).unwrap_or(StatusCode::CREATED), axum::Json(body)).into_response()
            }
        }
    }
}

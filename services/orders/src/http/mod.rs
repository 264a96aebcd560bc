//! The orders HTTP API: each handler parses the request into domain types (see
//! [`crate::domain`]), calls one service function, and answers with a [`platform::contract`]
//! type. Nothing here runs SQL or knows a shard.
//!
//! # Layout
//! - [`catalog`]: `POST /api/v1/events`, `GET /api/v1/events/{id}`, `GET /api/v1/events`.
//! - [`orders`]: `POST /api/v1/orders`, `GET /api/v1/orders/{id}`, pay, cancel, and the
//!   customer's order listings.
//! - here: [`routes`], the parameters several routes share, the document's [`API`] text, and
//!   how a keyed write's [`Answer`] goes out.
//!
//! Each handler's `#[utoipa::path]` is its part of the OpenAPI document
//! (`openapi/orders.json`, served at `/openapi.json`); `routes!` takes the route's path from it.

pub mod catalog;
pub mod orders;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use platform::openapi::{About, BadRequest, DependencyFailures, Forbidden, JsonBody, NotFound, Unauthorized};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;

use crate::AppState;
use crate::idempotency::Answer;

/// What the OpenAPI document says about this API.
pub const API: About = About {
    title: "Ticket Hub orders",
    version: env!("CARGO_PKG_VERSION"),
    description: "Events and their ticket types, orders, payment and cancellation, each stored on \
        its region's shard. Reads are open; writes need an access token from accounts. Creating \
        an event or an order takes an optional `Idempotency-Key`: the same key with the same \
        request gets the first answer again. Errors are JSON `{error, message, details?}` with \
        a stable `error` code; any answer may be a 503 with `Retry-After` when a region's shard \
        (or the request's deadline) fails.",
};

/// Every route of the API, documented, with the placement view ([`crate::placement`]); the
/// caller adds the state and the deadline.
pub fn routes() -> OpenApiRouter<AppState> {
    catalog::routes().merge(orders::routes()).merge(crate::placement::routes())
}

platform::response_group! {
    /// What a write with a token and a JSON body may get besides its own answers.
    pub struct AuthenticatedWrite = JsonBody, Unauthorized, DependencyFailures;
}

platform::response_group! {
    /// What any request naming one order by id may get besides its own answers: a malformed
    /// id, no token, not the caller's order, no such order.
    pub struct OrderAccess = BadRequest, Unauthorized, Forbidden, NotFound, DependencyFailures;
}

/// `{id}` in a path: read as text, so that a malformed id is a 400 naming it and an id no
/// shard could hold a 404 (see [`AppState::parse_id`]).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct IdPath {
    /// An id this API handed out.
    #[param(value_type = uuid::Uuid)]
    pub id: String,
}

/// A listing's page: read as text, parsed by [`crate::listing::PageAt::parse`].
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Items per page.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100, default = 20)]
    pub limit: Option<String>,
    /// The previous page's `nextCursor`: this page starts after it.
    pub cursor: Option<String>,
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

//! `GET /api/v1/notifications?orderId=`: what was sent about one order, to inspect the
//! consumer from outside. The handler's `#[utoipa::path]` is its part of the OpenAPI document
//! (`openapi/notifications.json`, served at `/openapi.json`).

use axum::extract::{RawQuery, State};
use platform::error::{ApiError, ResultExt};
use platform::openapi::{About, BadRequest, DependencyFailures};
use serde::Serialize;
use sqlx::PgPool;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::store::{self, Notification};

/// What the OpenAPI document says about this API.
pub const API: About = About {
    title: "Ticket Hub notifications",
    version: env!("CARGO_PKG_VERSION"),
    description: "The notifications sent about order events (created, paid, cancelled), for \
        inspecting the consumer from outside; and the ops endpoints, whose `/readyz` says \
        whether the consumer keeps up.",
};

/// Every route of the API, documented; the caller gives the state.
pub fn routes() -> OpenApiRouter<PgPool> {
    OpenApiRouter::default().routes(routes!(list))
}

/// The answer: the order and what was sent about it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct Notifications {
    order_id: Uuid,
    /// Oldest first; empty for an order never seen.
    notifications: Vec<Notification>,
}

/// The query parameter [`order_id`] reads by hand (an absent one is a 400 naming it).
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code, reason = "documents the parameter; `order_id` reads it")]
struct NotificationsQuery {
    /// The order whose notifications to list.
    #[param(rename = "orderId")]
    order_id: Uuid,
}

/// Notifications of an order
///
/// Every notification sent about the order, oldest first (an empty list for an order never
/// seen).
#[utoipa::path(get, path = "/api/v1/notifications", tag = "notifications", operation_id = "listNotifications",
    params(NotificationsQuery),
    responses((status = 200, description = "The order's notifications", body = Notifications), BadRequest,
        DependencyFailures))]
#[tracing::instrument(skip_all, fields(order_id))]
async fn list(State(pool): State<PgPool>, RawQuery(query): RawQuery) -> Result<axum::Json<Notifications>, ApiError> {
    let order_id = order_id(query.as_deref())?;
    tracing::Span::current().record("order_id", tracing::field::display(order_id));
    let notifications = store::for_order(&pool, order_id).await.or_unavailable("the notifications database")?;
    Ok(axum::Json(Notifications { order_id, notifications }))
}

/// The `orderId` parameter, parsed here and nowhere else: absent or malformed is a 400 naming it.
fn order_id(query: Option<&str>) -> Result<Uuid, ApiError> {
    let raw = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "orderId")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| ApiError::field("orderId", "required: the order whose notifications to list"))?;
    platform::parse::uuid(&raw).map_err(|m| ApiError::field("orderId", m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_id_is_required_and_must_be_a_uuid() {
        let id = Uuid::now_v7();
        assert!(matches!(order_id(Some(&format!("orderId={id}"))), Ok(got) if got == id));
        for q in [None, Some(""), Some("orderId=nope"), Some("orderid=x"), Some("orderId=%ZZ")] {
            let err = order_id(q).map(drop).unwrap_err();
            assert_eq!(err.body()["details"]["fields"][0]["field"], "orderId", "{q:?}");
        }
    }
}

//! `GET /api/v1/notifications?orderId=`: what was sent about one order, to inspect the
//! consumer from outside.

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::routing::get;
use platform::error::{ApiError, ResultExt};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::store;

pub fn router(pool: PgPool) -> Router {
    Router::new().route("/api/v1/notifications", get(list)).with_state(pool)
}

/// Every notification of the order, oldest first (an empty list for an order never seen).
#[tracing::instrument(skip_all, fields(order_id))]
async fn list(State(pool): State<PgPool>, RawQuery(query): RawQuery) -> Result<axum::Json<Value>, ApiError> {
    let order_id = order_id(query.as_deref())?;
    tracing::Span::current().record("order_id", tracing::field::display(order_id));
    let notifications = store::for_order(&pool, order_id).await.or_unavailable("the notifications database")?;
    Ok(axum::Json(json!({ "orderId": order_id, "notifications": notifications })))
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

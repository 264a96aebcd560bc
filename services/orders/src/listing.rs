//! Reads that span shards: events of a region (its shards) or of every region, and a
//! customer's orders. Each names its fan-out explicitly, queries the shards concurrently, merges
//! by the sort key and pages with a keyset cursor, so a page costs the same at any depth.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use futures::future::join_all;
use platform::auth::{Authenticated, Role};
use platform::error::{ApiError, FieldErrors};
use platform::http::{Path, Query};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use shard_router::ShardName;
use sqlx::PgPool;
use uuid::Uuid;

use crate::AppState;
use crate::orders::{ORDER_COLUMNS, OrderRow};

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/events", get(events))
        .route("/api/v1/customers/me/orders", get(my_orders))
        .route("/api/v1/customers/{id}/orders", get(customer_orders))
        .with_state(state)
}

const DEFAULT_LIMIT: i64 = 20;
const MAX_LIMIT: i64 = 100;

/// Where a page ends: the sort key of its last row.
#[derive(Debug, Serialize, Deserialize)]
struct Cursor {
    at: DateTime<Utc>,
    id: Uuid,
}

impl Cursor {
    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    fn decode(raw: &str) -> Result<Self, String> {
        URL_SAFE_NO_PAD
            .decode(raw)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| "is not a cursor this API returned".to_owned())
    }
}

fn limit(raw: Option<&str>) -> Result<i64, String> {
    match raw {
        None => Ok(DEFAULT_LIMIT),
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| format!("must be 1 to {MAX_LIMIT}")),
    }
}

/// Runs `query` on every shard in `shards` at once; any shard that cannot answer makes the
/// whole read a 503 naming its region (a partial page would silently skip data).
async fn fan_out<T, F, Fut>(state: &AppState, shards: Vec<ShardName>, query: F) -> Result<Vec<T>, ApiError>
where
    F: Fn(PgPool) -> Fut,
    Fut: Future<Output = Result<Vec<T>, sqlx::Error>>,
{
    let runs = shards.iter().map(|shard| {
        let pool = state.pool(shard).cloned();
        let query = &query;
        async move {
            match pool {
                Ok(pool) => query(pool).await.map_err(|e| (shard.clone(), Some(e))),
                Err(_) => Err((shard.clone(), None)),
            }
        }
    });
    let mut rows = Vec::new();
    for result in join_all(runs).await {
        match result {
            Ok(mut r) => rows.append(&mut r),
            Err((shard, e)) => {
                let region = state.shards.shard(&shard).map(|s| s.region.clone());
                return Err(match (e, region) {
                    (Some(e), Some(region)) => state.shard_error(&shard, &region, e),
                    _ => ApiError::internal(anyhow::anyhow!("no pool for shard {shard}")),
                });
            }
        }
    }
    Ok(rows)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventsQuery {
    region: Option<String>,
    organizer_id: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
struct EventRow {
    id: Uuid,
    region: String,
    organizer_id: Uuid,
    title: String,
    description: Option<String>,
    venue: String,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    /// Ticket types as JSON, aggregated on the shard: one round trip per shard, no N+1.
    #[serde(rename = "ticketTypes")]
    ticket_types: sqlx::types::Json<Value>,
}

/// `GET /api/v1/events?region=&organizerId=&limit=&cursor=`: one region's shards, or with no
/// region an explicit fan-out over every shard; ordered by `startsAt`, then id.
#[tracing::instrument(skip_all)]
async fn events(State(state): State<AppState>, Query(q): Query<EventsQuery>) -> Result<axum::Json<Value>, ApiError> {
    let mut errors = FieldErrors::default();
    let region = match q.region.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
        None => Some(None),
        Some(r) => errors.check("region", state.shards.parse_region(r).cloned().map(Some)),
    };
    let organizer = match q.organizer_id.as_deref() {
        None => Some(None),
        Some(o) => errors.check("organizerId", platform::parse::uuid(o).map(Some)),
    };
    let limit = errors.check("limit", limit(q.limit.as_deref()));
    let cursor = match q.cursor.as_deref() {
        None => Some(None),
        Some(c) => errors.check("cursor", Cursor::decode(c).map(Some)),
    };
    let (Some(region), Some(organizer), Some(limit), Some(cursor)) = (region, organizer, limit, cursor) else {
        return Err(errors.into_error());
    };
    let shards = live_shards(&state, region.as_ref().map(|r| &r.name));
    let region_name = region.as_ref().map(|r| r.name.as_str().to_owned());
    let mut rows: Vec<EventRow> = fan_out(&state, shards, |pool| {
        let region_name = region_name.clone();
        let cursor = cursor.as_ref().map(|c| (c.at, c.id));
        async move {
            sqlx::query_as(
                "select e.id, e.region, e.organizer_id, e.title, e.description, e.venue, e.starts_at, e.ends_at, e.created_at, \
                   coalesce((select json_agg(json_build_object('id', t.id, 'name', t.name, 'priceInCents', t.price_in_cents, \
                       'totalQuantity', t.total_quantity, 'remainingQuantity', t.remaining_quantity) order by t.price_in_cents, t.name) \
                     from ticket_types t where t.event_id = e.id), '[]'::json) as ticket_types \
                 from events e \
                 where ($1::text is null or e.region = $1) and ($2::uuid is null or e.organizer_id = $2) \
                   and partition_readable(e.region, e.partition) \
                   and ($3::timestamptz is null or (e.starts_at, e.id) > ($3, $4)) \
                 order by e.starts_at, e.id limit $5",
            )
            .bind(region_name)
            .bind(organizer)
            .bind(cursor.map(|c| c.0))
            .bind(cursor.map(|c| c.1))
            .bind(limit + 1)
            .fetch_all(&pool)
            .await
        }
    })
    .await?;
    rows.sort_by_key(|r| (r.starts_at, r.id));
    page(rows, limit, |r| Cursor { at: r.starts_at, id: r.id })
}

/// The shards holding partitions of `region` (of every region with `None`) in the live map:
/// a fan-out reads those, and each answers only for the partitions it serves now.
fn live_shards(state: &AppState, region: Option<&shard_router::RegionName>) -> Vec<ShardName> {
    let snap = state.placement.snapshot();
    let mut shards: std::collections::BTreeSet<ShardName> = std::collections::BTreeSet::new();
    for (name, _) in snap.live.regions() {
        if region.is_none_or(|r| r == name) {
            shards.extend(snap.live.shards_of(name));
        }
    }
    shards.into_iter().collect()
}

/// The first `limit` rows, and a cursor when more exist.
fn page<T: Serialize>(mut rows: Vec<T>, limit: i64, key: impl Fn(&T) -> Cursor) -> Result<axum::Json<Value>, ApiError> {
    let limit = usize::try_from(limit).unwrap_or(0);
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next = if more { rows.last().map(|r| key(r).encode()) } else { None };
    Ok(axum::Json(json!({ "items": rows, "nextCursor": next })))
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

/// `GET /api/v1/customers/me/orders`: the caller's orders in every region, newest first; an
/// explicit fan-out over all shards (orders live with their event, not their customer).
#[tracing::instrument(skip_all, fields(customer = %claims.sub))]
async fn my_orders(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    Query(q): Query<PageQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    orders_of(&state, claims.sub, q).await
}

/// `GET /api/v1/customers/{id}/orders`: the same listing for a named customer, to that
/// customer or an ADMIN (the gateway's `ordersByCustomer` for admins).
#[tracing::instrument(skip_all, fields(customer = %raw, caller = %claims.sub))]
async fn customer_orders(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    Path(raw): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let customer = Uuid::parse_str(&raw)
        .map_err(|_| ApiError::field("id", format!("`{}` is not a customer id", platform::error::shown(&raw))))?;
    if customer != claims.sub && claims.role != Role::Admin {
        return Err(ApiError::Forbidden("only the customer or an ADMIN may list these orders".into()));
    }
    orders_of(&state, customer, q).await
}

/// One page of `customer`'s orders from every shard.
async fn orders_of(state: &AppState, customer: Uuid, q: PageQuery) -> Result<axum::Json<Value>, ApiError> {
    let mut errors = FieldErrors::default();
    let limit = errors.check("limit", limit(q.limit.as_deref()));
    let cursor = match q.cursor.as_deref() {
        None => Some(None),
        Some(c) => errors.check("cursor", Cursor::decode(c).map(Some)),
    };
    let (Some(limit), Some(cursor)) = (limit, cursor) else {
        return Err(errors.into_error());
    };
    let shards = live_shards(state, None);
    let mut rows: Vec<OrderRow> = fan_out(state, shards, |pool| {
        let cursor = cursor.as_ref().map(|c| (c.at, c.id));
        async move {
            sqlx::query_as(&format!(
                "select {ORDER_COLUMNS} from orders where customer_id = $1 and partition_readable(region, partition) \
                 and ($2::timestamptz is null or (created_at, id) < ($2, $3)) \
                 order by created_at desc, id desc limit $4"
            ))
            .bind(customer)
            .bind(cursor.map(|c| c.0))
            .bind(cursor.map(|c| c.1))
            .bind(limit + 1)
            .fetch_all(&pool)
            .await
        }
    })
    .await?;
    rows.sort_by_key(|r| std::cmp::Reverse((r.created_at, r.id)));
    page(rows, limit, |r| Cursor { at: r.created_at, id: r.id })
}

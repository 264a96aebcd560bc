//! Reads that span shards: events of a region (its shards) or of every region, and a
//! customer's orders. Each names its fan-out explicitly, queries the shards concurrently, merges
//! by the sort key and pages with a keyset cursor, so a page costs the same at any depth.

use std::collections::BTreeSet;

use futures::future::join_all;
use platform::contract::{Cursor, Event, Order, Page};
use platform::error::{ApiError, FieldErrors};
use shard_router::{RegionName, ShardName};
use sqlx::PgPool;
use uuid::Uuid;

use crate::AppState;
use crate::store::catalog::{self as catalog_store, EventFilter};
use crate::store::orders as orders_store;

/// A page's size when `limit` is not given.
pub const DEFAULT_LIMIT: i64 = 20;
/// The largest page a listing serves.
pub const MAX_LIMIT: i64 = 100;

/// Which page a listing asks for: its size and the cursor it starts after.
#[derive(Debug, Clone, Copy)]
pub struct PageAt {
    pub limit: i64,
    pub after: Option<Cursor>,
}

impl PageAt {
    /// `limit` (1 to [`MAX_LIMIT`], default [`DEFAULT_LIMIT`]) and `cursor` from a query string;
    /// what is wrong is added to `errors`.
    pub fn parse(errors: &mut FieldErrors, limit: Option<&str>, cursor: Option<&str>) -> Option<Self> {
        let limit = errors.check(
            "limit",
            limit.map_or(Ok(DEFAULT_LIMIT), |s| {
                s.parse::<i64>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| format!("must be 1 to {MAX_LIMIT}"))
            }),
        );
        let after = match cursor {
            None => Some(None),
            Some(c) => errors.check("cursor", Cursor::decode(c).map(Some)),
        };
        Some(Self { limit: limit?, after: after? })
    }

    /// The first `limit` of `rows` (sorted), and a cursor when more exist: each shard was asked
    /// for one more than a page, so a longer merge means there is a next page.
    fn page<T>(self, mut rows: Vec<T>, key: impl Fn(&T) -> Cursor) -> Page<T> {
        let limit = usize::try_from(self.limit).unwrap_or(0);
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = if more { rows.last().map(|r| key(r).encode()) } else { None };
        Page { items: rows, next_cursor }
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

/// The shards holding partitions of `region` (of every region with `None`) in the live map:
/// a fan-out reads those, and each answers only for the partitions it serves now.
fn live_shards(state: &AppState, region: Option<&RegionName>) -> Vec<ShardName> {
    let snap = state.placement.snapshot();
    let mut shards = BTreeSet::new();
    for (name, _) in snap.live.regions() {
        if region.is_none_or(|r| r == name) {
            shards.extend(snap.live.shards_of(name));
        }
    }
    shards.into_iter().collect()
}

/// Events ordered by `startsAt`, then id: one region's shards, or with no region an explicit
/// fan-out over every shard; optionally one organizer's.
pub async fn events(
    state: &AppState,
    region: Option<&RegionName>,
    organizer: Option<Uuid>,
    at: PageAt,
) -> Result<Page<Event>, ApiError> {
    let filter = EventFilter { region: region.map(RegionName::as_str), organizer };
    let mut rows = fan_out(state, live_shards(state, region), |pool| async move {
        catalog_store::events(&pool, filter, at.after, at.limit + 1).await
    })
    .await?;
    rows.sort_by_key(|r| (r.starts_at, r.id));
    Ok(at.page(rows, |r| Cursor { at: r.starts_at, id: r.id }))
}

/// `customer`'s orders in every region, newest first; an explicit fan-out over all shards
/// (orders live with their event, not their customer).
pub async fn orders_of(state: &AppState, customer: Uuid, at: PageAt) -> Result<Page<Order>, ApiError> {
    let mut rows = fan_out(state, live_shards(state, None), |pool| async move {
        orders_store::orders_of(&pool, customer, at.after, at.limit + 1).await
    })
    .await?;
    rows.sort_by_key(|r| std::cmp::Reverse((r.created_at, r.id)));
    Ok(at.page(rows, |r| Cursor { at: r.created_at, id: r.id }))
}

//! The catalog: events (concerts) and their ticket types, created on the shard of their region,
//! read back by id alone. Named so that "event" in this crate means one thing: an `OrderEvent`
//! on the outbox. The HTTP side is [`crate::http::catalog`], the statements
//! [`crate::store::catalog`].

use platform::contract::{CreateEventPayload, Event, Region};
use platform::error::ApiError;
use shard_router::{Route, ids};
use uuid::Uuid;

use crate::domain::NewEvent;
use crate::idempotency::{Answer, Guard};
use crate::shard::{Key, WorkError, count};
use crate::store::catalog as store;
use crate::{AppState, routing_bug};

/// Creates `event` for its organizer (`guard.owner`), on a partition of its region: random, or
/// derived from the `Idempotency-Key` so a replay reaches the shard holding its record. Ticket
/// types (and orders) share the event's partition.
pub async fn create(
    state: &AppState,
    guard: &Guard<'_>,
    event: &NewEvent,
) -> Result<Answer<CreateEventPayload>, ApiError> {
    let seed = guard
        .key
        .map_or_else(|| Uuid::new_v4().as_u64_pair().1, |k| crate::idempotency::placement_seed(guard.owner, k));
    let snap = state.placement.snapshot();
    let placement = snap.router.place(&event.region, seed).map_err(routing_bug)?;
    let home = snap.router.shard_for(&event.region, placement.partition).map_err(routing_bug)?.clone();
    drop(snap);
    let noted = guard.note(state).await;
    if let Some(answer) = guard.seen_elsewhere(state, &home, noted).await? {
        return Ok(answer);
    }
    let event_id = ids::new_id(placement);
    let at = Key::Partition(event.region.clone(), placement.partition);
    state.write(at, guard.operation, |route| create_once(state, route, guard, event, event_id)).await
}

/// The event transaction: the event, its ticket types and the idempotency record.
async fn create_once(
    state: &AppState,
    route: Route,
    guard: &Guard<'_>,
    event: &NewEvent,
    event_id: Uuid,
) -> Result<Answer<CreateEventPayload>, WorkError> {
    let placement = ids::Placement { region_tag: ids::region_tag(route.region.as_str()), partition: route.partition };
    let stx = state.begin(&route).await?;
    let answer = guard
        .run(stx, async |tx| {
            store::insert_event(tx, event_id, placement, guard.owner, event).await?;
            Ok(CreateEventPayload { event_id, region: Region(event.region.to_string()) })
        })
        .await?;
    if let Answer::Fresh(_) = &answer {
        count("orders_events_created_total", &route, 1);
        tracing::info!(event_id = %event_id, region = %route.region, shard = %route.shard, "event created");
    }
    Ok(answer)
}

/// The event `id` with its ticket types.
pub async fn event(state: &AppState, id: Uuid) -> Result<Event, ApiError> {
    let found = state.read_one(id, |pool| async move { store::event(&pool, id).await }).await?;
    found.ok_or_else(|| ApiError::NotFound(format!("no event with id {id}")))
}

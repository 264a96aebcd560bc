//! `events` and `ticket_types`: an event is written with its ticket types in one transaction
//! and read back with them, aggregated on the shard (one round trip, no N+1).

use platform::contract::{Cursor, Event};
use shard_router::ids::{self, Placement};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::Readable;
use crate::domain::{NewEvent, Text};

/// An event's columns as [`Event`] has them; its ticket types as a JSON array in the API's
/// order (price, then name).
const EVENT_COLUMNS: &str = "e.id, e.region, e.organizer_id, e.title, e.description, e.venue, e.starts_at, e.ends_at, \
     e.created_at, coalesce((select json_agg(json_build_object('id', t.id, 'name', t.name, \
       'priceInCents', t.price_in_cents, 'totalQuantity', t.total_quantity, 'remainingQuantity', t.remaining_quantity) \
       order by t.price_in_cents, t.name) from ticket_types t where t.event_id = e.id), '[]'::json) as ticket_types";

/// Inserts `event` as `event_id` by `organizer`, and its ticket types with ids of the same
/// placement (they share the event's partition, as its orders will).
pub async fn insert_event(
    tx: &mut PgConnection,
    event_id: Uuid,
    placement: Placement,
    organizer: Uuid,
    event: &NewEvent,
) -> Result<(), sqlx::Error> {
    let partition = placement.partition;
    sqlx::query(
        "insert into events (id, region, partition, organizer_id, title, description, venue, starts_at, ends_at) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(event_id)
    .bind(event.region.as_str())
    .bind(partition)
    .bind(organizer)
    .bind(event.title.as_str())
    .bind(event.description.as_ref().map(Text::as_str))
    .bind(event.venue.as_str())
    .bind(event.window.starts_at)
    .bind(event.window.ends_at)
    .execute(&mut *tx)
    .await?;
    for t in &event.ticket_types {
        sqlx::query(
            "insert into ticket_types (id, event_id, partition, name, price_in_cents, total_quantity, remaining_quantity) \
             values ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(ids::new_id(placement))
        .bind(event_id)
        .bind(partition)
        .bind(t.name.as_str())
        .bind(t.price.get())
        .bind(t.total.get())
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// The event `id` with its ticket types, if this shard holds it.
pub async fn event(pool: &PgPool, id: Uuid) -> Result<Option<Readable<Event>>, sqlx::Error> {
    super::readable_by_id(pool, EVENT_COLUMNS, "events e", id).await
}

/// Which events a listing shows: one region's or all, one organizer's or all.
#[derive(Debug, Clone, Copy)]
pub struct EventFilter<'a> {
    pub region: Option<&'a str>,
    pub organizer: Option<Uuid>,
}

/// Up to `limit` events of `filter` this shard serves, by start then id, after `after`.
pub async fn events(
    pool: &PgPool,
    filter: EventFilter<'_>,
    after: Option<Cursor>,
    limit: i64,
) -> Result<Vec<Event>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select {EVENT_COLUMNS} from events e \
         where ($1::text is null or e.region = $1) and ($2::uuid is null or e.organizer_id = $2) \
           and partition_readable(e.region, e.partition) \
           and ($3::timestamptz is null or (e.starts_at, e.id) > ($3, $4)) \
         order by e.starts_at, e.id limit $5"
    ))
    .bind(filter.region)
    .bind(filter.organizer)
    .bind(after.map(|c| c.at))
    .bind(after.map(|c| c.id))
    .bind(limit)
    .fetch_all(pool)
    .await
}

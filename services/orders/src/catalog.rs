//! The catalog: events (concerts) and their ticket types, created on the shard of their region,
//! read back by id alone.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use platform::auth::{Authenticated, Role};
use platform::error::{ApiError, FieldErrors};
use platform::http::{Json, Path};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use shard_router::{Route, ids, live};
use uuid::Uuid;

use crate::AppState;
use crate::domain::{Cents, EventWindow, IdempotencyKey, MAX_TICKET_TYPES, Text, TotalQuantity, timestamp};
use crate::idempotency::{Answer, Guard};
use crate::shard::{Key, WorkError};

pub fn router(state: AppState) -> Router {
    Router::new().route("/api/v1/events", post(create)).route("/api/v1/events/{id}", get(by_id)).with_state(state)
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateBody {
    region: Option<String>,
    title: Option<String>,
    description: Option<String>,
    venue: Option<String>,
    starts_at: Option<String>,
    ends_at: Option<String>,
    ticket_types: Option<Vec<TicketTypeBody>>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TicketTypeBody {
    name: Option<String>,
    price_in_cents: Option<i64>,
    total_quantity: Option<i64>,
}

/// A valid new event, every field parsed.
struct NewEvent {
    region: shard_router::RegionName,
    title: Text,
    description: Option<Text>,
    venue: Text,
    window: EventWindow,
    ticket_types: Vec<(Text, Cents, TotalQuantity)>,
}

fn parse(state: &AppState, body: CreateBody) -> Result<NewEvent, ApiError> {
    let mut errors = FieldErrors::default();
    let region = errors.check("region", state.required_region(body.region.as_deref()));
    let title = errors.check("title", Text::parse(body.title.as_deref().unwrap_or_default(), 255));
    let description = match body.description.as_deref().map(str::trim) {
        None | Some("") => Some(None),
        Some(d) => errors.check("description", Text::parse(d, 5000)).map(Some),
    };
    let venue = errors.check("venue", Text::parse(body.venue.as_deref().unwrap_or_default(), 255));
    let starts = errors.check("startsAt", timestamp(body.starts_at.as_deref().unwrap_or_default()));
    let ends = errors.check("endsAt", timestamp(body.ends_at.as_deref().unwrap_or_default()));
    let window = match (starts, ends) {
        (Some(s), Some(e)) => errors.check("endsAt", EventWindow::new(s, e)),
        _ => None,
    };
    let mut ticket_types = Vec::new();
    match body.ticket_types {
        None => {
            errors.check("ticketTypes", Err::<(), _>(format!("1 to {MAX_TICKET_TYPES} ticket types are required")));
        }
        Some(list) if list.is_empty() || list.len() > MAX_TICKET_TYPES => {
            errors.check("ticketTypes", Err::<(), _>(format!("must hold 1 to {MAX_TICKET_TYPES} ticket types")));
        }
        Some(list) => {
            for (i, t) in list.into_iter().enumerate() {
                let name = errors
                    .check(format!("ticketTypes[{i}].name"), Text::parse(t.name.as_deref().unwrap_or_default(), 100));
                let price = errors.check(
                    format!("ticketTypes[{i}].priceInCents"),
                    t.price_in_cents.ok_or_else(|| "is required".to_owned()).and_then(Cents::parse),
                );
                let total = errors.check(
                    format!("ticketTypes[{i}].totalQuantity"),
                    t.total_quantity.ok_or_else(|| "is required".to_owned()).and_then(TotalQuantity::parse),
                );
                if let (Some(n), Some(p), Some(q)) = (name, price, total) {
                    ticket_types.push((n, p, q));
                }
            }
        }
    }
    match (region, title, description, venue, window) {
        (Some(region), Some(title), Some(description), Some(venue), Some(window)) if errors.is_empty() => {
            Ok(NewEvent { region, title, description, venue, window, ticket_types })
        }
        _ => Err(errors.into_error()),
    }
}

#[tracing::instrument(skip_all, fields(organizer = %claims.sub))]
async fn create(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    headers: HeaderMap,
    Json(body): Json<CreateBody>,
) -> Result<(StatusCode, axum::Json<serde_json::Value>), ApiError> {
    if !matches!(claims.role, Role::Organizer | Role::Admin) {
        return Err(ApiError::Forbidden("creating events needs the ORGANIZER or ADMIN role".into()));
    }
    let key = crate::idempotency::key(&headers)?;
    let request_hash = Sha256::digest(serde_json::to_vec(&body).map_err(ApiError::internal)?).to_vec();
    let event = parse(&state, body)?;
    // A partition of the region: random, or derived from the Idempotency-Key so a replay reaches
    // the shard holding its record. Ticket types (and orders) share the event's partition.
    let seed = key
        .as_ref()
        .map_or_else(|| Uuid::new_v4().as_u64_pair().1, |k| crate::idempotency::placement_seed(claims.sub, k));
    let snap = state.placement.snapshot();
    let placement = snap.router.place(&event.region, seed).map_err(crate::routing_bug)?;
    let home = snap.router.shard_for(&event.region, placement.partition).map_err(crate::routing_bug)?.clone();
    drop(snap);
    if let Some(key) = &key
        && let Some((status, body)) =
            crate::idempotency::seen_elsewhere(&state, &home, claims.sub, "create_event", key, &request_hash).await?
    {
        return Ok((StatusCode::from_u16(status).unwrap_or(StatusCode::CREATED), axum::Json(body)));
    }
    let event_id = ids::new_id(placement);
    let at = Key::Partition(event.region.clone(), placement.partition);
    let (status, body) = state
        .write(at, "create_event", |route| {
            create_once(&state, route, claims.sub, &event, event_id, key.as_ref(), &request_hash)
        })
        .await?;
    Ok((StatusCode::from_u16(status).unwrap_or(StatusCode::CREATED), axum::Json(body)))
}

/// The event transaction: the event, its ticket types and the idempotency record.
async fn create_once(
    state: &AppState,
    route: Route,
    organizer: Uuid,
    event: &NewEvent,
    event_id: Uuid,
    key: Option<&IdempotencyKey>,
    request_hash: &[u8],
) -> Result<(u16, serde_json::Value), WorkError> {
    let db = |e: sqlx::Error| state.db_error(&route, e);
    let placement = ids::Placement { region_tag: ids::region_tag(route.region.as_str()), partition: route.partition };
    let partition = live::partition_i16(route.partition);
    let mut stx = state.begin(&route).await?;
    let guard = Guard { owner: organizer, operation: "create_event", key, request_hash };
    let work = async |tx: &mut sqlx::PgConnection| {
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
        .await
        .map_err(db)?;
        for (name, price, total) in &event.ticket_types {
            sqlx::query(
                "insert into ticket_types (id, event_id, partition, name, price_in_cents, total_quantity, remaining_quantity) \
                 values ($1, $2, $3, $4, $5, $6, $6)",
            )
            .bind(ids::new_id(placement))
            .bind(event_id)
            .bind(partition)
            .bind(name.as_str())
            .bind(price.get())
            .bind(total.get())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        Ok((201, json!({ "eventId": event_id, "region": event.region.as_str() })))
    };
    let (status, body) = match guard.run(stx.conn(), route.partition, db, work).await? {
        Answer::Replay(status, body) => return Ok((status, body)),
        Answer::Fresh(status, body) => (status, body),
    };
    stx.tx.commit().await.map_err(db)?;
    metrics::counter!("orders_events_created_total", "region" => route.region.to_string(), "shard" => route.shard.to_string())
        .increment(1);
    tracing::info!(event_id = %event_id, region = %route.region, shard = %route.shard, "event created");
    Ok((status, body))
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
    /// Whether this shard serves the event's partition now.
    #[serde(skip)]
    readable: bool,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
struct TicketTypeRow {
    id: Uuid,
    name: String,
    price_in_cents: i64,
    total_quantity: i32,
    remaining_quantity: i32,
}

#[tracing::instrument(skip_all, fields(event_id = %raw))]
async fn by_id(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let id = state.parse_id(&raw, "event")?;
    let found = state.read(Key::Id(id), |route| read_event(&state, route, id)).await?;
    let (event, ticket_types) = found.ok_or_else(|| ApiError::NotFound(format!("no event with id {id}")))?;
    let mut body = serde_json::to_value(&event).map_err(ApiError::internal)?;
    body["ticketTypes"] = serde_json::to_value(&ticket_types).map_err(ApiError::internal)?;
    Ok(axum::Json(body))
}

/// The event and its ticket types from the shard `route` names, if it serves the partition.
async fn read_event(
    state: &AppState,
    route: Route,
    id: Uuid,
) -> Result<Option<(EventRow, Vec<TicketTypeRow>)>, WorkError> {
    let pool = state.pool(&route.shard)?;
    let db = |e: sqlx::Error| state.db_error(&route, e);
    let event: Option<EventRow> = sqlx::query_as(
        "select id, region, organizer_id, title, description, venue, starts_at, ends_at, created_at, \
           partition_readable(region, partition) as readable from events where id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
    .map_err(db)?;
    let event = match event {
        Some(e) if e.readable => e,
        Some(_) => return Err(WorkError::Fenced(shard_router::Fenced::NotOwned)),
        None => return crate::shard::readable(state, &route).await.map(|()| None),
    };
    let ticket_types: Vec<TicketTypeRow> = sqlx::query_as(
        "select id, name, price_in_cents, total_quantity, remaining_quantity from ticket_types \
         where event_id = $1 order by price_in_cents, name",
    )
    .bind(id)
    .fetch_all(pool)
    .await
    .map_err(db)?;
    Ok(Some((event, ticket_types)))
}

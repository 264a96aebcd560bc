//! The catalog's HTTP side: event bodies and listing queries parsed into [`NewEvent`] and
//! [`PageAt`], answered with [`platform::contract`] types.

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use platform::auth::{Authenticated, Role};
use platform::contract::{CreateEventPayload, Event, Page};
use platform::error::{ApiError, FieldErrors};
use platform::http::Json;
use platform::http::{Path, Query};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::{Cents, EventWindow, MAX_TICKET_TYPES, NewEvent, NewTicketType, Text, TotalQuantity, timestamp};
use crate::idempotency::{Answer, Guard};
use crate::listing::PageAt;
use crate::{AppState, catalog, listing};

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/events", post(create).get(events))
        .route("/api/v1/events/{id}", get(by_id))
        .with_state(state)
}

/// The body of `POST /api/v1/events`. Serialised again (as sent, every field) for the request
/// hash an `Idempotency-Key` is checked against.
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
                if let (Some(name), Some(price), Some(total)) = (name, price, total) {
                    ticket_types.push(NewTicketType { name, price, total });
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

/// `POST /api/v1/events` (ORGANIZER or ADMIN): 201 with the new event's id and region, or the
/// first answer again for a repeated `Idempotency-Key`.
#[tracing::instrument(skip_all, fields(organizer = %claims.sub))]
async fn create(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    headers: HeaderMap,
    Json(body): Json<CreateBody>,
) -> Result<Answer<CreateEventPayload>, ApiError> {
    if !matches!(claims.role, Role::Organizer | Role::Admin) {
        return Err(ApiError::Forbidden("creating events needs the ORGANIZER or ADMIN role".into()));
    }
    let key = crate::idempotency::key(&headers)?;
    let request_hash = Sha256::digest(serde_json::to_vec(&body).map_err(ApiError::internal)?).to_vec();
    let event = parse(&state, body)?;
    let guard = Guard { owner: claims.sub, operation: "create_event", key: key.as_ref(), request_hash: &request_hash };
    catalog::create(&state, &guard, &event).await
}

/// `GET /api/v1/events/{id}`: the event with its ticket types and their stock.
#[tracing::instrument(skip_all, fields(event_id = %platform::error::shown(&raw)))]
async fn by_id(State(state): State<AppState>, Path(raw): Path<String>) -> Result<axum::Json<Event>, ApiError> {
    let id = state.parse_id(&raw, "event")?;
    catalog::event(&state, id).await.map(axum::Json)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventsQuery {
    region: Option<String>,
    organizer_id: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// `GET /api/v1/events?region=&organizerId=&limit=&cursor=`: see [`listing::events`].
#[tracing::instrument(skip_all)]
async fn events(
    State(state): State<AppState>,
    Query(q): Query<EventsQuery>,
) -> Result<axum::Json<Page<Event>>, ApiError> {
    let mut errors = FieldErrors::default();
    let region = match q.region.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
        None => Some(None),
        Some(r) => errors.check("region", state.shards.parse_region(r).map(|r| Some(r.name.clone()))),
    };
    let organizer = match q.organizer_id.as_deref() {
        None => Some(None),
        Some(o) => errors.check("organizerId", platform::parse::uuid(o).map(Some)),
    };
    let at = PageAt::parse(&mut errors, q.limit.as_deref(), q.cursor.as_deref());
    let (Some(region), Some(organizer), Some(at)) = (region, organizer, at) else {
        return Err(errors.into_error());
    };
    listing::events(&state, region.as_ref(), organizer, at).await.map(axum::Json)
}

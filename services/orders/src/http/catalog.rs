//! The catalog's HTTP side: event bodies and listing queries parsed into [`NewEvent`] and
//! [`PageAt`], answered with [`platform::contract`] types.

use axum::extract::State;
use axum::http::HeaderMap;
use platform::auth::{Authenticated, Role};
use platform::contract::{CreateEventPayload, Event, Page};
use platform::error::{ApiError, ErrorBody, FieldErrors};
use platform::http::Json;
use platform::http::{Path, Query};
use platform::openapi::{BadRequest, DependencyFailures, Forbidden, NotFound};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AuthenticatedWrite, IdPath, PageParams};
use crate::domain::{Cents, EventWindow, MAX_TICKET_TYPES, NewEvent, NewTicketType, Text, TotalQuantity, timestamp};
use crate::idempotency::{Answer, Guard, IdempotencyKeyHeader};
use crate::listing::PageAt;
use crate::{AppState, catalog, listing};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::default().routes(routes!(create, events)).routes(routes!(by_id))
}

/// The body of `POST /api/v1/events`. Serialised again (as sent, every field) for the request
/// hash an `Idempotency-Key` is checked against. Every field is optional here so that one
/// answer names every missing one; the document says what a valid body holds (texts are
/// trimmed, and hold no control characters but line breaks and tabs).
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = CreateEventBody)]
struct CreateBody {
    /// The region the event lives in: one of the shard map's (`GET /api/v1/placement`).
    #[schema(value_type = String, required = true, example = "NA")]
    region: Option<String>,
    #[schema(value_type = String, required = true, min_length = 1, max_length = 255)]
    title: Option<String>,
    /// Absent, null or blank: none.
    #[schema(max_length = 5000)]
    description: Option<String>,
    #[schema(value_type = String, required = true, min_length = 1, max_length = 255)]
    venue: Option<String>,
    /// RFC 3339 with an offset (`Z` or `±hh:mm`).
    #[schema(value_type = String, format = DateTime, required = true, example = "2026-01-20T20:00:00Z")]
    starts_at: Option<String>,
    /// After `startsAt`.
    #[schema(value_type = String, format = DateTime, required = true, example = "2026-01-20T23:00:00Z")]
    ends_at: Option<String>,
    #[schema(value_type = Vec<TicketTypeBody>, required = true, min_items = 1, max_items = 50)]
    ticket_types: Option<Vec<TicketTypeBody>>,
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TicketTypeBody {
    #[schema(value_type = String, required = true, min_length = 1, max_length = 100, example = "Floor")]
    name: Option<String>,
    /// In the currency's minor unit.
    #[schema(value_type = i64, required = true, minimum = 1, maximum = 100_000_000, example = 4500)]
    price_in_cents: Option<i64>,
    #[schema(value_type = i32, required = true, minimum = 1, maximum = 1_000_000, example = 500)]
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

/// Create an event
///
/// For an ORGANIZER or an ADMIN: the event and its ticket types, on its region's shard. With an
/// `Idempotency-Key`, a repeat of the same request gets the first answer again.
#[utoipa::path(post, path = "/api/v1/events", tag = "events", operation_id = "createEvent",
    security(("bearerAuth" = [])), params(IdempotencyKeyHeader), request_body = CreateBody,
    responses(
        (status = 201, description = "Created (or the first answer to this `Idempotency-Key`)",
         body = CreateEventPayload),
        AuthenticatedWrite,
        Forbidden,
        (status = 422, description = "`IDEMPOTENCY_KEY_REUSED`: the key came with another request",
         body = ErrorBody),
    ))]
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

/// Read an event
///
/// The event with its ticket types and the stock left of each.
#[utoipa::path(get, path = "/api/v1/events/{id}", tag = "events", operation_id = "getEvent", params(IdPath),
    responses((status = 200, description = "The event", body = Event), BadRequest, NotFound,
        DependencyFailures))]
#[tracing::instrument(skip_all, fields(event_id = %platform::error::shown(&raw)))]
async fn by_id(
    State(state): State<AppState>,
    Path(IdPath { id: raw }): Path<IdPath>,
) -> Result<axum::Json<Event>, ApiError> {
    let id = state.parse_id(&raw, "event")?;
    catalog::event(&state, id).await.map(axum::Json)
}

/// The filters of `GET /api/v1/events` (its page is [`PageParams`]), read as text and parsed
/// by the handler, so that one answer names every bad one.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct EventsQuery {
    /// Only the events of this region (empty: every region).
    region: Option<String>,
    /// Only the events of this organizer.
    #[param(value_type = Option<uuid::Uuid>)]
    organizer_id: Option<String>,
}

/// List events
///
/// Events by start time, soonest first, across the regions asked for; a page at a time.
#[utoipa::path(get, path = "/api/v1/events", tag = "events", operation_id = "listEvents",
    params(EventsQuery, PageParams),
    responses((status = 200, description = "A page of events", body = Page<Event>), BadRequest,
        DependencyFailures))]
#[tracing::instrument(skip_all)]
async fn events(
    State(state): State<AppState>,
    Query(q): Query<EventsQuery>,
    Query(page): Query<PageParams>,
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
    let at = PageAt::parse(&mut errors, page.limit.as_deref(), page.cursor.as_deref());
    let (Some(region), Some(organizer), Some(at)) = (region, organizer, at) else {
        return Err(errors.into_error());
    };
    listing::events(&state, region.as_ref(), organizer, at).await.map(axum::Json)
}

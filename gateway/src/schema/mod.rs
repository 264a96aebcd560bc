//! The schema: queries and mutations over the accounts and orders APIs, and read-model
//! queries over the projector's.
//!
//! Every resolver parses its arguments at the door (regions against the shard map, ids as
//! UUIDs, page sizes), calls one service through [`Downstream`], and turns any failure into a
//! [`GatewayError`] — the only way an error leaves a resolver.

pub mod types;

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{Context, EmptySubscription, ID, Object, Result, Schema};
use platform::code;
use serde_json::{Value, json};
use shard_router::ShardMap;
use tokio::sync::OnceCell;

use crate::cache::{Cache, Kind};
use crate::downstream::{Caller, Downstream, Keyed, Service};
use crate::error::GatewayError;
use types::{
    CancelOrderPayload, CreateEventInput, CreateEventPayload, CreateOrderInput, CreateOrderPayload, CustomerOrders,
    Event, EventSales, LoginInput, LoginPayload, Order, OrderTimeline, Page, PayOrderPayload, Region, RegionInfo,
    SignupInput, SignupPayload, User, UserRole,
};

pub type GatewaySchema = Schema<Query, Mutation, EmptySubscription>;

/// Largest page `events` and `ordersByCustomer` serve (the orders service's own limit).
pub const MAX_FIRST: i32 = 100;
/// How long the event loader waits for more keys before it loads a batch.
const LOADER_DELAY: std::time::Duration = std::time::Duration::from_micros(100);
/// The page size when `first` is not given.
pub const DEFAULT_FIRST: i32 = 20;
/// Longest `after` cursor accepted; the services' cursors are far shorter.
const MAX_CURSOR_LEN: usize = 512;

/// What every request shares: the services, the cache and the regions.
pub struct Gateway {
    pub downstream: Downstream,
    pub cache: Cache,
    /// The shard map's regions, in file order.
    pub regions: Vec<RegionInfo>,
}

impl Gateway {
    pub fn new(downstream: Downstream, cache: Cache, shards: &ShardMap) -> Self {
        let regions = shards
            .regions()
            .map(|r| RegionInfo {
                name: Region(r.name.as_str().to_owned()),
                shards: r.shards.iter().map(|s| s.as_str().to_owned()).collect(),
                partitions: i32::from(r.partitions),
            })
            .collect();
        Self { downstream, cache, regions }
    }

    /// A region the shard map holds, or BAD_USER_INPUT naming the known ones.
    fn region(&self, field: &str, region: &Region) -> Result<String, GatewayError> {
        if self.regions.iter().any(|r| r.name == *region) {
            return Ok(region.0.clone());
        }
        let known = self.regions.iter().map(|r| r.name.0.as_str());
        Err(GatewayError::field(field, shard_router::config::unknown_region(&region.0, known)))
    }
}

/// What one GraphQL request holds: the caller's headers, its user (resolved at most once) and
/// its event loader (one batch per tick across every field that needs an event).
pub struct Scope {
    pub caller: Caller,
    user: OnceCell<Result<User, GatewayError>>,
    events: DataLoader<EventLoader>,
    gateway: Arc<Gateway>,
}

impl Scope {
    pub fn new(gateway: Arc<Gateway>, caller: Caller) -> Self {
        let loader = EventLoader { gateway: gateway.clone(), caller: caller.clone() };
        // Every sibling field registers its key in the same poll, before the batch task runs,
        // so a short delay still batches a whole list; the default (1 ms) would be added to
        // every single `event(id)`.
        let events = DataLoader::new(loader, tokio::spawn).delay(LOADER_DELAY);
        Self { events, user: OnceCell::new(), caller, gateway }
    }

    /// The caller, from `GET /api/v1/me` with their token: asked once per request whatever
    /// the number of fields that need it.
    pub async fn current_user(&self) -> Result<User, GatewayError> {
        self.user
            .get_or_init(|| async {
                if !self.caller.is_authenticated() {
                    return Err(GatewayError::Unauthenticated(
                        "sign in first: send `Authorization: Bearer <accessToken from login>`".into(),
                    ));
                }
                self.gateway.downstream.get(Service::Accounts, "GET /api/v1/me", "/api/v1/me", &self.caller).await
            })
            .await
            .clone()
    }

    /// One event by id through the request's loader; `None` when it does not exist.
    pub async fn event(&self, id: &ID) -> Result<Option<Event>, GatewayError> {
        let id = uuid_id("id", id)?;
        self.events.load_one(id).await
    }
}

pub fn scope<'a>(ctx: &'a Context<'_>) -> Result<&'a Scope> {
    ctx.data::<Scope>()
}

/// Loads events by id for one request: one `MGET` for the whole batch, then the misses from
/// orders concurrently, written back unless invalidated meanwhile.
pub struct EventLoader {
    gateway: Arc<Gateway>,
    caller: Caller,
}

impl Loader<String> for EventLoader {
    type Value = Event;
    type Error = GatewayError;

    async fn load(&self, keys: &[String]) -> Result<HashMap<String, Event>, GatewayError> {
        let cache = &self.gateway.cache;
        let lookup = cache.events(keys, &self.caller.tally).await;
        let mut found = HashMap::new();
        for (id, json) in &lookup.hits {
            // A value that no longer decodes (an older format) is simply fetched again.
            if let Ok(event) = serde_json::from_str::<Event>(json) {
                found.insert(id.clone(), event);
            }
        }
        let missing: Vec<&String> = keys.iter().filter(|k| !found.contains_key(*k)).collect();
        let fetches = missing.iter().map(|id| async move {
            let path = format!("/api/v1/events/{id}");
            let result: Result<Value, _> =
                self.gateway.downstream.get(Service::Orders, "GET /api/v1/events/{id}", &path, &self.caller).await;
            (*id, result)
        });
        for (id, result) in futures::future::join_all(fetches).await {
            match result {
                Ok(json) => {
                    let event: Event = serde_json::from_value(json.clone())
                        .map_err(|e| GatewayError::internal("orders GET /api/v1/events/{id}: unexpected body", e))?;
                    if let Some(generation) = lookup.generations.get(id) {
                        cache.put_event(id, generation, &json.to_string()).await;
                    }
                    found.insert(id.clone(), event);
                }
                Err(GatewayError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(found)
    }
}

/// An id as the services hand them out (a UUID), lower-cased so cache keys agree; anything
/// else is BAD_USER_INPUT naming `field`, and never reaches a URL.
fn uuid_id(field: &str, id: &ID) -> Result<String, GatewayError> {
    let s = id.as_str().trim();
    let ok = s.len() == 36
        && s.char_indices().all(|(i, c)| if matches!(i, 8 | 13 | 18 | 23) { c == '-' } else { c.is_ascii_hexdigit() });
    if ok { Ok(s.to_ascii_lowercase()) } else { Err(GatewayError::field(field, format!("`{s}` is not a valid id"))) }
}

/// `first` of a listing: absent or null (as an unset variable is) means [`DEFAULT_FIRST`].
fn page_size(first: Option<i32>) -> Result<i32, GatewayError> {
    let first = first.unwrap_or(DEFAULT_FIRST);
    if (1..=MAX_FIRST).contains(&first) {
        Ok(first)
    } else {
        Err(GatewayError::field("first", format!("must be 1 to {MAX_FIRST}")))
    }
}

/// A cursor this API handed out: base64url, bounded, so it is safe in a query string and a key.
fn cursor_arg(after: Option<&str>) -> Result<Option<&str>, GatewayError> {
    match after {
        None => Ok(None),
        Some(a)
            if !a.is_empty()
                && a.len() <= MAX_CURSOR_LEN
                && a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            Ok(Some(a))
        }
        Some(_) => Err(GatewayError::field("after", "is not a cursor this API returned")),
    }
}

fn gateway<'a>(ctx: &'a Context<'_>) -> Result<&'a Arc<Gateway>> {
    ctx.data::<Arc<Gateway>>()
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, json: Value) -> Result<T, GatewayError> {
    serde_json::from_value(json).map_err(|e| GatewayError::internal(what, e))
}

pub struct Query;

#[Object]
impl Query {
    /// The signed-in user (UNAUTHENTICATED without a valid token).
    async fn me(&self, ctx: &Context<'_>) -> Result<User> {
        Ok(scope(ctx)?.current_user().await?)
    }

    /// The regions of the shard map and the shards serving each.
    async fn regions(&self, ctx: &Context<'_>) -> Result<Vec<RegionInfo>> {
        Ok(gateway(ctx)?.regions.clone())
    }

    /// Events ordered by start time: one region's, or every region's when `region` is
    /// omitted; optionally one organizer's. Cached per page; `after` takes an event's `cursor`.
    #[graphql(complexity = "(first.unwrap_or(DEFAULT_FIRST).clamp(1, MAX_FIRST) as usize) * child_complexity")]
    async fn events(
        &self,
        ctx: &Context<'_>,
        region: Option<Region>,
        organizer_id: Option<ID>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> Result<Vec<Event>> {
        let (gw, scope) = (gateway(ctx)?, scope(ctx)?);
        let region = region.map(|r| gw.region("region", &r)).transpose()?;
        let organizer = organizer_id.map(|o| uuid_id("organizerId", &o)).transpose()?;
        let first = page_size(first)?;
        let after = cursor_arg(after.as_deref())?;

        let covered: Vec<&str> = match &region {
            Some(r) => vec![r.as_str()],
            None => gw.regions.iter().map(|r| r.name.0.as_str()).collect(),
        };
        let key =
            gw.cache.page_key(region.as_deref().unwrap_or("*"), &covered, organizer.as_deref(), first, after).await;
        if let Some(key) = &key
            && let Some(json) = gw.cache.get(Kind::Events, key, &scope.caller.tally).await
            && let Ok(page) = serde_json::from_str::<Page<Event>>(&json)
        {
            return Ok(page.items);
        }

        // Every part is validated above to a URL-safe alphabet, so no encoding is needed.
        let mut path = format!("/api/v1/events?limit={first}");
        if let Some(r) = &region {
            path.push_str(&format!("&region={r}"));
        }
        if let Some(o) = &organizer {
            path.push_str(&format!("&organizerId={o}"));
        }
        if let Some(a) = after {
            path.push_str(&format!("&cursor={a}"));
        }
        let json: Value = gw.downstream.get(Service::Orders, "GET /api/v1/events", &path, &scope.caller).await?;
        let page: Page<Event> = decode("orders GET /api/v1/events: unexpected body", json.clone())?;
        if let Some(key) = key {
            gw.cache.put(&key, &json.to_string()).await;
        }
        Ok(page.items)
    }

    /// One event with its ticket types and their remaining stock (cached; fresh after any
    /// order placed through the gateway).
    async fn event(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Event>> {
        let scope = scope(ctx)?;
        match scope.event(&id).await? {
            Some(event) => Ok(Some(event)),
            None => Err(GatewayError::NotFound(format!("no event with id {}", id.as_str())).into()),
        }
    }

    /// One order, to its customer or an ADMIN.
    async fn order(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Order>> {
        let (gw, scope) = (gateway(ctx)?, scope(ctx)?);
        let id = uuid_id("id", &id)?;
        let json: Value = gw
            .downstream
            .get(Service::Orders, "GET /api/v1/orders/{id}", &format!("/api/v1/orders/{id}"), &scope.caller)
            .await?;
        Ok(Some(decode("orders GET /api/v1/orders/{id}: unexpected body", json)?))
    }

    /// A customer's orders in every region, newest first: the customer themself or an ADMIN,
    /// else FORBIDDEN. `after` takes an order's `cursor`.
    #[graphql(complexity = "(first.unwrap_or(DEFAULT_FIRST).clamp(1, MAX_FIRST) as usize) * child_complexity")]
    async fn orders_by_customer(
        &self,
        ctx: &Context<'_>,
        customer_id: ID,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> Result<Vec<Order>> {
        let (gw, scope) = (gateway(ctx)?, scope(ctx)?);
        let customer = uuid_id("customerId", &customer_id)?;
        let first = page_size(first)?;
        let after = cursor_arg(after.as_deref())?;
        let me = scope.current_user().await?;
        let (route, mut path) = if me.id.as_str().eq_ignore_ascii_case(&customer) {
            ("GET /api/v1/customers/me/orders", "/api/v1/customers/me/orders".to_owned())
        } else if me.role == UserRole::Admin {
            ("GET /api/v1/customers/{id}/orders", format!("/api/v1/customers/{customer}/orders"))
        } else {
            return Err(
                GatewayError::Forbidden("only the customer themself or an ADMIN may list their orders".into()).into()
            );
        };
        path.push_str(&format!("?limit={first}"));
        if let Some(a) = after {
            path.push_str(&format!("&cursor={a}"));
        }
        let json: Value = gw.downstream.get(Service::Orders, route, &path, &scope.caller).await?;
        let page: Page<Order> = decode("orders customer orders: unexpected body", json)?;
        Ok(page.items)
    }

    /// An event's sales per ticket type from the read model (its organizer or an ADMIN).
    /// Eventually consistent: `asOf` says how fresh it is.
    async fn event_sales(&self, ctx: &Context<'_>, event_id: ID) -> Result<EventSales> {
        let (gw, scope) = (gateway(ctx)?, scope(ctx)?);
        let event = uuid_id("eventId", &event_id)?;
        let path = format!("/api/v1/read/events/{event}/sales");
        let route = "GET /api/v1/read/events/{id}/sales";
        let json: Value = gw.downstream.get(Service::Projector, route, &path, &scope.caller).await?;
        Ok(decode("projector event sales: unexpected body", json)?)
    }

    /// A customer's orders from the read model, newest first (the customer or an ADMIN).
    /// `after` takes the previous page's `nextCursor`.
    #[graphql(complexity = "(first.unwrap_or(DEFAULT_FIRST).clamp(1, MAX_FIRST) as usize) * child_complexity")]
    async fn customer_orders(
        &self,
        ctx: &Context<'_>,
        customer_id: ID,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> Result<CustomerOrders> {
        let (gw, scope) = (gateway(ctx)?, scope(ctx)?);
        let customer = uuid_id("customerId", &customer_id)?;
        let first = page_size(first)?;
        let mut path = format!("/api/v1/read/customers/{customer}/orders?first={first}");
        if let Some(a) = cursor_arg(after.as_deref())? {
            path.push_str(&format!("&after={a}"));
        }
        let route = "GET /api/v1/read/customers/{id}/orders";
        let json: Value = gw.downstream.get(Service::Projector, route, &path, &scope.caller).await?;
        Ok(decode("projector customer orders: unexpected body", json)?)
    }

    /// An order's events in version order, with their source shard, outbox id and
    /// correlation id (the order's customer or an ADMIN).
    async fn order_timeline(&self, ctx: &Context<'_>, order_id: ID) -> Result<OrderTimeline> {
        let (gw, scope) = (gateway(ctx)?, scope(ctx)?);
        let order = uuid_id("orderId", &order_id)?;
        let path = format!("/api/v1/read/orders/{order}/timeline");
        let route = "GET /api/v1/read/orders/{id}/timeline";
        let json: Value = gw.downstream.get(Service::Projector, route, &path, &scope.caller).await?;
        Ok(decode("projector order timeline: unexpected body", json)?)
    }
}

pub struct Mutation;

#[Object]
impl Mutation {
    /// A new account; `role` CUSTOMER (default) or ORGANIZER.
    async fn signup(&self, ctx: &Context<'_>, input: SignupInput) -> Result<SignupPayload> {
        let (gw, scope) = (gateway(ctx)?, scope(ctx)?);
        let body = json!({
            "email": input.email, "name": input.name, "password": input.password,
            "role": input.role.map(UserRole::as_str),
        });
        let json: Value = gw
            .downstream
            .post(Service::Accounts, "POST /api/v1/signup", "/api/v1/signup", &scope.caller, &body, Keyed::No)
            .await?;
        Ok(decode("accounts signup: unexpected body", json)?)
    }

    /// A token for `Authorization: Bearer …`.
    async fn login(&self, ctx: &Context<'_>, input: LoginInput) -> Result<LoginPayload> {
        let (gw, scope) = (gateway(ctx)?, scope(ctx)?);
        let body = json!({ "email": input.email, "password": input.password });
        let json: Value = gw
            .downstream
            .post(Service::Accounts, "POST /api/v1/login", "/api/v1/login", &scope.caller, &body, Keyed::No)
            .await?;
        Ok(decode("accounts login: unexpected body", json)?)
    }

    /// An event in `input.region` (ORGANIZER or ADMIN). The request's idempotency key, if
    /// any, makes a retry answer the first result.
    async fn create_event(&self, ctx: &Context<'_>, input: CreateEventInput) -> Result<CreateEventPayload> {
        let (gw, scope) = (gateway(ctx)?, scope(ctx)?);
        let region = gw.region("region", &input.region)?;
        let body = serde_json::to_value(&input).map_err(|e| GatewayError::internal("createEvent body", e))?;
        let result: Result<Value, GatewayError> = gw
            .downstream
            .post(Service::Orders, "POST /api/v1/events", "/api/v1/events", &scope.caller, &body, Keyed::Yes)
            .await;
        // A new event appears in its region's pages (and in the all-regions ones). Unanswered
        // (timed out, cut), it may have been created all the same.
        if matches!(result, Ok(_) | Err(GatewayError::Unavailable { .. })) {
            gw.cache.invalidate(&[&region], &[]).await;
        }
        Ok(decode("orders create event: unexpected body", result?)?)
    }

    /// An order (CUSTOMER) tagged with the event's region. The request's idempotency key, if
    /// any, makes a retry answer the first order instead of placing another.
    async fn create_order(&self, ctx: &Context<'_>, input: CreateOrderInput) -> Result<CreateOrderPayload> {
        let (gw, scope) = (gateway(ctx)?, scope(ctx)?);
        let region = gw.region("region", &input.region)?;
        let event_id = uuid_id("eventId", &input.event_id)?;
        uuid_id("ticketTypeId", &input.ticket_type_id)?;
        let body = serde_json::to_value(&input).map_err(|e| GatewayError::internal("createOrder body", e))?;
        let result: Result<Value, GatewayError> = gw
            .downstream
            .post(Service::Orders, "POST /api/v1/orders", "/api/v1/orders", &scope.caller, &body, Keyed::Yes)
            .await;
        match &result {
            // Stock changed: the event and every page showing it. A stock conflict means what we
            // may have cached disagrees with the database, so it is dropped too.
            // Unanswered (timed out, cut): the order may have been placed all the same.
            Ok(_)
            | Err(GatewayError::Conflict { code: code::SOLD_OUT | code::INSUFFICIENT_STOCK, .. })
            | Err(GatewayError::Unavailable { .. }) => {
                gw.cache.invalidate(&[&region], &[&event_id]).await;
            }
            Err(_) => {}
        }
        Ok(decode("orders create order: unexpected body", result?)?)
    }

    /// Pays a PENDING order (its customer); paying a PAID one answers the same again, a
    /// cancelled one is `ORDER_CANCELLED`, an expired one `RESERVATION_EXPIRED`. A payment
    /// leaves the stock as it is, so no cached value is touched; an expiry returns tickets the
    /// cached event shows as taken until its TTL, as the sweeper's cancels do.
    async fn pay_order(&self, ctx: &Context<'_>, id: ID) -> Result<PayOrderPayload> {
        let (gw, scope) = (gateway(ctx)?, scope(ctx)?);
        let id = uuid_id("id", &id)?;
        let path = format!("/api/v1/orders/{id}/pay");
        let json: Value = gw
            .downstream
            .post(Service::Orders, "POST /api/v1/orders/{id}/pay", &path, &scope.caller, &json!({}), Keyed::No)
            .await?;
        Ok(decode("orders pay: unexpected body", json)?)
    }

    /// Cancels a PENDING order (its customer): its tickets go back on sale. Cancelling again
    /// answers the same; a PAID order is `ORDER_PAID`. The event's cached copy is dropped.
    async fn cancel_order(&self, ctx: &Context<'_>, id: ID) -> Result<CancelOrderPayload> {
        let (gw, scope) = (gateway(ctx)?, scope(ctx)?);
        let id = uuid_id("id", &id)?;
        let path = format!("/api/v1/orders/{id}/cancel");
        let json: Value = gw
            .downstream
            .post(Service::Orders, "POST /api/v1/orders/{id}/cancel", &path, &scope.caller, &json!({}), Keyed::No)
            .await?;
        let payload: CancelOrderPayload = decode("orders cancel: unexpected body", json)?;
        gw.cache.invalidate(&[&payload.region], &[&payload.event_id]).await;
        Ok(payload)
    }
}

/// The schema with its limits; `gateway` is shared by every request.
pub fn build(gateway: Arc<Gateway>, max_depth: usize, max_complexity: usize) -> GatewaySchema {
    Schema::build(Query, Mutation, EmptySubscription)
        .data(gateway)
        .limit_depth(max_depth)
        .limit_complexity(max_complexity)
        .finish()
}

/// The schema in SDL, for clients and for `gateway/schema.graphql`.
pub fn sdl() -> String {
    Schema::build(Query, Mutation, EmptySubscription).finish().sdl()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_uuids_lower_cased() {
        let id = ID::from("0190A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B");
        assert_eq!(uuid_id("id", &id).ok().as_deref(), Some("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"));
        for bad in ["", "../../admin", "0190a1b2c3d47e5f8a9b0c1d2e3f4a5b", "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5g"] {
            assert!(uuid_id("id", &ID::from(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn cursors_and_page_sizes_are_checked() {
        assert!(cursor_arg(Some("eyJhdCI6IjIwMjYifQ")).is_ok());
        assert!(cursor_arg(Some("a&region=SA")).is_err());
        assert!(cursor_arg(Some("")).is_err());
        assert!(page_size(Some(0)).is_err() && page_size(Some(101)).is_err() && page_size(Some(100)).is_ok());
        assert_eq!(page_size(None).ok(), Some(DEFAULT_FIRST));
    }
}

//! The schema: queries and mutations over the accounts and orders APIs, and read-model
//! queries over the projector's.
//!
//! Every resolver parses its arguments at the door (regions against the shard map, ids as
//! UUIDs, page sizes), calls one service through [`Downstream`], and turns any failure into a
//! [`GatewayError`] — the only way an error leaves a resolver.
//!
//! # Layout
//! - `query`: [`Query`], the queries; `mutation`: [`Mutation`], the mutations. The SDL lists
//!   fields in code order, so `gateway/schema.graphql` follows these files.
//! - `args`: parsing of ids, page sizes and cursors.
//! - [`types`]: the GraphQL object and input types.
//! - here: [`Gateway`] (what every request shares), [`Scope`] (one request), the event
//!   loader, and building the schema.

mod args;
mod mutation;
mod query;
pub mod types;

pub use mutation::Mutation;
pub use query::Query;

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{Context, EmptySubscription, ID, Result, Schema};
use serde_json::Value;
use shard_router::ShardMap;
use tokio::sync::OnceCell;

use crate::cache::Cache;
use crate::downstream::{Caller, Downstream, Service};
use crate::error::GatewayError;
use types::{Event, Region, RegionInfo, User};

pub type GatewaySchema = Schema<Query, Mutation, EmptySubscription>;

/// Largest page `events` and `ordersByCustomer` serve (the orders service's own limit).
pub const MAX_FIRST: i32 = 100;
/// How long the event loader waits for more keys before it loads a batch.
const LOADER_DELAY: std::time::Duration = std::time::Duration::from_micros(100);
/// The page size when `first` is not given.
pub const DEFAULT_FIRST: i32 = 20;

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
    /// The loader's batch tasks, aborted when the scope goes (the request answered, timed out,
    /// or its client gone), so no downstream call outlives the request.
    tasks: Tasks,
}

impl Scope {
    pub fn new(gateway: Arc<Gateway>, caller: Caller) -> Self {
        let loader = EventLoader { gateway: gateway.clone(), caller: caller.clone() };
        let tasks = Tasks::default();
        let spawner = tasks.clone();
        // Every sibling field registers its key in the same poll, before the batch task runs,
        // so a short delay still batches a whole list; the default (1 ms) would be added to
        // every single `event(id)`.
        let events = DataLoader::new(loader, move |task| spawner.spawn(task)).delay(LOADER_DELAY);
        Self { events, user: OnceCell::new(), caller, gateway, tasks }
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
        let id = args::uuid_id("id", id)?;
        self.events.load_one(id).await
    }

    /// [`Scope::event`] for an id a service handed out (an order's event).
    pub async fn event_by_id(&self, id: uuid::Uuid) -> Result<Option<Event>, GatewayError> {
        self.events.load_one(id.to_string()).await
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

/// Tasks spawned for one request.
#[derive(Clone, Default)]
struct Tasks(Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>);

impl Tasks {
    fn spawn(&self, task: futures::future::BoxFuture<'static, ()>) {
        let handle = tokio::spawn(task).abort_handle();
        let mut handles = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        handles.retain(|h| !h.is_finished());
        handles.push(handle);
    }

    fn abort_all(&self) {
        for handle in self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).drain(..) {
            handle.abort();
        }
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
                    let event: Event = decode("orders GET /api/v1/events/{id}: unexpected body", &json)?;
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

fn gateway<'a>(ctx: &'a Context<'_>) -> Result<&'a Arc<Gateway>> {
    ctx.data::<Arc<Gateway>>()
}

/// `GET path` from `service` for the request's caller, decoded as `T`.
async fn get<T: serde::de::DeserializeOwned>(
    ctx: &Context<'_>,
    service: Service,
    route: &'static str,
    path: &str,
) -> Result<T> {
    Ok(gateway(ctx)?.downstream.get(service, route, path, &scope(ctx)?.caller).await?)
}

/// `POST path` to `service` for the request's caller, without its idempotency key, decoded
/// as `T` (the keyed creations go through [`Downstream::post`] themselves: they invalidate
/// the cache whatever the answer).
async fn post<T: serde::de::DeserializeOwned>(
    ctx: &Context<'_>,
    service: Service,
    route: &'static str,
    path: &str,
    body: &Value,
) -> Result<T> {
    Ok(gateway(ctx)?
        .downstream
        .post(service, route, path, &scope(ctx)?.caller, body, crate::downstream::Keyed::No)
        .await?)
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, json: &Value) -> Result<T, GatewayError> {
    T::deserialize(json).map_err(|e| GatewayError::internal(what, e))
}

/// The schema with its limits; `gateway` is shared by every request.
pub fn build(gateway: Arc<Gateway>, max_depth: usize, max_complexity: usize) -> GatewaySchema {
    limited(gateway, max_complexity).limit_depth(max_depth).finish()
}

/// The schema that answers introspection documents only (`__schema`, `__type`): the standard
/// introspection query, which GraphiQL and schema tools send, nests `ofType` about 13 levels
/// deep, past any depth limit sensible for data. Without the depth limit, then, but with every
/// other one; its requests run in `introspection_only` mode, so the engine itself refuses any
/// data field should one slip through [`crate::limits::is_introspection`].
pub fn build_introspection(gateway: Arc<Gateway>, max_complexity: usize) -> GatewaySchema {
    limited(gateway, max_complexity).finish()
}

fn limited(
    gateway: Arc<Gateway>,
    max_complexity: usize,
) -> async_graphql::SchemaBuilder<Query, Mutation, EmptySubscription> {
    Schema::build(Query, Mutation, EmptySubscription)
        .data(gateway)
        .limit_complexity(max_complexity)
        // Its default, said here as `limits` counts nesting the same way.
        .limit_recursive_depth(crate::limits::MAX_NESTING)
        // `@include` and `@skip` are the only directives; a field never needs more than both.
        .limit_directives(2)
}

/// The schema in SDL, for clients and for `gateway/schema.graphql`.
pub fn sdl() -> String {
    Schema::build(Query, Mutation, EmptySubscription).finish().sdl()
}

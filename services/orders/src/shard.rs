//! The one place a shard transaction begins.
//!
//! Every write on a shard runs through [`AppState::write`]: it routes the key by the live map,
//! begins the transaction, calls the shard's ownership fence as the first statement, runs the
//! caller's work, and records the transaction's time. When the shard answers that the partition
//! has moved, the map is reloaded and the work retried once on the new owner (with the same
//! idempotency key, whose record moved with the partition), so the client sees an ordinary
//! answer. While a move is switching the partition (frozen, or moved on the source before the
//! map says so), the work is retried every few milliseconds until the switch is over or
//! [`FREEZE_WAIT`] passes; then the answer is a retryable 503. Reads go through
//! [`AppState::read`], which retries the same way when the shard no longer serves the rows
//! ([`AppState::read_one`] for a row by id). A failed statement is mapped here too, by the
//! shard it ran on ([`WorkError::Db`]).

use std::time::{Duration, Instant};

use platform::error::ApiError;
use shard_router::{Fenced, Route, RouteError, live};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use tracing::Instrument as _;
use uuid::Uuid;

use crate::AppState;
use crate::store::Readable;

/// How long a write waits for a switching partition before answering 503.
pub const FREEZE_WAIT: Duration = Duration::from_secs(3);
const FREEZE_RETRY: Duration = Duration::from_millis(20);

/// What a unit of shard work can end in besides its value.
#[derive(Debug)]
pub enum WorkError {
    /// An answer for the client (not found, conflict, unavailable, ...).
    Api(ApiError),
    /// The shard does not serve the partition now.
    Fenced(Fenced),
    /// A statement failed. Mapped here, once, by the shard it ran on: the fence's refusal is
    /// [`WorkError::Fenced`], an unreachable shard a 503 naming its region, anything else
    /// internal. So the store returns `sqlx::Error` and the work uses `?`.
    Db(sqlx::Error),
}

impl From<sqlx::Error> for WorkError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(e)
    }
}

impl From<ApiError> for WorkError {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

/// What routes a unit of work: an id handed out earlier, or a partition chosen for new data.
#[derive(Debug, Clone)]
pub enum Key {
    Id(Uuid),
    Partition(shard_router::RegionName, shard_router::Partition),
}

/// A writing transaction on the shard owning `partition`, fence passed.
pub struct ShardTx {
    pub tx: Transaction<'static, Postgres>,
    /// The partition the fence was passed for: what the idempotency record is keyed by.
    pub partition: shard_router::Partition,
}

impl ShardTx {
    pub fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }
}

impl AppState {
    fn route_key(&self, key: &Key) -> Result<Route, ApiError> {
        let snap = self.placement.snapshot();
        let routed = match key {
            Key::Id(id) => snap.router.route(*id),
            Key::Partition(region, partition) => snap.router.shard_for(region, *partition).map(|shard| Route {
                region: region.clone(),
                partition: *partition,
                shard: shard.clone(),
            }),
        };
        routed.map_err(|e| match e {
            RouteError::UnknownRegionTag(_) | RouteError::UnknownRegion(_) | RouteError::PartitionOutOfRange { .. } => {
                ApiError::NotFound("no such id in any configured region".into())
            }
            other => crate::routing_bug(other),
        })
    }

    /// Begins a writing transaction for `route` and passes the fence.
    pub async fn begin(&self, route: &Route) -> Result<ShardTx, WorkError> {
        let mut tx = self.pool(&route.shard)?.begin().await?;
        live::fence_write(&mut tx, &route.region, route.partition).await?;
        Ok(ShardTx { tx, partition: route.partition })
    }

    /// Runs a write, `work`, on the shard owning `key`, retrying as the module says.
    /// `work` gets the route and begins its transaction with [`AppState::begin`].
    pub async fn write<T, F, Fut>(&self, key: Key, operation: &'static str, work: F) -> Result<T, ApiError>
    where
        F: Fn(Route) -> Fut,
        Fut: Future<Output = Result<T, WorkError>>,
    {
        self.run(key, operation, true, work).await
    }

    /// Runs a read on the shard serving `key`, reloading the map and retrying once when that
    /// shard no longer serves the partition.
    pub async fn read<T, F, Fut>(&self, key: Key, work: F) -> Result<T, ApiError>
    where
        F: Fn(Route) -> Fut,
        Fut: Future<Output = Result<T, WorkError>>,
    {
        self.run(key, "read", false, work).await
    }

    /// Reads one row by id from the shard serving it (see [`AppState::read`]): `query` gets
    /// that shard's pool. A row the shard holds but no longer serves, or no row on a shard that
    /// no longer serves the partition, sends the read to the new owner; `None` only when the
    /// serving shard has no such row.
    pub async fn read_one<T, F, Fut>(&self, id: Uuid, query: F) -> Result<Option<T>, ApiError>
    where
        F: Fn(PgPool) -> Fut,
        Fut: Future<Output = Result<Option<Readable<T>>, sqlx::Error>>,
    {
        self.read(Key::Id(id), |route| {
            let query = &query;
            async move {
                match query(self.pool(&route.shard)?.clone()).await? {
                    Some(found) if found.readable => Ok(Some(found.row)),
                    Some(_) => Err(WorkError::Fenced(Fenced::NotOwned)),
                    None => readable(self, &route).await.map(|()| None),
                }
            }
        })
        .await
    }

    async fn run<T, F, Fut>(&self, key: Key, operation: &'static str, timed: bool, work: F) -> Result<T, ApiError>
    where
        F: Fn(Route) -> Fut,
        Fut: Future<Output = Result<T, WorkError>>,
    {
        let first = Instant::now();
        loop {
            let route = self.route_key(&key)?;
            let started = Instant::now();
            // The span the collector shows for the transaction; the outbox row written inside
            // it carries its context to the relay and on to the consumers.
            let span = tracing::info_span!(
                "shard tx",
                otel.name = %format_args!("shard tx {operation}"),
                shard = %route.shard,
                region = %route.region,
                partition = %route.partition,
                operation,
            );
            let result = work(route.clone()).instrument(span).await;
            if timed {
                observe_tx(&route, operation, started);
            }
            let fenced = match result {
                Ok(v) => return Ok(v),
                Err(WorkError::Api(e)) => return Err(e),
                Err(WorkError::Fenced(f)) => f,
                Err(WorkError::Db(e)) => match Fenced::from_error(&e) {
                    Some(f) => f,
                    None => return Err(self.shard_error(&route.shard, &route.region, e)),
                },
            };
            let labels = [("operation", operation.to_owned()), ("shard", route.shard.to_string())];
            metrics::counter!("orders_stale_route_retries_total", &labels).increment(1);
            tracing::info!(?fenced, shard = %route.shard, partition = %route.partition, operation, "shard refused the partition");
            if first.elapsed() >= FREEZE_WAIT {
                return Err(ApiError::Unavailable {
                    message: format!("region {} is moving this data between shards; retry shortly", route.region),
                    retry_after_secs: 1,
                });
            }
            // A switch takes a few milliseconds between its steps (source frozen, source moved,
            // destination owner, map published), and each is an answer here. Frozen: wait for
            // the switch. Moved or not owned: reload the map (cheap when its epoch is
            // unchanged) and go to the new owner; when the map has not caught up with the
            // shard's answer yet, wait a moment and ask again.
            if matches!(fenced, Fenced::Moved { .. } | Fenced::NotOwned) {
                if let Err(e) = self.placement.reload().await {
                    tracing::warn!(error = %e, "placement reload after a moved answer failed");
                }
                if self.route_key(&key).map(|r| r.shard != route.shard).unwrap_or(false) {
                    continue;
                }
            }
            tokio::time::sleep(FREEZE_RETRY).await;
        }
    }
}

/// Counts one of the per-shard metrics (`orders_created_total`, ...) by `n`.
pub fn count(name: &'static str, route: &Route, n: u64) {
    let labels = [("region", route.region.to_string()), ("shard", route.shard.to_string())];
    metrics::counter!(name, &labels).increment(n);
}

/// Whether `route`'s shard serves its partition for reads now: what a read that found nothing
/// asks before answering 404, since a partition that moved away has no rows here either.
async fn readable(state: &AppState, route: &Route) -> Result<(), WorkError> {
    let readable: bool = sqlx::query_scalar("select partition_readable($1, $2)")
        .bind(route.region.as_str())
        .bind(route.partition)
        .fetch_one(state.pool(&route.shard)?)
        .await?;
    if readable { Ok(()) } else { Err(WorkError::Fenced(Fenced::NotOwned)) }
}

/// Records how long a shard transaction took, by region, shard and operation.
fn observe_tx(route: &Route, operation: &'static str, started: std::time::Instant) {
    let labels =
        [("region", route.region.to_string()), ("shard", route.shard.to_string()), ("operation", operation.to_owned())];
    metrics::histogram!("orders_shard_transaction_seconds", &labels).record(started.elapsed().as_secs_f64());
}

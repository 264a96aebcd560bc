//! The outbox relay process: one relay per shard draining its outbox into `orders.events`.
//!
//! Each shard's relay campaigns for that shard's lease (an advisory lock in the shard's
//! database), so any number of relay processes can run for availability while exactly one
//! publishes a given shard: events of one order keep their order. The leader wakes on the
//! order transaction's NOTIFY (polling as a fallback), claims rows in commit order, publishes
//! them keyed by order id with an idempotent `acks=all` producer, and marks them SENT only
//! once the broker acknowledged them. Failures about a row retry with exponential backoff and
//! end FAILED in `orders.events.dlq`; `orders-relay reprocess` re-queues them.
//!
//! After a partition move, the new owner's relay holds the partition's new rows until the old
//! owner's relay has published every row written there before the move (`outbox_hold`,
//! `migrations/shard/0004`), so an order's events stay in order on its key across the move.
//!
//! # Layout
//! - [`Settings`] / [`Relay`]: the process (ops endpoints, `GET /api/v1/relay` documented in
//!   OpenAPI by [`openapi`], plus one worker per shard).
//! - [`worker`]: the lease and the drain loop of one shard.
//! - [`outbox`]: every statement the relay runs against the outbox.
//! - [`publish`]: records, headers, the event-contract check, failure sorting, the DLQ.
//! - [`cli`]: `orders-relay [run] | status | reprocess`.

pub mod cli;
pub mod outbox;
pub mod publish;
pub mod worker;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use platform::http::Server;
use platform::ops::Readiness;
use platform::settings::millis;
use serde::{Deserialize, Serialize};
use shard_router::{ShardMap, ShardPools};
use tokio_util::sync::CancellationToken;

pub const SERVICE: &str = "orders-relay";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Ops HTTP listen address (default `127.0.0.1:3003`).
    pub http_addr: SocketAddr,
    pub shards_file: PathBuf,
    /// Kafka bootstrap servers.
    pub kafka_bootstrap: String,
    /// Shards this process relays; empty (the default) relays every shard of the map. Run
    /// several processes with the same list for a standby per shard.
    pub shards: Vec<String>,
    /// The keyed topic (default `orders.events`).
    pub topic: String,
    /// Where rows go that used up their attempts (default `orders.events.dlq`).
    pub dlq_topic: String,
    /// Partitions of both topics when the relay creates them (default 6).
    pub topic_partitions: i32,
    /// Rows claimed and published per round trip (default 500).
    pub batch_size: u32,
    /// Polling fallback for missed NOTIFYs, in milliseconds (default 1000). Also how quickly a
    /// leader notices it lost its lease while idle.
    #[serde(rename = "poll_interval_ms", with = "millis")]
    pub poll_interval: Duration,
    /// How often a standby tries to take the lease, in milliseconds (default 1000).
    #[serde(rename = "lease_retry_ms", with = "millis")]
    pub lease_retry: Duration,
    /// Publish attempts of a row before it is FAILED and dead-lettered (default 10). Only
    /// failures about the row count; a broker outage never dead-letters.
    pub max_attempts: i32,
    /// First retry delay, doubled per attempt, in milliseconds (default 500).
    #[serde(rename = "retry_base_ms", with = "millis")]
    pub retry_base: Duration,
    /// Longest retry delay, in milliseconds (default 60000).
    #[serde(rename = "retry_max_ms", with = "millis")]
    pub retry_max: Duration,
    /// How long the producer keeps trying one record, in milliseconds (default 30000).
    #[serde(rename = "message_timeout_ms", with = "millis")]
    pub message_timeout: Duration,
    /// Producer batching delay, in milliseconds (default 5).
    #[serde(rename = "linger_ms", with = "millis")]
    pub linger: Duration,
    /// Connecting to a shard, in milliseconds (default 3000).
    #[serde(rename = "connect_timeout_ms", with = "millis")]
    pub connect_timeout: Duration,
    /// Upper bound of one outbox statement; past it the relay gives up its lease, in
    /// milliseconds (default 10000).
    #[serde(rename = "statement_timeout_ms", with = "millis")]
    pub statement_timeout: Duration,
}

platform::defaults_from!(Settings, "defaults/orders-relay.toml");

impl Settings {
    /// Refuses values the relay cannot run with, naming the key (nothing is clamped silently).
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.batch_size > 0, "batch_size: must be at least 1");
        anyhow::ensure!(self.max_attempts > 0, "max_attempts: must be at least 1");
        anyhow::ensure!(self.topic_partitions > 0, "topic_partitions: must be at least 1");
        anyhow::ensure!(self.retry_max >= self.retry_base, "retry_max_ms: must be at least retry_base_ms");
        Ok(())
    }

    /// The shards of `map` this process relays; an unknown name is an error naming it.
    pub fn selected<'a>(&self, map: &'a ShardMap) -> anyhow::Result<Vec<&'a shard_router::Shard>> {
        select_shards(map, &self.shards)
    }
}

/// `names` resolved against `map` (all shards when empty).
pub fn select_shards<'a>(map: &'a ShardMap, names: &[String]) -> anyhow::Result<Vec<&'a shard_router::Shard>> {
    if names.is_empty() {
        return Ok(map.shards().collect());
    }
    names
        .iter()
        .map(|n| {
            map.shard_named(n).ok_or_else(|| {
                let known: Vec<&str> = map.shards().map(|s| s.name.as_str()).collect();
                anyhow::anyhow!("shards: no shard named `{n}` in the shard map; known: {}", known.join(", "))
            })
        })
        .collect()
}

/// A shard relay's part in the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = RelayRole)]
pub enum Role {
    /// Waiting for the lease another relay holds.
    Standby,
    /// Holding the lease and publishing.
    Leader,
    /// Cannot reach the shard's database.
    Unreachable,
    Stopped,
}

/// One shard's relay in this process.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShardState {
    pub region: String,
    pub role: Role,
    /// Rows this process published since it started.
    pub published: u64,
    #[schema(required = true)]
    pub last_error: Option<String>,
}

/// What the shard workers of one process share: their states for `/api/v1/relay`, and the
/// one-time topic creation.
pub struct Shared {
    states: Mutex<BTreeMap<String, ShardState>>,
    topics: tokio::sync::OnceCell<()>,
    bootstrap: String,
    topic_specs: Vec<(String, i32)>,
}

impl Shared {
    fn with_state<R>(&self, shard: &str, f: impl FnOnce(&mut ShardState) -> R) -> Option<R> {
        let mut states = self.states.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        states.get_mut(shard).map(f)
    }

    pub fn set_role(&self, shard: &str, role: Role, error: Option<String>) {
        self.with_state(shard, |s| {
            s.role = role;
            if error.is_some() {
                s.last_error = error;
            }
        });
    }

    pub fn set_error(&self, shard: &str, error: &str) {
        self.with_state(shard, |s| s.last_error = Some(error.to_owned()));
    }

    pub fn add_published(&self, shard: &str, n: usize) {
        self.with_state(shard, |s| s.published += n as u64);
    }

    pub fn snapshot(&self) -> BTreeMap<String, ShardState> {
        self.states.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Creates the topics when missing, once per process (retried until it succeeds).
    pub async fn topics_ready(&self) -> anyhow::Result<()> {
        self.topics
            .get_or_try_init(|| async {
                let specs: Vec<(&str, i32)> = self.topic_specs.iter().map(|(t, p)| (t.as_str(), *p)).collect();
                platform::kafka::ensure_topics(&self.bootstrap, &specs).await
            })
            .await
            .map(drop)
    }
}

pub struct Relay {
    http: Server,
    workers: Vec<worker::ShardRelay>,
    shared: Arc<Shared>,
}

impl Relay {
    pub async fn build(settings: Settings, shards: ShardMap) -> anyhow::Result<Self> {
        settings.validate()?;
        let selected = settings.selected(&shards)?;
        let pools = ShardPools::connect_lazy(&shards, Duration::from_secs(2))?;
        let mut checks: Vec<_> = crate::shard_checks(&pools)
            .into_iter()
            .filter(|c| selected.iter().any(|s| c.name() == format!("postgres:{}", s.name)))
            .collect();
        checks.push(platform::kafka::check("kafka", &settings.kafka_bootstrap));

        let shared = Arc::new(Shared {
            states: Mutex::new(
                selected
                    .iter()
                    .map(|s| {
                        let state = ShardState {
                            region: s.region.to_string(),
                            role: Role::Standby,
                            published: 0,
                            last_error: None,
                        };
                        (s.name.to_string(), state)
                    })
                    .collect(),
            ),
            topics: tokio::sync::OnceCell::new(),
            bootstrap: settings.kafka_bootstrap.clone(),
            topic_specs: vec![
                (settings.topic.clone(), settings.topic_partitions),
                (settings.dlq_topic.clone(), settings.topic_partitions),
            ],
        });
        let tuning = worker::Tuning {
            batch_size: i64::from(settings.batch_size),
            poll_interval: settings.poll_interval,
            lease_retry: settings.lease_retry,
            max_attempts: settings.max_attempts,
            retry_base: settings.retry_base,
            retry_max: settings.retry_max,
            connect_timeout: settings.connect_timeout,
            statement_timeout: settings.statement_timeout,
        };
        let producer = publish::ProducerSettings {
            bootstrap: settings.kafka_bootstrap.clone(),
            topic: settings.topic.clone(),
            dlq_topic: settings.dlq_topic.clone(),
            linger: settings.linger,
            message_timeout: settings.message_timeout,
        };
        let workers = selected
            .iter()
            .map(|s| worker::ShardRelay {
                shard: s.name.to_string(),
                region: s.region.to_string(),
                url: s.url.expose().to_owned(),
                tuning: tuning.clone(),
                producer: producer.clone(),
                shared: shared.clone(),
                peers: pools.clone(),
            })
            .collect();
        let app = platform::openapi::app(routes().with_state(shared.clone()), Readiness::new(checks), &API);
        let http = Server::bind(settings.http_addr, app).await?;
        Ok(Self { http, workers, shared })
    }

    pub fn port(&self) -> u16 {
        self.http.port()
    }

    pub fn states(&self) -> BTreeMap<String, ShardState> {
        self.shared.snapshot()
    }

    /// Runs every shard relay and the ops endpoints until `shutdown`; leaders finish their
    /// batch, flush and release their lease before this returns.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let shards: Vec<&str> = self.workers.iter().map(|w| w.shard.as_str()).collect();
        tracing::info!(?shards, "relaying");
        let tasks: Vec<_> = self.workers.into_iter().map(|w| tokio::spawn(w.run(shutdown.clone()))).collect();
        self.http.run(shutdown).await?;
        if tokio::time::timeout(Duration::from_secs(20), futures::future::join_all(tasks)).await.is_err() {
            tracing::warn!("shard relays did not stop within 20 s");
        }
        Ok(())
    }
}

/// What the relay's OpenAPI document says about its HTTP API.
pub const API: platform::openapi::About = platform::openapi::About {
    title: "Ticket Hub orders-relay",
    version: env!("CARGO_PKG_VERSION"),
    description: "The outbox relay's status and ops endpoints: which shards this process relays, \
        whether it leads or stands by for each, and what it published.",
};

/// The relay's routes, documented; the caller gives the state.
fn routes() -> utoipa_axum::router::OpenApiRouter<Arc<Shared>> {
    utoipa_axum::router::OpenApiRouter::default().routes(utoipa_axum::routes!(relay_status))
}

/// The OpenAPI document the relay serves at `/openapi.json` (and `openapi/orders-relay.json`
/// holds), built without starting anything.
pub fn openapi() -> utoipa::openapi::OpenApi {
    platform::openapi::document(routes(), &API)
}

/// `GET /api/v1/relay`'s answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RelayStatus {
    /// By shard name: every shard this process relays.
    pub shards: BTreeMap<String, ShardState>,
}

/// Relay status
///
/// Each shard's role here (leader or standby), the rows published since this process started,
/// and the last error.
#[utoipa::path(get, path = "/api/v1/relay", tag = "relay", operation_id = "relayStatus",
    responses((status = 200, description = "The shards of this process", body = RelayStatus)))]
async fn relay_status(State(shared): State<Arc<Shared>>) -> axum::Json<RelayStatus> {
    axum::Json(RelayStatus { shards: shared.snapshot() })
}

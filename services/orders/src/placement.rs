//! The live placement this process routes by, and how it follows changes to it.
//!
//! At start the live map is loaded from the `placement` database (seeded from `shards.toml`
//! for any region it lacks, on the very first start only). `shards.toml` is the desired
//! placement: where it differs from the live map nothing is re-routed; the difference is a plan
//! waiting to be applied, said once in the log, in `/readyz` and by the
//! `orders_placement_pending_moves` gauge. Afterwards the map follows the database: `LISTEN
//! placement` wakes a reload at once, a poll catches a missed notice, and a shard answering
//! "moved" makes the caller reload before its one retry ([`crate::shard`]).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use platform::contract::{Placement, RegionPlacement, ShardPlacement};
use shard_router::live::{self, LiveError};
use shard_router::{LiveStore, PartitionMap, Router, ShardMap, ShardPools};
use tokio_util::sync::CancellationToken;

/// One consistent view: the live map and the router built from it.
#[derive(Debug)]
pub struct Snapshot {
    pub router: Router,
    pub live: PartitionMap,
    /// Partitions whose live owner differs from the one `shards.toml` asks for.
    pub pending_moves: usize,
}

/// The live router, shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct LivePlacement {
    current: Arc<RwLock<Arc<Snapshot>>>,
    store: LiveStore,
    shards: Arc<ShardMap>,
    /// What `shards.toml` asks for: fixed for the process, compared with every live map.
    desired: Arc<PartitionMap>,
    pools: ShardPools,
    /// One reload at a time: a burst of "moved" answers costs one read of the map, not one each.
    reload: Arc<tokio::sync::Mutex<()>>,
    /// This process's name in `placement_process`, and when it started.
    process: Arc<(String, chrono::DateTime<chrono::Utc>)>,
}

/// A name for this process that `orders-rebalance status` can show: host, pid, and a short
/// suffix, since tests run several services in one process.
fn process_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host} pid {} #{}", std::process::id(), &suffix[..6])
}

impl LivePlacement {
    /// Loads (or seeds) the live map and checks it against `shards`. Fails when the placement
    /// database cannot be read or the live map names shards the file does not define: serving
    /// by a guessed map is what this exists to prevent.
    pub async fn start(store: LiveStore, shards: Arc<ShardMap>, pools: ShardPools) -> Result<Self, LiveError> {
        let (live, seeded) = store.load_or_seed(&shards).await?;
        let desired = Arc::new(PartitionMap::desired(&shards));
        let this = Self {
            current: Arc::new(RwLock::new(Arc::new(snapshot(&shards, &desired, live)))),
            store,
            shards,
            desired,
            pools,
            reload: Arc::new(tokio::sync::Mutex::new(())),
            process: Arc::new((process_name(), chrono::Utc::now())),
        };
        if !seeded.is_empty() {
            tracing::info!(regions = ?seeded.iter().map(ToString::to_string).collect::<Vec<_>>(), "live placement seeded from shards.toml");
        }
        let snap = this.snapshot();
        this.ensure_ownership(&snap.live).await;
        this.publish(&snap, true);
        this.heartbeat().await;
        Ok(this)
    }

    /// The view requests route by now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads the live map again and installs it when its epoch is newer. Returns the epoch now
    /// in force. A failed read keeps the current map.
    pub async fn reload(&self) -> Result<i64, LiveError> {
        let _one = self.reload.lock().await;
        let installed = self.snapshot();
        if self.store.epoch().await? <= installed.live.epoch {
            return Ok(installed.live.epoch);
        }
        let live = self.store.load(&self.shards).await?;
        let next = Arc::new(snapshot(&self.shards, &self.desired, live));
        self.ensure_ownership(&next.live).await;
        match self.current.write() {
            Ok(mut guard) => *guard = next.clone(),
            Err(poisoned) => *poisoned.into_inner() = next.clone(),
        }
        tracing::info!(epoch = next.live.epoch, pending_moves = next.pending_moves, "live placement reloaded");
        self.publish(&next, false);
        drop(_one);
        self.heartbeat().await;
        Ok(next.live.epoch)
    }

    /// Says which epoch this process routes by (`placement_process`). A failure is logged
    /// and otherwise ignored: it only makes `status` less informed.
    async fn heartbeat(&self) {
        let epoch = self.snapshot().live.epoch;
        let (name, started) = &*self.process;
        if let Err(e) = self.store.heartbeat(name, crate::SERVICE, epoch, *started).await {
            tracing::debug!(error = %e, "could not record this process's epoch");
        }
    }

    /// Follows the live map until `stop`: `LISTEN placement` for prompt reloads, and a poll of
    /// the epoch every `poll` in case a notice was missed or the listener is down.
    pub async fn follow(self, poll: Duration, stop: CancellationToken) {
        let mut listener = None;
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if listener.is_none() {
                listener =
                    self.store.listen().await.map_err(|e| tracing::warn!(error = %e, "LISTEN placement failed")).ok();
            }
            let notified = async {
                match listener.as_mut() {
                    Some(l) => l.recv().await.map(drop),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                got = notified => if let Err(e) = got {
                    tracing::warn!(error = %e, "placement listener lost; polling until it is back");
                    listener = None;
                },
                _ = tick.tick() => {}
            }
            let before = self.snapshot().live.epoch;
            match self.reload().await {
                // A reload that installed a newer map has reported it already.
                Ok(epoch) if epoch == before => self.heartbeat().await,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "placement reload failed; routing by the map in force"),
            }
        }
    }

    /// Makes sure each reachable shard has an ownership row for every partition the live map
    /// gives it (the seed of its fence); rows that exist are left alone. A shard that cannot be
    /// reached now gets its rows the next time the map is installed.
    async fn ensure_ownership(&self, live: &PartitionMap) {
        for (region, _) in live.regions() {
            for shard in live.shards_of(region) {
                let Some(pool) = self.pools.get(&shard) else { continue };
                let parts = live.partitions_of(region, &shard);
                match live::ensure_owned(pool, region, &parts, live.epoch).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(%shard, %region, rows = n, "recorded partition ownership on the shard"),
                    Err(e) => {
                        tracing::warn!(%shard, error = %e, "could not record partition ownership; writes there wait for it")
                    }
                }
            }
        }
    }

    fn publish(&self, snap: &Snapshot, at_start: bool) {
        metrics::gauge!("orders_placement_epoch").set(snap.live.epoch as f64);
        let moves = snap.live.moves_to(&self.desired);
        for (region, _) in snap.live.regions() {
            let pending = moves.iter().filter(|m| &m.region == region).count();
            metrics::gauge!("orders_placement_pending_moves", "region" => region.to_string()).set(pending as f64);
            for (shard, n) in snap.live.counts(region) {
                metrics::gauge!("orders_placement_partitions", "region" => region.to_string(), "shard" => shard.to_string())
                    .set(n as f64);
            }
        }
        if at_start && snap.pending_moves > 0 {
            tracing::warn!(
                pending_moves = snap.pending_moves,
                epoch = snap.live.epoch,
                "shards.toml asks for a placement the live map does not have; serving the live map \
                 until the plan is applied (orders-rebalance plan)"
            );
        }
    }

    /// What `/readyz` says of the placement: never a failure, since serving the live map is
    /// right, but a plan waiting to be applied is named.
    pub fn describe(&self) -> String {
        let snap = self.snapshot();
        if snap.pending_moves == 0 {
            format!("epoch {}, matches shards.toml", snap.live.epoch)
        } else {
            format!(
                "epoch {}, {} partitions placed differently from shards.toml: a plan waits to be applied",
                snap.live.epoch, snap.pending_moves
            )
        }
    }

    /// The placement `shards.toml` asks for.
    pub fn desired(&self) -> &PartitionMap {
        &self.desired
    }
}

fn snapshot(shards: &ShardMap, desired: &PartitionMap, live: PartitionMap) -> Snapshot {
    let pending_moves = live.moves_to(desired).len();
    Snapshot { router: Router::with_placement(shards, &live), live, pending_moves }
}

/// `GET /api/v1/placement`, documented; the caller gives the state.
pub fn routes() -> utoipa_axum::router::OpenApiRouter<crate::AppState> {
    utoipa_axum::router::OpenApiRouter::default().routes(utoipa_axum::routes!(show))
}

/// Where data lives
///
/// The live partition map this process routes by, next to what `shards.toml` asks for: shard
/// names and partition counts per region (no addresses). `pendingMoves` above 0 means a
/// rebalance is waiting to be applied.
#[utoipa::path(get, path = "/api/v1/placement", tag = "placement", operation_id = "getPlacement",
    responses((status = 200, description = "The live placement", body = Placement), platform::openapi::Unavailable))]
async fn show(axum::extract::State(state): axum::extract::State<crate::AppState>) -> axum::Json<Placement> {
    let snap = state.placement.snapshot();
    let desired = state.placement.desired();
    let moves = snap.live.moves_to(desired);
    let regions = state
        .shards
        .regions()
        .map(|r| {
            let mut counts: std::collections::BTreeMap<String, (usize, usize)> = std::collections::BTreeMap::new();
            for (shard, n) in snap.live.counts(&r.name) {
                counts.entry(shard.to_string()).or_default().0 = n;
            }
            for (shard, n) in desired.counts(&r.name) {
                counts.entry(shard.to_string()).or_default().1 = n;
            }
            RegionPlacement {
                region: r.name.to_string(),
                partitions: r.partitions,
                pending_moves: count(moves.iter().filter(|m| m.region == r.name).count()),
                shards: counts
                    .into_iter()
                    .map(|(shard, (live, wanted))| ShardPlacement {
                        shard,
                        live_partitions: count(live),
                        desired_partitions: count(wanted),
                    })
                    .collect(),
            }
        })
        .collect();
    axum::Json(Placement { epoch: snap.live.epoch, regions })
}

/// A partition count as the contract carries it (a region has at most `u16::MAX` partitions).
fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

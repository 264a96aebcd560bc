//! `apply` and `abort`: carrying the plan out, a batch of partitions at a time, online.
//!
//! One move, from the journal's point of view (`journal::Phase`):
//!
//! 1. **COPYING.** The destination marks the partitions INCOMING (it neither reads nor writes
//!    them), the source publishes their rows with a row filter, and the destination's
//!    subscription copies them and then follows the source's changes in commit order.
//! 2. **CATCHING_UP.** Once the destination is less than `max_lag_bytes` behind, the source
//!    **freezes** just these partitions (writers in flight finish first; later ones wait, see
//!    `crate::shard`), under a lease. The destination must confirm the source's WAL position
//!    after the freeze within `catch_up_timeout`, else the freeze is lifted and tried again.
//!    Then the frozen partitions are **verified** (rows and checksum per table, stock) and
//!    **switched**: the source marks them MOVED (only while the lease holds), the subscription
//!    is dropped, the destination takes ownership with an outbox hold for the hand-off, and the
//!    live map is published with a new epoch, which every orders process follows.
//! 3. **SWITCHED → DONE.** The slot and publication are dropped and the source's rows of the
//!    partitions deleted.
//!
//! A crash anywhere leaves the journal at a phase whose steps are all idempotent: `apply`
//! resumes there, `abort` (before the switch) undoes it. A freeze left behind by a dead
//! orchestrator lapses with its lease. Replication objects are named after the move.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shard_router::{LiveStore, Partition, PartitionMap, RegionName, ShardMap, ShardName, ShardPools};
use sqlx::PgPool;

use super::journal::{self, MoveRow, Phase};
use super::{plan, shards, verify};

/// How `apply` paces a move. The defaults suit a live shard under load.
#[derive(Debug, Clone)]
pub struct Options {
    /// Partitions per move: what one freeze switches.
    pub batch: usize,
    /// The freeze starts only when the destination is at most this far behind.
    pub max_lag_bytes: i64,
    /// The freeze's lease: past it, the source serves the partitions again by itself.
    pub freeze_lease: Duration,
    /// How long a freeze waits for the destination to confirm the last writes before the
    /// freeze is lifted and retried.
    pub catch_up_timeout: Duration,
    /// Freezes tried per move before `apply` gives up (the move stays, for `apply` or `abort`).
    pub freeze_attempts: u32,
    /// How long the initial copy may take.
    pub copy_timeout: Duration,
    /// Stop after this many moves (all when `None`).
    pub max_moves: Option<usize>,
    /// Test hook: exit the process abruptly at this point, as a crash would.
    pub crash_at: Option<CrashPoint>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            batch: 64,
            max_lag_bytes: 1 << 20,
            freeze_lease: Duration::from_secs(5),
            catch_up_timeout: Duration::from_secs(2),
            freeze_attempts: 5,
            copy_timeout: Duration::from_secs(3600),
            max_moves: None,
            crash_at: None,
        }
    }
}

/// How long the catch-up may take before the move gives up (the slot holds WAL meanwhile).
const CATCH_UP_DEADLINE: Duration = Duration::from_secs(600);

/// Where the crash hook fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CrashPoint {
    /// The copy is running (subscription created, not yet ready).
    Copy,
    /// The partitions are frozen, not yet switched.
    Freeze,
    /// The source marked them MOVED; the destination does not own them yet.
    Switch,
    /// The map is published; the source's rows and replication objects are still there.
    Switched,
}

/// What `apply` did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub moves: Vec<MoveRow>,
}

pub struct Mover {
    map: Arc<ShardMap>,
    pools: ShardPools,
    store: LiveStore,
    placement_url: String,
    tag: String,
    opts: Options,
}

fn crash(point: CrashPoint) -> ! {
    println!("crash hook: exiting at {point:?}");
    std::process::abort()
}

impl Mover {
    pub async fn new(
        map: Arc<ShardMap>,
        pools: ShardPools,
        store: LiveStore,
        placement_url: &str,
        opts: Options,
    ) -> anyhow::Result<Self> {
        let tag = journal::placement_tag(store.pool()).await?;
        Ok(Self { map, pools, store, placement_url: placement_url.to_owned(), tag, opts })
    }

    fn placement(&self) -> &PgPool {
        self.store.pool()
    }

    fn hook(&self, point: CrashPoint) {
        if self.opts.crash_at == Some(point) {
            crash(point);
        }
    }

    /// The session whose advisory lock makes this the only orchestrator, held by the caller.
    async fn orchestrate(&self) -> anyhow::Result<sqlx::PgConnection> {
        let mut conn = shards::connect(&self.placement_url).await?;
        anyhow::ensure!(
            journal::try_orchestrate(&mut conn).await?,
            "another `orders-rebalance apply` or `abort` is running against this placement database"
        );
        Ok(conn)
    }

    /// The next batch the plan asks for: the first source → destination pair's first
    /// `batch` partitions.
    async fn next_batch(&self) -> anyhow::Result<Option<(RegionName, ShardName, ShardName, Vec<Partition>)>> {
        let live = self.store.load(&self.map).await?;
        let desired = PartitionMap::desired(&self.map);
        let mut groups: BTreeMap<(RegionName, ShardName, ShardName), Vec<Partition>> = BTreeMap::new();
        for m in live.moves_to(&desired) {
            groups.entry((m.region, m.from, m.to)).or_default().push(m.partition);
        }
        Ok(groups.into_iter().next().map(|((region, from, to), mut parts)| {
            parts.truncate(self.opts.batch.max(1));
            (region, from, to, parts)
        }))
    }

    /// Applies the plan: resumes the unfinished move if there is one, then moves batches
    /// until the live map is what `shards.toml` asks for.
    pub async fn apply(&self) -> anyhow::Result<Summary> {
        let _lock = self.orchestrate().await?;
        let mut summary = Summary::default();
        loop {
            if self.opts.max_moves.is_some_and(|n| summary.moves.len() >= n) {
                break;
            }
            let mv = match journal::active(self.placement()).await? {
                Some(mv) => {
                    println!(
                        "resuming move {} ({} {} -> {}, {} partitions) at {}",
                        mv.id,
                        mv.region,
                        mv.source,
                        mv.dest,
                        mv.partitions.len(),
                        mv.phase
                    );
                    journal::set_note(self.placement(), mv.id, &format!("resumed at {}", mv.phase)).await?;
                    mv
                }
                None => {
                    let Some((region, from, to, parts)) = self.next_batch().await? else { break };
                    let checks = plan::preflight(&self.pools, &from, &to, &parts).await;
                    let failed: Vec<String> =
                        checks.iter().filter(|c| !c.ok).map(|c| format!("{}: {}", c.name, c.detail)).collect();
                    anyhow::ensure!(failed.is_empty(), "preflight failed for {from} -> {to}: {}", failed.join("; "));
                    let mv =
                        journal::start(self.placement(), region.as_str(), from.as_str(), to.as_str(), &parts).await?;
                    println!("move {}: {region} {from} -> {to}, {} partitions", mv.id, parts.len());
                    mv
                }
            };
            let id = mv.id;
            self.run(mv).await?;
            if let Some(done) = journal::get(self.placement(), id).await? {
                println!(
                    "move {id}: done; {} rows copied, write pause {:.0} ms",
                    done.rows_copied.unwrap_or(0),
                    done.freeze_ms.unwrap_or(f64::NAN)
                );
                summary.moves.push(done);
            }
        }
        Ok(summary)
    }

    /// The shards of a move, resolved in the map.
    fn sides(&self, mv: &MoveRow) -> anyhow::Result<Sides> {
        let region = RegionName::parse(&mv.region).map_err(anyhow::Error::msg)?;
        let pool_of = |name: &str| -> anyhow::Result<(ShardName, PgPool, String)> {
            let shard = self.map.shard_named(name).ok_or_else(|| {
                anyhow::anyhow!(
                    "shard `{name}` of move {} is not in shards.toml: keep it defined until the move is done",
                    mv.id
                )
            })?;
            let pool = self.pools.get(&shard.name).cloned().ok_or_else(|| anyhow::anyhow!("no pool for {name}"))?;
            Ok((shard.name.clone(), pool, shard.url.expose().to_owned()))
        };
        let (source_name, source, source_url) = pool_of(&mv.source)?;
        let (dest_name, dest, _) = pool_of(&mv.dest)?;
        Ok(Sides {
            region,
            source_name,
            source,
            source_url,
            dest_name,
            dest,
            name: mv.replication_name(&self.tag),
            parts: mv.partitions.clone(),
        })
    }

    async fn run(&self, mv: MoveRow) -> anyhow::Result<()> {
        let s = self.sides(&mv)?;
        let mut phase = mv.phase;
        if phase == Phase::Copying {
            self.copy(&mv, &s).await?;
            phase = Phase::CatchingUp;
        }
        if phase == Phase::CatchingUp {
            self.switch(&mv, &s).await?;
            phase = Phase::Switched;
        }
        if phase == Phase::Switched {
            self.cleanup(&mv, &s).await?;
        }
        Ok(())
    }

    async fn copy(&self, mv: &MoveRow, s: &Sides) -> anyhow::Result<()> {
        let started = Instant::now();
        if !shards::subscription_exists(&s.dest, &s.name).await? {
            let epoch = self.store.epoch().await?;
            shards::mark_incoming(&s.dest, &s.region, &s.parts, epoch).await?;
            // Rows an earlier, interrupted attempt copied: the new copy brings them again.
            shards::delete_rows(&s.dest, &s.region, &s.parts).await?;
            shards::create_publication(&s.source, &s.name, &s.parts).await?;
            shards::create_slot(&s.source, &s.name).await?;
            shards::create_subscription(&s.dest, &s.name, &s.source_url).await?;
        }
        self.hook(CrashPoint::Copy);
        let mut last_report = Instant::now();
        loop {
            self.healthy(mv, s).await?;
            let (ready, rows) = shards::copy_progress(&s.dest, &s.name, &s.parts).await?;
            if ready {
                journal::set_copied(self.placement(), mv.id, rows).await?;
                let secs = started.elapsed().as_secs_f64();
                metrics::counter!("orders_rebalance_rows_copied_total").increment(u64::try_from(rows).unwrap_or(0));
                println!("move {}: copied {rows} rows in {secs:.1} s", mv.id);
                break;
            }
            anyhow::ensure!(
                started.elapsed() < self.opts.copy_timeout,
                "move {}: the copy did not finish within {:?}; `status` shows it, `abort` undoes it",
                mv.id,
                self.opts.copy_timeout
            );
            if last_report.elapsed() >= Duration::from_secs(5) {
                println!("move {}: copying, {rows} rows so far", mv.id);
                last_report = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut conn = self.placement().acquire().await?;
        journal::advance(&mut conn, mv.id, Phase::CatchingUp).await?;
        Ok(())
    }

    /// Fails the move when the subscription's workers report errors: they retry forever, the
    /// move would never progress, and the slot would keep WAL on the source meanwhile.
    async fn healthy(&self, mv: &MoveRow, s: &Sides) -> anyhow::Result<()> {
        let errors = shards::subscription_errors(&s.dest, &s.name).await?;
        if errors > 0 {
            let note = format!("the subscription on {} reports {errors} errors (see its server log)", s.dest_name);
            journal::set_note(self.placement(), mv.id, &note).await?;
            anyhow::bail!("move {}: {note}; nothing switched, `abort` undoes the move", mv.id);
        }
        Ok(())
    }

    /// Waits until the destination is close enough to freeze.
    async fn catch_up(&self, mv: &MoveRow, s: &Sides) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut last_report = Instant::now().checked_sub(Duration::from_secs(60)).unwrap_or_else(Instant::now);
        loop {
            self.healthy(mv, s).await?;
            anyhow::ensure!(
                started.elapsed() < CATCH_UP_DEADLINE,
                "move {}: still behind after {CATCH_UP_DEADLINE:?}; the slot holds WAL on {}: `abort` drops it",
                mv.id,
                s.source_name
            );
            let lag = shards::lag_bytes(&s.source, &s.name).await?.ok_or_else(|| {
                anyhow::anyhow!("move {}: the slot {} is missing on {}", mv.id, s.name, s.source_name)
            })?;
            metrics::gauge!("orders_rebalance_lag_bytes").set(lag as f64);
            if lag <= self.opts.max_lag_bytes {
                return Ok(());
            }
            // Once a second: the journal (for `status`), and the terminal when it takes long.
            if last_report.elapsed() >= Duration::from_secs(1) {
                journal::set_lag(self.placement(), mv.id, lag).await?;
                if started.elapsed() > Duration::from_secs(10) {
                    println!("move {}: catching up, {lag} bytes behind", mv.id);
                }
                last_report = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn switch(&self, mv: &MoveRow, s: &Sides) -> anyhow::Result<()> {
        let n = s.parts.len() as u64;
        if shards::moved_count(&s.source, &s.region, &s.parts, s.dest_name.as_str()).await? == n {
            // A crash after the source's half of the switch: finish it.
            let epoch: i64 = sqlx::query_scalar(
                "select max(epoch) from partition_owner where region = $1 and partition = any($2) and state = 'MOVED'",
            )
            .bind(s.region.as_str())
            .bind(&s.parts)
            .fetch_one(&s.source)
            .await?;
            let v = verify::compare(&s.source, &s.dest, &s.parts).await?;
            anyhow::ensure!(v.ok(), "move {}: verification after a resumed switch failed:\n{v}", mv.id);
            return self.finish_switch(mv, s, epoch, None, &v).await;
        }
        let mut last_problem = String::new();
        for attempt in 1..=self.opts.freeze_attempts {
            self.catch_up(mv, s).await?;
            let frozen_at = Instant::now();
            let lsn =
                match shards::freeze(&s.source, &s.region, &s.parts, self.opts.freeze_lease, Duration::from_secs(1))
                    .await
                {
                    Ok(lsn) => lsn,
                    Err(e) => {
                        last_problem = format!("freeze {attempt} failed: {e}");
                        println!("move {}: {last_problem}; retrying", mv.id);
                        journal::set_note(self.placement(), mv.id, &last_problem).await?;
                        continue;
                    }
                };
            self.hook(CrashPoint::Freeze);
            if !shards::wait_flushed(&s.source, &s.name, &lsn, self.opts.catch_up_timeout).await? {
                shards::unfreeze(&s.source, &s.region, &s.parts).await?;
                last_problem = format!(
                    "freeze {attempt}: the destination did not confirm {lsn} within {:?}; lifted",
                    self.opts.catch_up_timeout
                );
                println!("move {}: {last_problem}", mv.id);
                journal::set_note(self.placement(), mv.id, &last_problem).await?;
                continue;
            }
            let v = verify::compare(&s.source, &s.dest, &s.parts).await?;
            if !v.ok() {
                shards::unfreeze(&s.source, &s.region, &s.parts).await?;
                journal::set_note(self.placement(), mv.id, "verification failed; freeze lifted").await?;
                anyhow::bail!(
                    "move {}: the frozen partitions differ between {} and {}; freeze lifted, nothing switched \
                     (`abort` undoes the move):\n{v}",
                    mv.id,
                    s.source_name,
                    s.dest_name
                );
            }
            let epoch = self.store.epoch().await? + 1;
            let moved = shards::mark_moved(
                &s.source,
                &s.region,
                &s.parts,
                s.dest_name.as_str(),
                epoch,
                Duration::from_millis(200),
            )
            .await?;
            if moved != n {
                // The lease ran out (or nearly): writes may have come in after the
                // verification. Nothing is switched; catch up and freeze again.
                shards::unfreeze(&s.source, &s.region, &s.parts).await?;
                last_problem = format!("freeze {attempt}: the lease ran out before the switch; lifted");
                println!("move {}: {last_problem}", mv.id);
                journal::set_note(self.placement(), mv.id, &last_problem).await?;
                continue;
            }
            self.hook(CrashPoint::Switch);
            return self.finish_switch(mv, s, epoch, Some(frozen_at), &v).await;
        }
        anyhow::bail!(
            "move {}: no switch after {} freezes ({last_problem}); the move stays for `apply` to retry or `abort` to undo",
            mv.id,
            self.opts.freeze_attempts
        )
    }

    /// The rest of the switch once the source has let go: the destination owns the
    /// partitions, the map says so, the journal records it.
    async fn finish_switch(
        &self,
        mv: &MoveRow,
        s: &Sides,
        epoch: i64,
        frozen_at: Option<Instant>,
        v: &verify::Verification,
    ) -> anyhow::Result<()> {
        shards::drop_subscription(&s.dest, &s.name).await?;
        // The source wrote nothing of the partitions since it marked them MOVED, so its
        // watermark now bounds every row the hand-off must wait for.
        let source_upto = crate::relay::outbox::watermark(&s.source).await?;
        shards::take_ownership(&s.dest, &s.region, &s.parts, s.source_name.as_str(), source_upto, epoch, mv.id).await?;
        let mut tx = self.placement().begin().await?;
        sqlx::query("update partition_placement set shard = $3, epoch = $4 where region = $1 and partition = any($2)")
            .bind(s.region.as_str())
            .bind(&s.parts)
            .bind(s.dest_name.as_str())
            .bind(epoch)
            .execute(&mut *tx)
            .await?;
        let published: i64 =
            sqlx::query_scalar("update placement_epoch set epoch = greatest(epoch + 1, $1) returning epoch")
                .bind(epoch)
                .fetch_one(&mut *tx)
                .await?;
        let pause_ms = frozen_at.map(|t| t.elapsed().as_secs_f64() * 1000.0);
        journal::record_switch(&mut tx, mv.id, published, pause_ms, &v.record()).await?;
        tx.commit().await?;
        if let Some(ms) = pause_ms {
            metrics::histogram!("orders_rebalance_freeze_seconds").record(ms / 1000.0);
        }
        metrics::counter!("orders_rebalance_partitions_moved_total").increment(s.parts.len() as u64);
        println!(
            "move {}: switched {} partitions to {} at epoch {published}{}",
            mv.id,
            s.parts.len(),
            s.dest_name,
            pause_ms.map(|ms| format!(", write pause {ms:.0} ms")).unwrap_or_default()
        );
        self.hook(CrashPoint::Switched);
        Ok(())
    }

    async fn cleanup(&self, mv: &MoveRow, s: &Sides) -> anyhow::Result<()> {
        shards::drop_subscription(&s.dest, &s.name).await?;
        shards::drop_source_objects(&s.source, &s.name, Duration::from_secs(10)).await?;
        let deleted = shards::delete_rows(&s.source, &s.region, &s.parts).await?;
        let mut conn = self.placement().acquire().await?;
        journal::advance(&mut conn, mv.id, Phase::Done).await?;
        println!(
            "move {}: cleaned; {deleted} rows removed from {}, slot and publication dropped",
            mv.id, s.source_name
        );
        Ok(())
    }

    /// Undoes the unfinished move, if it has not switched: replication objects dropped, the
    /// freeze lifted, the destination's copy deleted. Returns the aborted move.
    pub async fn abort(&self) -> anyhow::Result<Option<MoveRow>> {
        let _lock = self.orchestrate().await?;
        let Some(mv) = journal::active(self.placement()).await? else { return Ok(None) };
        anyhow::ensure!(
            mv.phase < Phase::Switched,
            "move {} switched already and cannot be rolled back; `apply` finishes its cleanup. To move the \
             partitions back, change shards.toml back and apply again.",
            mv.id
        );
        let s = self.sides(&mv)?;
        if shards::moved_count(&s.source, &s.region, &s.parts, s.dest_name.as_str()).await? > 0 {
            // The source let go but the map was never published: while the destination has
            // not taken over either, the switch can be undone (destination first, so no
            // moment has two owners).
            let states = shards::owner_states(&s.dest, &s.region, &s.parts).await?;
            anyhow::ensure!(
                states.iter().all(|st| st == "INCOMING"),
                "move {}: {} owns the partitions already; `apply` finishes the switch",
                mv.id,
                s.dest_name
            );
            shards::drop_subscription(&s.dest, &s.name).await?;
            shards::mark_elsewhere(&s.dest, &s.region, &s.parts, s.source_name.as_str()).await?;
            shards::reclaim(&s.source, &s.region, &s.parts, s.dest_name.as_str()).await?;
        }
        shards::drop_subscription(&s.dest, &s.name).await?;
        shards::drop_source_objects(&s.source, &s.name, Duration::from_secs(10)).await?;
        shards::unfreeze(&s.source, &s.region, &s.parts).await?;
        shards::mark_elsewhere(&s.dest, &s.region, &s.parts, s.source_name.as_str()).await?;
        shards::delete_rows(&s.dest, &s.region, &s.parts).await?;
        let mut conn = self.placement().acquire().await?;
        journal::advance(&mut conn, mv.id, Phase::Aborted).await?;
        journal::set_note(self.placement(), mv.id, "aborted").await?;
        Ok(journal::get(self.placement(), mv.id).await?)
    }

    /// Re-checks finished moves (or the one given): see [`super::check`].
    pub async fn verify(&self, id: Option<i64>) -> anyhow::Result<Vec<(MoveRow, Vec<plan::Check>)>> {
        let moves = match id {
            Some(id) => vec![journal::get(self.placement(), id).await?.ok_or_else(|| anyhow::anyhow!("no move {id}"))?],
            None => journal::done(self.placement()).await?,
        };
        let live = self.store.load(&self.map).await?;
        let mut out = Vec::new();
        for mv in moves {
            let checks =
                super::check::finished(&self.map, &self.pools, &live, &mv, &mv.replication_name(&self.tag)).await;
            out.push((mv, checks));
        }
        Ok(out)
    }
}

/// A move's two shards and what it works on.
pub struct Sides {
    pub region: RegionName,
    pub source_name: ShardName,
    pub source: PgPool,
    pub source_url: String,
    pub dest_name: ShardName,
    pub dest: PgPool,
    /// Publication, slot and subscription name.
    pub name: String,
    pub parts: Vec<Partition>,
}

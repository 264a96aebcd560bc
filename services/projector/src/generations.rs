//! Generations of the read models: which exist, which one readers see, rebuilds and switches.
//!
//! A generation N is a schema `rm_g<N>` (tables made by the SQL function
//! `rm_create_generation`, so every generation has identical tables) filled from offset 0 of
//! `orders.events` by its own consumer `projector.g<N>`. Its row in `projection_generation`
//! says BUILDING, LIVE or RETIRED. The public views point at the LIVE one; [`try_switch`]
//! repoints them and flips the states in one transaction, once the BUILDING generation has
//! caught up with the LIVE one on every partition.
//!
//! Every function here works on the database alone, so the CLI (`projector rebuild`,
//! `switch`, `status`) and the service's supervisor share them and agree.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::consumer::BaseConsumer;
use sqlx::{Connection as _, PgPool};

/// A generation number: positive, and the only input of the schema and consumer names, which
/// are therefore safe to splice into SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Generation(i32);

impl Generation {
    /// Generation 1, the one the migration creates.
    pub const FIRST: Self = Self(1);

    pub fn new(n: i32) -> Option<Self> {
        (n > 0).then_some(Self(n))
    }

    pub fn get(self) -> i32 {
        self.0
    }

    /// `rm_g<N>`: the schema of its tables.
    pub fn schema(self) -> String {
        format!("rm_g{}", self.0)
    }

    /// `projector.g<N>`: the consumer filling it (checkpoints and lease key).
    pub fn consumer_name(self) -> String {
        format!("projector.g{}", self.0)
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "g{}", self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Building,
    Live,
    Retired,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Building => "BUILDING",
            Self::Live => "LIVE",
            Self::Retired => "RETIRED",
        }
    }

    fn parse(s: &str) -> Result<Self, sqlx::Error> {
        match s {
            "BUILDING" => Ok(Self::Building),
            "LIVE" => Ok(Self::Live),
            "RETIRED" => Ok(Self::Retired),
            other => Err(sqlx::Error::Decode(format!("unknown generation state `{other}`").into())),
        }
    }
}

/// A row of `projection_generation`.
#[derive(Debug, Clone)]
pub struct Row {
    pub generation: Generation,
    pub state: State,
    pub hold_switch: bool,
    pub created_at: DateTime<Utc>,
    pub switched_at: Option<DateTime<Utc>>,
    pub last_event_at: Option<DateTime<Utc>>,
    pub last_applied_at: Option<DateTime<Utc>>,
    pub applied: i64,
    pub duplicates: i64,
}

type RawRow =
    (i32, String, bool, DateTime<Utc>, Option<DateTime<Utc>>, Option<DateTime<Utc>>, Option<DateTime<Utc>>, i64, i64);

const ROW_COLUMNS: &str = "generation, state, hold_switch, created_at, switched_at, last_event_at, last_applied_at, \
                           applied, duplicates";

fn row(raw: RawRow) -> Result<Row, sqlx::Error> {
    let (g, state, hold_switch, created_at, switched_at, last_event_at, last_applied_at, applied, duplicates) = raw;
    Ok(Row {
        generation: Generation::new(g).ok_or_else(|| sqlx::Error::Decode(format!("generation {g}").into()))?,
        state: State::parse(&state)?,
        hold_switch,
        created_at,
        switched_at,
        last_event_at,
        last_applied_at,
        applied,
        duplicates,
    })
}

/// Creates generation 1 as LIVE unless a generation exists (the migration did it already on
/// a stack migrated by `stackctl`; this covers a database migrated by other means).
pub async fn bootstrap(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("select rm_bootstrap()").execute(pool).await?;
    Ok(())
}

/// Every generation, oldest first; with `active_only`, the LIVE and BUILDING ones.
pub async fn list(pool: &PgPool, active_only: bool) -> Result<Vec<Row>, sqlx::Error> {
    let sql = format!(
        "select {ROW_COLUMNS} from projection_generation {} order by generation",
        if active_only { "where state in ('LIVE', 'BUILDING')" } else { "" }
    );
    sqlx::query_as::<_, RawRow>(&sql).fetch_all(pool).await?.into_iter().map(row).collect()
}

/// Why a rebuild cannot start.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("a rebuild is already running: generation {0} is BUILDING")]
    AlreadyBuilding(Generation),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// Starts a rebuild: drops the schemas (and checkpoints) of RETIRED generations, creates
/// generation N+1 as BUILDING with empty tables. The running service's supervisor starts its
/// consumer within a second; with `hold_switch` it is not switched to automatically.
pub async fn start_rebuild(pool: &PgPool, hold_switch: bool) -> Result<Generation, RebuildError> {
    let mut tx = pool.begin().await?;
    // Serialises rebuilds and switches: every later step reads a settled set of generations.
    let rows: Vec<(i32, String, Option<DateTime<Utc>>)> = sqlx::query_as(
        "select generation, state, dropped_at from projection_generation order by generation for update",
    )
    .fetch_all(&mut *tx)
    .await?;
    if let Some((g, _, _)) = rows.iter().find(|(_, s, _)| s == "BUILDING") {
        return Err(RebuildError::AlreadyBuilding(Generation(*g)));
    }
    for (g, _, _) in rows.iter().filter(|(_, s, dropped)| s == "RETIRED" && dropped.is_none()) {
        let g = Generation(*g);
        sqlx::query(&format!("drop schema if exists {} cascade", g.schema())).execute(&mut *tx).await?;
        sqlx::query("delete from consumer_checkpoint where consumer = $1")
            .bind(g.consumer_name())
            .execute(&mut *tx)
            .await?;
        sqlx::query("update projection_generation set dropped_at = now() where generation = $1")
            .bind(g.get())
            .execute(&mut *tx)
            .await?;
        tracing::info!(generation = %g, "dropped the retired generation's schema");
    }
    let next = Generation(rows.iter().map(|(g, _, _)| *g).max().unwrap_or(0) + 1);
    sqlx::query("select rm_create_generation($1)").bind(next.get()).execute(&mut *tx).await?;
    sqlx::query(
        "insert into projection_generation (generation, consumer_name, state, hold_switch) values ($1, $2, 'BUILDING', $3)",
    )
    .bind(next.get())
    .bind(next.consumer_name())
    .bind(hold_switch)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(generation = %next, hold_switch, "rebuild started");
    Ok(next)
}

/// What [`try_switch`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwitchOutcome {
    /// `to` is LIVE now, `from` RETIRED, the views point at `to`.
    Switched { from: Generation, to: Generation },
    /// The BUILDING generation is behind the LIVE one on these partitions:
    /// `(partition, building checkpoint, live checkpoint)`.
    Behind { building: Generation, partitions: Vec<(i32, i64, i64)> },
    /// The BUILDING generation is caught up but marked `hold_switch` (only when the caller
    /// respects it: the supervisor does, `projector switch` does not).
    Held { building: Generation },
    /// No BUILDING generation.
    NothingToSwitch,
}

/// Switches to the BUILDING generation if it has caught up: its checkpoints at least the LIVE
/// one's on every partition, read while the LIVE consumer's checkpoint rows are locked (`for
/// update`, and the table in share mode so no consumer adds a row meanwhile), so the LIVE
/// consumer cannot apply one more batch between the check and the switch. The states and
/// the three views change in this one transaction: readers see the old or the new
/// generation, never a mix.
pub async fn try_switch(pool: &PgPool, topic: &str, respect_hold: bool) -> Result<SwitchOutcome, sqlx::Error> {
    // A look without locks first: while a rebuild is far behind (every supervisor tick asks),
    // the LIVE consumer is not held up at all.
    let rows = list(pool, true).await?;
    let (live, building) = (
        rows.iter().find(|r| r.state == State::Live).map(|r| r.generation),
        rows.iter().find(|r| r.state == State::Building).map(|r| r.generation),
    );
    let Some(building) = building else {
        return Ok(SwitchOutcome::NothingToSwitch);
    };
    if let Some(live) = live {
        let cps = checkpoints(pool, topic).await?;
        let partitions = behind(cps.get(&live), cps.get(&building));
        if !partitions.is_empty() {
            return Ok(SwitchOutcome::Behind { building, partitions });
        }
    }
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    let active: Vec<(i32, String, bool)> = sqlx::query_as(
        "select generation, state, hold_switch from projection_generation
         where state in ('LIVE', 'BUILDING') order by generation for update",
    )
    .fetch_all(&mut *tx)
    .await?;
    let live = active.iter().find(|(_, s, _)| s == "LIVE").map(|(g, _, _)| Generation(*g));
    let Some(&(b, _, hold)) = active.iter().find(|(_, s, _)| s == "BUILDING") else {
        return Ok(SwitchOutcome::NothingToSwitch);
    };
    let building = Generation(b);
    sqlx::query("lock table consumer_checkpoint in share mode").execute(&mut *tx).await?;
    let live_cps: BTreeMap<i32, i64> = match live {
        Some(live) => sqlx::query_as::<_, (i32, i64)>(
            "select kafka_partition, next_offset from consumer_checkpoint
             where consumer = $1 and topic = $2 order by kafka_partition for update",
        )
        .bind(live.consumer_name())
        .bind(topic)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect(),
        None => BTreeMap::new(),
    };
    let building_cps: BTreeMap<i32, i64> = sqlx::query_as::<_, (i32, i64)>(
        "select kafka_partition, next_offset from consumer_checkpoint where consumer = $1 and topic = $2",
    )
    .bind(building.consumer_name())
    .bind(topic)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    let partitions = behind(Some(&live_cps), Some(&building_cps));
    if !partitions.is_empty() {
        return Ok(SwitchOutcome::Behind { building, partitions });
    }
    if respect_hold && hold {
        return Ok(SwitchOutcome::Held { building });
    }
    if let Some(live) = live {
        sqlx::query("update projection_generation set state = 'RETIRED', retired_at = now() where generation = $1")
            .bind(live.get())
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(
        "update projection_generation set state = 'LIVE', switched_at = now(), hold_switch = false where generation = $1",
    )
    .bind(building.get())
    .execute(&mut *tx)
    .await?;
    sqlx::query("select rm_point_views($1)").bind(building.get()).execute(&mut *tx).await?;
    tx.commit().await?;
    let from = live.unwrap_or(building);
    tracing::info!(%from, to = %building, "switched the read models to the rebuilt generation");
    metrics::counter!("projector_switches_total").increment(1);
    Ok(SwitchOutcome::Switched { from, to: building })
}

/// `(partition, building, live)` wherever the building checkpoint is below the live one.
fn behind(live: Option<&BTreeMap<i32, i64>>, building: Option<&BTreeMap<i32, i64>>) -> Vec<(i32, i64, i64)> {
    live.into_iter()
        .flatten()
        .filter_map(|(p, l)| {
            let b = building.and_then(|cps| cps.get(p)).copied().unwrap_or(0);
            (b < *l).then_some((*p, b, *l))
        })
        .collect()
}

/// The checkpoints of every consumer on `topic`, by generation.
pub async fn checkpoints(pool: &PgPool, topic: &str) -> Result<BTreeMap<Generation, BTreeMap<i32, i64>>, sqlx::Error> {
    let rows: Vec<(String, i32, i64)> =
        sqlx::query_as("select consumer, kafka_partition, next_offset from consumer_checkpoint where topic = $1")
            .bind(topic)
            .fetch_all(pool)
            .await?;
    let mut out: BTreeMap<Generation, BTreeMap<i32, i64>> = BTreeMap::new();
    for (consumer, p, o) in rows {
        if let Some(g) = consumer.strip_prefix("projector.g").and_then(|n| n.parse().ok()).and_then(Generation::new) {
            out.entry(g).or_default().insert(p, o);
        }
    }
    Ok(out)
}

/// `(partition, low, high)` watermarks of every partition of `topic`.
pub async fn watermarks(bootstrap: &str, topic: &str) -> anyhow::Result<Vec<(i32, i64, i64)>> {
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let c: BaseConsumer = platform::kafka::assigned_consumer_config(&bootstrap, "projector.watermarks").create()?;
        platform::consumer::watchdog::watermarks_within(&c, &topic, Duration::from_secs(3))
    })
    .await?
}

/// One partition of one generation: its checkpoint against the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionProgress {
    pub partition: i32,
    /// Next offset to apply (the log's start when nothing is stored yet).
    pub checkpoint: i64,
    pub high: i64,
    pub lag: i64,
}

/// How far a generation has read the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub partitions: Vec<PartitionProgress>,
    pub lag: i64,
    /// Records read of those in the log, 0..=1 (1 for an empty log).
    pub ratio: f64,
}

/// Progress of `checkpoints` against `marks`.
pub fn progress(checkpoints: &BTreeMap<i32, i64>, marks: &[(i32, i64, i64)]) -> Progress {
    let (mut done, mut total, mut lag) = (0i64, 0i64, 0i64);
    let partitions: Vec<PartitionProgress> = marks
        .iter()
        .map(|&(partition, low, high)| {
            let checkpoint = checkpoints.get(&partition).copied().unwrap_or(low).max(low);
            let l = (high - checkpoint).max(0);
            done += checkpoint.min(high) - low;
            total += high - low;
            lag += l;
            PartitionProgress { partition, checkpoint, high, lag: l }
        })
        .collect();
    #[allow(clippy::cast_precision_loss, reason = "a ratio for people and gauges")]
    let ratio = if total == 0 { 1.0 } else { done as f64 / total as f64 };
    Progress { partitions, lag, ratio }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_number() {
        let g = Generation::new(3).unwrap_or(Generation(1));
        assert_eq!((g.schema(), g.consumer_name()), ("rm_g3".to_owned(), "projector.g3".to_owned()));
        assert!(Generation::new(0).is_none());
    }

    #[test]
    fn progress_counts_from_the_log_start() {
        let p = progress(&BTreeMap::from([(0, 5)]), &[(0, 0, 10), (1, 2, 4)]);
        assert_eq!(p.lag, 7);
        assert!((p.ratio - 5.0 / 12.0).abs() < 1e-9);
        assert!((progress(&BTreeMap::new(), &[(0, 0, 0)]).ratio - 1.0).abs() < f64::EPSILON);
    }
}

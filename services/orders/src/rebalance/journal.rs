//! The move journal in the `placement` database (`migrations/placement/0002`): one row per
//! batch, advanced at each phase boundary, so a crashed `apply` resumes where it stopped and
//! `abort` knows what to clean. Every statement on it is here.

use std::fmt;

use shard_router::Partition;
use sqlx::{PgConnection, PgPool};

/// Where a move stands. The order is the order of the phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Copying,
    CatchingUp,
    Switched,
    Done,
    Aborted,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Copying => "COPYING",
            Self::CatchingUp => "CATCHING_UP",
            Self::Switched => "SWITCHED",
            Self::Done => "DONE",
            Self::Aborted => "ABORTED",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "COPYING" => Self::Copying,
            "CATCHING_UP" => Self::CatchingUp,
            "SWITCHED" => Self::Switched,
            "DONE" => Self::Done,
            _ => Self::Aborted,
        }
    }

    pub fn finished(self) -> bool {
        matches!(self, Self::Done | Self::Aborted)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One move: a batch of partitions of one region, from one shard to another.
#[derive(Debug, Clone)]
pub struct MoveRow {
    pub id: i64,
    pub region: String,
    pub source: String,
    pub dest: String,
    pub partitions: Vec<Partition>,
    pub phase: Phase,
    pub rows_copied: Option<i64>,
    pub freeze_ms: Option<f64>,
    pub lag_bytes: Option<i64>,
    pub switched_epoch: Option<i64>,
    pub verified: Option<serde_json::Value>,
    pub note: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
    pub switched_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl MoveRow {
    /// The name of the move's publication, slot and subscription. Slots are per instance and
    /// several placement databases (tests, stacks) may share an instance, so the name carries
    /// the placement database's identity as well as the move's id.
    pub fn replication_name(&self, placement_tag: &str) -> String {
        format!("th_move_{placement_tag}_{}", self.id)
    }
}

type Raw = (
    i64,
    String,
    String,
    String,
    Vec<Partition>,
    String,
    Option<i64>,
    Option<f64>,
    Option<i64>,
    Option<i64>,
    Option<serde_json::Value>,
    Option<String>,
    chrono::DateTime<chrono::Utc>,
    chrono::DateTime<chrono::Utc>,
    Option<chrono::DateTime<chrono::Utc>>,
    Option<chrono::DateTime<chrono::Utc>>,
);

const COLUMNS: &str = "id, region, source, dest, partitions, phase, rows_copied, freeze_ms, lag_bytes, \
                       switched_epoch, verified, note, created_at, updated_at, finished_at, switched_at";

fn row(r: Raw) -> MoveRow {
    MoveRow {
        id: r.0,
        region: r.1,
        source: r.2,
        dest: r.3,
        partitions: r.4,
        phase: Phase::parse(&r.5),
        rows_copied: r.6,
        freeze_ms: r.7,
        lag_bytes: r.8,
        switched_epoch: r.9,
        verified: r.10,
        note: r.11,
        created_at: r.12,
        updated_at: r.13,
        finished_at: r.14,
        switched_at: r.15,
    }
}

/// The unfinished move, if any (at most one: a unique index says so).
pub async fn active(pool: &PgPool) -> Result<Option<MoveRow>, sqlx::Error> {
    let sql = format!("select {COLUMNS} from partition_move where phase not in ('DONE', 'ABORTED')");
    Ok(sqlx::query_as::<_, Raw>(&sql).fetch_optional(pool).await?.map(row))
}

pub async fn get(pool: &PgPool, id: i64) -> Result<Option<MoveRow>, sqlx::Error> {
    let sql = format!("select {COLUMNS} from partition_move where id = $1");
    Ok(sqlx::query_as::<_, Raw>(&sql).bind(id).fetch_optional(pool).await?.map(row))
}

/// The latest `limit` moves, newest first.
pub async fn recent(pool: &PgPool, limit: i64) -> Result<Vec<MoveRow>, sqlx::Error> {
    let sql = format!("select {COLUMNS} from partition_move order by id desc limit $1");
    Ok(sqlx::query_as::<_, Raw>(&sql).bind(limit).fetch_all(pool).await?.into_iter().map(row).collect())
}

/// Every finished move, oldest first: what `verify` re-checks by default.
pub async fn done(pool: &PgPool) -> Result<Vec<MoveRow>, sqlx::Error> {
    let sql = format!("select {COLUMNS} from partition_move where phase = 'DONE' order by id");
    Ok(sqlx::query_as::<_, Raw>(&sql).fetch_all(pool).await?.into_iter().map(row).collect())
}

/// Records a new move in COPYING, before anything of it exists anywhere.
pub async fn start(
    pool: &PgPool,
    region: &str,
    source: &str,
    dest: &str,
    partitions: &[Partition],
) -> Result<MoveRow, sqlx::Error> {
    let sql = format!(
        "insert into partition_move (region, source, dest, partitions, phase) values ($1, $2, $3, $4, 'COPYING') \
         returning {COLUMNS}"
    );
    Ok(row(sqlx::query_as::<_, Raw>(&sql)
        .bind(region)
        .bind(source)
        .bind(dest)
        .bind(partitions)
        .fetch_one(pool)
        .await?))
}

/// Moves `id` to `phase` (only forward, or to ABORTED).
pub async fn advance(conn: &mut PgConnection, id: i64, phase: Phase) -> Result<(), sqlx::Error> {
    let finished = if phase.finished() { ", finished_at = now()" } else { "" };
    sqlx::query(&format!("update partition_move set phase = $2, updated_at = now(){finished} where id = $1"))
        .bind(id)
        .bind(phase.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn set_copied(pool: &PgPool, id: i64, rows: i64) -> Result<(), sqlx::Error> {
    sqlx::query("update partition_move set rows_copied = $2, updated_at = now() where id = $1")
        .bind(id)
        .bind(rows)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn set_lag(pool: &PgPool, id: i64, lag_bytes: i64) -> Result<(), sqlx::Error> {
    sqlx::query("update partition_move set lag_bytes = $2, updated_at = now() where id = $1")
        .bind(id)
        .bind(lag_bytes)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn set_note(pool: &PgPool, id: i64, note: &str) -> Result<(), sqlx::Error> {
    sqlx::query("update partition_move set note = $2, updated_at = now() where id = $1")
        .bind(id)
        .bind(note)
        .execute(pool)
        .await?;
    Ok(())
}

/// What the switch records with the phase, in the transaction that publishes the map.
pub async fn record_switch(
    conn: &mut PgConnection,
    id: i64,
    epoch: i64,
    freeze_ms: Option<f64>,
    verified: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update partition_move set phase = 'SWITCHED', switched_epoch = $2, freeze_ms = $3, verified = $4, \
         switched_at = now(), updated_at = now() where id = $1",
    )
    .bind(id)
    .bind(epoch)
    .bind(freeze_ms)
    .bind(verified)
    .execute(conn)
    .await?;
    Ok(())
}

/// The placement database's identity, short: part of every replication object's name.
pub async fn placement_tag(pool: &PgPool) -> Result<String, sqlx::Error> {
    let (system, db): (String, i64) = sqlx::query_as(
        "select (select system_identifier::text from pg_control_system()), \
                (select oid::bigint from pg_database where datname = current_database())",
    )
    .fetch_one(pool)
    .await?;
    let tail = &system[system.len().saturating_sub(6)..];
    Ok(format!("{tail}{db}"))
}

/// A process that routes by the live map, as it last reported.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProcessRow {
    pub process: String,
    pub service: String,
    pub epoch: i64,
    pub seen_secs_ago: f64,
}

/// The processes seen within `within_secs`, by name.
pub async fn processes(pool: &PgPool, within_secs: f64) -> Result<Vec<ProcessRow>, sqlx::Error> {
    sqlx::query_as(
        "select process, service, epoch, extract(epoch from now() - seen_at)::float8 as seen_secs_ago \
         from placement_process where seen_at > now() - make_interval(secs => $1) order by process",
    )
    .bind(within_secs)
    .fetch_all(pool)
    .await
}

/// The session-level lock that makes one `apply` (or `abort`) at a time the orchestrator.
/// Held on `conn` until it closes: a crashed orchestrator's lock goes with its session.
pub async fn try_orchestrate(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("select pg_try_advisory_lock(1952997378, 1)").fetch_one(conn).await
}

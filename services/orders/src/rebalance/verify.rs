//! Verification of moved partitions: row counts and a checksum per table on both sides, and
//! the stock of every ticket type (`remaining = total − sold`).
//!
//! Run while the source is frozen (nothing changes on either side for those partitions), so
//! equal checksums mean the destination holds exactly what the source does.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use sqlx::PgPool;

use super::plan::MOVED_TABLES;
use shard_router::Partition;

/// Rows and checksum of one table's rows of the partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableSum {
    pub rows: i64,
    pub md5: String,
}

/// One side of a verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sums {
    pub tables: BTreeMap<&'static str, TableSum>,
    /// Ticket types whose `remaining_quantity` is not `total_quantity` minus what their
    /// orders hold (every order that is not cancelled).
    pub stock_mismatches: i64,
}

impl Sums {
    pub fn rows(&self) -> i64 {
        self.tables.values().map(|t| t.rows).sum()
    }
}

/// The key order a table's checksum is taken in.
fn key(table: &str) -> &'static str {
    match table {
        "idempotency_keys" => "owner_id, operation, key",
        _ => "id",
    }
}

/// Counts, checksums and the stock check of `partitions` on `pool`.
pub async fn sums(pool: &PgPool, partitions: &[Partition]) -> Result<Sums, sqlx::Error> {
    let mut tables = BTreeMap::new();
    for table in MOVED_TABLES {
        let (rows, md5): (i64, String) = sqlx::query_as(&format!(
            "select count(*), coalesce(md5(string_agg(t::text, E'\\n' order by {})), '') from {table} t \
             where partition = any($1)",
            key(table)
        ))
        .bind(partitions)
        .fetch_one(pool)
        .await?;
        tables.insert(table, TableSum { rows, md5 });
    }
    let stock_mismatches = stock_mismatches(pool, partitions).await?;
    Ok(Sums { tables, stock_mismatches })
}

/// Ticket types of `partitions` whose stock does not add up. A ticket type's orders carry
/// its event's partition, so one grouped pass over the partitions' orders does it (this runs
/// inside the freeze: a lookup per ticket type would scan `orders` once each).
pub async fn stock_mismatches(pool: &PgPool, partitions: &[Partition]) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "select count(*) from ticket_types t \
         left join (select ticket_type_id, sum(quantity) as sold from orders \
                    where partition = any($1) and status <> 'CANCELLED' group by ticket_type_id) o \
           on o.ticket_type_id = t.id \
         where t.partition = any($1) and t.remaining_quantity <> t.total_quantity - coalesce(o.sold, 0)",
    )
    .bind(partitions)
    .fetch_one(pool)
    .await
}

/// Source against destination.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub source: Sums,
    pub dest: Sums,
}

impl Verification {
    pub fn ok(&self) -> bool {
        self.source.tables == self.dest.tables && self.source.stock_mismatches == 0 && self.dest.stock_mismatches == 0
    }

    /// What is stored in the journal: the destination's side (equal to the source's when ok).
    pub fn record(&self) -> serde_json::Value {
        serde_json::to_value(&self.dest).unwrap_or_default()
    }
}

impl fmt::Display for Verification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (table, src) in &self.source.tables {
            let dst = self.dest.tables.get(table);
            let same = dst == Some(src);
            writeln!(
                f,
                "  [{}] {table}: {} rows on the source, {} on the destination{}",
                if same { "ok" } else { "FAIL" },
                src.rows,
                dst.map_or(0, |d| d.rows),
                if same { ", checksums equal" } else { ", checksums differ" }
            )?;
        }
        writeln!(
            f,
            "  [{}] stock: remaining = total - sold for every ticket type ({} mismatches on the source, {} on the destination)",
            if self.source.stock_mismatches == 0 && self.dest.stock_mismatches == 0 { "ok" } else { "FAIL" },
            self.source.stock_mismatches,
            self.dest.stock_mismatches
        )
    }
}

pub async fn compare(source: &PgPool, dest: &PgPool, partitions: &[Partition]) -> Result<Verification, sqlx::Error> {
    let (source, dest) = tokio::try_join!(sums(source, partitions), sums(dest, partitions))?;
    Ok(Verification { source, dest })
}

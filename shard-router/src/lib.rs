//! Where a piece of orders data lives.
//!
//! `shards.toml` names the regions, the physical shards (Postgres instances) and which shards
//! serve which region. This crate is the only way the orders service reaches a database: it
//! loads and validates that map, and turns a shard into its connection pool.
//!
//! # Layout
//! - [`config`]: the `shards.toml` types, loading with environment overrides, and validation
//!   whose errors name the field and its line.
//! - [`ids`]: ids that carry their region tag and logical partition.
//! - [`route`]: the pure routing core, (region, partition) or id → shard by consistent hashing.
//! - [`pools`]: one lazily connected `sqlx::PgPool` per shard.
//! - [`placement`]: placement maps as values (desired from `shards.toml`, live with an
//!   epoch) and the moves between them; pure.
//! - [`live`]: the live map in the `placement` database (seed, load, listen) and each shard's
//!   ownership fence.

pub mod config;
pub mod ids;
pub mod live;
pub mod partition;
pub mod placement;
pub mod pools;
pub mod route;

pub use config::{ConfigError, DatabaseUrl, Region, RegionName, Shard, ShardMap, ShardName};
pub use live::{Fenced, LiveStore};
pub use partition::{MAX_PARTITIONS, Partition};
pub use placement::{Move, PartitionMap};
pub use pools::ShardPools;
pub use route::{Route, RouteError, Router};

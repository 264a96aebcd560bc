//! The adapter from a shard to its connection pool.

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::{ShardMap, ShardName};

/// One Postgres pool per shard of a [`ShardMap`].
///
/// Pools connect lazily: a service starts, and its other shards keep serving, while one shard is
/// down; `/readyz` reports the missing one.
#[derive(Debug, Clone)]
pub struct ShardPools {
    pools: BTreeMap<ShardName, PgPool>,
}

impl ShardPools {
    /// `acquire_timeout` bounds how long a request waits for a connection to a shard, so a
    /// down shard turns into a quick error rather than a hang.
    pub fn connect_lazy(map: &ShardMap, acquire_timeout: Duration) -> Result<Self, sqlx::Error> {
        let mut pools = BTreeMap::new();
        for shard in map.shards() {
            let pool = PgPoolOptions::new()
                .max_connections(shard.max_connections)
                .acquire_timeout(acquire_timeout)
                .connect_lazy(shard.url.expose())?;
            pools.insert(shard.name.clone(), pool);
        }
        Ok(Self { pools })
    }

    pub fn get(&self, shard: &ShardName) -> Option<&PgPool> {
        self.pools.get(shard)
    }

    /// Every shard and its pool, for work that must visit all shards by name (fan-out reads,
    /// migrations, relays): never a fallback for a key that failed to route.
    pub fn all(&self) -> impl Iterator<Item = (&ShardName, &PgPool)> {
        self.pools.iter()
    }
}

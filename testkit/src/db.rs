//! Fresh databases per test.

use std::collections::BTreeMap;

use platform::db::{self, Schema};
use shard_router::ShardMap;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::stack;

/// A database created for one test, migrations applied; dropped (with its connections) when
/// this value is dropped.
#[derive(Debug)]
pub struct TestDb {
    pub url: String,
    pub name: String,
    pub pool: PgPool,
}

impl TestDb {
    /// A fresh database of `schema` on the server `server` (a URL without database).
    pub async fn create_on(server: &str, schema: Schema) -> anyhow::Result<Self> {
        let name = format!("t_{}_{}", schema.dir_name(), crate::unique_id());
        let url = format!("{}/{name}", server.trim_end_matches('/'));
        db::ensure_database(&url).await?;
        let pool = PgPoolOptions::new().max_connections(8).connect(&url).await?;
        db::migrate(&pool, &stack::migrations_dir(), schema).await?;
        Ok(Self { url, name, pool })
    }

    /// A fresh database of `schema` on the global instance.
    pub async fn global(schema: Schema) -> anyhow::Result<Self> {
        Self::create_on(&stack::global_pg(), schema).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // The pool's sockets belong to the test's runtime, which is blocked in this drop: touching
        // them from the clean-up thread would wait forever. `drop database … with (force)` on a
        // fresh connection ends those sessions from the server side instead.
        let url = self.url.clone();
        crate::block_on_cleanup(async move {
            let _ = db::drop_database(&url).await;
        });
    }
}

/// A fresh shard database on every shard instance of the repository's `shards.toml`, the
/// shard map pointing at them, and a fresh `placement` database for the live map (services
/// seed it on their first start, as on a new stack).
#[derive(Debug)]
pub struct TestShards {
    pub map: ShardMap,
    pub dbs: BTreeMap<String, TestDb>,
    pub placement: TestDb,
}

impl TestShards {
    pub async fn create() -> anyhow::Result<Self> {
        let base = ShardMap::load(stack::shards_file())?;
        let mut dbs = BTreeMap::new();
        let mut overrides = BTreeMap::new();
        for shard in base.shards() {
            let server = shard.url.with_database("");
            let db = TestDb::create_on(server.expose(), Schema::Shard).await?;
            let key = format!("{}_url", shard.name.as_str().replace('-', "_"));
            overrides.insert(key, db.url.clone());
            dbs.insert(shard.name.to_string(), db);
        }
        let map = base.with_url_overrides(overrides)?;
        let placement = TestDb::global(Schema::Placement).await?;
        Ok(Self { map, dbs, placement })
    }

    /// A further fresh shard database named `name` on the instance of `like` (e.g. `na-2`
    /// beside `na-1`), for tests that add a shard to a region.
    pub async fn add_db(&mut self, name: &str, like: &str) -> anyhow::Result<String> {
        let server = self.dbs.get(like).map(|d| d.url.rsplit_once('/').map_or(d.url.clone(), |(s, _)| s.to_owned()));
        let server = server.ok_or_else(|| anyhow::anyhow!("no test shard {like}"))?;
        let db = TestDb::create_on(&server, Schema::Shard).await?;
        let url = db.url.clone();
        self.dbs.insert(name.to_owned(), db);
        Ok(url)
    }

    pub fn pool(&self, shard: &str) -> Option<&PgPool> {
        self.dbs.get(shard).map(|d| &d.pool)
    }
}

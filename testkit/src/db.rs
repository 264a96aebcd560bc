//! Fresh databases per test.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use platform::db::{self, Schema};
use shard_router::ShardMap;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};

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

/// Where a shard that is down points: a closed port on this machine.
pub const DOWN_URL: &str = "postgres://postgres@127.0.0.1:1/ticket_hub";

/// The `shards.toml` override key of `shard` (`na-1` → `na_1_url`).
fn url_key(shard: &str) -> String {
    format!("{}_url", shard.replace('-', "_"))
}

/// A fresh shard database on every shard instance of the repository's `shards.toml`, the
/// shard map pointing at them, and a fresh `placement` database for the live map (services
/// seed it on their first start, as on a new stack).
///
/// Teardown asserts what must hold after every test: no outbox row of any of its databases is
/// FAILED (dead-lettered by a relay), unless the test said it expects some
/// ([`TestShards::expect_failed_outbox`]). A test that is already failing is not checked.
#[derive(Debug)]
pub struct TestShards {
    pub map: ShardMap,
    pub dbs: BTreeMap<String, TestDb>,
    pub placement: TestDb,
    /// Set by [`TestShards::expect_failed_outbox`]: the test dead-letters rows on purpose.
    failed_outbox_expected: AtomicBool,
}

impl TestShards {
    pub async fn create() -> anyhow::Result<Self> {
        let base = ShardMap::load(stack::shards_file())?;
        let mut dbs = BTreeMap::new();
        let mut overrides = BTreeMap::new();
        for shard in base.shards() {
            let server = shard.url.with_database("");
            let db = TestDb::create_on(server.expose(), Schema::Shard).await?;
            overrides.insert(url_key(shard.name.as_str()), db.url.clone());
            dbs.insert(shard.name.to_string(), db);
        }
        let map = base.with_url_overrides(overrides)?;
        let placement = TestDb::global(Schema::Placement).await?;
        Ok(Self { map, dbs, placement, failed_outbox_expected: AtomicBool::new(false) })
    }

    /// Says this test leaves FAILED outbox rows on purpose (a relay's dead-lettering is what
    /// it checks), so teardown does not count them as a fault.
    pub fn expect_failed_outbox(&self) {
        self.failed_outbox_expected.store(true, Ordering::Relaxed);
    }

    /// FAILED outbox rows per shard database, shards without any left out.
    pub async fn failed_outbox(&self) -> anyhow::Result<BTreeMap<String, i64>> {
        failed_outbox(self.dbs.iter().map(|(name, db)| (name.clone(), db.url.clone())).collect()).await
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

    /// The map with the URL of each `(shard, url)` replaced: [`DOWN_URL`] for a lost shard, a
    /// database on a private instance for one the test stops.
    pub fn map_with_urls<'a>(&self, urls: impl IntoIterator<Item = (&'a str, &'a str)>) -> ShardMap {
        let overrides = urls.into_iter().map(|(shard, url)| (url_key(shard), url.to_owned())).collect();
        self.map.clone().with_url_overrides(overrides).expect("overrides of known shards")
    }

    pub fn pool(&self, shard: &str) -> Option<&PgPool> {
        self.dbs.get(shard).map(|d| &d.pool)
    }
}

impl Drop for TestShards {
    fn drop(&mut self) {
        if std::thread::panicking() || *self.failed_outbox_expected.get_mut() {
            return;
        }
        // Fresh connections on a thread of its own: the pools belong to the test's runtime,
        // which is blocked in this drop.
        let dbs = self.dbs.iter().map(|(name, db)| (name.clone(), db.url.clone())).collect();
        match crate::block_on_detached(failed_outbox(dbs)) {
            Some(Ok(failed)) if !failed.is_empty() => panic!(
                "teardown: FAILED outbox rows {failed:?} (shard: rows); a test that dead-letters on purpose \
                 says so with `expect_failed_outbox()`"
            ),
            Some(Err(e)) => eprintln!("teardown: could not count FAILED outbox rows: {e:#}"),
            _ => {}
        }
    }
}

async fn failed_outbox(dbs: Vec<(String, String)>) -> anyhow::Result<BTreeMap<String, i64>> {
    let mut failed = BTreeMap::new();
    for (shard, url) in dbs {
        let mut conn = tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&url)).await??;
        let n: i64 =
            sqlx::query_scalar("select count(*) from outbox where status = 'FAILED'").fetch_one(&mut conn).await?;
        let _ = conn.close().await;
        if n > 0 {
            failed.insert(shard, n);
        }
    }
    Ok(failed)
}

//! Databases: creating them, and applying the migrations of `migrations/<kind>/`.
//!
//! Migrations are read at run time from the repository's `migrations/` folder (or
//! `TICKET_HUB_MIGRATIONS_DIR`), so a new migration needs no rebuild and the same files serve
//! `./dev up`, the tests and the compose images.

use std::path::{Path, PathBuf};

use sqlx::migrate::Migrator;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

/// The kinds of database, each with its own folder under `migrations/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// `accounts` on the global instance.
    Accounts,
    /// `ticket_hub` on every shard instance.
    Shard,
    /// `notifications` on the global instance.
    Notifications,
    /// The Tansu broker's storage (`kafka` on the global instance).
    Kafka,
    /// The live partition → shard map (`placement` on the global instance).
    Placement,
    /// The projector's read models and their generations (`read_models` on the global instance).
    ReadModels,
}

impl Schema {
    pub const ALL: [Self; 6] =
        [Self::Accounts, Self::Shard, Self::Notifications, Self::Kafka, Self::Placement, Self::ReadModels];

    pub fn dir_name(self) -> &'static str {
        match self {
            Self::Accounts => "accounts",
            Self::Shard => "shard",
            Self::Notifications => "notifications",
            Self::Kafka => "kafka",
            Self::Placement => "placement",
            Self::ReadModels => "read_models",
        }
    }
}

/// The `migrations/` folder: `TICKET_HUB_MIGRATIONS_DIR`, else `./migrations`.
pub fn migrations_root() -> PathBuf {
    std::env::var_os("TICKET_HUB_MIGRATIONS_DIR").map_or_else(|| PathBuf::from("migrations"), PathBuf::from)
}

/// Applies every pending migration of `schema` found under `root`.
pub async fn migrate(pool: &PgPool, root: &Path, schema: Schema) -> anyhow::Result<()> {
    let dir = root.join(schema.dir_name());
    let migrator = Migrator::new(dir.as_path())
        .await
        .map_err(|e| anyhow::anyhow!("reading migrations in {}: {e}", dir.display()))?;
    migrator.run(pool).await.map_err(|e| anyhow::anyhow!("applying {}: {e}", dir.display()))?;
    Ok(())
}

/// Creates the database `url` names unless it exists, connecting to the server's `postgres`
/// database to do so. Safe to race: a concurrent creation of the same name is not an error.
pub async fn ensure_database(url: &str) -> anyhow::Result<()> {
    let opts: PgConnectOptions = url.parse()?;
    let name = opts.get_database().unwrap_or("postgres").to_owned();
    let mut conn =
        PgConnection::connect_with(&opts.clone().database("postgres").log_statements(tracing::log::LevelFilter::Trace))
            .await?;
    let exists: bool = sqlx::query_scalar("select exists(select 1 from pg_database where datname = $1)")
        .bind(&name)
        .fetch_one(&mut conn)
        .await?;
    if !exists {
        let stmt = format!("create database {}", quote_ident(&name));
        match sqlx::query(&stmt).execute(&mut conn).await {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if matches!(e.code().as_deref(), Some("42P04" | "23505")) => {}
            Err(e) => return Err(e.into()),
        }
    }
    conn.close().await?;
    Ok(())
}

/// Drops the database `url` names, closing other sessions on it first.
pub async fn drop_database(url: &str) -> anyhow::Result<()> {
    let opts: PgConnectOptions = url.parse()?;
    let name = opts.get_database().unwrap_or("postgres").to_owned();
    // Logical replication a partition move left behind would block the drop: subscriptions
    // live in the database, slots on the instance.
    if let Ok(mut db) = PgConnection::connect_with(&opts).await {
        let subs: Vec<String> = sqlx::query_scalar(
            "select subname::text from pg_subscription where subdbid = (select oid from pg_database where datname = current_database())",
        )
        .fetch_all(&mut db)
        .await
        .unwrap_or_default();
        for sub in subs {
            let sub = quote_ident(&sub);
            for stmt in [
                format!("alter subscription {sub} disable"),
                format!("alter subscription {sub} set (slot_name = none)"),
                format!("drop subscription {sub}"),
            ] {
                let _ = sqlx::query(&stmt).execute(&mut db).await;
            }
        }
        let _ = db.close().await;
    }
    let mut conn = PgConnection::connect_with(&opts.database("postgres")).await?;
    let _ =
        sqlx::query("select pg_terminate_backend(active_pid) from pg_replication_slots where database = $1 and active")
            .bind(&name)
            .execute(&mut conn)
            .await;
    for _ in 0..50 {
        let dropped = sqlx::query(
            "select pg_drop_replication_slot(slot_name) from pg_replication_slots where database = $1 and not active",
        )
        .bind(&name)
        .execute(&mut conn)
        .await;
        let left: i64 = sqlx::query_scalar("select count(*) from pg_replication_slots where database = $1")
            .bind(&name)
            .fetch_one(&mut conn)
            .await
            .unwrap_or(0);
        if dropped.is_ok() && left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    sqlx::query(&format!("drop database if exists {} with (force)", quote_ident(&name))).execute(&mut conn).await?;
    conn.close().await?;
    Ok(())
}

/// Quotes a Postgres identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

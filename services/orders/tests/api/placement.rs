//! The live placement: an edited `shards.toml` re-routes nothing by itself, and every write on
//! a shard is fenced by ownership, so a process with a stale map cannot write on an old owner.

use serde_json::{Value, json};
use shard_router::ShardMap;
use sqlx::PgPool;

use test_stack::{Stack, TestUser, order_body};

/// The repository's map with `na-2` added to region NA, every shard at this test's databases.
fn map_with_na2(s: &Stack, na2_url: &str) -> ShardMap {
    let url = |name: &str| s.shards.dbs[name].url.clone();
    let text = format!(
        "[regions.NA]\npartitions = 1024\nshards = [\"na-1\", \"na-2\"]\n\
         [regions.SA]\npartitions = 1024\nshards = [\"sa-1\"]\n\
         [shards.na-1]\nurl = \"{}\"\n[shards.na-2]\nurl = \"{na2_url}\"\n[shards.sa-1]\nurl = \"{}\"\n",
        url("na-1"),
        url("sa-1"),
    );
    ShardMap::parse(&text, "test").unwrap()
}

/// The partition an id carries.
fn partition_of(id: &str) -> shard_router::Partition {
    let (_, placement) = shard_router::ids::parse(id).unwrap();
    placement.partition
}

/// The one value `sql` selects, given `$1`.
async fn one<T>(pool: &PgPool, sql: &str, arg: &str) -> T
where
    T: Send + Unpin + for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    sqlx::query_scalar(sql).bind(arg).fetch_one(pool).await.unwrap()
}

async fn count(pool: &PgPool, sql: &str, arg: &str) -> i64 {
    one(pool, sql, arg).await
}

/// Moves one partition from `from` to `to` the way a switch does, by hand: its rows copied,
/// the destination made owner, the live map published with a new epoch, and the source told
/// where the partition went. (The move tooling does this online; here the partition is idle.)
async fn move_by_hand(
    from: &PgPool,
    to: &PgPool,
    placement: &PgPool,
    partition: shard_router::Partition,
    to_name: &str,
) {
    for table in ["events", "ticket_types", "orders", "idempotency_keys"] {
        let rows: Value = sqlx::query_scalar(&format!(
            "select coalesce(jsonb_agg(to_jsonb(t)), '[]') from {table} t where partition = $1"
        ))
        .bind(partition)
        .fetch_one(from)
        .await
        .unwrap();
        sqlx::query(&format!("insert into {table} select * from jsonb_populate_recordset(null::{table}, $1)"))
            .bind(rows)
            .execute(to)
            .await
            .unwrap();
    }
    let epoch: i64 = sqlx::query_scalar("select epoch + 1 from placement_epoch").fetch_one(placement).await.unwrap();
    sqlx::query(
        "insert into partition_owner (region, partition, state, epoch) values ('NA', $1, 'OWNED', $2) \
         on conflict (region, partition) do update set state = 'OWNED', epoch = $2, moved_to = null",
    )
    .bind(partition)
    .bind(epoch)
    .execute(to)
    .await
    .unwrap();
    sqlx::query("update partition_placement set shard = $2, epoch = $3 where region = 'NA' and partition = $1")
        .bind(partition)
        .bind(to_name)
        .bind(epoch)
        .execute(placement)
        .await
        .unwrap();
    sqlx::query("update placement_epoch set epoch = $1").bind(epoch).execute(placement).await.unwrap();
    sqlx::query(
        "update partition_owner set state = 'MOVED', moved_to = $2, epoch = $3 where region = 'NA' and partition = $1",
    )
    .bind(partition)
    .bind(to_name)
    .bind(epoch)
    .execute(from)
    .await
    .unwrap();
}

#[tokio::test]
async fn adding_a_shard_to_shards_toml_reroutes_nothing_until_a_plan_is_applied() {
    let mut s = Stack::start().await;
    let TestUser { id: customer_id, token: customer, .. } = s.user("CUSTOMER").await;
    let mut placed = Vec::new();
    for _ in 0..20 {
        let (event, tt) = s.event_with_stock("NA", 5).await;
        let (status, body) = s.order(&customer, None, &order_body("NA", &event, &tt, 1)).await;
        assert_eq!(status, 201, "{body}");
        placed.push((event, tt, body["orderId"].as_str().unwrap().to_owned()));
    }

    // The edit the file's comments invite, and orders started on it.
    let na2 = s.shards.add_db("na-2", "na-1").await.unwrap();
    let edited = map_with_na2(&s, &na2);
    let restarted = s.spawn_orders(edited, |_| {}).await;

    let ready: Value = restarted.get("/readyz").await.json().await.unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    assert!(ready["notes"]["placement"].as_str().unwrap().contains("waits to be applied"), "{ready}");
    let pending = restarted.metric("orders_placement_pending_moves", &[("region", "NA")]).await;
    assert!((100.0..924.0).contains(&pending), "about half of NA's partitions would move: {pending}");
    assert_eq!(restarted.metric("orders_placement_pending_moves", &[("region", "SA")]).await, 0.0);

    for (event, tt, order_id) in &placed {
        let res = restarted.get(&format!("/api/v1/events/{event}")).await;
        assert_eq!(res.status(), 200, "event {event} still readable");
        let res = restarted.get_as(&format!("/api/v1/orders/{order_id}"), &customer).await;
        assert_eq!(res.status(), 200, "order {order_id} still readable");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["customerId"], customer_id.to_string().as_str());
        let res = restarted.post_json_as("/api/v1/orders", &customer, &order_body("NA", event, tt, 1)).await;
        assert_eq!(res.status(), 201, "a new order for {event} is taken");
    }
    let na2_pool = s.shards.pool("na-2").unwrap();
    assert_eq!(count(na2_pool, "select count(*) from orders where $1 <> ''", "x").await, 0, "nothing went to na-2");
    assert_eq!(
        count(na2_pool, "select count(*) from partition_owner where $1 <> ''", "x").await,
        0,
        "na-2 owns nothing"
    );
    let na1 = s.shards.pool("na-1").unwrap();
    assert_eq!(count(na1, "select count(*) from orders where $1 <> ''", "x").await, 40);
}

#[tokio::test]
async fn a_stale_process_cannot_write_on_the_old_owner_and_retries_on_the_new_one() {
    let mut s = Stack::start().await;
    let (event, tt) = s.event_with_stock("NA", 10).await;
    let customer = s.user("CUSTOMER").await.token;
    let (status, first) = s.order(&customer, Some("k-first"), &order_body("NA", &event, &tt, 1)).await;
    assert_eq!(status, 201, "{first}");
    let first_id = first["orderId"].as_str().unwrap().to_owned();

    // A process that loaded the map and does not follow it: it learns of a move only from a
    // shard refusing it.
    let na2 = s.shards.add_db("na-2", "na-1").await.unwrap();
    let map = map_with_na2(&s, &na2);
    let spawn = |follow: bool| s.spawn_orders(map.clone(), move |settings| settings.placement_follow = follow);
    let stale = spawn(false).await;
    // And one that follows the map as it changes.
    let follower = spawn(true).await;

    let partition = partition_of(&event);
    let (na1, na2_pool) = (s.shards.pool("na-1").unwrap().clone(), s.shards.pool("na-2").unwrap().clone());
    move_by_hand(&na1, &na2_pool, &s.shards.placement.pool, partition, "na-2").await;

    // The fence on the old owner refuses writes for the partition, naming the new one.
    let refused = sqlx::query("select fence_write('NA', $1)").bind(partition).execute(&na1).await.unwrap_err();
    // Seeding NA and SA took epochs 1 and 2; the move is epoch 3.
    assert_eq!(
        shard_router::Fenced::from_error(&refused),
        Some(shard_router::Fenced::Moved { to: "na-2".into(), epoch: 3 })
    );

    // The stale process's order lands on the new owner, through one retry.
    let res = stale.post_json_as("/api/v1/orders", &customer, &order_body("NA", &event, &tt, 1)).await;
    assert_eq!(res.status(), 201);
    let second: Value = res.json().await.unwrap();
    let second_id = second["orderId"].as_str().unwrap();
    let orders_with_id = "select count(*) from orders where id = $1::uuid";
    assert_eq!(
        (count(&na1, orders_with_id, second_id).await, count(&na2_pool, orders_with_id, second_id).await),
        (0, 1)
    );
    assert!(stale.metric("orders_stale_route_retries_total", &[("operation", "create_order")]).await >= 1.0);

    // A replay of the first order's key answers from the record that moved with the partition.
    let res = stale
        .client
        .post(stale.url("/api/v1/orders"))
        .bearer_auth(&customer)
        .header("Idempotency-Key", "k-first")
        .json(&order_body("NA", &event, &tt, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(res.json::<Value>().await.unwrap()["orderId"], first_id.as_str(), "the same order, not a new one");

    // Paying goes to the new owner too; the old owner's copy is never written.
    let res = stale.post_json_as(&format!("/api/v1/orders/{first_id}/pay"), &customer, &json!({})).await;
    assert_eq!(res.status(), 200);
    let status = "select status from orders where id = $1::uuid";
    let (old, new): (String, String) = (one(&na1, status, &first_id).await, one(&na2_pool, status, &first_id).await);
    assert_eq!((old.as_str(), new.as_str()), ("PENDING", "PAID"));
    let stock = "select remaining_quantity from ticket_types where id = $1::uuid";
    let (old, new): (i32, i32) = (one(&na1, stock, &tt).await, one(&na2_pool, stock, &tt).await);
    assert_eq!((old, new), (9, 8), "the old owner's stock is frozen in time");

    // Reads follow as well: the event's stock as the new owner has it.
    let got: Value = stale.get(&format!("/api/v1/events/{event}")).await.json().await.unwrap();
    assert_eq!(got["ticketTypes"][0]["remainingQuantity"], 8, "{got}");
    // The following process installed the published map (LISTEN) and reads the same.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let got: Value = follower.get(&format!("/api/v1/events/{event}")).await.json().await.unwrap();
        if got["ticketTypes"][0]["remainingQuantity"] == 8 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the following process never saw the move: {got}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(follower.metric("orders_placement_epoch", &[]).await >= 3.0);
    // The first process's shards.toml does not know na-2, so it cannot follow the move: it
    // answers retryably rather than serving the old owner's rows (stock 9).
    let (status, got) = s.get(&format!("/api/v1/events/{event}")).await;
    assert_eq!((status, got["error"].as_str()), (503, Some("UNAVAILABLE")), "{got}");

    // A shards.toml that no longer defines a shard the live map uses is refused at start.
    let settings = orders::Settings { placement_url: s.shards.placement.url.clone(), ..orders::Settings::default() };
    let err = orders::Application::build(settings, s.shards.map.clone()).await.err().expect("refused");
    assert!(err.to_string().contains("[shards.na-2]"), "{err}");
}

#[tokio::test]
async fn a_write_waits_out_a_freeze_and_a_lapsed_lease_unfreezes() {
    let (s, event, tt) = Stack::with_stock("NA", 10).await;
    let customer = s.user("CUSTOMER").await.token;
    // A freeze whose orchestrator is gone: its lease lapses in 1.5 s and writes go on.
    sqlx::query(
        "update partition_owner set state = 'FROZEN', frozen_until = now() + interval '1500 milliseconds' \
         where region = 'NA' and partition = $1",
    )
    .bind(partition_of(&event))
    .execute(s.shards.pool("na-1").unwrap())
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let (status, body) = s.order(&customer, None, &order_body("NA", &event, &tt, 1)).await;
    assert_eq!(status, 201, "{body}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(1000), "the write waited for the freeze");
    // Other partitions were never held up.
    let (other, other_tt) = loop {
        let (e, t) = s.event_with_stock("NA", 10).await;
        if partition_of(&e) != partition_of(&event) {
            break (e, t);
        }
    };
    assert_eq!(s.order(&customer, None, &order_body("NA", &other, &other_tt, 1)).await.0, 201);
}

#[tokio::test]
async fn the_plan_moves_about_half_of_na_to_the_new_shard_and_changes_nothing() {
    let mut s = Stack::start().await;
    let (event, tt) = s.event_with_stock("NA", 5).await;
    let customer = s.user("CUSTOMER").await.token;
    assert_eq!(s.order(&customer, Some("k"), &order_body("NA", &event, &tt, 1)).await.0, 201);
    let na2 = s.shards.add_db("na-2", "na-1").await.unwrap();
    let map = map_with_na2(&s, &na2);
    let store =
        shard_router::LiveStore::connect_lazy(&s.shards.placement.url, std::time::Duration::from_secs(5)).unwrap();
    let live = store.load(&map).await.unwrap();
    let pools = shard_router::ShardPools::connect_lazy(&map, std::time::Duration::from_secs(5)).unwrap();

    let plan = orders::rebalance::plan::compute(&map, &live, &pools).await;
    assert_eq!(plan.steps.len(), 1, "one step: na-1 -> na-2");
    let step = &plan.steps[0];
    assert_eq!((step.from.as_str(), step.to.as_str()), ("na-1", "na-2"));
    assert!((300..700).contains(&step.partitions.len()), "about half of 1024: {}", step.partitions.len());
    // The event's rows count exactly when its partition is among the moving ones.
    let moving = step.partitions.contains(&partition_of(&event));
    let expect = if moving { 1 } else { 0 };
    assert_eq!(step.rows["events"], expect);
    assert_eq!(step.rows["orders"], expect);
    assert_eq!(step.rows["idempotency_keys"], expect);
    for name in
        ["same schema version", "destination empty", "wal_level", "replication slot free", "idempotency keys unique"]
    {
        assert!(step.checks.iter().any(|c| c.name == name), "check {name} in {:?}", step.checks);
    }
    assert!(step.checks.iter().all(|c| c.ok), "{:?}", step.checks);
    // The same caller's key already on na-2 for another partition: the copy would hit a
    // unique violation, so the preflight refuses. (An order in a moving partition first.)
    let key = loop {
        let (e, t) = s.event_with_stock("NA", 5).await;
        let key = format!("kc-{}", testkit::unique_id());
        assert_eq!(s.order(&customer, Some(&key), &order_body("NA", &e, &t, 1)).await.0, 201);
        if step.partitions.contains(&partition_of(&e)) {
            break key;
        }
    };
    let na1 = s.shards.pool("na-1").unwrap();
    let (owner, operation, body): (uuid::Uuid, String, Value) =
        sqlx::query_as("select owner_id, operation, response from idempotency_keys where key = $1")
            .bind(&key)
            .fetch_one(na1)
            .await
            .unwrap();
    let other = shard_router::Partition::first(1024).find(|p| !step.partitions.contains(p)).unwrap();
    sqlx::query(
        "insert into idempotency_keys (owner_id, operation, key, request_hash, status_code, response, partition) \
         values ($1, $2, $3, '\\x00', 201, $4, $5)",
    )
    .bind(owner)
    .bind(&operation)
    .bind(&key)
    .bind(&body)
    .bind(other)
    .execute(s.shards.pool("na-2").unwrap())
    .await
    .unwrap();
    let again = orders::rebalance::plan::compute(&map, &live, &pools).await;
    let check = again.steps[0].checks.iter().find(|c| c.name == "idempotency keys unique").unwrap();
    assert!(!check.ok && check.detail.contains("1 keys"), "{check:?}");
    assert!(!again.ready());
    sqlx::query("delete from idempotency_keys where key = $1")
        .bind(&key)
        .execute(s.shards.pool("na-2").unwrap())
        .await
        .unwrap();
    let text = plan.to_string();
    assert!(text.contains("na-1 -> na-2") && text.contains("epoch 2"), "{text}");

    // Nothing changed: the live map is as it was.
    assert_eq!(store.load(&map).await.unwrap(), live);
    assert_eq!(
        count(&s.shards.placement.pool, "select count(*) from partition_placement where shard = $1", "na-2").await,
        0
    );
}

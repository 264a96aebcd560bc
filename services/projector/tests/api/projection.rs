//! Exactly one effect per event whatever comes again, and no regression whatever the order.

use platform::db::Schema;
use serde_json::Value;
use testkit::{TestDb, TestKafka};
use uuid::Uuid;

use super::helpers::{
    Order, Producer, counts, g, order_row, settings, spawn, tables, wait_caught_up, wait_metric, wait_order,
};

#[tokio::test]
async fn redelivered_and_rewound_records_have_no_second_effect() {
    let (db, kafka) = (TestDb::global(Schema::ReadModels).await.unwrap(), TestKafka::new(2).await.unwrap());
    let p = Producer::new(&kafka);
    let (customer, event, tt) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let (a, b) = (Order::new(customer, event, tt, 2), Order::new(customer, event, tt, 3));
    p.send(&a.created(), "na-1", "1", None).await;
    p.send(&a.paid(), "na-1", "2", None).await;
    p.send(&b.created(), "na-1", "3", None).await;
    // The relay published row 1 again (it died after the broker's ack, before marking it SENT).
    p.send(&a.created(), "na-1", "1", None).await;

    let app = spawn(settings(&db.url, &kafka)).await;
    wait_caught_up(&db.pool, &kafka, g(1)).await;
    let labels = [("topic", kafka.topic.as_str()), ("consumer", "projector.g1")];
    wait_metric(&app, "projector_duplicates_total", &labels, 1.0).await;
    let before = tables(&db.pool, "public").await;
    assert_eq!(before["order_timeline"].len(), 3, "{before:?}");
    assert_eq!(counts(&db.pool, g(1)).await, (3, 1));
    let sales: (i64, i64, i64, i64) = sqlx::query_as(
        "select orders, orders_paid, tickets_sold, revenue_in_cents from event_sales where event_id = $1",
    )
    .bind(event)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(sales, (2, 1, 5, a.total), "paid revenue only, tickets of both");

    // Checkpoints rewound to the start: every record is delivered a second time.
    app.stop().await.unwrap();
    sqlx::query("update consumer_checkpoint set next_offset = 0").execute(&db.pool).await.unwrap();
    let app = spawn(settings(&db.url, &kafka)).await;
    let sentinel = Order::new(Uuid::now_v7(), event, tt, 1);
    p.send(&sentinel.created(), "na-1", "4", None).await;
    wait_order(&db.pool, sentinel.id, "projected", |_| true).await;
    wait_caught_up(&db.pool, &kafka, g(1)).await;
    wait_metric(&app, "projector_duplicates_total", &labels, 5.0).await;

    let mut after = tables(&db.pool, "public").await;
    assert_eq!(counts(&db.pool, g(1)).await, (4, 5), "4 records again, the republished one twice");
    // Nothing changed but the sentinel's rows (and the sales of its ticket type).
    let sentinel_id = sentinel.id.to_string();
    for table in ["customer_orders", "order_timeline"] {
        after.get_mut(table).unwrap().retain(|r| !r.contains(&sentinel_id));
        assert_eq!(after[table], before[table], "{table}");
    }
    let sales: (i64, i64, i64) =
        sqlx::query_as("select orders, tickets_sold, revenue_in_cents from event_sales where event_id = $1")
            .bind(event)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(sales, (3, 6, a.total));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_version_arriving_before_its_creation_never_regresses_the_row() {
    let (db, kafka) = (TestDb::global(Schema::ReadModels).await.unwrap(), TestKafka::new(3).await.unwrap());
    let p = Producer::new(&kafka);
    let app = spawn(settings(&db.url, &kafka)).await;
    let (customer, event, tt) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let (x, y) = (Order::new(customer, event, tt, 2), Order::new(customer, event, tt, 4));

    // OrderPaid v2 of x and OrderCancelled v2 of y first, on partitions of their own.
    p.send(&x.paid(), "na-1", "2", Some(1)).await;
    p.send(&y.cancelled(), "na-1", "4", Some(2)).await;
    let row = wait_order(&db.pool, x.id, "partial PAID", |r| r["status"] == "PAID").await;
    assert_eq!((row["version"].as_i64(), &row["customer_id"]), (Some(2), &Value::Null), "facts unknown yet: {row}");
    wait_order(&db.pool, y.id, "partial CANCELLED", |r| r["status"] == "CANCELLED").await;
    let sales: i64 = sqlx::query_scalar("select count(*) from event_sales").fetch_one(&db.pool).await.unwrap();
    assert_eq!(sales, 0, "no sales row before any order's facts are known");

    // Their OrderCreated v1 afterwards, on another partition: facts fill in, status stays.
    p.send(&x.created(), "na-1", "1", Some(0)).await;
    p.send(&y.created(), "na-1", "3", Some(0)).await;
    let row = wait_order(&db.pool, x.id, "completed", |r| r["customer_id"] != Value::Null).await;
    assert_eq!((row["status"].as_str(), row["version"].as_i64()), (Some("PAID"), Some(2)), "{row}");
    assert_eq!(row["quantity"], 2);
    assert_eq!(row["paid_at"].as_str().map(|s| s.starts_with("2026-11-25T03:05:00")), Some(true), "{row}");
    let row = wait_order(&db.pool, y.id, "completed", |r| r["customer_id"] != Value::Null).await;
    assert_eq!((row["status"].as_str(), row["version"].as_i64()), (Some("CANCELLED"), Some(2)), "{row}");
    assert_eq!(row["cancel_reason"], "EXPIRED");

    // A second OrderCreated for x under another outbox id (a version it has): no effect.
    p.send(&x.created(), "na-1", "99", Some(2)).await;
    wait_caught_up(&db.pool, &kafka, g(1)).await;
    let timeline: Vec<(i32, String)> =
        sqlx::query_as("select version, event_name from order_timeline where order_id = $1 order by version")
            .bind(x.id)
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(timeline, vec![(1, "OrderCreated".to_owned()), (2, "OrderPaid".to_owned())]);

    let sales: (i64, i64, i64, i64, i64, i64, i64) = sqlx::query_as(
        "select orders, orders_paid, orders_cancelled, tickets_sold, tickets_paid, tickets_cancelled, revenue_in_cents
         from event_sales where event_id = $1 and ticket_type_id = $2",
    )
    .bind(event)
    .bind(tt)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(sales, (2, 1, 1, 2, 2, 4, x.total));
    assert_eq!(counts(&db.pool, g(1)).await, (4, 1));
    app.stop().await.unwrap();
}

/// `event_sales` moves by differences; whatever the delivery order across partitions and
/// however often records come, it must end equal to a recount of `customer_orders`.
#[tokio::test]
async fn sales_equal_a_recount_whatever_the_order_and_the_repeats() {
    let (db, kafka) = (TestDb::global(Schema::ReadModels).await.unwrap(), TestKafka::new(3).await.unwrap());
    let p = Producer::new(&kafka);
    let (customer, event) = (Uuid::now_v7(), Uuid::now_v7());
    let ticket_types = [Uuid::now_v7(), Uuid::now_v7()];
    // 24 orders on two ticket types: a third stay pending, a third are paid, a third cancelled.
    let mut records = Vec::new();
    for i in 0..24_usize {
        let o = Order::new(customer, event, ticket_types[i % 2], 1 + (i % 3) as i32);
        records.push(o.created());
        match i % 3 {
            1 => records.push(o.paid()),
            2 => records.push(o.cancelled()),
            _ => {}
        }
    }
    // A fixed scramble: later versions often first, on partitions other than their creation's,
    // and every fifth record twice.
    let mut sent = 0;
    for (n, r) in records.iter().enumerate().rev().step_by(2).chain(records.iter().enumerate().step_by(2)) {
        let partition = Some(((n * 7) % 3) as i32);
        p.send(r, "na-1", &n.to_string(), partition).await;
        if n % 5 == 0 {
            p.send(r, "na-1", &n.to_string(), Some(((n + 1) % 3) as i32)).await;
        }
        sent += 1;
    }
    assert_eq!(sent, records.len());
    let app = spawn(settings(&db.url, &kafka)).await;
    wait_caught_up(&db.pool, &kafka, g(1)).await;

    let recount = "select event_id, ticket_type_id, count(*)::bigint, count(*) filter (where status = 'PAID'),
            count(*) filter (where status = 'CANCELLED'),
            coalesce(sum(quantity) filter (where status <> 'CANCELLED'), 0)::bigint,
            coalesce(sum(quantity) filter (where status = 'PAID'), 0)::bigint,
            coalesce(sum(quantity) filter (where status = 'CANCELLED'), 0)::bigint,
            coalesce(sum(total_price_in_cents) filter (where status = 'PAID'), 0)::bigint
         from customer_orders group by 1, 2 order by 1, 2";
    let stored = "select event_id, ticket_type_id, orders, orders_paid, orders_cancelled, tickets_sold, tickets_paid,
            tickets_cancelled, revenue_in_cents from event_sales order by 1, 2";
    type Row = (Uuid, Uuid, i64, i64, i64, i64, i64, i64, i64);
    let want: Vec<Row> = sqlx::query_as(recount).fetch_all(&db.pool).await.unwrap();
    let got: Vec<Row> = sqlx::query_as(stored).fetch_all(&db.pool).await.unwrap();
    assert_eq!(got, want);
    assert_eq!(want.len(), 2);
    assert_eq!(want.iter().map(|r| r.2).sum::<i64>(), 24, "every order counted once");
    assert_eq!(want.iter().map(|r| r.3).sum::<i64>(), 8);
    assert_eq!(want.iter().map(|r| r.4).sum::<i64>(), 8);
    let statuses: Vec<(String, i64)> =
        sqlx::query_as("select status, count(*) from customer_orders group by 1 order by 1")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(statuses, [("CANCELLED".to_owned(), 8), ("PAID".to_owned(), 8), ("PENDING".to_owned(), 8)]);
    app.stop().await.unwrap();
}

/// Outbox ids are a shard's identity column: a shard restored from a snapshot hands the same
/// ids out again. Two different events under one `(source, outbox id)` are both applied; only
/// an order's version seen before is a duplicate.
#[tokio::test]
async fn a_reused_outbox_id_is_not_taken_for_a_duplicate() {
    let (db, kafka) = (TestDb::global(Schema::ReadModels).await.unwrap(), TestKafka::new(1).await.unwrap());
    let p = Producer::new(&kafka);
    let (customer, event, tt) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let (a, b) = (Order::new(customer, event, tt, 1), Order::new(customer, event, tt, 2));
    p.send_event(&a.created(), "na-1", "7").await;
    p.send_event(&b.created(), "na-1", "7").await;
    let app = spawn(settings(&db.url, &kafka)).await;
    wait_caught_up(&db.pool, &kafka, g(1)).await;
    assert_eq!(counts(&db.pool, g(1)).await, (2, 0), "both applied, no duplicate");
    assert!(order_row(&db.pool, a.id).await.is_some() && order_row(&db.pool, b.id).await.is_some());
    app.stop().await.unwrap();
}

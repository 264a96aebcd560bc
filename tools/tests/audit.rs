//! The audit against a real stack: orders placed, paid and cancelled in both regions, published
//! by the real relay, applied by the real consumers; the audit passes. Then one row of each
//! invariant is corrupted, and each check reports its own.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests: a failed expectation is a failed test")]

use std::time::Duration;

use sqlx::PgPool;
use test_stack::{Pipeline, Stack, order_body};
use tools::audit::{Check, Report, Sources};
use uuid::Uuid;

fn sources(s: &Stack, p: &Pipeline) -> Sources {
    Sources::connect_lazy(
        &s.shards.map,
        &s.shards.placement.url,
        &p.read_models.url,
        &p.notifications_db.url,
        &p.kafka.bootstrap,
        &p.kafka.dlq_topic,
    )
    .unwrap()
}

/// The violations `check` reported.
fn of(report: &Report, check: Check) -> &[String] {
    &report.outcome(check).unwrap().violations
}

fn assert_reports(report: &Report, check: Check, says: &str) {
    let found = of(report, check);
    assert!(found.iter().any(|v| v.contains(says)), "{check:?} should report {says:?}:\n{}", report.render(20));
}

async fn exec(pool: &PgPool, sql: &str, id: Uuid) -> u64 {
    sqlx::query(sql).bind(id).execute(pool).await.unwrap().rows_affected()
}

#[tokio::test]
async fn the_audit_passes_on_a_drained_stack_and_names_each_planted_violation() {
    let s = Stack::start().await;
    let pipeline = Pipeline::start(&s).await;
    let ((na_event, na_tt), (sa_event, sa_tt)) = s.stock_in_na_and_sa(20).await;
    let customer = s.user("CUSTOMER").await.token;
    let mut placed = Vec::new();
    for (region, event, tt) in [("NA", &na_event, &na_tt), ("SA", &sa_event, &sa_tt)] {
        for _ in 0..3 {
            let (status, body) = s.order(&customer, None, &order_body(region, event, tt, 2)).await;
            assert_eq!(status, 201, "{body}");
            placed.push(body["orderId"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(s.pay(&customer, &placed[0]).await.0, 200);
    assert_eq!(s.cancel(&customer, &placed[1]).await.0, 200);
    assert_eq!(s.pay(&customer, &placed[3]).await.0, 200);

    let sources = sources(&s, &pipeline);
    let report = tools::audit::run(&sources, &Check::ALL, Duration::from_secs(90)).await.unwrap();
    assert!(report.passed(), "{}", report.render(20));
    let outbox = &report.outcome(Check::Outbox).unwrap().checked;
    assert!(outbox.starts_with("9 outbox rows on 2 shards: 9 SENT, 0 FAILED"), "{outbox}");
    let notified = &report.outcome(Check::Notifications).unwrap().checked;
    assert!(notified.starts_with("9 published events: one notification each"), "{notified}");

    // One corruption per invariant.
    s.shards.expect_failed_outbox();
    let (na, sa) = (s.shards.pool("na-1").unwrap(), s.shards.pool("sa-1").unwrap());
    let (na_tt, sa_tt): (Uuid, Uuid) = (na_tt.parse().unwrap(), sa_tt.parse().unwrap());
    let (paid, pending_sa): (Uuid, Uuid) = (placed[0].parse().unwrap(), placed[4].parse().unwrap());
    let created_sa: Uuid = placed[5].parse().unwrap();
    assert_eq!(
        exec(na, "update ticket_types set remaining_quantity = remaining_quantity - 1 where id = $1", na_tt).await,
        1
    );
    assert_eq!(exec(sa, "update outbox set status = 'FAILED' where aggregate_id = $1", pending_sa).await, 1);
    let (source, outbox_id): (String, String) =
        sqlx::query_as("delete from notifications where order_id = $1 returning source, outbox_id")
            .bind(created_sa)
            .fetch_one(&pipeline.notifications_db.pool)
            .await
            .unwrap();
    let rm = &pipeline.read_models.pool;
    assert_eq!(exec(rm, "update event_sales set orders = orders + 1 where ticket_type_id = $1", sa_tt).await, 1);
    assert_eq!(exec(rm, "delete from order_timeline where order_id = $1 and version = 2", paid).await, 1);
    // sa-1 claims a partition of na-1's: two shards would serve it.
    let (partition,): (i16,) =
        sqlx::query_as("select partition from orders where id = $1").bind(paid).fetch_one(na).await.unwrap();
    sqlx::query("insert into partition_owner (region, partition, state, epoch) values ('NA', $1, 'OWNED', 0)")
        .bind(partition)
        .execute(sa)
        .await
        .unwrap();

    let report = tools::audit::run(&sources, &Check::ALL, Duration::ZERO).await.unwrap();
    assert!(!report.passed());
    assert_reports(
        &report,
        Check::Stock,
        &format!("na-1: ticket type {na_tt}: remaining 15 but total 20 − sold 4 = 16"),
    );
    assert_reports(
        &report,
        Check::Outbox,
        &format!("(OrderCreated of order {pending_sa}) is FAILED but not in the DLQ"),
    );
    assert_reports(
        &report,
        Check::Notifications,
        &format!(
            "{source}: outbox row {outbox_id} (OrderCreated of order {created_sa}) was published and has 0 notifications"
        ),
    );
    assert_reports(&report, Check::EventSales, &format!("ticket type {sa_tt}: event_sales says"));
    assert_reports(&report, Check::OrderProjection, &format!("order_timeline: order {paid} lists versions [1]"));
    assert_reports(&report, Check::Ownership, &format!("NA/{partition}: served by 2 shards: na-1, sa-1"));
    assert!(report.render(20).contains("audit failed:"), "{}", report.render(20));

    // An order left on a shard that gave its partition away, with no move in progress.
    sqlx::query("delete from partition_owner where region = 'NA' and partition = $1")
        .bind(partition)
        .execute(sa)
        .await
        .unwrap();
    sqlx::query("update partition_owner set state = 'MOVED', moved_to = 'sa-1' where region = 'NA' and partition = $1")
        .bind(partition)
        .execute(na)
        .await
        .unwrap();
    let report = tools::audit::run(&sources, &[Check::Ownership], Duration::ZERO).await.unwrap();
    assert_reports(
        &report,
        Check::Ownership,
        &format!("na-1: holds 3 orders rows of NA/{partition}, which it does not serve (MOVED, no move in progress)"),
    );
    pipeline.stop().await;
}

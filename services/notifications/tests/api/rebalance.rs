//! Two members of the group: partitions move from one to the other, and every event still
//! yields exactly one notification with every offset committed.
//!
//! Observed with Tansu 0.6.0: a member that joins while another holds every partition gets
//! none until that one leaves (no rebalance on join), so the hand-over exercised here is the
//! one on leave: revoke (commit what is done), then the other member resumes from there.

use platform::db::Schema;
use testkit::{TestDb, TestKafka};
use uuid::Uuid;

use super::helpers::{Producer, count, created, per_order, settings, spawn, wait_all_committed, wait_notifications};

#[tokio::test]
async fn partitions_move_between_members_without_loss_or_second_effect() {
    let (db, kafka) = (TestDb::global(Schema::Notifications).await.unwrap(), TestKafka::new(4).await.unwrap());
    let p = Producer::new(&kafka);
    let customer = Uuid::now_v7();
    let mut orders = Vec::new();
    let send = async |n: usize, orders: &mut Vec<Uuid>| {
        for _ in 0..n {
            let order = Uuid::now_v7();
            p.send_event(&created(order, customer), "na-1", &(orders.len() + 1).to_string()).await;
            orders.push(order);
        }
    };

    send(20, &mut orders).await;
    let first = spawn(settings(&db.url, &kafka)).await;
    wait_notifications(&first, orders[0], 1).await;
    // A second member joins; whichever member holds a partition applies its records.
    let second = spawn(settings(&db.url, &kafka)).await;
    send(20, &mut orders).await;
    for order in &orders {
        wait_notifications(&second, *order, 1).await;
    }
    wait_all_committed(&kafka).await;
    // The first leaves (revoke: commit what is done): the second resumes from there.
    first.stop().await.unwrap();
    send(20, &mut orders).await;
    for order in &orders {
        wait_notifications(&second, *order, 1).await;
    }
    wait_all_committed(&kafka).await;

    let counts = per_order(&db.pool).await;
    assert_eq!(counts.len(), orders.len(), "{counts:?}");
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    assert_eq!(count(&db.pool, "inbox").await, 60);
    second.stop().await.unwrap();
}

//! Exactly one notification per event, whatever comes again: rewound checkpoints, a relay that
//! published a row twice; and a process killed right after a commit brings nothing back, since
//! the checkpoint committed with the effects.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

use platform::db::Schema;
use testkit::{TestDb, TestKafka};
use tokio::process::Command;
use uuid::Uuid;

use super::helpers::{
    Producer, WAIT, binary_env, checkpoints, count, created, paid, per_order, rewind, settings, spawn,
    wait_all_checkpointed, wait_metric, wait_notifications,
};

#[tokio::test]
async fn a_message_delivered_again_yields_no_second_notification() {
    let (db, kafka) = (TestDb::global(Schema::Notifications).await.unwrap(), TestKafka::new(2).await.unwrap());
    let p = Producer::new(&kafka);
    let (order, customer) = (Uuid::now_v7(), Uuid::now_v7());
    p.send_event(&created(order, customer), "na-1", "1").await;
    p.send_event(&paid(order), "na-1", "2").await;
    // The relay published row 1 again (it died after the broker's ack, before marking it SENT).
    p.send_event(&created(order, customer), "na-1", "1").await;
    // Row 1 of another shard's outbox: the same outbox id, yet another message.
    let (other, other_customer) = (Uuid::now_v7(), Uuid::now_v7());
    let mut sa = created(other, other_customer);
    sa["region"] = "SA".into();
    p.send_event(&sa, "sa-1", "1").await;

    let app = spawn(settings(&db.url, &kafka)).await;
    let got = wait_notifications(&app, order, 2).await;
    wait_notifications(&app, other, 1).await;
    wait_all_checkpointed(&db.pool, &kafka).await;
    let duplicates = [("topic", kafka.topic.as_str())];
    wait_metric(&app, "notifications_duplicates_total", &duplicates, 1.0).await;

    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0]["eventName"], "OrderCreated");
    assert_eq!(got[0]["recipientCustomerId"], customer.to_string());
    assert_eq!(got[0]["channel"], "log");
    assert_eq!(got[0]["correlationId"], "corr-na-1-1", "the correlation id header is carried");
    assert!(got[0]["text"].as_str().unwrap().contains(&order.to_string()), "{}", got[0]);
    assert_eq!(got[1]["eventName"], "OrderPaid");
    // OrderPaid has no customer id: taken from the order's OrderCreated notification.
    assert_eq!(got[1]["recipientCustomerId"], customer.to_string());

    // Checkpoints rewound to the start: every record is delivered a second time.
    app.stop().await.unwrap();
    rewind(&db.pool).await;
    let app = spawn(settings(&db.url, &kafka)).await;
    let sentinel = Uuid::now_v7();
    p.send_event(&created(sentinel, customer), "na-1", "3").await;
    wait_notifications(&app, sentinel, 1).await;
    wait_all_checkpointed(&db.pool, &kafka).await;
    // 1 republished row, then the 4 earlier records again.
    wait_metric(&app, "notifications_duplicates_total", &duplicates, 5.0).await;

    let counts = per_order(&db.pool).await;
    assert_eq!(counts.get(&order), Some(&2), "{counts:?}");
    assert_eq!(counts.get(&other), Some(&1), "{counts:?}");
    assert_eq!(counts.get(&sentinel), Some(&1), "{counts:?}");
    assert_eq!(count(&db.pool, "notifications").await, 4);
    assert_eq!(count(&db.pool, "inbox").await, 4);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_crash_right_after_a_commit_brings_nothing_back_since_the_checkpoint_committed_with_it() {
    let (db, kafka) = (TestDb::global(Schema::Notifications).await.unwrap(), TestKafka::new(1).await.unwrap());
    let p = Producer::new(&kafka);
    let (order, customer) = (Uuid::now_v7(), Uuid::now_v7());
    p.send_event(&created(order, customer), "na-1", "7").await;

    // The real binary, told to abort right after its first batch commit.
    let mut child = Command::new(env!("CARGO_BIN_EXE_notifications"))
        .current_dir(testkit::stack::repo_root())
        .envs(binary_env(&db.url, &kafka))
        .env("TICKET_HUB_NOTIFICATIONS__CRASH_AFTER_STORE", "true")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap_or_else(|_| panic!("the binary did not crash within {WAIT:?}"))
        .unwrap();
    assert_eq!(status.signal(), Some(6), "died by SIGABRT, not a clean exit: {status}");
    assert_eq!(count(&db.pool, "notifications").await, 1, "the effect was committed before the crash");
    assert_eq!(count(&db.pool, "inbox").await, 1);
    assert_eq!(checkpoints(&db.pool).await.into_iter().collect::<Vec<_>>(), vec![(0, 1)], "and its checkpoint with it");

    // Restarted: it goes on after the checkpoint; the record does not come again.
    let app = spawn(settings(&db.url, &kafka)).await;
    let next = Uuid::now_v7();
    p.send_event(&created(next, customer), "na-1", "8").await;
    wait_notifications(&app, next, 1).await;
    wait_all_checkpointed(&db.pool, &kafka).await;
    assert_eq!(app.metric("notifications_duplicates_total", &[("topic", kafka.topic.as_str())]).await, 0.0);
    assert_eq!(wait_notifications(&app, order, 1).await.len(), 1);
    assert_eq!(count(&db.pool, "notifications").await, 2);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_order_paid_whose_creation_was_never_seen_has_no_known_recipient() {
    let (db, kafka) = (TestDb::global(Schema::Notifications).await.unwrap(), TestKafka::new(1).await.unwrap());
    let p = Producer::new(&kafka);
    let order = Uuid::now_v7();
    p.send_event(&paid(order), "sa-1", "5").await;
    let app = spawn(settings(&db.url, &kafka)).await;
    let got = wait_notifications(&app, order, 1).await;
    assert_eq!(got[0]["eventName"], "OrderPaid");
    assert_eq!(got[0]["recipientCustomerId"], serde_json::Value::Null, "stored as unknown, not guessed");
    assert!(got[0]["text"].as_str().unwrap().starts_with("Payment received"), "{}", got[0]);
    app.stop().await.unwrap();
}

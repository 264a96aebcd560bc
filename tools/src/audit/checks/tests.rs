//! Each check on a small consistent world (two shards, one order per status), then that world
//! with one thing wrong: the check names it, and the others stay quiet.

use platform::contract::Region;
use platform::contract::read_models::{Id, TicketTypeSales};
use shard_router::Partition;
use shard_router::ids::{Placement, compose, region_tag};

use super::*;
use crate::audit::facts::{DeadLetter, Move, Outbox, Owner, PartitionRows, ReadModels, Shard, Stock};

fn id(region: &str, partition: u16, n: u64) -> Uuid {
    let placement = Placement { region_tag: region_tag(region), partition: Partition::new(partition).unwrap() };
    compose(placement, 1_700_000_000_000, n)
}

fn owner(region: &str, partition: i16, state: &str) -> Owner {
    Owner {
        region: region.into(),
        partition,
        state: state.into(),
        moved_to: (state == "MOVED").then(|| "elsewhere".into()),
    }
}

fn sales(tt: Uuid, orders: i64, paid: i64, cancelled: i64, sold: i64, revenue: i64) -> TicketTypeSales {
    TicketTypeSales {
        ticket_type_id: Id(tt),
        region: Region("NA".into()),
        orders,
        orders_paid: paid,
        orders_cancelled: cancelled,
        tickets_sold: sold,
        tickets_paid: paid,
        tickets_cancelled: cancelled,
        revenue_in_cents: revenue,
    }
}

fn order(id: Uuid, status: &str, version: i32) -> Order {
    Order { id, region: "NA".into(), partition: 1, status: status.into(), version, readable: true }
}

fn row(id: i64, order: Uuid, event: &str, version: i32) -> Outbox {
    Outbox { id, aggregate_id: order, event_type: event.into(), status: "SENT".into(), version: Some(version) }
}

/// na-1 owns NA/1 with one ticket type (10 tickets) and three orders of one ticket each:
/// pending, paid, cancelled; every event published, notified and projected. sa-1 owns SA/2
/// and holds nothing.
fn world() -> Facts {
    let tt = id("NA", 1, 100);
    let (pending, paid, cancelled) = (id("NA", 1, 1), id("NA", 1, 2), id("NA", 1, 3));
    let outbox = vec![
        row(1, pending, "OrderCreated", 1),
        row(2, paid, "OrderCreated", 1),
        row(3, paid, "OrderPaid", 2),
        row(4, cancelled, "OrderCreated", 1),
        row(5, cancelled, "OrderCancelled", 2),
    ];
    let na = Shard {
        name: "na-1".into(),
        owners: vec![owner("NA", 1, "OWNED")],
        stock: vec![Stock {
            total_quantity: 10,
            remaining_quantity: 8,
            readable: true,
            sales: sales(tt, 3, 1, 1, 2, 2500),
        }],
        orders: vec![order(pending, "PENDING", 1), order(paid, "PAID", 2), order(cancelled, "CANCELLED", 2)],
        outbox: outbox.clone(),
        rows: vec![
            PartitionRows { region: "NA".into(), partition: 1, table_name: "orders".into(), rows: 3 },
            PartitionRows { region: "NA".into(), partition: 1, table_name: "events".into(), rows: 1 },
        ],
    };
    let sa = Shard { name: "sa-1".into(), owners: vec![owner("SA", 2, "OWNED")], ..Shard::default() };
    let timeline = |names: &[&str]| {
        ((1..=names.len() as i32).collect(), names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
    };
    Facts {
        shards: vec![na, sa],
        placement: [(("NA".into(), 1), "na-1".into()), (("SA".into(), 2), "sa-1".into())].into(),
        moves: Vec::new(),
        notifications: outbox.iter().map(|r| (("na-1".into(), r.id.to_string()), 1)).collect(),
        dead_letters: Vec::new(),
        read_models: ReadModels {
            sales: vec![sales(tt, 3, 1, 1, 2, 2500)],
            orders: [
                (pending, ("PENDING".into(), 1)),
                (paid, ("PAID".into(), 2)),
                (cancelled, ("CANCELLED".into(), 2)),
            ]
            .into(),
            timelines: [
                (pending, timeline(&["OrderCreated"])),
                (paid, timeline(&["OrderCreated", "OrderPaid"])),
                (cancelled, timeline(&["OrderCreated", "OrderCancelled"])),
            ]
            .into(),
        },
    }
}

/// The checks that report violations on `facts`, with their first violation.
fn failing(facts: &Facts) -> Vec<(Check, String)> {
    Check::ALL
        .iter()
        .map(|c| c.run(facts))
        .filter(|o| !o.violations.is_empty())
        .map(|o| (o.check, o.violations[0].clone()))
        .collect()
}

fn only(facts: &Facts, check: Check, says: &str) {
    let failing = failing(facts);
    assert_eq!(failing.len(), 1, "want only {check:?} to fail: {failing:#?}");
    assert_eq!(failing[0].0, check, "{failing:#?}");
    assert!(failing[0].1.contains(says), "{check:?} said {:?}, want it to mention {says:?}", failing[0].1);
}

#[test]
fn a_consistent_world_passes_every_check_and_says_what_it_looked_at() {
    let facts = world();
    assert!(failing(&facts).is_empty(), "{:#?}", failing(&facts));
    let stock = Check::Stock.run(&facts);
    assert!(stock.checked.starts_with("1 ticket types on 2 shards"), "{}", stock.checked);
    let outbox = Check::Outbox.run(&facts);
    assert!(outbox.checked.starts_with("5 outbox rows on 2 shards: 5 SENT, 0 FAILED"), "{}", outbox.checked);
}

#[test]
fn stock_that_disagrees_with_the_orders_is_reported() {
    let mut facts = world();
    facts.shards[0].stock[0].remaining_quantity = 7;
    only(&facts, Check::Stock, "remaining 7 but total 10 − sold 2 = 8");
}

#[test]
fn a_pending_row_or_a_failed_row_missing_from_the_dlq_is_reported() {
    let mut facts = world();
    facts.shards[0].outbox[0].status = "PENDING".into();
    let outcome = Check::Outbox.run(&facts);
    assert!(outcome.violations.iter().any(|v| v.contains("is still PENDING")), "{outcome:?}");

    let mut facts = world();
    facts.shards[0].outbox[0].status = "FAILED".into();
    let outcome = Check::Outbox.run(&facts);
    assert!(outcome.violations.iter().any(|v| v.contains("FAILED but not in the DLQ")), "{outcome:?}");
    // In the DLQ, written by the relay: accounted for (its notification may exist or not).
    facts.dead_letters.push(DeadLetter { by: "orders-relay".into(), shard: "na-1".into(), outbox_id: "1".into() });
    assert!(failing(&facts).is_empty(), "{:#?}", failing(&facts));
    facts.notifications.remove(&("na-1".into(), "1".into()));
    assert!(failing(&facts).is_empty(), "{:#?}", failing(&facts));
}

#[test]
fn an_order_version_without_its_event_is_reported() {
    let mut facts = world();
    facts.shards[0].outbox.retain(|r| r.id != 3);
    facts.notifications.remove(&("na-1".into(), "3".into()));
    only(&facts, Check::Outbox, "is PAID v2 but its outbox events are");
}

#[test]
fn an_event_of_a_moved_order_counts_on_whichever_shard_published_it() {
    let mut facts = world();
    // The paid order's OrderPaid was written on sa-1 after a move: still one event per version.
    let paid = facts.shards[0].outbox.remove(2);
    facts.notifications.remove(&("na-1".into(), "3".into()));
    facts.notifications.insert(("sa-1".into(), "1".into()), 1);
    facts.shards[1].outbox.push(Outbox { id: 1, ..paid });
    assert!(failing(&facts).is_empty(), "{:#?}", failing(&facts));
}

#[test]
fn a_published_event_with_no_notification_or_two_or_a_stray_notification_is_reported() {
    let mut facts = world();
    facts.notifications.remove(&("na-1".into(), "2".into()));
    only(&facts, Check::Notifications, "has 0 notifications, not 1");

    let mut facts = world();
    facts.notifications.insert(("na-1".into(), "2".into()), 2);
    only(&facts, Check::Notifications, "has 2 notifications, not 1");

    let mut facts = world();
    facts.notifications.insert(("na-1".into(), "99".into()), 1);
    only(&facts, Check::Notifications, "na-1/99, which is no published outbox row");
}

#[test]
fn an_event_the_consumer_dead_lettered_needs_no_notification() {
    let mut facts = world();
    facts.notifications.remove(&("na-1".into(), "2".into()));
    facts.dead_letters.push(DeadLetter { by: "notifications".into(), shard: "na-1".into(), outbox_id: "2".into() });
    assert!(failing(&facts).is_empty(), "{:#?}", failing(&facts));
}

#[test]
fn sales_the_projector_counted_wrong_are_reported() {
    let mut facts = world();
    facts.read_models.sales[0].orders_paid = 2;
    only(&facts, Check::EventSales, "event_sales says");

    let mut facts = world();
    facts.read_models.sales.clear();
    only(&facts, Check::EventSales, "event_sales says");
}

#[test]
fn a_projection_missing_an_order_or_a_version_is_reported() {
    let mut facts = world();
    let paid = facts.shards[0].orders[1].id;
    facts.read_models.orders.insert(paid, ("PENDING".into(), 1));
    only(&facts, Check::OrderProjection, "the shard says PAID v2");

    let mut facts = world();
    facts.read_models.timelines.get_mut(&paid).unwrap().0.pop();
    only(&facts, Check::OrderProjection, "order_timeline");
}

#[test]
fn rows_on_a_shard_that_does_not_serve_their_partition_are_reported_unless_a_move_carries_them() {
    let mut facts = world();
    // A leftover copy on sa-1 of NA/1, which na-1 serves.
    facts.shards[1].owners.push(owner("NA", 1, "MOVED"));
    facts.shards[1].rows.push(PartitionRows {
        region: "NA".into(),
        partition: 1,
        table_name: "orders".into(),
        rows: 3,
    });
    only(&facts, Check::Ownership, "sa-1: holds 3 orders rows of NA/1, which it does not serve (MOVED");
    // The same during a move from sa-1: in transit.
    facts.moves.push(Move {
        id: 7,
        region: "NA".into(),
        source: "sa-1".into(),
        dest: "na-1".into(),
        partitions: vec![1],
        phase: "SWITCHED".into(),
    });
    assert!(failing(&facts).is_empty(), "{:#?}", failing(&facts));
    assert!(Check::Ownership.run(&facts).checked.contains("3 rows elsewhere"));
}

#[test]
fn two_owners_an_owner_the_live_map_does_not_name_or_a_misfiled_id_are_reported() {
    let mut facts = world();
    facts.shards[1].owners.push(owner("NA", 1, "OWNED"));
    only(&facts, Check::Ownership, "NA/1: served by 2 shards");

    let mut facts = world();
    facts.placement.insert(("NA".into(), 1), "sa-1".into());
    only(&facts, Check::Ownership, "the live map names sa-1, which has no word on it");

    let mut facts = world();
    facts.shards[0].orders[0].partition = 2;
    only(&facts, Check::Ownership, "is filed under NA/2, but its id says");
}

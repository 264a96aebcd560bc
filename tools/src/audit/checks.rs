//! The invariants, each a pure function of the [`Facts`] one pass read.
//!
//! Every check says what it looked at (so "0 violations" is never "looked at nothing") and
//! lists each violation with enough to find the row: shard, table, id.

use std::collections::{BTreeMap, BTreeSet};

use platform::contract::read_models::TicketTypeSales;
use platform::events::headers::DLQ_SOURCE_RELAY;
use uuid::Uuid;

use super::facts::{Facts, Needs, Order, Outbox};

/// One invariant of the audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Check {
    /// Every ticket type: `remaining = total − tickets of orders not cancelled`, never negative.
    Stock,
    /// Every outbox row SENT, or FAILED and in the DLQ; every order's versions have their event.
    Outbox,
    /// Every published event has exactly one notification, or the consumer dead-lettered it.
    Notifications,
    /// The projector's `event_sales` equals a recount of the shards' orders.
    EventSales,
    /// The projector's `customer_orders` and `order_timeline`: each order once, every version.
    OrderProjection,
    /// Each partition served by exactly the shard the live map names; rows elsewhere only in a
    /// move in transit; every order's id carries its row's region and partition.
    Ownership,
}

impl Check {
    pub const ALL: [Check; 6] = [
        Check::Stock,
        Check::Outbox,
        Check::Notifications,
        Check::EventSales,
        Check::OrderProjection,
        Check::Ownership,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Check::Stock => "stock",
            Check::Outbox => "outbox",
            Check::Notifications => "notifications",
            Check::EventSales => "event_sales",
            Check::OrderProjection => "order_projection",
            Check::Ownership => "ownership",
        }
    }

    /// The sources beyond the shards this check reads.
    pub fn needs(self) -> Needs {
        match self {
            Check::Stock => Needs::default(),
            Check::Outbox => Needs { dead_letters: true, ..Needs::default() },
            Check::Notifications => Needs { notifications: true, dead_letters: true, ..Needs::default() },
            Check::EventSales | Check::OrderProjection => Needs { read_models: true, ..Needs::default() },
            Check::Ownership => Needs { placement: true, ..Needs::default() },
        }
    }

    pub fn run(self, facts: &Facts) -> Outcome {
        let (checked, violations) = match self {
            Check::Stock => stock(facts),
            Check::Outbox => outbox(facts),
            Check::Notifications => notifications(facts),
            Check::EventSales => event_sales(facts),
            Check::OrderProjection => order_projection(facts),
            Check::Ownership => ownership(facts),
        };
        Outcome { check: self, checked, violations }
    }
}

/// The union of what `checks` need.
pub fn needs(checks: &[Check]) -> Needs {
    checks.iter().map(|c| c.needs()).fold(Needs::default(), |a, b| Needs {
        placement: a.placement || b.placement,
        notifications: a.notifications || b.notifications,
        dead_letters: a.dead_letters || b.dead_letters,
        read_models: a.read_models || b.read_models,
    })
}

/// What one check looked at and found wrong.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub check: Check,
    pub checked: String,
    pub violations: Vec<String>,
}

/// The orders each shard serves (its partition readable there), by id.
fn served_orders(facts: &Facts) -> BTreeMap<Uuid, (&str, &Order)> {
    facts
        .shards
        .iter()
        .flat_map(|s| s.orders.iter().filter(|o| o.readable).map(move |o| (o.id, (s.name.as_str(), o))))
        .collect()
}

/// The event an order's last version announces.
fn last_event(status: &str) -> &'static str {
    match status {
        "PAID" => "OrderPaid",
        "CANCELLED" => "OrderCancelled",
        _ => "OrderCreated",
    }
}

/// Whether an order at `version` with `status` has exactly the events `versions`/`names` (in
/// version order): 1..=version, OrderCreated first, the event of its status last.
fn complete_history(status: &str, version: i32, versions: &[i32], names: &[String]) -> bool {
    versions.iter().copied().eq(1..=version)
        && names.first().map(String::as_str) == Some("OrderCreated")
        && names.last().map(String::as_str) == Some(last_event(status))
}

fn stock(facts: &Facts) -> (String, Vec<String>) {
    let mut violations = Vec::new();
    let mut n = 0;
    for shard in &facts.shards {
        for s in shard.stock.iter().filter(|s| s.readable) {
            n += 1;
            let remaining = i64::from(s.total_quantity) - s.sales.tickets_sold;
            if i64::from(s.remaining_quantity) != remaining || s.remaining_quantity < 0 {
                violations.push(format!(
                    "{}: ticket type {}: remaining {} but total {} − sold {} = {remaining}",
                    shard.name, s.sales.ticket_type_id.0, s.remaining_quantity, s.total_quantity, s.sales.tickets_sold
                ));
            }
        }
    }
    (
        format!(
            "{n} ticket types on {} shards: remaining = total − tickets of orders not cancelled, never negative",
            facts.shards.len()
        ),
        violations,
    )
}

/// An outbox row as violations name it; built only for a violation.
fn named(shard: &str, row: &Outbox) -> String {
    format!("{shard}: outbox row {} ({} of order {})", row.id, row.event_type, row.aggregate_id)
}

/// The (shard, outbox id) of the DLQ records the relay wrote (`by_relay`), or a consumer.
fn dead_lettered(facts: &Facts, by_relay: bool) -> BTreeSet<(&str, &str)> {
    facts
        .dead_letters
        .iter()
        .filter(|d| (d.by == DLQ_SOURCE_RELAY) == by_relay)
        .map(|d| (d.shard.as_str(), d.outbox_id.as_str()))
        .collect()
}

fn outbox(facts: &Facts) -> (String, Vec<String>) {
    let mut violations = Vec::new();
    let dead = dead_lettered(facts, true);
    let known: BTreeSet<Uuid> = facts.shards.iter().flat_map(|s| s.orders.iter().map(|o| o.id)).collect();
    let mut events: BTreeMap<Uuid, Vec<(i32, &str)>> = BTreeMap::new();
    let (mut rows, mut sent, mut failed) = (0, 0, 0);
    for shard in &facts.shards {
        for row in &shard.outbox {
            rows += 1;
            let what = || named(&shard.name, row);
            match row.status.as_str() {
                "SENT" => sent += 1,
                "FAILED" => {
                    failed += 1;
                    if !dead.contains(&(shard.name.as_str(), row.id.to_string().as_str())) {
                        violations.push(format!("{} is FAILED but not in the DLQ", what()));
                    }
                }
                status => violations.push(format!("{} is still {status}", what())),
            }
            if !known.contains(&row.aggregate_id) {
                violations.push(format!("{} is about an order no shard holds", what()));
            }
            events.entry(row.aggregate_id).or_default().push((row.version.unwrap_or(0), row.event_type.as_str()));
        }
    }
    let served = served_orders(facts);
    for (id, (shard, order)) in &served {
        let mut history = events.remove(id).unwrap_or_default();
        history.sort_unstable();
        let versions: Vec<i32> = history.iter().map(|(v, _)| *v).collect();
        let names: Vec<String> = history.iter().map(|(_, n)| (*n).to_owned()).collect();
        if !complete_history(&order.status, order.version, &versions, &names) {
            violations.push(format!(
                "{shard}: order {id} is {} v{} but its outbox events are {history:?}; want versions 1..={} ending in {}",
                order.status,
                order.version,
                order.version,
                last_event(&order.status)
            ));
        }
    }
    (
        format!(
            "{rows} outbox rows on {} shards: {sent} SENT, {failed} FAILED (each in the DLQ); {} orders, each with \
             one event per version",
            facts.shards.len(),
            served.len()
        ),
        violations,
    )
}

fn notifications(facts: &Facts) -> (String, Vec<String>) {
    let mut violations = Vec::new();
    let rejected = dead_lettered(facts, false);
    let mut published: BTreeSet<(String, String)> = BTreeSet::new();
    let (mut sent, mut by_consumer) = (0, 0);
    for shard in &facts.shards {
        for row in shard.outbox.iter().filter(|r| r.status == "SENT" || r.status == "FAILED") {
            let key = (shard.name.clone(), row.id.to_string());
            let n = facts.notifications.get(&key).copied().unwrap_or(0);
            let what = || named(&shard.name, row);
            if row.status == "SENT" {
                sent += 1;
                if n == 0 && rejected.contains(&(key.0.as_str(), key.1.as_str())) {
                    by_consumer += 1;
                } else if n != 1 {
                    violations.push(format!("{} was published and has {n} notifications, not 1", what()));
                }
            } else if n > 1 {
                // A FAILED row may have reached the topic before its last attempt timed out.
                violations.push(format!("{} has {n} notifications", what()));
            }
            published.insert(key);
        }
    }
    for (source, outbox_id) in facts.notifications.keys().filter(|k| !published.contains(*k)) {
        violations.push(format!("a notification of {source}/{outbox_id}, which is no published outbox row"));
    }
    (
        format!(
            "{sent} published events: one notification each ({by_consumer} dead-lettered by a consumer instead); \
             {} notifications, each of a published event",
            facts.notifications.values().sum::<i64>()
        ),
        violations,
    )
}

/// What `event_sales` says of a ticket type without a row: nobody ordered it.
fn unsold(truth: &TicketTypeSales) -> TicketTypeSales {
    TicketTypeSales {
        orders: 0,
        orders_paid: 0,
        orders_cancelled: 0,
        tickets_sold: 0,
        tickets_paid: 0,
        tickets_cancelled: 0,
        revenue_in_cents: 0,
        ..truth.clone()
    }
}

fn event_sales(facts: &Facts) -> (String, Vec<String>) {
    let mut violations = Vec::new();
    let truth: BTreeMap<Uuid, &TicketTypeSales> = facts
        .shards
        .iter()
        .flat_map(|s| s.stock.iter().filter(|s| s.readable).map(|s| (s.sales.ticket_type_id.0, &s.sales)))
        .collect();
    let seen: BTreeMap<Uuid, &TicketTypeSales> =
        facts.read_models.sales.iter().map(|p| (p.ticket_type_id.0, p)).collect();
    for (tt, want) in &truth {
        let got = seen.get(tt).map_or_else(|| unsold(want), |s| (*s).clone());
        if &&got != want {
            violations.push(format!("ticket type {tt}: event_sales says {got:?}, the shard says {want:?}"));
        }
    }
    for tt in seen.keys().filter(|tt| !truth.contains_key(*tt)) {
        violations.push(format!("event_sales has ticket type {tt}, which no shard serves"));
    }
    (format!("{} ticket types: event_sales equals the shards' recount", truth.len()), violations)
}

fn order_projection(facts: &Facts) -> (String, Vec<String>) {
    let mut violations = Vec::new();
    let served = served_orders(facts);
    let rm = &facts.read_models;
    for (id, (_, order)) in &served {
        let (status, version) = (&order.status, order.version);
        match rm.orders.get(id) {
            Some((s, v)) if s == status && *v == version => {}
            Some((s, v)) => {
                violations.push(format!("customer_orders: order {id} is {s} v{v}, the shard says {status} v{version}"));
            }
            None => violations.push(format!("customer_orders: order {id} ({status} v{version}) is missing")),
        }
        match rm.timelines.get(id) {
            Some((versions, names)) if complete_history(status, version, versions, names) => {}
            Some((versions, names)) => violations.push(format!(
                "order_timeline: order {id} lists versions {versions:?} {names:?}; want 1..={version} ending in {}",
                last_event(status)
            )),
            None => violations.push(format!("order_timeline: order {id} has no events")),
        }
    }
    for id in rm.orders.keys().filter(|id| !served.contains_key(*id)) {
        violations.push(format!("customer_orders has order {id}, which no shard serves"));
    }
    for id in rm.timelines.keys().filter(|id| !served.contains_key(*id)) {
        violations.push(format!("order_timeline has order {id}, which no shard serves"));
    }
    let events: usize = rm.timelines.values().map(|(v, _)| v.len()).sum();
    (
        format!(
            "{} orders: customer_orders has each with its status and version; order_timeline {events} events",
            served.len()
        ),
        violations,
    )
}

fn ownership(facts: &Facts) -> (String, Vec<String>) {
    let mut violations = Vec::new();
    let in_move = |region: &str, partition: i16| facts.moves.iter().find(|m| m.covers(region, partition));
    // (region, partition) → [(shard, state)]
    let mut words: BTreeMap<(&str, i16), Vec<(&str, &str)>> = BTreeMap::new();
    for shard in &facts.shards {
        for o in &shard.owners {
            words.entry((o.region.as_str(), o.partition)).or_default().push((shard.name.as_str(), o.state.as_str()));
        }
    }
    let serving = |state: &str| state == "OWNED" || state == "FROZEN";
    for ((region, partition), shard) in &facts.placement {
        let said = words.get(&(region.as_str(), *partition)).and_then(|w| w.iter().find(|(s, _)| s == shard));
        match said {
            Some((_, "OWNED")) => {}
            Some((_, "FROZEN")) if in_move(region, *partition).is_some() => {}
            Some((_, state)) => violations.push(format!(
                "{region}/{partition}: the live map names {shard}, which says {state}{}",
                if *state == "FROZEN" { " with no move in progress" } else { "" }
            )),
            None => violations.push(format!(
                "{region}/{partition}: the live map names {shard}, which has no word on it{}",
                if facts.shards.iter().any(|s| &s.name == shard) { "" } else { " (not in shards.toml)" }
            )),
        }
    }
    let placed_regions: BTreeSet<&str> = facts.placement.keys().map(|(r, _)| r.as_str()).collect();
    for ((region, partition), said) in &words {
        let owners: Vec<&str> = said.iter().filter(|(_, st)| serving(st)).map(|(s, _)| *s).collect();
        if owners.len() > 1 {
            violations.push(format!("{region}/{partition}: served by {} shards: {}", owners.len(), owners.join(", ")));
        }
        let placed = facts.placement.get(&((*region).to_owned(), *partition));
        for owner in owners {
            if placed_regions.contains(region) && placed.map(String::as_str) != Some(owner) {
                violations.push(format!(
                    "{region}/{partition}: {owner} serves it, but the live map names {}",
                    placed.map_or("no shard", String::as_str)
                ));
            }
        }
    }
    let mut in_transit = 0;
    for shard in &facts.shards {
        let state: BTreeMap<(&str, i16), &str> =
            shard.owners.iter().map(|o| ((o.region.as_str(), o.partition), o.state.as_str())).collect();
        for r in &shard.rows {
            let st = state.get(&(r.region.as_str(), r.partition)).copied();
            let moving = in_move(&r.region, r.partition);
            match st {
                Some(s) if serving(s) => {}
                Some("INCOMING") if moving.is_some_and(|m| m.dest == shard.name) => in_transit += r.rows,
                Some("MOVED") if moving.is_some_and(|m| m.source == shard.name) => in_transit += r.rows,
                _ => violations.push(format!(
                    "{}: holds {} {} rows of {}/{}, which it does not serve ({})",
                    shard.name,
                    r.rows,
                    r.table_name,
                    r.region,
                    r.partition,
                    st.map_or_else(|| "no owner row".to_owned(), |s| format!("{s}, no move in progress"))
                )),
            }
        }
        for o in &shard.orders {
            let carried = shard_router::ids::placement(o.id);
            let fits = carried.as_ref().is_ok_and(|p| {
                p.partition.as_i16() == o.partition && p.region_tag == shard_router::ids::region_tag(&o.region)
            });
            if !fits {
                violations.push(format!(
                    "{}: order {} is filed under {}/{}, but its id says {carried:?}",
                    shard.name, o.id, o.region, o.partition
                ));
            }
        }
    }
    let orders: usize = facts.shards.iter().map(|s| s.orders.len()).sum();
    (
        format!(
            "{} placed partitions, {} ownership rows, {orders} order rows: each partition served by the shard the live \
             map names and no other; {in_transit} rows elsewhere, all in a move in progress; every order id carries \
             its row's region and partition",
            facts.placement.len(),
            facts.shards.iter().map(|s| s.owners.len()).sum::<usize>()
        ),
        violations,
    )
}

#[cfg(test)]
mod tests;

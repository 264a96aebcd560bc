//! The setup phase: organizers, customers (signup + login through the gateway) and events with
//! ticket types in each region, all named after the run so runs never collide.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use chrono::{Duration as Days, Utc};
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};
use shard_router::Router;

use crate::client::{Gql, ops};

/// The most ticket types the orders service accepts on one event.
pub const MAX_TICKET_TYPES_PER_EVENT: usize = 50;
pub const PASSWORD: &str = "loadtest password, not a secret";

/// An event the run created, with where it lives.
#[derive(Debug, Clone)]
pub struct EventFixture {
    pub id: String,
    pub region: Arc<str>,
    pub shard: Arc<str>,
    pub ticket_types: Vec<String>,
}

/// What the scenarios work on.
#[derive(Debug, Clone, Default)]
pub struct Fixture {
    /// Access tokens of customers.
    pub customers: Vec<String>,
    /// Events per region, in creation order.
    pub events: BTreeMap<String, Vec<EventFixture>>,
}

impl Fixture {
    /// Every ticket type of `region` with its event.
    pub fn ticket_types(&self, region: &str) -> Vec<(EventFixture, String)> {
        self.events
            .get(region)
            .into_iter()
            .flatten()
            .flat_map(|e| e.ticket_types.iter().map(move |t| (e.clone(), t.clone())))
            .collect()
    }
}

/// A unique tag for this run's names.
pub fn run_tag() -> String {
    format!("lt{}", Utc::now().format("%Y%m%d%H%M%S%3f"))
}

/// The address of the run's `i`-th user with `role`.
pub fn email(tag: &str, role: &str, i: usize) -> String {
    format!("{tag}-{}-{i}@loadtest.example.org", role.to_ascii_lowercase())
}

/// Signs `n` users up with `role` and logs each in; returns their tokens.
pub async fn users(gql: &Gql, tag: &str, role: &str, n: usize, parallel: usize) -> anyhow::Result<Vec<String>> {
    futures::stream::iter(0..n)
        .map(|i| async move {
            let email = email(tag, role, i);
            let signup = json!({"input": {"email": email, "name": format!("Load {role} {i}"), "password": PASSWORD, "role": role}});
            gql.must("signup", ops::SIGNUP, signup, None).await?;
            let login = json!({"input": {"email": email, "password": PASSWORD}});
            let data = gql.must("login", ops::LOGIN, login, None).await?;
            data.pointer("/login/accessToken")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .context("login answered no accessToken")
        })
        .buffered(parallel.max(1))
        .try_collect()
        .await
}

/// How `ticket_types` ticket types spread over `events` events: each event gets its share,
/// none more than the per-event maximum, and extra events are added when they would not fit.
pub fn spread(ticket_types: usize, events: usize) -> Vec<usize> {
    let events = events.max(ticket_types.div_ceil(MAX_TICKET_TYPES_PER_EVENT)).max(1);
    (0..events).map(|i| ticket_types / events + usize::from(i < ticket_types % events)).map(|n| n.max(1)).collect()
}

/// Creates events in `region` with the given ticket type counts and `stock` tickets each.
pub async fn events(
    gql: &Gql,
    router: &Router,
    organizer: &str,
    tag: &str,
    region: &str,
    ticket_types: &[usize],
    stock: u32,
) -> anyhow::Result<Vec<EventFixture>> {
    let mut out = Vec::new();
    for (i, n) in ticket_types.iter().enumerate() {
        let starts = Utc::now() + Days::days(30 + i as i64);
        let types: Vec<Value> = (0..*n)
            .map(|t| json!({"name": format!("Tier {t}"), "priceInCents": 5000 + t as i64, "totalQuantity": stock}))
            .collect();
        let input = json!({"input": {
            "region": region,
            "title": format!("{tag} {region} event {i}"),
            "description": "created by loadtest",
            "venue": "Load Hall",
            "startsAt": starts.to_rfc3339(),
            "endsAt": (starts + Days::hours(3)).to_rfc3339(),
            "ticketTypes": types,
        }});
        let data = gql.must("createEvent", ops::CREATE_EVENT, input, Some(organizer)).await?;
        let id = data.pointer("/createEvent/eventId").and_then(Value::as_str).context("createEvent gave no eventId")?;
        let route = router.route_str(id).with_context(|| format!("routing event {id}"))?.1;
        let read = gql.must("event", &ops::event(id), json!({}), Some(organizer)).await?;
        let ticket_types: Vec<String> = read
            .pointer("/event/ticketTypes")
            .and_then(Value::as_array)
            .context("event(id) gave no ticketTypes")?
            .iter()
            .filter_map(|t| t.get("id").and_then(Value::as_str).map(str::to_owned))
            .collect();
        anyhow::ensure!(ticket_types.len() == *n, "event {id} has {} ticket types, not {n}", ticket_types.len());
        out.push(EventFixture {
            id: id.to_owned(),
            region: route.region.as_str().into(),
            shard: route.shard.as_str().into(),
            ticket_types,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_types_spread_over_events() {
        assert_eq!(spread(50, 5), [10, 10, 10, 10, 10]);
        assert_eq!(spread(7, 3), [3, 2, 2]);
        assert_eq!(spread(120, 1), [40, 40, 40]);
        assert_eq!(spread(1, 1), [1]);
        assert_eq!(spread(2, 4), [1, 1, 1, 1]);
        assert!(spread(500, 2).iter().all(|n| *n <= MAX_TICKET_TYPES_PER_EVENT));
    }
}

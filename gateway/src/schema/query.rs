//! The queries, in the order the SDL lists them (`gateway/schema.graphql` follows this file).

use async_graphql::{Context, ID, Object, Result};
use platform::contract;
use serde_json::Value;

use super::args::{cursor_arg, page_size, uuid_id};
use super::types::{CustomerOrders, Event, EventSales, Order, OrderTimeline, Page, Region, RegionInfo, Role, User};
use super::{DEFAULT_FIRST, MAX_FIRST, decode, gateway, get, scope};
use crate::cache::Kind;
use crate::downstream::Service;
use crate::error::GatewayError;

pub struct Query;

#[Object]
impl Query {
    /// The signed-in user (UNAUTHENTICATED without a valid token).
    async fn me(&self, ctx: &Context<'_>) -> Result<User> {
        Ok(scope(ctx)?.current_user().await?)
    }

    /// The regions of the shard map and the shards serving each.
    async fn regions(&self, ctx: &Context<'_>) -> Result<Vec<RegionInfo>> {
        Ok(gateway(ctx)?.regions.clone())
    }

    /// Events ordered by start time: one region's, or every region's when `region` is
    /// omitted; optionally one organizer's. Cached per page; `after` takes an event's `cursor`.
    #[graphql(complexity = "(first.unwrap_or(DEFAULT_FIRST).clamp(1, MAX_FIRST) as usize) * child_complexity")]
    async fn events(
        &self,
        ctx: &Context<'_>,
        region: Option<Region>,
        organizer_id: Option<ID>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> Result<Vec<Event>> {
        let (gw, scope) = (gateway(ctx)?, scope(ctx)?);
        let region = region.map(|r| gw.region("region", &r)).transpose()?;
        let organizer = organizer_id.map(|o| uuid_id("organizerId", &o)).transpose()?;
        let first = page_size(first)?;
        let after = cursor_arg(after.as_deref())?;

        let covered: Vec<&str> = match &region {
            Some(r) => vec![r.as_str()],
            None => gw.regions.iter().map(|r| r.name.0.as_str()).collect(),
        };
        let key = gw
            .cache
            .page_key(
                region.as_deref().unwrap_or("*"),
                &covered,
                organizer.as_deref(),
                first,
                after,
                &scope.caller.tally,
            )
            .await;
        if let Some(key) = &key
            && let Some(json) = gw.cache.get(Kind::Events, key, &scope.caller.tally).await
            && let Ok(page) = serde_json::from_str::<Page<Event>>(&json)
        {
            return Ok(page.items);
        }

        // Every part is validated above to a URL-safe alphabet, so no encoding is needed.
        let mut path = format!("/api/v1/events?limit={first}");
        if let Some(r) = &region {
            path.push_str(&format!("&region={r}"));
        }
        if let Some(o) = &organizer {
            path.push_str(&format!("&organizerId={o}"));
        }
        if let Some(a) = after {
            path.push_str(&format!("&cursor={a}"));
        }
        let json: Value = gw.downstream.get(Service::Orders, "GET /api/v1/events", &path, &scope.caller).await?;
        let page: Page<Event> = decode("orders GET /api/v1/events: unexpected body", &json)?;
        if let Some(key) = key {
            gw.cache.put(&key, &json.to_string()).await;
        }
        Ok(page.items)
    }

    /// One event with its ticket types and their remaining stock (cached; fresh after any
    /// order placed through the gateway).
    async fn event(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Event>> {
        let scope = scope(ctx)?;
        match scope.event(&id).await? {
            Some(event) => Ok(Some(event)),
            None => Err(GatewayError::NotFound(format!("no event with id {}", id.as_str())).into()),
        }
    }

    /// One order, to its customer or an ADMIN.
    async fn order(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Order>> {
        let (gw, scope) = (gateway(ctx)?, scope(ctx)?);
        let id = uuid_id("id", &id)?;
        let path = format!("/api/v1/orders/{id}");
        let order: contract::Order =
            gw.downstream.get(Service::Orders, "GET /api/v1/orders/{id}", &path, &scope.caller).await?;
        Ok(Some(order.into()))
    }

    /// A customer's orders in every region, newest first: the customer themself or an ADMIN,
    /// else FORBIDDEN. `after` takes an order's `cursor`.
    #[graphql(complexity = "(first.unwrap_or(DEFAULT_FIRST).clamp(1, MAX_FIRST) as usize) * child_complexity")]
    async fn orders_by_customer(
        &self,
        ctx: &Context<'_>,
        customer_id: ID,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> Result<Vec<Order>> {
        let customer = uuid_id("customerId", &customer_id)?;
        let first = page_size(first)?;
        let after = cursor_arg(after.as_deref())?;
        let me = scope(ctx)?.current_user().await?;
        let (route, mut path) = if me.id.as_str().eq_ignore_ascii_case(&customer) {
            ("GET /api/v1/customers/me/orders", "/api/v1/customers/me/orders".to_owned())
        } else if me.role == Role::Admin {
            ("GET /api/v1/customers/{id}/orders", format!("/api/v1/customers/{customer}/orders"))
        } else {
            return Err(
                GatewayError::Forbidden("only the customer themself or an ADMIN may list their orders".into()).into()
            );
        };
        path.push_str(&format!("?limit={first}"));
        if let Some(a) = after {
            path.push_str(&format!("&cursor={a}"));
        }
        let page: Page<contract::Order> = get(ctx, Service::Orders, route, &path).await?;
        Ok(page.items.into_iter().map(Order::from).collect())
    }

    /// An event's sales per ticket type from the read model (its organizer or an ADMIN).
    /// Eventually consistent: `asOf` says how fresh it is.
    async fn event_sales(&self, ctx: &Context<'_>, event_id: ID) -> Result<EventSales> {
        let path = format!("/api/v1/read/events/{}/sales", uuid_id("eventId", &event_id)?);
        get(ctx, Service::Projector, "GET /api/v1/read/events/{id}/sales", &path).await
    }

    /// A customer's orders from the read model, newest first (the customer or an ADMIN).
    /// `after` takes the previous page's `nextCursor`.
    #[graphql(complexity = "(first.unwrap_or(DEFAULT_FIRST).clamp(1, MAX_FIRST) as usize) * child_complexity")]
    async fn customer_orders(
        &self,
        ctx: &Context<'_>,
        customer_id: ID,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> Result<CustomerOrders> {
        let customer = uuid_id("customerId", &customer_id)?;
        let first = page_size(first)?;
        let mut path = format!("/api/v1/read/customers/{customer}/orders?first={first}");
        if let Some(a) = cursor_arg(after.as_deref())? {
            path.push_str(&format!("&after={a}"));
        }
        get(ctx, Service::Projector, "GET /api/v1/read/customers/{id}/orders", &path).await
    }

    /// An order's events in version order, with their source shard, outbox id and
    /// correlation id (the order's customer or an ADMIN).
    async fn order_timeline(&self, ctx: &Context<'_>, order_id: ID) -> Result<OrderTimeline> {
        let path = format!("/api/v1/read/orders/{}/timeline", uuid_id("orderId", &order_id)?);
        get(ctx, Service::Projector, "GET /api/v1/read/orders/{id}/timeline", &path).await
    }
}

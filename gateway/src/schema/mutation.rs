//! The mutations, in the order the SDL lists them (`gateway/schema.graphql` follows this file).

use async_graphql::{Context, ID, Object, Result};
use platform::code;
use serde_json::{Value, json};

use super::args::uuid_id;
use super::types::{
    CancelOrderPayload, CreateEventInput, CreateEventPayload, CreateOrderInput, CreateOrderPayload, LoginInput,
    LoginPayload, PayOrderPayload, Role, SignupInput, SignupPayload,
};
use super::{decode, gateway, post, scope};
use crate::downstream::{Keyed, Service};
use crate::error::GatewayError;

pub struct Mutation;

#[Object]
impl Mutation {
    /// A new account; `role` CUSTOMER (default) or ORGANIZER.
    async fn signup(&self, ctx: &Context<'_>, input: SignupInput) -> Result<SignupPayload> {
        let body = json!({
            "email": input.email, "name": input.name, "password": input.password,
            "role": input.role.map(Role::as_str),
        });
        post(ctx, Service::Accounts, "POST /api/v1/signup", "/api/v1/signup", &body).await
    }

    /// A token for `Authorization: Bearer …`.
    async fn login(&self, ctx: &Context<'_>, input: LoginInput) -> Result<LoginPayload> {
        let body = json!({ "email": input.email, "password": input.password });
        post(ctx, Service::Accounts, "POST /api/v1/login", "/api/v1/login", &body).await
    }

    /// An event in `input.region` (ORGANIZER or ADMIN). The request's idempotency key, if
    /// any, makes a retry answer the first result.
    async fn create_event(&self, ctx: &Context<'_>, input: CreateEventInput) -> Result<CreateEventPayload> {
        let (gw, scope) = (gateway(ctx)?, scope(ctx)?);
        let region = gw.region("region", &input.region)?;
        let body = serde_json::to_value(&input).map_err(|e| GatewayError::internal("createEvent body", e))?;
        let result: Result<Value, GatewayError> = gw
            .downstream
            .post(Service::Orders, "POST /api/v1/events", "/api/v1/events", &scope.caller, &body, Keyed::Yes)
            .await;
        // A new event appears in its region's pages (and in the all-regions ones). Unanswered
        // (timed out, cut), it may have been created all the same.
        if matches!(result, Ok(_) | Err(GatewayError::Unavailable { .. })) {
            gw.cache.invalidate(&[&region], &[]).await;
        }
        Ok(decode("orders create event: unexpected body", &result?)?)
    }

    /// An order (CUSTOMER) tagged with the event's region. The request's idempotency key, if
    /// any, makes a retry answer the first order instead of placing another.
    async fn create_order(&self, ctx: &Context<'_>, input: CreateOrderInput) -> Result<CreateOrderPayload> {
        let (gw, scope) = (gateway(ctx)?, scope(ctx)?);
        let region = gw.region("region", &input.region)?;
        let event_id = uuid_id("eventId", &input.event_id)?;
        uuid_id("ticketTypeId", &input.ticket_type_id)?;
        let body = serde_json::to_value(&input).map_err(|e| GatewayError::internal("createOrder body", e))?;
        let result: Result<Value, GatewayError> = gw
            .downstream
            .post(Service::Orders, "POST /api/v1/orders", "/api/v1/orders", &scope.caller, &body, Keyed::Yes)
            .await;
        match &result {
            // Stock changed: the event and every page showing it. A stock conflict means what we
            // may have cached disagrees with the database, so it is dropped too.
            // Unanswered (timed out, cut): the order may have been placed all the same.
            Ok(_)
            | Err(GatewayError::Conflict { code: code::SOLD_OUT | code::INSUFFICIENT_STOCK, .. })
            | Err(GatewayError::Unavailable { .. }) => {
                gw.cache.invalidate(&[&region], &[&event_id]).await;
            }
            Err(_) => {}
        }
        Ok(decode("orders create order: unexpected body", &result?)?)
    }

    /// Pays a PENDING order (its customer); paying a PAID one answers the same again, a
    /// cancelled one is `ORDER_CANCELLED`, an expired one `RESERVATION_EXPIRED`. A payment
    /// leaves the stock as it is, so no cached value is touched; an expiry returns tickets the
    /// cached event shows as taken until its TTL, as the sweeper's cancels do.
    async fn pay_order(&self, ctx: &Context<'_>, id: ID) -> Result<PayOrderPayload> {
        let path = format!("/api/v1/orders/{}/pay", uuid_id("id", &id)?);
        post(ctx, Service::Orders, "POST /api/v1/orders/{id}/pay", &path, &json!({})).await
    }

    /// Cancels a PENDING order (its customer): its tickets go back on sale. Cancelling again
    /// answers the same; a PAID order is `ORDER_PAID`. The event's cached copy is dropped.
    async fn cancel_order(&self, ctx: &Context<'_>, id: ID) -> Result<CancelOrderPayload> {
        let path = format!("/api/v1/orders/{}/cancel", uuid_id("id", &id)?);
        let payload: CancelOrderPayload =
            post(ctx, Service::Orders, "POST /api/v1/orders/{id}/cancel", &path, &json!({})).await?;
        gateway(ctx)?.cache.invalidate(&[payload.region.as_str()], &[&payload.event_id.to_string()]).await;
        Ok(payload)
    }
}

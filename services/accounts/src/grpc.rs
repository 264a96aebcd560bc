//! gRPC for other services: `accounts.v1.AccountsService/GetUserById`.

use std::time::Instant;

use platform::auth::Role;
use proto::accounts::v1::accounts_service_server::AccountsService;
use proto::accounts::v1::{GetUserByIdRequest, GetUserByIdResponse, UserRole};
use sqlx::PgPool;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::domain::UserId;
use crate::repo;

#[derive(Debug, Clone)]
pub struct Accounts {
    pub db: PgPool,
}

fn proto_role(role: Role) -> UserRole {
    match role {
        Role::Customer => UserRole::Customer,
        Role::Organizer => UserRole::Organizer,
        Role::Admin => UserRole::Admin,
    }
}

/// Records the call's outcome and latency, labelled by method and gRPC code.
fn observe(method: &'static str, started: Instant, result: &Result<Response<GetUserByIdResponse>, Status>) {
    let code = match result {
        Ok(_) => tonic::Code::Ok,
        Err(s) => s.code(),
    };
    let code = format!("{code:?}");
    metrics::counter!("grpc_requests_total", "method" => method, "code" => code).increment(1);
    metrics::histogram!("grpc_request_duration_seconds", "method" => method).record(started.elapsed().as_secs_f64());
}

#[tonic::async_trait]
impl AccountsService for Accounts {
    async fn get_user_by_id(&self, req: Request<GetUserByIdRequest>) -> Result<Response<GetUserByIdResponse>, Status> {
        let correlation = platform::correlation::grpc::from_request(&req);
        let span = tracing::info_span!(
            "grpc",
            otel.name = "accounts.v1.AccountsService/GetUserById",
            otel.kind = "server",
            rpc.system = "grpc",
            correlation_id = %correlation,
            method = "GetUserById",
        );
        // The caller's trace continues here (a malformed `traceparent` starts a new one).
        platform::trace_context::set_parent(&span, platform::trace_context::grpc::extract(&req));
        let started = Instant::now();
        let result: Result<Response<GetUserByIdResponse>, Status> = correlation
            .scope(
                async {
                    let id = UserId::parse(&req.into_inner().id)
                        .map_err(|m| Status::invalid_argument(format!("id: {m}")))?;
                    let user = repo::by_id(&self.db, id)
                        .await
                        .map_err(|e| Status::from(platform::error::ApiError::from(e)))?
                        .ok_or_else(|| Status::not_found(format!("no user with id {id}")))?;
                    tracing::debug!(user_id = %id, "user found");
                    Ok(Response::new(GetUserByIdResponse {
                        id: user.id.to_string(),
                        email: user.email,
                        name: user.name,
                        role: proto_role(user.role).into(),
                    }))
                }
                .instrument(span.clone()),
            )
            .await;
        span.in_scope(|| match &result {
            Ok(_) => tracing::info!(latency_ms = started.elapsed().as_secs_f64() * 1000.0, "GetUserById ok"),
            Err(s) => tracing::info!(code = ?s.code(), "GetUserById failed"),
        });
        observe("GetUserById", started, &result);
        result
    }
}

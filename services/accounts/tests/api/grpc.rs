//! GetUserById and health through real tonic clients.

use proto::accounts::v1::accounts_service_client::AccountsServiceClient;
use proto::accounts::v1::{GetUserByIdRequest, UserRole};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::helpers::spawn;

#[tokio::test]
async fn get_user_by_id_found_not_found_and_invalid() {
    let ctx = spawn().await;
    let id = ctx.user("grpc@example.org", Some("ORGANIZER")).await.id.to_string();
    let mut client = AccountsServiceClient::connect(format!("http://127.0.0.1:{}", ctx.grpc_port)).await.unwrap();

    let mut req = tonic::Request::new(GetUserByIdRequest { id: id.clone() });
    req.metadata_mut().insert("x-correlation-id", "grpc-test-1".parse().unwrap());
    let user = client.get_user_by_id(req).await.unwrap().into_inner();
    assert_eq!(
        (user.id.as_str(), user.email.as_str(), user.name.as_str()),
        (id.as_str(), "grpc@example.org", "Test User")
    );
    assert_eq!(user.role, i32::from(UserRole::Organizer));

    let missing = uuid::Uuid::now_v7().to_string();
    let err = client.get_user_by_id(GetUserByIdRequest { id: missing }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");

    for bad in ["", "not-a-uuid", "123"] {
        let err = client.get_user_by_id(GetUserByIdRequest { id: bad.into() }).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad}: {err}");
        assert!(err.message().starts_with("id:"), "{}", err.message());
    }
}

#[tokio::test]
async fn standard_health_service_reports_serving() {
    let ctx = spawn().await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{}", ctx.grpc_port))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    for service in ["", "accounts.v1.AccountsService"] {
        let res = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(res.status, ServingStatus::Serving as i32, "service {service:?}");
    }
}

//! The process shell: ops endpoints, GraphiQL, the binary, and the published schema file.

use super::helpers::stack;

#[tokio::test]
async fn serves_ops_endpoints_graphiql_and_names_a_down_downstream() {
    let mut s = stack().await;
    // Redis is not a readiness dependency: the gateway serves without it.
    s.gateway().assert_ops_endpoints(&["accounts", "orders"]).await;
    let res = s.gateway().get("/graphql").await;
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().to_lowercase().contains("graphiql"));

    s.orders.shut_down().await.unwrap();
    s.gateway().assert_not_ready_because("orders").await;
}

#[tokio::test]
async fn binary_logs_json_and_stops_on_sigterm() {
    testkit::process::assert_binary_serves_and_stops(
        env!("CARGO_BIN_EXE_gateway"),
        &[("TICKET_HUB_GATEWAY__HTTP_ADDR", "127.0.0.1:0")],
    )
    .await;
}

/// `gateway/schema.graphql` is what clients (and the load-test tool) read; it must be the
/// schema the code serves. `UPDATE_SCHEMA=1` rewrites it.
#[test]
fn the_published_schema_file_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema.graphql");
    testkit::published::assert_current(&path, &gateway::schema::sdl(), "UPDATE_SCHEMA");
}

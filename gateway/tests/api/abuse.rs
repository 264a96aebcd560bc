//! Requests an attacker sends to the gateway, each refused before it costs anything: a clear
//! GraphQL error, and the gateway answering others as before.

use std::time::Duration;

use serde_json::json;
use tokio::net::TcpListener;

use super::helpers::{code, data, stack, stack_with};

/// `levels` fragments, each spreading the next twice: 2^levels fields in about 40 bytes a level.
fn fragment_bomb(levels: usize) -> String {
    let mut q = String::from("query { ...F0 }\n");
    for i in 0..levels {
        q.push_str(&format!("fragment F{i} on Query {{ ...F{n} ...F{n} }}\n", n = i + 1));
    }
    q + &format!("fragment F{levels} on Query {{ regions {{ name }} }}\n")
}

#[tokio::test]
async fn an_exponential_fragment_document_is_refused_before_it_is_expanded() {
    let s = stack().await;
    // 2^30 selections of `regions`: before the limit, minutes of a worker thread and gigabytes.
    let bomb = fragment_bomb(30);
    assert!(bomb.len() < 1300, "{} bytes", bomb.len());
    let res = s.gql(None, &bomb, json!({})).await;
    assert_eq!(code(&res), Some("BAD_USER_INPUT"), "{res}");
    let message = res["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("too complex") && message.contains("fragments are expanded"), "{message}");
    assert_eq!(res["data"], serde_json::Value::Null, "{res}");
    // Fragments that spread each other, which the engine's walks would follow forever.
    let res = s.gql(None, "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }", json!({})).await;
    assert_eq!(code(&res), Some("BAD_USER_INPUT"), "{res}");
    assert!(res["errors"][0]["message"].as_str().unwrap().contains("spreads itself"), "{res}");
    // The gateway goes on answering, fragments and all.
    let res = s.gql(None, &fragment_bomb(3), json!({})).await;
    assert_eq!(data(&res)["regions"][0]["name"], "NA", "{res}");
    let res = s.gql(None, "{ regions { name } }", json!({})).await;
    assert!(data(&res)["regions"].as_array().is_some_and(|r| !r.is_empty()), "{res}");
}

#[tokio::test]
async fn hundreds_of_aliased_logins_are_refused_before_any_runs() {
    let s = stack().await;
    let logins = |n: usize| {
        let fields = (0..n)
            .map(|i| {
                format!(
                    "l{i}: login(input: {{email: \"u{i}@example.org\", password: \"guess 123\"}}) {{ accessToken }}\n"
                )
            })
            .collect::<String>();
        format!("mutation {{\n{fields}}}")
    };
    let res = s.gql(None, &logins(300), json!({})).await;
    assert_eq!(code(&res), Some("BAD_USER_INPUT"), "{res}");
    let message = res["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("at most 5 mutation fields") && message.contains("has 300"), "{message}");
    assert_eq!(res["extensions"]["downstreamCalls"]["accounts"], 0, "no login may have run: {res}");
    // Within the limit they run, each answered for itself.
    let res = s.gql(None, &logins(5), json!({})).await;
    assert_eq!(res["errors"].as_array().map(Vec::len), Some(5), "{res}");
    assert_eq!(code(&res), Some("UNAUTHENTICATED"), "{res}");
    assert_eq!(res["extensions"]["downstreamCalls"]["accounts"], 5, "{res}");
}

#[tokio::test]
async fn a_nul_in_a_text_field_is_bad_user_input_naming_the_field() {
    let s = stack().await;
    let signup = "mutation($input: SignupInput!) { signup(input: $input) { userId } }";
    for (field, input) in [
        ("name", json!({"email": "ann@example.org", "name": "Ann\u{0}", "password": "password 123"})),
        ("email", json!({"email": "ann\u{0}@example.org", "name": "Ann", "password": "password 123"})),
    ] {
        let res = s.gql(None, signup, json!({ "input": input })).await;
        assert_eq!(code(&res), Some("BAD_USER_INPUT"), "{res}");
        let error = &res["errors"][0];
        assert_eq!(error["extensions"]["details"]["fields"][0]["field"], field, "{res}");
        assert!(error["message"].as_str().unwrap().contains("control characters"), "{res}");
    }
    let organizer = s.user("ORGANIZER").await;
    let input = json!({"region": "NA", "title": "Indie\u{0}Night", "venue": "V", "startsAt": "2027-01-20T20:00:00Z",
        "endsAt": "2027-01-20T23:00:00Z", "ticketTypes": [{"name": "GA", "priceInCents": 100, "totalQuantity": 1}]});
    let res = s.gql(Some(&organizer.token), super::helpers::CREATE_EVENT, json!({ "input": input })).await;
    assert_eq!(code(&res), Some("BAD_USER_INPUT"), "{res}");
    assert_eq!(res["errors"][0]["extensions"]["details"]["fields"][0]["field"], "title", "{res}");
}

#[tokio::test]
async fn a_request_over_its_time_is_unavailable_and_dropped() {
    // accounts behind an address that accepts connections and never answers: two logins, one
    // after the other, would take two downstream timeouts; the request's own bound ends it.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((conn, _)) = silent.accept().await {
            open.push(conn);
        }
    });
    let s = stack_with(|g| {
        g.accounts_url = silent_url;
        g.downstream_timeout = Duration::from_millis(400);
        g.request_timeout = Duration::from_millis(600);
    })
    .await;
    let login =
        |i: usize| format!("l{i}: login(input: {{email: \"u{i}@example.org\", password: \"x\"}}) {{ accessToken }}");
    let res = s.gql(None, &format!("mutation {{ {} {} }}", login(0), login(1)), json!({})).await;
    assert_eq!(code(&res), Some("UNAVAILABLE"), "{res}");
    let message = res["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("did not finish within 600 ms"), "{message}");
    assert_eq!(res["errors"][0]["extensions"]["retryAfter"], 1, "{res}");
    held.abort();
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods_are_json_errors() {
    let s = stack().await;
    let res = s.gateway().get("/nope").await;
    assert_eq!(res.status(), 404);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"], "NOT_FOUND", "{body}");
    let res = s.gateway().client.put(s.gateway().url("/graphql")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"], "METHOD_NOT_ALLOWED", "{body}");
}

/// The introspection query GraphiQL, codegen and schemathesis send (graphql-js's
/// `getIntrospectionQuery`): `ofType` nested seven times under `type`, 13 levels in all.
const INTROSPECTION: &str = "query IntrospectionQuery { __schema { queryType { name } mutationType { name } \
    types { ...FullType } directives { name locations args { ...InputValue } } } }
    fragment FullType on __Type { kind name description fields(includeDeprecated: true) { name args { ...InputValue } \
    type { ...TypeRef } isDeprecated deprecationReason } inputFields { ...InputValue } interfaces { ...TypeRef } \
    enumValues(includeDeprecated: true) { name isDeprecated } possibleTypes { ...TypeRef } }
    fragment InputValue on __InputValue { name type { ...TypeRef } defaultValue }
    fragment TypeRef on __Type { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name \
    ofType { kind name ofType { kind name ofType { kind name } } } } } } } }";

#[tokio::test]
async fn the_standard_introspection_query_answers_while_data_stays_depth_limited() {
    let s = stack().await;
    // Found by `./dev fuzz`: the depth limit refused it, so no tool could load the schema.
    let res = s.gql(None, INTROSPECTION, json!({})).await;
    assert_eq!(data(&res)["__schema"]["queryType"]["name"], "Query", "{res}");
    // Beside a data field, the same depth is refused as before.
    let mixed = INTROSPECTION.replacen("__schema {", "regions { name } __schema {", 1);
    let res = s.gql(None, &mixed, json!({})).await;
    assert_eq!(code(&res), Some("BAD_USER_INPUT"), "{res}");
    assert!(res["errors"][0]["message"].as_str().unwrap().contains("nested too deep"), "{res}");
}

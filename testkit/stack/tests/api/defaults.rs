//! Every service's compiled-in defaults (`defaults/<service>.toml`, see
//! `platform::defaults_from!`) parse, pass the service's own `validate()`, and agree with the
//! constants other code relies on, checked in one place for all of them.

use platform::auth::TokenPolicy;
use platform::events::{ORDERS_DLQ_TOPIC, ORDERS_TOPIC};

#[test]
fn every_service_starts_from_valid_defaults() {
    accounts::Settings::default().validate().unwrap();
    orders::Settings::default().validate().unwrap();
    orders::relay::Settings::default().validate().unwrap();
    notifications::Settings::default().validate().unwrap();
    projector::Settings::default().validate().unwrap();
    gateway::Settings::default().validate().unwrap();
}

#[test]
fn the_defaults_name_the_project_topics_and_token_policy() {
    let topics = (ORDERS_TOPIC.to_owned(), ORDERS_DLQ_TOPIC.to_owned());
    let relay = orders::relay::Settings::default();
    let consumers = [notifications::Settings::default().consumer, projector::Settings::default().consumer];
    assert_eq!((relay.topic, relay.dlq_topic), topics);
    for c in consumers {
        assert_eq!((c.topic, c.dlq_topic), topics);
    }
    assert_eq!(notifications::Settings::default().consumer_name, notifications::CONSUMER_NAME);

    let policy = TokenPolicy::default();
    let issued = accounts::Settings::default().jwt.policy();
    let (orders, projector) = (orders::Settings::default(), projector::Settings::default());
    assert_eq!(issued, policy, "accounts issues what the verifiers expect");
    assert_eq!((orders.token_issuer, orders.token_audience), (policy.issuer.clone(), policy.audience.clone()));
    assert_eq!((projector.token_issuer, projector.token_audience), (policy.issuer, policy.audience));
}

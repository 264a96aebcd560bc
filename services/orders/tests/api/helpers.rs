//! The stack of these tests (a real accounts for tokens, orders on fresh shard databases, typed
//! requests) is [`test_stack::Stack`]; the names below keep the tests' own vocabulary.

pub use test_stack::event_body as event;
pub use testkit::app::error_fields as fields;

-- The W3C trace context of the transaction that wrote an outbox row.
--
-- The relay publishes later than the request, on a task of its own, so the request's trace
-- context cannot reach the Kafka record any other way: the order transaction writes its
-- `traceparent` here next to `correlation_id`, and the relay sends it on as the record's
-- `traceparent` header. Nullable: rows written without tracing (or before this migration) have
-- none, and their records simply start a trace of their own.
alter table outbox add column traceparent text;

-- One order, statement for statement as services/orders/src/orders.rs `place` runs it for a
-- keyed createOrder of one ticket: the shard's ownership fence (the first statement of every
-- shard write, services/orders/src/shard.rs), claim the idempotency key, take the stock with the
-- conditional update, insert the order, insert the OrderCreated outbox row (its trigger
-- notifies the relay), store the answer on the key, commit. Ids and hashes are derived from
-- the random :r server-side where the service binds values it computed in Rust.
--
-- Run by `loadtest --pgbench` (which also runs setup.sql first); by hand:
--   pgbench -n -M prepared -c 16 -j 2 -T 20 -D ticket_types=50 -f tools/pgbench/order.sql \
--     -h 127.0.0.1 -p 5441 -U postgres loadtest_pgbench
-- ticket_types=1 puts every order on one hot row; 50 spreads them like `loadtest orders`.
--
-- Two differences from the service, both in pgbench's favour, so the ratio stays a ceiling:
-- - pgbench cannot branch, so a stock update that finds no row (sold out) does not roll back
--   as the service's 409 does; setup.sql stocks 1,000,000 per tier so a run never sells out.
--   Re-run setup.sql (loadtest --pgbench does) before reusing the database.
-- - the service's work outside this transaction is not here: the cross-shard idempotency
--   look-up (one select on every other shard), the customer check over gRPC, the Redis lock.

\set tt random(1, :ticket_types)
\set r random(1, 9223372036854775806)
BEGIN;
select fence_write('BENCH', 0::smallint);
insert into idempotency_keys (owner_id, operation, key, request_hash, status_code, response, partition)
  values (md5('c' || :client_id::text)::uuid, 'create_order', 'pgbench-' || :r::text,
          sha256(('h' || :r::text)::bytea), 0, '{}', 0)
  on conflict do nothing;
update ticket_types set remaining_quantity = remaining_quantity - 1
  where id = ('00000000-0000-4000-8000-' || lpad(:tt::text, 12, '0'))::uuid
    and event_id = '00000000-0000-4000-8000-000000000000' and remaining_quantity >= 1
  returning price_in_cents;
insert into orders (id, partition, region, customer_id, event_id, ticket_type_id, quantity, total_price_in_cents)
  values (md5('o' || :r::text)::uuid, 0, 'BENCH', md5('c' || :client_id::text)::uuid,
          '00000000-0000-4000-8000-000000000000',
          ('00000000-0000-4000-8000-' || lpad(:tt::text, 12, '0'))::uuid, 1, 5000);
insert into outbox (aggregate_id, partition, event_type, payload, correlation_id)
  values (md5('o' || :r::text)::uuid, 0, 'OrderCreated',
          jsonb_build_object('eventName', 'OrderCreated', 'orderId', md5('o' || :r::text)::uuid,
                             'customerId', md5('c' || :client_id::text)::uuid,
                             'eventId', '00000000-0000-4000-8000-000000000000',
                             'ticketTypeId', ('00000000-0000-4000-8000-' || lpad(:tt::text, 12, '0'))::uuid,
                             'quantity', 1, 'totalPriceInCents', 5000, 'occurredAt', now(), 'region', 'BENCH', 'version', 1),
          'pgbench-' || :r::text);
update idempotency_keys set status_code = 201,
       response = jsonb_build_object('orderId', md5('o' || :r::text)::uuid, 'totalPriceInCents', 5000, 'region', 'BENCH')
  where owner_id = md5('c' || :client_id::text)::uuid and operation = 'create_order' and key = 'pgbench-' || :r::text;
COMMIT;

-- Orders can be cancelled now (by their customer, or when the reservation expires): the
-- customer is told, like for the other two events.
alter table notifications drop constraint notifications_event_name_check;
alter table notifications add constraint notifications_event_name_check
    check (event_name in ('OrderCreated', 'OrderPaid', 'OrderCancelled'));

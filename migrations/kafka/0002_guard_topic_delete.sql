-- Tansu 0.6.0 deletes a topic with
--     delete from topic where topic.cluster in (select c.id ... where c.name = $1 and t.name = $2)
-- which matches every topic of the cluster: with the cascading foreign keys, deleting one topic
-- wipes all topics, partitions, watermarks and records (seen here as fetches failing with
-- RowCount and consumers losing their topics while another test cleaned up its own).
--
-- The delete path first removes the named topic's partitions in the same transaction, then runs
-- that statement. So a topic row may go only once it has no partition left; the rows of every
-- other topic are skipped, and the statement deletes exactly the topic that was named.
create function topic_delete_only_when_emptied() returns trigger
language plpgsql as $$
begin
    if exists (select 1 from topition where topition.topic = old.id) then
        return null;
    end if;
    return old;
end;
$$;

create trigger topic_delete_only_when_emptied
before delete on topic
for each row execute function topic_delete_only_when_emptied();

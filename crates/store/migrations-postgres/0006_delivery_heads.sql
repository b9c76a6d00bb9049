-- As migrations/0006_delivery_heads.sql: is_head = 1 on exactly one row per (sink, ticket_id)
-- queue, its oldest delivery still pending or sending, kept by the triggers below inside
-- the statement that enqueues, claims, delivers, fails, kills or requeues a delivery.
-- PostgreSQL runs a statement's AFTER ROW triggers once the statement's rows are all in;
-- each trigger below gives the same result whatever the order it sees them in.
ALTER TABLE deliveries ADD COLUMN is_head BIGINT NOT NULL DEFAULT 0;

CREATE INDEX deliveries_queue ON deliveries (sink, ticket_id, id) WHERE state IN ('pending', 'sending');
CREATE INDEX deliveries_heads ON deliveries (sink, next_attempt_at, id) WHERE state = 'pending' AND is_head = 1;

UPDATE deliveries SET is_head = 1
WHERE state IN ('pending', 'sending')
  AND id = (SELECT MIN(o.id) FROM deliveries o
            WHERE o.sink = deliveries.sink AND o.ticket_id = deliveries.ticket_id AND o.state IN ('pending', 'sending'));

-- A new undelivered row heads its queue when nothing older in it is undelivered (insert),
-- and a requeued row rejoins it the same way (rejoin).
CREATE FUNCTION deliveries_head_join() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE deliveries SET is_head = 0
    WHERE sink = NEW.sink AND ticket_id = NEW.ticket_id AND state IN ('pending', 'sending') AND id > NEW.id AND is_head = 1;
    UPDATE deliveries SET is_head = 1
    WHERE id = NEW.id
      AND NOT EXISTS (SELECT 1 FROM deliveries o
                      WHERE o.sink = NEW.sink AND o.ticket_id = NEW.ticket_id AND o.state IN ('pending', 'sending') AND o.id < NEW.id);
    RETURN NULL;
END;
$$;

-- Delivered, failed or dead: the row leaves its queue; the next undelivered row (if any)
-- becomes the head.
CREATE FUNCTION deliveries_head_leave() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE deliveries SET is_head = 0 WHERE id = NEW.id AND is_head = 1;
    UPDATE deliveries SET is_head = 1
    WHERE id = (SELECT o.id FROM deliveries o
                WHERE o.sink = NEW.sink AND o.ticket_id = NEW.ticket_id AND o.state IN ('pending', 'sending')
                ORDER BY o.id LIMIT 1)
      AND is_head = 0;
    RETURN NULL;
END;
$$;

CREATE TRIGGER deliveries_head_insert AFTER INSERT ON deliveries
FOR EACH ROW WHEN (NEW.state IN ('pending', 'sending'))
EXECUTE FUNCTION deliveries_head_join();

CREATE TRIGGER deliveries_head_leave AFTER UPDATE OF state ON deliveries
FOR EACH ROW WHEN (OLD.state IN ('pending', 'sending') AND NEW.state NOT IN ('pending', 'sending'))
EXECUTE FUNCTION deliveries_head_leave();

CREATE TRIGGER deliveries_head_rejoin AFTER UPDATE OF state ON deliveries
FOR EACH ROW WHEN (OLD.state NOT IN ('pending', 'sending') AND NEW.state IN ('pending', 'sending'))
EXECUTE FUNCTION deliveries_head_join();

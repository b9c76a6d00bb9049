-- The head of each (sink, ticket) queue is kept, not searched. A claim used to walk every
-- pending delivery and, for each, every earlier delivery of its ticket (delivered ones
-- included), then sort: 0.65 s per claim of 16 at 100 000 pending on a debug build, and
-- the cost grew with the backlog. Now:
--
--   is_head = 1  on exactly one row per (sink, ticket_id) queue: its oldest delivery still
--                pending or sending, i.e. the note that must land next on that ticket.
--
-- A claim reads the partial index deliveries_heads (due heads, in due order) and stops after
-- its batch: O(batch), whatever is pending or delivered. The flag is maintained by the
-- triggers below, inside the very statement (so the very transaction) that enqueues,
-- claims, delivers, fails, kills or requeues a delivery; no code path can forget it. Their
-- look-ups go through deliveries_queue, which holds only undelivered rows, so delivered
-- history is never walked. Additive: no existing column or view changes.
ALTER TABLE deliveries ADD COLUMN is_head INTEGER NOT NULL DEFAULT 0;

-- The undelivered rows of each queue, in queue order.
CREATE INDEX deliveries_queue ON deliveries (sink, ticket_id, id) WHERE state IN ('pending', 'sending');

-- Due heads per sink, in the order they are claimed.
CREATE INDEX deliveries_heads ON deliveries (sink, next_attempt_at, id) WHERE state = 'pending' AND is_head = 1;

-- Backfill: the oldest undelivered row of each existing queue.
UPDATE deliveries SET is_head = 1
WHERE state IN ('pending', 'sending')
  AND id = (SELECT MIN(o.id) FROM deliveries o
            WHERE o.sink = deliveries.sink AND o.ticket_id = deliveries.ticket_id AND o.state IN ('pending', 'sending'));

-- A new undelivered row heads its queue when nothing older in it is undelivered. (An older
-- head only loses its place to a row inserted with a lower id, which the outbox never does;
-- handled anyway so the invariant holds for any insert.)
CREATE TRIGGER deliveries_head_insert AFTER INSERT ON deliveries
WHEN NEW.state IN ('pending', 'sending')
BEGIN
    UPDATE deliveries SET is_head = 0
    WHERE sink = NEW.sink AND ticket_id = NEW.ticket_id AND state IN ('pending', 'sending') AND id > NEW.id AND is_head = 1;
    UPDATE deliveries SET is_head = 1
    WHERE id = NEW.id
      AND NOT EXISTS (SELECT 1 FROM deliveries o
                      WHERE o.sink = NEW.sink AND o.ticket_id = NEW.ticket_id AND o.state IN ('pending', 'sending') AND o.id < NEW.id);
END;

-- Delivered, failed or dead: the row leaves its queue; the next undelivered row (if any)
-- becomes the head. When the row was not the head, that next row already is (no change).
CREATE TRIGGER deliveries_head_leave AFTER UPDATE OF state ON deliveries
WHEN OLD.state IN ('pending', 'sending') AND NEW.state NOT IN ('pending', 'sending')
BEGIN
    UPDATE deliveries SET is_head = 0 WHERE id = NEW.id AND is_head = 1;
    UPDATE deliveries SET is_head = 1
    WHERE id = (SELECT o.id FROM deliveries o
                WHERE o.sink = NEW.sink AND o.ticket_id = NEW.ticket_id AND o.state IN ('pending', 'sending')
                ORDER BY o.id LIMIT 1)
      AND is_head = 0;
END;

-- Requeued (failed or dead back to pending): the row rejoins its queue, and heads it when
-- it is older than every undelivered row there (so notes still land in queue order).
CREATE TRIGGER deliveries_head_rejoin AFTER UPDATE OF state ON deliveries
WHEN OLD.state NOT IN ('pending', 'sending') AND NEW.state IN ('pending', 'sending')
BEGIN
    UPDATE deliveries SET is_head = 0
    WHERE sink = NEW.sink AND ticket_id = NEW.ticket_id AND state IN ('pending', 'sending') AND id > NEW.id AND is_head = 1;
    UPDATE deliveries SET is_head = 1
    WHERE id = NEW.id
      AND NOT EXISTS (SELECT 1 FROM deliveries o
                      WHERE o.sink = NEW.sink AND o.ticket_id = NEW.ticket_id AND o.state IN ('pending', 'sending') AND o.id < NEW.id);
END;

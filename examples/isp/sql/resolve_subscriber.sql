-- Resolution rule for plan_subscriptions.subscriber_id (see ../README.md).
--
-- Bind parameters: lo and hi, bounds of a keyset batch of plan_subscriptions.id
-- (no other colon-names here: SQLAlchemy's text() binds them even in comments).
-- For each subscription of the batch still without a subscriber, the
-- candidates are the customer's subscribers that are live (deleted_at IS
-- NULL) and active (status = 'active'):
--   candidates = 1  -> value is that subscriber            (resolved)
--   candidates > 1  -> value is the oldest one, by          (ambiguous: the
--                      created_at then id                   caller decides)
--   candidates = 0  -> value is NULL                        (unresolved)
--
-- Columns: key = plan_subscriptions.id, value = subscriber id or NULL,
-- candidates = number of candidates. Portable: runs unchanged on SQLite and
-- PostgreSQL; ix_subscribers_customer_id serves both subqueries.
SELECT ps.id AS "key",
       (SELECT s.id
          FROM subscribers s
         WHERE s.customer_id = ps.customer_id
           AND s.deleted_at IS NULL
           AND s.status = 'active'
         ORDER BY s.created_at, s.id
         LIMIT 1) AS "value",
       (SELECT COUNT(*)
          FROM subscribers s
         WHERE s.customer_id = ps.customer_id
           AND s.deleted_at IS NULL
           AND s.status = 'active') AS candidates
  FROM plan_subscriptions ps
 WHERE ps.subscriber_id IS NULL
   AND ps.id BETWEEN :lo AND :hi
 ORDER BY ps.id

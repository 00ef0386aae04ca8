-- rebound store, schema 7: a send whose message went out whole (the final "." of DATA
-- included) but got no answer — the end-of-DATA timeout ran out or the connection was
-- lost — may have been delivered. It is kept as state 'sent' (it counts against rate
-- limits and quotas, and a bounce can still be tied to it) with maybe_delivered = 1, and
-- is never sent again automatically.
ALTER TABLE sends ADD COLUMN maybe_delivered INTEGER NOT NULL DEFAULT 0;

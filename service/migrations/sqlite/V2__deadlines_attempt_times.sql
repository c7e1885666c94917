-- Money first: an order's `place_by` (0 when unknown: at once); every other kind waits on no
-- token and goes in the order it was asked.
ALTER TABLE actions ADD COLUMN deadline_ms INTEGER NOT NULL DEFAULT 9223372036854775807;
UPDATE actions SET deadline_ms = 0 WHERE kind = 'place_order' AND done = 0;
CREATE INDEX actions_by_deadline ON actions (deadline_ms) WHERE done = 0;
-- When the last attempt began, and until when it may still land at Klarna (the timeout plus
-- landing margin the process had then): no order is placed again before (a process killed
-- mid-call and started again, perhaps with other settings).
ALTER TABLE attempts ADD COLUMN last_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE attempts ADD COLUMN lands_by_ms INTEGER NOT NULL DEFAULT 0;
-- An attempt the previous version recorded has no time: it may have been in flight when that
-- version stopped. Two minutes from the upgrade (longer than any client's timeout) before it
-- is looked up and placed again (the wall clock in Unix milliseconds, as attempts are timed).
UPDATE attempts SET last_ms = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER),
    lands_by_ms = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) + 120000;
-- For the metrics: each session's status as its tracker last stored it (NULL until then), and
-- when each action was asked.
ALTER TABLE sessions ADD COLUMN status TEXT;
ALTER TABLE actions ADD COLUMN asked_ms INTEGER NOT NULL DEFAULT 0;

-- Claims without a lock held across a Klarna call: a claim is the owner's id in `claimed_by`,
-- taken over when that owner's liveness lock (pg_advisory_lock(717, owner)) is free, or when
-- its lease from `claimed_at_ms` (the database's clock) ran out.
ALTER TABLE sessions ADD COLUMN claimed_by INT;
ALTER TABLE sessions ADD COLUMN claimed_at_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE actions ADD COLUMN claimed_by INT;
ALTER TABLE actions ADD COLUMN claimed_at_ms BIGINT NOT NULL DEFAULT 0;
-- Money first: an order's `place_by` (0 when unknown: at once); every other kind waits on no
-- token and goes in the order it was asked.
ALTER TABLE actions ADD COLUMN deadline_ms BIGINT NOT NULL DEFAULT 9223372036854775807;
UPDATE actions SET deadline_ms = 0 WHERE kind = 'place_order' AND NOT done;
CREATE INDEX actions_by_deadline ON actions (deadline_ms, seq) WHERE NOT done;
-- When the last attempt began, and until when it may still land at Klarna (its process's
-- timeout plus landing margin, as that process had them), by the database's clock (every
-- process shares it): no order is placed again before.
ALTER TABLE attempts ADD COLUMN last_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE attempts ADD COLUMN lands_by_ms BIGINT NOT NULL DEFAULT 0;
-- An attempt the previous version recorded has no time: it may have been in flight when that
-- version stopped, so it may still land for a while. Two minutes from the upgrade (longer than
-- any client's timeout) before it is looked up and placed again.
UPDATE attempts SET last_ms = (extract(epoch FROM clock_timestamp()) * 1000)::bigint,
    lands_by_ms = (extract(epoch FROM clock_timestamp()) * 1000)::bigint + 120000;
-- One rate budget for every process: a GCRA per bucket (the theoretical arrival time, in
-- microseconds of the database's clock).
CREATE TABLE budget (
    bucket TEXT PRIMARY KEY,
    tat_us BIGINT NOT NULL DEFAULT 0
);
-- For the metrics: each session's status as its tracker last stored it (NULL until then), and
-- when each action was asked, on the database's clock.
ALTER TABLE sessions ADD COLUMN status TEXT;
ALTER TABLE actions ADD COLUMN asked_ms BIGINT NOT NULL DEFAULT 0;

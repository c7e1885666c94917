-- The schema as hpp-service created it before migrations were versioned (IF NOT EXISTS: a
-- database that service wrote takes this as already applied).
CREATE TABLE IF NOT EXISTS sessions (
    session_id         TEXT PRIMARY KEY,
    secret             TEXT NOT NULL,
    payment_session_id TEXT NOT NULL,
    tracker            TEXT NOT NULL,
    next_read_ms       BIGINT,
    urgency            INT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS sessions_due ON sessions (next_read_ms);
CREATE TABLE IF NOT EXISTS actions (
    seq           BIGSERIAL,
    action_id     TEXT PRIMARY KEY,
    session_id    TEXT NOT NULL,
    kind          TEXT NOT NULL,
    data          TEXT NOT NULL,
    done          BOOLEAN NOT NULL DEFAULT FALSE,
    outcome       TEXT,
    not_before_ms BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS actions_pending ON actions (seq) WHERE NOT done;
CREATE TABLE IF NOT EXISTS attempts (
    action_id TEXT PRIMARY KEY,
    count     INT NOT NULL
);
CREATE TABLE IF NOT EXISTS settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

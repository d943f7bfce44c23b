-- crondeck schema, version 2: operations integration (notifications).
--
-- Per-job notification threshold, and the notification log that is both the
-- cluster-wide deduplication point and the record of every send.

-- Failures in a row that send a "failure streak" notification for this job;
-- NULL uses the global `[notifications] failure_streak` of the node's config.
ALTER TABLE crondeck.jobs
    ADD COLUMN notify_failures integer CHECK (notify_failures >= 1);

-- One row per event per episode. `dedup_key` names the episode (for example
-- "failure_streak/42/2026-03-02T10:00:00Z": job 42's streak that began then),
-- so however many nodes see the same episode, only the one whose INSERT wins
-- sends it; the others get a conflict and do nothing.
CREATE TABLE crondeck.notifications (
    id           bigserial PRIMARY KEY,
    dedup_key    text NOT NULL UNIQUE,
    event        text NOT NULL CHECK (event IN
                     ('failure_streak', 'auto_paused', 'overdue', 'recovered', 'no_live_node')),
    job_id       bigint,          -- no foreign key: the record outlives the job
    job_name     text,
    message      text NOT NULL,   -- the one-line text sent (Slack `text`)
    payload      jsonb NOT NULL,  -- the event as sent to webhooks and commands
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   text NOT NULL,   -- node name, or "check@host" for `crondeck check`
    -- Problem events are open until the job recovers; "recovered" closes them.
    resolved_at  timestamptz,
    -- Delivery: 'pending' until every channel was tried, then 'sent' (all
    -- channels succeeded), 'failed' (none did) or 'partial'.
    status       text NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'sent', 'failed', 'partial', 'no_channel')),
    deliveries   jsonb NOT NULL DEFAULT '[]',  -- per channel: name, kind, ok, attempts, error
    sent_at      timestamptz
);

CREATE INDEX notifications_job_idx ON crondeck.notifications (job_id, id DESC);
CREATE INDEX notifications_open_idx ON crondeck.notifications (job_id)
    WHERE resolved_at IS NULL AND event <> 'recovered';

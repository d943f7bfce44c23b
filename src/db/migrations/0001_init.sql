-- crondeck schema, version 1.
--
-- The database enforces what must never be wrong (positive intervals, known
-- statuses, numbercall >= -1, unique non-empty names, one running run per job,
-- one run per scheduled tick); the Rust code enforces the rest before writing.

CREATE TABLE crondeck.nodes (
    id            text PRIMARY KEY,
    name          text NOT NULL CHECK (name <> ''),
    host          text NOT NULL,
    pid           integer NOT NULL,
    version       text NOT NULL,
    workers       integer NOT NULL CHECK (workers > 0),
    busy          integer NOT NULL DEFAULT 0 CHECK (busy >= 0),
    allow_shell   boolean NOT NULL DEFAULT false,
    lease_ms      bigint NOT NULL CHECK (lease_ms > 0),
    heartbeat_ms  bigint NOT NULL CHECK (heartbeat_ms > 0 AND heartbeat_ms < lease_ms),
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    stopped_at    timestamptz
);

CREATE TABLE crondeck.jobs (
    id                  bigserial PRIMARY KEY,
    name                text NOT NULL UNIQUE
                        CHECK (name <> '' AND name = btrim(name) AND name !~ '[[:cntrl:]]'),
    description         text NOT NULL DEFAULT '',

    -- schedule: every N unit | cron expression in a time zone | manual
    schedule_kind       text NOT NULL CHECK (schedule_kind IN ('every', 'cron', 'manual')),
    interval_count      integer CHECK (interval_count > 0),
    interval_unit       text CHECK (interval_unit IN ('seconds', 'minutes', 'hours', 'days', 'weeks', 'months')),
    cron_expr           text CHECK (cron_expr <> ''),
    cron_tz             text CHECK (cron_tz <> ''),
    CONSTRAINT jobs_schedule_shape CHECK (
        (schedule_kind = 'every'  AND interval_count IS NOT NULL AND interval_unit IS NOT NULL
                                  AND cron_expr IS NULL AND cron_tz IS NULL)
     OR (schedule_kind = 'cron'   AND cron_expr IS NOT NULL AND cron_tz IS NOT NULL
                                  AND interval_count IS NULL AND interval_unit IS NULL)
     OR (schedule_kind = 'manual' AND interval_count IS NULL AND interval_unit IS NULL
                                  AND cron_expr IS NULL AND cron_tz IS NULL)),
    catchup             text NOT NULL DEFAULT 'coalesce' CHECK (catchup IN ('coalesce', 'skip')),
    nextcall            timestamptz,
    CONSTRAINT jobs_nextcall_scheduled CHECK ((schedule_kind = 'manual') = (nextcall IS NULL)),
    numbercall          integer NOT NULL DEFAULT -1 CHECK (numbercall >= -1),
    priority            integer NOT NULL DEFAULT 5 CHECK (priority >= 0),

    active              boolean NOT NULL DEFAULT true,
    paused_at           timestamptz,
    paused_by           text,
    paused_reason       text,
    paused_until        timestamptz,
    CONSTRAINT jobs_pause_fields CHECK (active OR paused_at IS NOT NULL OR numbercall = 0),

    -- action
    action_kind         text NOT NULL CHECK (action_kind IN ('sql', 'shell')),
    command             text NOT NULL CHECK (btrim(command) <> ''),
    timeout_ms          bigint DEFAULT 300000 CHECK (timeout_ms > 0),  -- NULL means "none", explicitly
    run_as              text CHECK (run_as <> ''),
    CONSTRAINT jobs_run_as_sql_only CHECK (run_as IS NULL OR action_kind = 'sql'),
    tags                text[] NOT NULL DEFAULT '{}',

    -- failure policy
    failure_threshold   integer NOT NULL DEFAULT 5 CHECK (failure_threshold >= 0),  -- 0: never auto-pause
    failure_min_age_ms  bigint NOT NULL DEFAULT 86400000 CHECK (failure_min_age_ms >= 0),
    retry_max           integer NOT NULL DEFAULT 0 CHECK (retry_max >= 0),
    retry_backoff_ms    bigint NOT NULL DEFAULT 60000 CHECK (retry_backoff_ms > 0),

    managed_by          text,           -- the jobs file that owns this definition, if any
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),

    -- runtime state, maintained by the scheduler
    first_due_at        timestamptz,    -- when the job first became due (overdue for never-succeeded jobs)
    last_run_id         bigint,
    last_started_at     timestamptz,
    last_ended_at       timestamptz,
    last_status         text CHECK (last_status IN
                            ('running', 'succeeded', 'failed', 'timed_out', 'abandoned', 'interrupted', 'skipped')),
    last_duration_ms    bigint CHECK (last_duration_ms >= 0),
    last_success_at     timestamptz,
    failure_streak      integer NOT NULL DEFAULT 0 CHECK (failure_streak >= 0),
    failure_streak_since timestamptz,
    running_run_id      bigint,
    running_node_id     text,
    running_since       timestamptz
);

CREATE INDEX jobs_due_idx ON crondeck.jobs (priority, nextcall) WHERE active;
CREATE INDEX jobs_nextcall_idx ON crondeck.jobs (nextcall) WHERE active;
CREATE INDEX jobs_paused_until_idx ON crondeck.jobs (paused_until) WHERE NOT active;

CREATE TABLE crondeck.run_requests (
    id            bigserial PRIMARY KEY,
    job_id        bigint NOT NULL REFERENCES crondeck.jobs (id) ON DELETE CASCADE,
    trigger       text NOT NULL CHECK (trigger IN ('manual', 'event', 'retry')),
    requested_by  text NOT NULL,
    requested_at  timestamptz NOT NULL DEFAULT now(),
    not_before    timestamptz NOT NULL DEFAULT now(),   -- retries wait for their backoff
    scheduled_for timestamptz,                          -- retries: the tick being retried
    attempt       integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    state         text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'started', 'cancelled')),
    run_id        bigint
);

CREATE INDEX run_requests_pending_idx ON crondeck.run_requests (not_before) WHERE state = 'pending';

CREATE TABLE crondeck.runs (
    id              bigserial PRIMARY KEY,
    job_id          bigint NOT NULL REFERENCES crondeck.jobs (id) ON DELETE CASCADE,
    trigger         text NOT NULL CHECK (trigger IN ('schedule', 'manual', 'retry', 'event')),
    requested_by    text,
    request_id      bigint,
    scheduled_for   timestamptz NOT NULL,
    ticks           integer NOT NULL DEFAULT 1 CHECK (ticks >= 1),
    status          text NOT NULL CHECK (status IN
                        ('running', 'succeeded', 'failed', 'timed_out', 'abandoned', 'interrupted', 'skipped')),
    reason          text CHECK (reason IN ('overlap', 'scheduler_down', 'paused', 'catchup_skip')),
    CONSTRAINT runs_skipped_has_reason CHECK (status <> 'skipped' OR reason IS NOT NULL),
    node_id         text,
    node_name       text,
    attempt         integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    started_at      timestamptz,
    ended_at        timestamptz,
    CONSTRAINT runs_end_after_start CHECK (ended_at IS NULL OR started_at IS NULL OR ended_at >= started_at),
    exit_code       integer,
    signal          integer,
    sqlstate        text,
    rows_affected   bigint,
    error           text,
    stdout          text,
    stderr          text,
    stdout_dropped  bigint NOT NULL DEFAULT 0,
    stderr_dropped  bigint NOT NULL DEFAULT 0
);

-- At most one run row per scheduled tick (SPEC §3.2), enforced here, not in memory.
CREATE UNIQUE INDEX runs_one_per_tick ON crondeck.runs (job_id, scheduled_for) WHERE trigger = 'schedule';
-- At most one run in progress per job, cluster-wide (SPEC §3.1).
CREATE UNIQUE INDEX runs_one_running ON crondeck.runs (job_id) WHERE status = 'running';
CREATE INDEX runs_job_history_idx ON crondeck.runs (job_id, id DESC);
CREATE INDEX runs_running_idx ON crondeck.runs (node_id) WHERE status = 'running';

CREATE TABLE crondeck.audit (
    id         bigserial PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    db_role    name NOT NULL DEFAULT current_user,
    os_user    text,
    host       text,
    job_id     bigint,          -- no foreign key: the trail outlives the job
    job_name   text NOT NULL,
    action     text NOT NULL,
    old_value  jsonb,
    new_value  jsonb,
    reason     text
);

CREATE INDEX audit_job_idx ON crondeck.audit (job_id, id DESC);

-- The audit log is append-only: no role, not even its owner, may rewrite history
-- through normal statements.
CREATE FUNCTION crondeck.audit_is_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'crondeck.audit is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_append_only
    BEFORE UPDATE OR DELETE ON crondeck.audit
    FOR EACH ROW EXECUTE FUNCTION crondeck.audit_is_append_only();
CREATE TRIGGER audit_no_truncate
    BEFORE TRUNCATE ON crondeck.audit
    FOR EACH STATEMENT EXECUTE FUNCTION crondeck.audit_is_append_only();

-- Wake-ups (SPEC §3.5): nodes LISTEN on crondeck_wake and recompute when to
-- wake. Only changes that can make something due sooner, or free a job, notify;
-- NOTIFY is delivered at commit and deduplicated within a transaction.
CREATE FUNCTION crondeck.notify_wake() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('crondeck_wake', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER jobs_wake_on_insert
    AFTER INSERT ON crondeck.jobs
    FOR EACH ROW EXECUTE FUNCTION crondeck.notify_wake();
CREATE TRIGGER jobs_wake_on_update
    AFTER UPDATE ON crondeck.jobs
    FOR EACH ROW WHEN (
        OLD.nextcall IS DISTINCT FROM NEW.nextcall
        OR OLD.active IS DISTINCT FROM NEW.active
        OR OLD.paused_until IS DISTINCT FROM NEW.paused_until
        OR OLD.numbercall IS DISTINCT FROM NEW.numbercall
        OR OLD.action_kind IS DISTINCT FROM NEW.action_kind
        OR (OLD.running_run_id IS NOT NULL AND NEW.running_run_id IS NULL))
    EXECUTE FUNCTION crondeck.notify_wake();
CREATE TRIGGER run_requests_wake
    AFTER INSERT ON crondeck.run_requests
    FOR EACH ROW EXECUTE FUNCTION crondeck.notify_wake();

-- Request a run of a job (SPEC §3.11-3.12). A request while another one for the
-- same job is still pending joins it, so a burst of events (a bulk INSERT on a
-- table with a trigger) runs the job once, not once per row. Returns the id of
-- the pending request.
CREATE FUNCTION crondeck.request_run(job_name text, trigger text, requested_by text)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    target_id bigint;
    request_id bigint;
BEGIN
    IF trigger NOT IN ('manual', 'event') THEN
        RAISE EXCEPTION 'crondeck.request_run: trigger must be ''manual'' or ''event'', not %',
            quote_literal(trigger) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT id INTO target_id FROM crondeck.jobs WHERE name = job_name;
    IF target_id IS NULL THEN
        RAISE EXCEPTION 'crondeck: no job named %', quote_literal(job_name)
            USING ERRCODE = 'no_data_found';
    END IF;
    -- Serialise requests per job so two sessions cannot both see "none pending".
    PERFORM pg_advisory_xact_lock(hashtextextended('crondeck.request_run', target_id));
    SELECT id INTO request_id FROM crondeck.run_requests
        WHERE job_id = target_id AND state = 'pending' AND run_requests.trigger IN ('manual', 'event')
        ORDER BY id LIMIT 1;
    IF request_id IS NULL THEN
        INSERT INTO crondeck.run_requests (job_id, trigger, requested_by)
            VALUES (target_id, trigger, requested_by)
            RETURNING id INTO request_id;
    END IF;
    RETURN request_id;
END;
$$;

-- For table triggers and any SQL session: `SELECT crondeck.trigger('job name')`.
CREATE FUNCTION crondeck.trigger(job_name text) RETURNS bigint
LANGUAGE sql AS $$
    SELECT crondeck.request_run(job_name, 'event', session_user::text);
$$;

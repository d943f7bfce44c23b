-- Cancel (SPEC §3.17): an operator stops a running run from the console, the
-- CLI or SQL. The request is recorded on the run; the node that owns the run,
-- on whatever host, learns it from its next heartbeat (which returns the runs
-- of its registration with a cancel request), stops the run (shell: SIGTERM to
-- the process group, then SIGKILL; SQL: the backend is cancelled) and records
-- it `cancelled`, with who asked, through the usual fenced finish.

ALTER TABLE crondeck.runs
    ADD COLUMN cancel_requested_at timestamptz,
    ADD COLUMN cancel_requested_by text,
    -- The database session executing an SQL run, published by its node when
    -- the run starts: a rescue terminates that session even if the job
    -- changed its own application_name.
    ADD COLUMN backend_pid integer;

ALTER TABLE crondeck.runs DROP CONSTRAINT runs_status_check;
ALTER TABLE crondeck.runs ADD CONSTRAINT runs_status_check CHECK (status IN
    ('running', 'succeeded', 'failed', 'timed_out', 'abandoned', 'interrupted', 'cancelled',
     'skipped'));
ALTER TABLE crondeck.jobs DROP CONSTRAINT jobs_last_status_check;
ALTER TABLE crondeck.jobs ADD CONSTRAINT jobs_last_status_check CHECK (last_status IN
    ('running', 'succeeded', 'failed', 'timed_out', 'abandoned', 'interrupted', 'cancelled',
     'skipped'));

-- Returns the id of the run asked to stop. Refuses a job with no run in
-- progress. Asking twice keeps the first request (and its author).
CREATE FUNCTION crondeck.op_cancel(job_name text, reason text, os_user text, host text)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j crondeck.jobs := crondeck.op_lock(job_name);
    r crondeck.runs;
BEGIN
    SELECT * INTO r FROM crondeck.runs
    WHERE id = j.running_run_id AND status = 'running'
    FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'job % has no run in progress; there is nothing to cancel',
            quote_literal(job_name) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF r.cancel_requested_at IS NULL THEN
        UPDATE crondeck.runs SET cancel_requested_at = now(),
            cancel_requested_by = session_user || ' (' || os_user || '@' || host || ')'
        WHERE id = r.id;
        PERFORM crondeck.op_audit(j, 'cancel',
            jsonb_build_object('run_id', r.id, 'status', 'running', 'node', r.node_name,
                               'started_at', r.started_at),
            jsonb_build_object('run_id', r.id, 'status', 'cancelled'),
            reason, os_user, host);
        -- Nodes that listen beat at once instead of at their next interval.
        PERFORM pg_notify('crondeck_cancel', r.node_id);
    END IF;
    RETURN r.id;
END;
$$;

REVOKE ALL ON FUNCTION crondeck.op_cancel(text, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION crondeck.op_cancel(text, text, text, text) TO crondeck_operator;

-- crondeck schema, version 3: least-privilege roles (SPEC §9).
--
--   crondeck_viewer     read everything, change nothing
--   crondeck_operator   viewer + pause, resume, run now, reschedule, change
--                       priority, only through the audited op_* functions;
--                       no direct table writes, no change to what a job runs
--   crondeck_admin      operator + define jobs (insert, update, delete jobs)
--   crondeck_scheduler  claim and record runs: runtime columns of jobs, runs,
--                       requests, nodes; never a job's definition
--
-- Grant one to each login role: GRANT crondeck_operator TO alice;
-- Roles are cluster-wide in PostgreSQL, so they are created only when missing
-- (two databases of one cluster may migrate at once); grants are per database.

DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['crondeck_viewer', 'crondeck_operator', 'crondeck_admin',
                                     'crondeck_scheduler'] LOOP
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END LOOP;
END;
$$;

GRANT crondeck_viewer TO crondeck_operator;
GRANT crondeck_operator TO crondeck_admin;

GRANT USAGE ON SCHEMA crondeck
    TO crondeck_viewer, crondeck_operator, crondeck_admin, crondeck_scheduler;
GRANT SELECT ON ALL TABLES IN SCHEMA crondeck TO crondeck_viewer, crondeck_scheduler;

-- Admin: defines jobs.
GRANT INSERT, UPDATE, DELETE ON crondeck.jobs TO crondeck_admin;
GRANT INSERT ON crondeck.audit TO crondeck_admin, crondeck_scheduler;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA crondeck TO crondeck_admin, crondeck_scheduler;

-- Scheduler: records runs and the runtime state of jobs, never definitions.
GRANT INSERT, UPDATE, DELETE ON crondeck.runs, crondeck.run_requests TO crondeck_scheduler;
GRANT INSERT, UPDATE ON crondeck.nodes TO crondeck_scheduler;
-- Notifications are deduplicated by inserting their episode row: nodes send
-- them, and so may `crondeck check` run by an operator ("no live node").
GRANT INSERT, UPDATE ON crondeck.notifications TO crondeck_scheduler, crondeck_operator;
GRANT UPDATE (nextcall, numbercall, active, paused_at, paused_by, paused_reason, paused_until,
              updated_at, first_due_at, last_run_id, last_started_at, last_ended_at, last_status,
              last_duration_ms, last_success_at, failure_streak, failure_streak_since,
              running_run_id, running_node_id, running_since)
    ON crondeck.jobs TO crondeck_scheduler;

-- Who acted is the login role, also inside the SECURITY DEFINER functions below.
ALTER TABLE crondeck.audit ALTER COLUMN db_role SET DEFAULT session_user;

-- Requests go through request_run, which may insert whatever the caller's role.
ALTER FUNCTION crondeck.request_run(text, text, text) SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION crondeck.request_run(text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION crondeck.trigger(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION crondeck.trigger(text)
    TO crondeck_operator, crondeck_scheduler;

-- The canonical text of a schedule, as the Rust side writes it.
CREATE FUNCTION crondeck.schedule_text(j crondeck.jobs) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE j.schedule_kind
        WHEN 'every' THEN format('every %s %s', j.interval_count,
            CASE WHEN j.interval_count = 1 THEN rtrim(j.interval_unit, 's') ELSE j.interval_unit END)
        WHEN 'cron' THEN format('%s %s', j.cron_expr, j.cron_tz)
        ELSE 'manual' END;
$$;

-- Lock a job by name for an operator action, or fail with no_data_found.
CREATE FUNCTION crondeck.op_lock(job_name text) RETURNS crondeck.jobs
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j crondeck.jobs;
BEGIN
    SELECT * INTO j FROM crondeck.jobs WHERE name = job_name FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no job named %', quote_literal(job_name) USING ERRCODE = 'no_data_found';
    END IF;
    RETURN j;
END;
$$;

CREATE FUNCTION crondeck.op_audit(j crondeck.jobs, action text, old_value jsonb, new_value jsonb,
                                  reason text, os_user text, host text) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO crondeck.audit (db_role, os_user, host, job_id, job_name, action, old_value,
                                new_value, reason)
    VALUES (session_user, os_user, host, j.id, j.name, action, old_value, new_value, reason);
$$;

CREATE FUNCTION crondeck.pause_json(j crondeck.jobs) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN j.paused_at IS NULL THEN NULL ELSE jsonb_build_object(
        'at', j.paused_at, 'by', j.paused_by, 'reason', j.paused_reason, 'until', j.paused_until)
    END;
$$;

CREATE FUNCTION crondeck.op_pause(job_name text, reason text, pause_seconds double precision,
                                  os_user text, host text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j crondeck.jobs := crondeck.op_lock(job_name);
    after crondeck.jobs;
BEGIN
    IF j.numbercall = 0 THEN
        RAISE EXCEPTION 'job % is done (no runs left); there is nothing to pause',
            quote_literal(job_name) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pause_seconds IS NOT NULL AND pause_seconds <= 0 THEN
        RAISE EXCEPTION 'a pause must last a positive time' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE crondeck.jobs SET active = false, paused_at = now(), paused_by = os_user || '@' || host,
        paused_reason = reason, paused_until = now() + make_interval(secs => pause_seconds),
        updated_at = now()
    WHERE id = j.id RETURNING * INTO after;
    PERFORM crondeck.op_audit(j, 'pause',
        jsonb_build_object('active', j.active, 'paused', crondeck.pause_json(j)),
        jsonb_build_object('active', false, 'paused', crondeck.pause_json(after)),
        reason, os_user, host);
END;
$$;

-- Resume. The ticks that passed while paused are one skipped row: the caller
-- computes them from the schedule (`skipped_from` must still be the job's
-- nextcall, else someone changed it meanwhile: serialization_failure).
CREATE FUNCTION crondeck.op_resume(job_name text, skipped_from timestamptz, skipped_ticks integer,
                                   next_tick timestamptz, os_user text, host text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j crondeck.jobs := crondeck.op_lock(job_name);
BEGIN
    IF j.numbercall = 0 THEN
        RAISE EXCEPTION 'job % is done (no runs left); give it runs again before resuming',
            quote_literal(job_name) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF j.active THEN
        RETURN false;
    END IF;
    IF skipped_from IS NOT NULL THEN
        IF j.nextcall IS DISTINCT FROM skipped_from THEN
            RAISE EXCEPTION 'job % changed meanwhile; try again', quote_literal(job_name)
                USING ERRCODE = 'serialization_failure';
        END IF;
        INSERT INTO crondeck.runs (job_id, trigger, scheduled_for, ticks, status, reason, ended_at)
        VALUES (j.id, 'schedule', skipped_from, greatest(skipped_ticks, 1), 'skipped', 'paused', now())
        ON CONFLICT DO NOTHING;
        UPDATE crondeck.jobs SET nextcall = next_tick WHERE id = j.id;
    END IF;
    UPDATE crondeck.jobs SET active = true, paused_at = NULL, paused_by = NULL,
        paused_reason = NULL, paused_until = NULL, updated_at = now()
    WHERE id = j.id;
    PERFORM crondeck.op_audit(j, 'resume',
        jsonb_build_object('active', false, 'paused', crondeck.pause_json(j)),
        jsonb_build_object('active', true), NULL, os_user, host);
    RETURN true;
END;
$$;

-- Reschedule. The caller has parsed and validated the schedule; this checks
-- what SQL can (zone, shape) so a direct call cannot store garbage.
CREATE FUNCTION crondeck.op_reschedule(job_name text, kind text, count integer, unit text,
                                       expr text, tz text, next_tick timestamptz,
                                       os_user text, host text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j crondeck.jobs := crondeck.op_lock(job_name);
    after crondeck.jobs;
BEGIN
    IF kind = 'cron' AND (tz IS NULL OR NOT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = tz)) THEN
        RAISE EXCEPTION 'unknown time zone %', quote_literal(tz) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF kind = 'cron' AND (length(expr) > 200 OR expr !~ '^[0-9A-Za-z*/,?#@ -]+$') THEN
        RAISE EXCEPTION 'invalid cron expression %', quote_literal(expr)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE crondeck.jobs SET schedule_kind = kind, interval_count = count, interval_unit = unit,
        cron_expr = expr, cron_tz = tz, nextcall = next_tick, updated_at = now()
    WHERE id = j.id RETURNING * INTO after;
    PERFORM crondeck.op_audit(j, 'reschedule',
        jsonb_build_object('schedule', crondeck.schedule_text(j), 'nextcall', j.nextcall),
        jsonb_build_object('schedule', crondeck.schedule_text(after), 'nextcall', after.nextcall),
        NULL, os_user, host);
END;
$$;

CREATE FUNCTION crondeck.op_set_nextcall(job_name text, next_tick timestamptz,
                                         os_user text, host text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j crondeck.jobs := crondeck.op_lock(job_name);
BEGIN
    IF j.schedule_kind = 'manual' THEN
        RAISE EXCEPTION 'job % is manual: it has no next run', quote_literal(job_name)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF next_tick IS NULL OR next_tick < now() - interval '1 second' THEN
        RAISE EXCEPTION 'the next run must not be in the past' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE crondeck.jobs SET nextcall = next_tick, updated_at = now() WHERE id = j.id;
    PERFORM crondeck.op_audit(j, 'set-nextcall', jsonb_build_object('nextcall', j.nextcall),
        jsonb_build_object('nextcall', next_tick), NULL, os_user, host);
END;
$$;

CREATE FUNCTION crondeck.op_set_priority(job_name text, new_priority integer,
                                         os_user text, host text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j crondeck.jobs := crondeck.op_lock(job_name);
BEGIN
    IF new_priority IS NULL OR new_priority < 0 THEN
        RAISE EXCEPTION 'priority % is negative (expected 0 = most urgent or a larger number)',
            new_priority USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE crondeck.jobs SET priority = new_priority, updated_at = now() WHERE id = j.id;
    PERFORM crondeck.op_audit(j, 'set-priority', jsonb_build_object('priority', j.priority),
        jsonb_build_object('priority', new_priority), NULL, os_user, host);
END;
$$;

CREATE FUNCTION crondeck.op_run_now(job_name text, os_user text, host text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j crondeck.jobs;
    request_id bigint;
BEGIN
    SELECT * INTO j FROM crondeck.jobs WHERE name = job_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no job named %', quote_literal(job_name) USING ERRCODE = 'no_data_found';
    END IF;
    request_id := crondeck.request_run(job_name, 'manual', os_user || '@' || host);
    PERFORM crondeck.op_audit(j, 'run', NULL, jsonb_build_object('request_id', request_id),
        NULL, os_user, host);
    RETURN request_id;
END;
$$;

DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY[
        'crondeck.op_lock(text)',
        'crondeck.op_audit(crondeck.jobs, text, jsonb, jsonb, text, text, text)',
        'crondeck.op_pause(text, text, double precision, text, text)',
        'crondeck.op_resume(text, timestamptz, integer, timestamptz, text, text)',
        'crondeck.op_reschedule(text, text, integer, text, text, text, timestamptz, text, text)',
        'crondeck.op_set_nextcall(text, timestamptz, text, text)',
        'crondeck.op_set_priority(text, integer, text, text)',
        'crondeck.op_run_now(text, text, text)'] LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
    FOREACH f IN ARRAY ARRAY[
        'crondeck.op_pause(text, text, double precision, text, text)',
        'crondeck.op_resume(text, timestamptz, integer, timestamptz, text, text)',
        'crondeck.op_reschedule(text, text, integer, text, text, text, timestamptz, text, text)',
        'crondeck.op_set_nextcall(text, timestamptz, text, text)',
        'crondeck.op_set_priority(text, integer, text, text)',
        'crondeck.op_run_now(text, text, text)'] LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO crondeck_operator', f);
    END LOOP;
END;
$$;

-- Which jobs a node may run (SPEC §3.6, §9): SQL jobs always; shell jobs only
-- on nodes started with shell enabled, and, when the node has an allow-list,
-- only commands that start with one of its prefixes and contain no shell
-- metacharacters (so "/opt/jobs/x; rm -rf /" does not pass as "/opt/jobs/").
ALTER TABLE crondeck.nodes ADD COLUMN shell_allow text[];

CREATE FUNCTION crondeck.can_run(action_kind text, command text, allow_shell boolean,
                                 shell_allow text[]) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT action_kind = 'sql'
        OR (allow_shell
            AND (coalesce(cardinality(shell_allow), 0) = 0
                 OR (length(translate(command, E';|&$`()<>\\\n', '')) = length(command)
                     AND EXISTS (SELECT 1 FROM unnest(shell_allow) AS prefix
                                 WHERE starts_with(command, prefix)))));
$$;

-- crondeck schema, version 4: security hardening (issue 11).
--
--   * crondeck.trigger() is callable by crondeck_trigger and never breaks the
--     caller: an unknown job is a WARNING and false, a paused job records a
--     skipped run (reason 'paused') and returns false.
--   * Notifications: only nodes (crondeck_scheduler) write them; `check`, run
--     by anyone who may read, records the no-live-node episode through a
--     function that verifies there is indeed no live node.
--   * The audit is written by the database: triggers on crondeck.jobs stamp
--     session_user and the database clock; no crondeck role may insert audit
--     rows, and none of them may own crondeck's objects.
--   * The database refuses what the binary cannot read: finite timestamps in
--     range, bounded intervals, the cron grammar and the zones chrono-tz knows,
--     names of at most 200 characters.

-- ---------------------------------------------------------------------------
-- Nothing crondeck creates may be owned by one of its roles: an owner can
-- disable triggers, grant itself anything and rewrite the audit.

DO $$
DECLARE
    crondeck_roles text[] := ARRAY['crondeck_viewer', 'crondeck_operator', 'crondeck_admin',
                                   'crondeck_scheduler', 'crondeck_trigger'];
    owned text;
BEGIN
    IF current_user::text = ANY (crondeck_roles) THEN
        RAISE EXCEPTION 'crondeck: migrations must not run as %', current_user
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Run `crondeck migrate` as the database owner or another login that holds none of the crondeck_* roles.';
    END IF;
    SELECT string_agg(DISTINCT format('%s (owned by %s)', what, owner), ', ') INTO owned
    FROM (
        SELECT c.oid::regclass::text AS what, pg_get_userbyid(c.relowner) AS owner
        FROM pg_class c WHERE c.relnamespace = 'crondeck'::regnamespace
        UNION ALL
        SELECT p.oid::regprocedure::text, pg_get_userbyid(p.proowner)
        FROM pg_proc p WHERE p.pronamespace = 'crondeck'::regnamespace
        UNION ALL
        SELECT 'schema crondeck', pg_get_userbyid(n.nspowner)
        FROM pg_namespace n WHERE n.nspname = 'crondeck'
    ) o
    WHERE owner::text = ANY (crondeck_roles);
    IF owned IS NOT NULL THEN
        RAISE EXCEPTION 'crondeck: objects of the crondeck schema are owned by a crondeck role: %', owned
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Reassign them (REASSIGN OWNED BY <role> TO <database owner>) and run `crondeck migrate` as that owner.';
    END IF;
END;
$$;

-- ---------------------------------------------------------------------------
-- Point 8: crondeck.trigger().

DO $$
BEGIN
    CREATE ROLE crondeck_trigger NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END;
$$;

GRANT USAGE ON SCHEMA crondeck TO crondeck_trigger;
-- Those who could call it before keep it.
GRANT crondeck_trigger TO crondeck_operator, crondeck_scheduler;

DROP FUNCTION crondeck.trigger(text);

-- For table triggers and any SQL session: `PERFORM crondeck.trigger('job name')`.
-- Never raises: the application's own statement must not fail because of a
-- job. True when a run was requested (or an already pending one joined).
CREATE FUNCTION crondeck.trigger(job_name text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    target_id bigint;
    target_active boolean;
BEGIN
    SELECT id, active INTO target_id, target_active FROM crondeck.jobs WHERE name = job_name;
    IF target_id IS NULL THEN
        RAISE WARNING 'crondeck.trigger: no job named %; nothing requested', quote_nullable(job_name);
        RETURN false;
    END IF;
    IF NOT target_active THEN
        -- Visible in the job's history: one skipped row per transaction.
        IF NOT EXISTS (SELECT 1 FROM crondeck.runs
                       WHERE job_id = target_id AND trigger = 'event' AND status = 'skipped'
                         AND scheduled_for = now()) THEN
            INSERT INTO crondeck.runs (job_id, trigger, requested_by, scheduled_for, status, reason,
                                       ended_at)
            VALUES (target_id, 'event', session_user, now(), 'skipped', 'paused', now());
        END IF;
        RAISE WARNING 'crondeck.trigger: job % is paused; the request is recorded as skipped',
            quote_literal(job_name);
        RETURN false;
    END IF;
    PERFORM crondeck.request_run(job_name, 'event', session_user::text);
    RETURN true;
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'crondeck.trigger(%): % (SQLSTATE %); nothing requested',
        quote_nullable(job_name), SQLERRM, SQLSTATE;
    RETURN false;
END;
$$;

REVOKE ALL ON FUNCTION crondeck.trigger(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION crondeck.trigger(text) TO crondeck_trigger;

-- ---------------------------------------------------------------------------
-- Point 11: notifications are written by nodes only; `check` records the
-- no-live-node episode through a function that checks the claim itself.

REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON crondeck.notifications
    FROM PUBLIC, crondeck_viewer, crondeck_operator, crondeck_admin;

-- With no live node (by database time), record the episode keyed by the last
-- heartbeat; returns the new row (to send) or nothing (no episode, or someone
-- recorded it already). Message and payload are built here, not by the caller.
CREATE FUNCTION crondeck.record_no_live_node(sender text,
                                             OUT notification_id bigint,
                                             OUT notification_payload jsonb)
RETURNS SETOF record
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    last timestamptz;
    key text;
    message text;
    payload jsonb;
BEGIN
    IF EXISTS (SELECT 1 FROM crondeck.nodes
               WHERE stopped_at IS NULL
                 AND heartbeat_at >= now() - lease_ms * interval '1 millisecond') THEN
        RETURN;
    END IF;
    SELECT max(heartbeat_at) INTO last FROM crondeck.nodes;
    key := 'no_live_node/' || coalesce(
        to_char(last AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), 'unknown');
    message := format('crondeck: no live scheduler node; nothing is executing (%s)',
        CASE WHEN last IS NULL THEN 'no node has ever run'
             ELSE format('last heartbeat %s ago', justify_interval(date_trunc('second', now() - last)))
        END);
    payload := jsonb_build_object(
        'event', 'no_live_node', 'text', message, 'job', NULL, 'job_id', NULL, 'tags', NULL,
        'at', now(), 'episode', key, 'sender', left(sender, 200),
        'details', jsonb_build_object('last_heartbeat_at', last));
    INSERT INTO crondeck.notifications (dedup_key, event, message, payload, created_by)
    VALUES (key, 'no_live_node', message, payload,
            format('%s (role %s)', left(sender, 200), session_user))
    ON CONFLICT (dedup_key) DO NOTHING
    RETURNING id INTO notification_id;
    IF notification_id IS NOT NULL THEN
        notification_payload := payload;
        RETURN NEXT;
    END IF;
END;
$$;

-- How the send of a no-live-node episode went: only once, only that event.
CREATE FUNCTION crondeck.record_no_live_node_delivery(notification_id bigint, new_status text,
                                                      new_deliveries jsonb) RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH done AS (
        UPDATE crondeck.notifications SET status = new_status, deliveries = new_deliveries,
            sent_at = now()
        WHERE id = notification_id AND event = 'no_live_node' AND status = 'pending'
        RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM done);
$$;

REVOKE ALL ON FUNCTION crondeck.record_no_live_node(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION crondeck.record_no_live_node_delivery(bigint, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION crondeck.record_no_live_node(text)
    TO crondeck_viewer, crondeck_scheduler;
GRANT EXECUTE ON FUNCTION crondeck.record_no_live_node_delivery(bigint, text, jsonb)
    TO crondeck_viewer, crondeck_scheduler;

-- ---------------------------------------------------------------------------
-- Point 6: the audit is written by the database.
--
-- Triggers on crondeck.jobs write one audit row per change of a job's
-- definition or operator state (insert, delete, and updates of the columns
-- below; the scheduler's runtime columns are not audited). The row's login
-- role (session_user) and time (now()) are stamped here and cannot be
-- chosen by the caller. The OS user, host, reason and (for a few changes) the
-- action's name are what the client says, read from transaction-local
-- settings (crondeck.audit_context()): useful, but claimed.

REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON crondeck.audit
    FROM PUBLIC, crondeck_viewer, crondeck_operator, crondeck_admin, crondeck_scheduler;
REVOKE ALL ON SEQUENCE crondeck.audit_id_seq
    FROM PUBLIC, crondeck_viewer, crondeck_operator, crondeck_admin, crondeck_scheduler;
GRANT SELECT ON crondeck.audit TO crondeck_viewer;

-- What the client says about an action, for the audit rows of this
-- transaction: OS user, host, reason, and an action name.
CREATE FUNCTION crondeck.audit_context(os_user text, host text, reason text, action text)
RETURNS void
LANGUAGE sql AS $$
    SELECT set_config('crondeck.os_user', coalesce(left(os_user, 200), ''), true),
           set_config('crondeck.host', coalesce(left(host, 200), ''), true),
           set_config('crondeck.reason', coalesce(left(reason, 2000), ''), true),
           set_config('crondeck.action', coalesce(left(action, 50), ''), true);
$$;

-- The audited columns of a job, as JSON.
CREATE FUNCTION crondeck.audited_columns() RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['name', 'description', 'schedule_kind', 'interval_count', 'interval_unit',
                 'cron_expr', 'cron_tz', 'catchup', 'priority', 'action_kind', 'command',
                 'timeout_ms', 'run_as', 'tags', 'failure_threshold', 'failure_min_age_ms',
                 'retry_max', 'retry_backoff_ms', 'managed_by', 'notify_failures',
                 'numbercall', 'nextcall', 'active', 'paused_at', 'paused_by',
                 'paused_reason', 'paused_until'];
$$;

CREATE FUNCTION crondeck.jobs_audit() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    schedule_cols constant text[] := ARRAY['schedule_kind', 'interval_count', 'interval_unit',
                                           'cron_expr', 'cron_tz'];
    pause_cols constant text[] := ARRAY['active', 'paused_at', 'paused_by', 'paused_reason',
                                        'paused_until'];
    definition_cols constant text[] := ARRAY['name', 'description', 'catchup', 'action_kind',
        'command', 'timeout_ms', 'run_as', 'tags', 'failure_threshold', 'failure_min_age_ms',
        'retry_max', 'retry_backoff_ms', 'managed_by', 'notify_failures'];
    old_row jsonb;
    new_row jsonb;
    old_value jsonb;
    new_value jsonb;
    changed text[] := '{}';
    col text;
    act text;
    hint text := nullif(current_setting('crondeck.action', true), '');
    job_id bigint;
    job_name text;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        -- The scheduler's own tick (claim: nextcall moves forward, numbercall
        -- counts down, a job whose runs are used up becomes inactive) is
        -- runtime, not an operator action: not audited. Only a session that
        -- holds crondeck_scheduler and says it is the scheduler gets this.
        IF current_setting('crondeck.context', true) = 'scheduler'
           AND NEW.active IS NOT DISTINCT FROM (OLD.active AND NEW.numbercall <> 0)
           AND (NEW.numbercall = OLD.numbercall
                OR (OLD.numbercall > 0 AND NEW.numbercall = OLD.numbercall - 1))
           AND (OLD.nextcall IS NULL OR NEW.nextcall >= OLD.nextcall)
           AND (NEW.name, NEW.description, NEW.schedule_kind, NEW.interval_count,
                NEW.interval_unit, NEW.cron_expr, NEW.cron_tz, NEW.catchup, NEW.priority,
                NEW.action_kind, NEW.command, NEW.timeout_ms, NEW.run_as, NEW.tags,
                NEW.failure_threshold, NEW.failure_min_age_ms, NEW.retry_max,
                NEW.retry_backoff_ms, NEW.managed_by, NEW.notify_failures, NEW.paused_at,
                NEW.paused_by, NEW.paused_reason, NEW.paused_until)
               IS NOT DISTINCT FROM
               (OLD.name, OLD.description, OLD.schedule_kind, OLD.interval_count,
                OLD.interval_unit, OLD.cron_expr, OLD.cron_tz, OLD.catchup, OLD.priority,
                OLD.action_kind, OLD.command, OLD.timeout_ms, OLD.run_as, OLD.tags,
                OLD.failure_threshold, OLD.failure_min_age_ms, OLD.retry_max,
                OLD.retry_backoff_ms, OLD.managed_by, OLD.notify_failures, OLD.paused_at,
                OLD.paused_by, OLD.paused_reason, OLD.paused_until)
           AND pg_has_role(session_user, crondeck.role_name('scheduler'), 'USAGE') THEN
            RETURN NULL;
        END IF;
        old_row := to_jsonb(OLD);
        new_row := to_jsonb(NEW);
        old_value := '{}';
        new_value := '{}';
        FOREACH col IN ARRAY crondeck.audited_columns() LOOP
            IF old_row -> col IS DISTINCT FROM new_row -> col THEN
                changed := changed || col;
                old_value := old_value || jsonb_build_object(col, old_row -> col);
                new_value := new_value || jsonb_build_object(col, new_row -> col);
            END IF;
        END LOOP;
        IF cardinality(changed) = 0 THEN
            RETURN NULL;
        END IF;
        -- A schedule change also reads as text ("every 90 minutes").
        IF changed && schedule_cols THEN
            old_value := old_value || jsonb_build_object('schedule', crondeck.schedule_text(OLD));
            new_value := new_value || jsonb_build_object('schedule', crondeck.schedule_text(NEW));
        END IF;
        IF 'active' = ANY (changed) THEN
            act := CASE WHEN NEW.active THEN 'resume'
                        WHEN NEW.numbercall = 0 AND NEW.paused_at IS NULL THEN 'done'
                        ELSE 'pause' END;
        ELSIF changed && pause_cols THEN
            act := 'pause';
        ELSIF changed && definition_cols THEN
            act := 'update';
        ELSIF changed && schedule_cols THEN
            act := 'reschedule';
        ELSIF 'priority' = ANY (changed) THEN
            act := 'set-priority';
        ELSIF 'nextcall' = ANY (changed) THEN
            act := 'set-nextcall';
        ELSE
            act := 'set-numbercall';
        END IF;
        -- The client may name a definition change more precisely; it cannot
        -- turn one kind of change into another.
        IF act IN ('update', 'reschedule', 'set-priority') AND hint IN ('apply', 'set-timeout') THEN
            act := hint;
        ELSIF act = 'pause' AND hint = 'auto-pause'
              AND NEW.paused_by = 'crondeck (failure policy)' THEN
            act := hint;
        END IF;
        job_id := NEW.id;
        job_name := NEW.name;
    ELSIF TG_OP = 'INSERT' THEN
        new_row := to_jsonb(NEW);
        SELECT jsonb_object_agg(c, new_row -> c)
               || jsonb_build_object('schedule', crondeck.schedule_text(NEW))
        INTO new_value FROM unnest(crondeck.audited_columns()) AS c;
        act := 'create';
        job_id := NEW.id;
        job_name := NEW.name;
    ELSE
        old_row := to_jsonb(OLD);
        SELECT jsonb_object_agg(c, old_row -> c)
               || jsonb_build_object('schedule', crondeck.schedule_text(OLD))
        INTO old_value FROM unnest(crondeck.audited_columns()) AS c;
        act := 'remove';
        job_id := OLD.id;
        job_name := OLD.name;
    END IF;
    INSERT INTO crondeck.audit (at, db_role, os_user, host, job_id, job_name, action, old_value,
                                new_value, reason)
    VALUES (now(), session_user,
            nullif(current_setting('crondeck.os_user', true), ''),
            nullif(current_setting('crondeck.host', true), ''),
            job_id, job_name, act, old_value, new_value,
            nullif(current_setting('crondeck.reason', true), ''));
    RETURN NULL;
END;
$$;

REVOKE ALL ON FUNCTION crondeck.jobs_audit() FROM PUBLIC;

CREATE TRIGGER jobs_audit_insert_delete
    AFTER INSERT OR DELETE ON crondeck.jobs
    FOR EACH ROW EXECUTE FUNCTION crondeck.jobs_audit();
-- Runtime-only updates (every claim and finish) do not even call the function.
CREATE TRIGGER jobs_audit_update
    AFTER UPDATE ON crondeck.jobs
    FOR EACH ROW WHEN (
        (OLD.name, OLD.description, OLD.schedule_kind, OLD.interval_count, OLD.interval_unit,
         OLD.cron_expr, OLD.cron_tz, OLD.catchup, OLD.priority, OLD.action_kind, OLD.command,
         OLD.timeout_ms, OLD.run_as, OLD.tags, OLD.failure_threshold, OLD.failure_min_age_ms,
         OLD.retry_max, OLD.retry_backoff_ms, OLD.managed_by, OLD.notify_failures,
         OLD.numbercall, OLD.nextcall, OLD.active, OLD.paused_at, OLD.paused_by,
         OLD.paused_reason, OLD.paused_until)
        IS DISTINCT FROM
        (NEW.name, NEW.description, NEW.schedule_kind, NEW.interval_count, NEW.interval_unit,
         NEW.cron_expr, NEW.cron_tz, NEW.catchup, NEW.priority, NEW.action_kind, NEW.command,
         NEW.timeout_ms, NEW.run_as, NEW.tags, NEW.failure_threshold, NEW.failure_min_age_ms,
         NEW.retry_max, NEW.retry_backoff_ms, NEW.managed_by, NEW.notify_failures,
         NEW.numbercall, NEW.nextcall, NEW.active, NEW.paused_at, NEW.paused_by,
         NEW.paused_reason, NEW.paused_until))
    EXECUTE FUNCTION crondeck.jobs_audit();

-- "run now" changes no job row; its audit row is written by op_run_now
-- (SECURITY DEFINER), stamped the same way.
CREATE OR REPLACE FUNCTION crondeck.op_audit(j crondeck.jobs, action text, old_value jsonb,
                                             new_value jsonb, reason text, os_user text,
                                             host text) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO crondeck.audit (at, db_role, os_user, host, job_id, job_name, action, old_value,
                                new_value, reason)
    VALUES (now(), session_user, os_user, host, j.id, j.name, action, old_value, new_value, reason);
$$;

-- The operator functions change the job row once each and let the trigger
-- write the audit row, with the context they were given.
CREATE OR REPLACE FUNCTION crondeck.op_pause(job_name text, reason text,
                                             pause_seconds double precision,
                                             os_user text, host text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j crondeck.jobs := crondeck.op_lock(job_name);
BEGIN
    IF j.numbercall = 0 THEN
        RAISE EXCEPTION 'job % is done (no runs left); there is nothing to pause',
            quote_literal(job_name) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pause_seconds IS NOT NULL AND NOT (pause_seconds > 0 AND pause_seconds <= 3153600000) THEN
        RAISE EXCEPTION 'a pause must last a positive time of at most 100 years'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM crondeck.audit_context(os_user, host, reason, NULL);
    UPDATE crondeck.jobs SET active = false, paused_at = now(), paused_by = os_user || '@' || host,
        paused_reason = reason, paused_until = now() + make_interval(secs => pause_seconds),
        updated_at = now()
    WHERE id = j.id;
END;
$$;

CREATE OR REPLACE FUNCTION crondeck.op_resume(job_name text, skipped_from timestamptz,
                                              skipped_ticks integer, next_tick timestamptz,
                                              os_user text, host text) RETURNS boolean
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
        IF next_tick IS NULL OR NOT (next_tick > skipped_from AND next_tick < '10000-01-01') THEN
            RAISE EXCEPTION 'the next run must follow the skipped ticks and be before the year 10000'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        INSERT INTO crondeck.runs (job_id, trigger, scheduled_for, ticks, status, reason, ended_at)
        VALUES (j.id, 'schedule', skipped_from, greatest(skipped_ticks, 1), 'skipped', 'paused', now())
        ON CONFLICT DO NOTHING;
    END IF;
    PERFORM crondeck.audit_context(os_user, host, NULL, NULL);
    UPDATE crondeck.jobs SET active = true, paused_at = NULL, paused_by = NULL,
        paused_reason = NULL, paused_until = NULL, updated_at = now(),
        nextcall = CASE WHEN skipped_from IS NULL THEN nextcall ELSE next_tick END
    WHERE id = j.id;
    RETURN true;
END;
$$;

CREATE OR REPLACE FUNCTION crondeck.op_reschedule(job_name text, kind text, count integer,
                                                  unit text, expr text, tz text,
                                                  next_tick timestamptz,
                                                  os_user text, host text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j crondeck.jobs := crondeck.op_lock(job_name);
BEGIN
    IF kind = 'cron' AND (tz IS NULL OR NOT crondeck.zone_ok(tz)) THEN
        RAISE EXCEPTION 'unknown time zone % (expected an IANA name like ''Europe/Paris'' or ''UTC'')',
            quote_nullable(tz) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF kind = 'cron' AND NOT crondeck.cron_grammar_ok(expr) THEN
        RAISE EXCEPTION 'invalid cron expression % (expected 5 fields, or 6 with seconds first, or @hourly, @daily, @weekly, @monthly, @yearly)',
            quote_nullable(expr) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF next_tick IS NOT NULL AND NOT (next_tick >= '1970-01-01' AND next_tick < '10000-01-01') THEN
        RAISE EXCEPTION 'the next run % is out of range (expected a time before the year 10000)',
            next_tick USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM crondeck.audit_context(os_user, host, NULL, NULL);
    UPDATE crondeck.jobs SET schedule_kind = kind, interval_count = count, interval_unit = unit,
        cron_expr = expr, cron_tz = tz, nextcall = next_tick, updated_at = now()
    WHERE id = j.id;
END;
$$;

CREATE OR REPLACE FUNCTION crondeck.op_set_nextcall(job_name text, next_tick timestamptz,
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
    IF NOT (next_tick < '10000-01-01') THEN
        RAISE EXCEPTION 'the next run must be before the year 10000' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM crondeck.audit_context(os_user, host, NULL, NULL);
    UPDATE crondeck.jobs SET nextcall = next_tick, updated_at = now() WHERE id = j.id;
END;
$$;

CREATE OR REPLACE FUNCTION crondeck.op_set_priority(job_name text, new_priority integer,
                                                    os_user text, host text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j crondeck.jobs := crondeck.op_lock(job_name);
BEGIN
    IF new_priority IS NULL OR new_priority < 0 THEN
        RAISE EXCEPTION 'priority % is negative (expected 0 = most urgent or a larger number)',
            new_priority USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM crondeck.audit_context(os_user, host, NULL, NULL);
    UPDATE crondeck.jobs SET priority = new_priority, updated_at = now() WHERE id = j.id;
END;
$$;

-- ---------------------------------------------------------------------------
-- Point 2: the database refuses what the binary cannot read.
--
-- These mirror src/schedule.rs (tests/migrations.rs checks that whatever the
-- Rust parser accepts, these accept too).

-- Zones: an IANA name PostgreSQL knows, in the form chrono-tz parses; not
-- the tz database's internal files. pg_timezone_names reads every zone file
-- (tens of milliseconds), so the names are copied once into a table;
-- `SELECT crondeck.refresh_time_zones()` (as the schema owner) copies them
-- again after the server's tz database gained zones.
CREATE TABLE crondeck.time_zones (name text PRIMARY KEY);
GRANT SELECT ON crondeck.time_zones TO crondeck_viewer, crondeck_scheduler;

CREATE FUNCTION crondeck.refresh_time_zones() RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    added integer;
BEGIN
    INSERT INTO crondeck.time_zones (name)
    SELECT name FROM pg_timezone_names
    WHERE name ~ '^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$'
      AND name !~* '^(posix|right)(/|$)'
      AND name NOT IN ('posixrules', 'localtime', 'Factory')
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS added = ROW_COUNT;
    RETURN added;
END;
$$;
REVOKE ALL ON FUNCTION crondeck.refresh_time_zones() FROM PUBLIC;
SELECT crondeck.refresh_time_zones();

CREATE FUNCTION crondeck.zone_ok(tz text) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT tz IS NOT NULL AND EXISTS (SELECT 1 FROM crondeck.time_zones WHERE name = tz);
$$;

-- Cron: 5 fields, or 6 with seconds first, of the characters croner
-- allows (names like MON and JAN included), or a nickname.
CREATE FUNCTION crondeck.cron_grammar_ok(expr text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT expr IS NOT NULL AND length(expr) <= 1000
       AND (expr ~* '^\s*@(yearly|annually|monthly|weekly|daily|hourly)\s*$'
            OR expr ~ '^\s*[0-9A-Za-z*/,?#-]+(\s+[0-9A-Za-z*/,?#-]+){4,5}\s*$');
$$;

-- Intervals: positive and at most i32::MAX seconds, or 1200 months.
CREATE FUNCTION crondeck.interval_ok(count integer, unit text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT count > 0 AND count <= CASE unit
        WHEN 'seconds' THEN 2147483647 WHEN 'minutes' THEN 35791394 WHEN 'hours' THEN 596523
        WHEN 'days' THEN 24855 WHEN 'weeks' THEN 3550 WHEN 'months' THEN 1200 ELSE 0 END;
$$;

-- Checked when a job is created or its name or schedule is written (not on
-- the scheduler's runtime updates).
CREATE FUNCTION crondeck.jobs_validate() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF char_length(NEW.name) > 200 THEN
        RAISE EXCEPTION 'the job name is too long (% characters; at most 200)', char_length(NEW.name)
            USING ERRCODE = 'check_violation', CONSTRAINT = 'jobs_name_length';
    END IF;
    IF NEW.schedule_kind = 'every' AND NOT crondeck.interval_ok(NEW.interval_count, NEW.interval_unit) THEN
        RAISE EXCEPTION 'interval every % % is out of range (at most 24855 days or 1200 months)',
            NEW.interval_count, NEW.interval_unit
            USING ERRCODE = 'check_violation', CONSTRAINT = 'jobs_interval_range';
    END IF;
    IF NEW.schedule_kind = 'cron' AND NOT crondeck.cron_grammar_ok(NEW.cron_expr) THEN
        RAISE EXCEPTION 'invalid cron expression % (expected 5 fields, or 6 with seconds first, or @hourly, @daily, @weekly, @monthly, @yearly)',
            quote_nullable(NEW.cron_expr)
            USING ERRCODE = 'check_violation', CONSTRAINT = 'jobs_cron_grammar';
    END IF;
    IF NEW.schedule_kind = 'cron' AND NOT crondeck.zone_ok(NEW.cron_tz) THEN
        RAISE EXCEPTION 'unknown time zone % (expected an IANA name like ''Europe/Paris'' or ''UTC'')',
            quote_nullable(NEW.cron_tz)
            USING ERRCODE = 'check_violation', CONSTRAINT = 'jobs_cron_zone';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER jobs_validate
    BEFORE INSERT OR UPDATE OF name, schedule_kind, interval_count, interval_unit, cron_expr, cron_tz
    ON crondeck.jobs
    FOR EACH ROW EXECUTE FUNCTION crondeck.jobs_validate();

-- Timestamps: finite, from 1970 to before the year 10000 (what the binary
-- decodes and computes with). Rows stored before this version with values
-- out of range are repaired first (a bad next run pauses the job, with the
-- reason), and audited.
SELECT crondeck.audit_context('crondeck migrate', NULL,
    'schema version 4: a timestamp out of range was repaired', NULL);

UPDATE crondeck.jobs SET nextcall = now(), active = false, paused_at = now(),
    paused_by = 'crondeck (migration 4)', paused_until = NULL,
    paused_reason = format('paused: its next run (%s) was out of range', nextcall)
WHERE nextcall IS NOT NULL AND NOT (nextcall >= '1970-01-01' AND nextcall < '10000-01-01');

UPDATE crondeck.jobs SET
    paused_at = CASE WHEN paused_at >= '1970-01-01' AND paused_at < '10000-01-01' THEN paused_at
                     WHEN paused_at IS NULL THEN NULL ELSE now() END,
    paused_until = CASE WHEN paused_until >= '1970-01-01' AND paused_until < '10000-01-01'
                        THEN paused_until END,
    created_at = CASE WHEN created_at >= '1970-01-01' AND created_at < '10000-01-01'
                      THEN created_at ELSE now() END,
    updated_at = CASE WHEN updated_at >= '1970-01-01' AND updated_at < '10000-01-01'
                      THEN updated_at ELSE now() END,
    first_due_at = CASE WHEN first_due_at >= '1970-01-01' AND first_due_at < '10000-01-01'
                        THEN first_due_at END,
    last_started_at = CASE WHEN last_started_at >= '1970-01-01' AND last_started_at < '10000-01-01'
                           THEN last_started_at END,
    last_ended_at = CASE WHEN last_ended_at >= '1970-01-01' AND last_ended_at < '10000-01-01'
                         THEN last_ended_at END,
    last_success_at = CASE WHEN last_success_at >= '1970-01-01' AND last_success_at < '10000-01-01'
                           THEN last_success_at END,
    failure_streak_since = CASE WHEN failure_streak_since >= '1970-01-01'
                                     AND failure_streak_since < '10000-01-01'
                                THEN failure_streak_since END,
    running_since = CASE WHEN running_since >= '1970-01-01' AND running_since < '10000-01-01'
                         THEN running_since END
WHERE NOT (coalesce(paused_at, now()) >= '1970-01-01' AND coalesce(paused_at, now()) < '10000-01-01'
       AND coalesce(paused_until, now()) >= '1970-01-01' AND coalesce(paused_until, now()) < '10000-01-01'
       AND created_at >= '1970-01-01' AND created_at < '10000-01-01'
       AND updated_at >= '1970-01-01' AND updated_at < '10000-01-01'
       AND coalesce(first_due_at, now()) >= '1970-01-01' AND coalesce(first_due_at, now()) < '10000-01-01'
       AND coalesce(last_started_at, now()) >= '1970-01-01' AND coalesce(last_started_at, now()) < '10000-01-01'
       AND coalesce(last_ended_at, now()) >= '1970-01-01' AND coalesce(last_ended_at, now()) < '10000-01-01'
       AND coalesce(last_success_at, now()) >= '1970-01-01' AND coalesce(last_success_at, now()) < '10000-01-01'
       AND coalesce(failure_streak_since, now()) >= '1970-01-01' AND coalesce(failure_streak_since, now()) < '10000-01-01'
       AND coalesce(running_since, now()) >= '1970-01-01' AND coalesce(running_since, now()) < '10000-01-01');

SELECT crondeck.audit_context(NULL, NULL, NULL, NULL);

ALTER TABLE crondeck.jobs ADD CONSTRAINT jobs_times_in_range CHECK (
    (nextcall IS NULL OR (nextcall >= '1970-01-01' AND nextcall < '10000-01-01'))
    AND (paused_at IS NULL OR (paused_at >= '1970-01-01' AND paused_at < '10000-01-01'))
    AND (paused_until IS NULL OR (paused_until >= '1970-01-01' AND paused_until < '10000-01-01'))
    AND created_at >= '1970-01-01' AND created_at < '10000-01-01'
    AND updated_at >= '1970-01-01' AND updated_at < '10000-01-01'
    AND (first_due_at IS NULL OR (first_due_at >= '1970-01-01' AND first_due_at < '10000-01-01'))
    AND (last_started_at IS NULL OR (last_started_at >= '1970-01-01' AND last_started_at < '10000-01-01'))
    AND (last_ended_at IS NULL OR (last_ended_at >= '1970-01-01' AND last_ended_at < '10000-01-01'))
    AND (last_success_at IS NULL OR (last_success_at >= '1970-01-01' AND last_success_at < '10000-01-01'))
    AND (failure_streak_since IS NULL
         OR (failure_streak_since >= '1970-01-01' AND failure_streak_since < '10000-01-01'))
    AND (running_since IS NULL OR (running_since >= '1970-01-01' AND running_since < '10000-01-01')));

-- ---------------------------------------------------------------------------
-- Point 12: roles per database.
--
-- PostgreSQL roles belong to the cluster, so with the default role names,
-- membership in crondeck_admin is admin in every crondeck database of the
-- cluster. A database can instead use its own roles, named PREFIX_viewer,
-- PREFIX_operator, PREFIX_admin, PREFIX_scheduler, PREFIX_trigger:
-- `crondeck migrate --role-prefix PREFIX` (as the schema owner, with
-- CREATEROLE) calls crondeck.use_role_prefix(PREFIX), which creates them and
-- moves every privilege this database grants the crondeck_* roles (or the
-- previous prefix's) to them. `migrate` repeats the move after applying any
-- later migration, whose grants name the crondeck_* roles.

CREATE TABLE crondeck.settings (
    key   text PRIMARY KEY,
    value text NOT NULL
);
GRANT SELECT ON crondeck.settings TO crondeck_viewer, crondeck_scheduler, crondeck_trigger;

-- The name of this database's role of a kind ('viewer', …, 'trigger').
CREATE FUNCTION crondeck.role_name(kind text) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce((SELECT value FROM crondeck.settings WHERE key = 'role_prefix'), 'crondeck')
           || '_' || kind;
$$;

CREATE FUNCTION crondeck.use_role_prefix(prefix text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    kinds constant text[] := ARRAY['viewer', 'operator', 'admin', 'scheduler', 'trigger'];
    current_prefix text := coalesce(
        (SELECT value FROM crondeck.settings WHERE key = 'role_prefix'), 'crondeck');
    source_prefix text;
    kind text;
    source_role text;
    target_role text;
    r record;
BEGIN
    IF prefix IS NULL OR prefix !~ '^[a-z][a-z0-9_]{0,40}$' THEN
        RAISE EXCEPTION 'invalid role prefix % (expected lowercase letters, digits and _, starting with a letter, at most 41 characters)',
            quote_nullable(prefix) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOREACH kind IN ARRAY kinds LOOP
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN', prefix || '_' || kind);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END LOOP;
    EXECUTE format('GRANT %I TO %I', prefix || '_viewer', prefix || '_operator');
    EXECUTE format('GRANT %I TO %I', prefix || '_operator', prefix || '_admin');
    EXECUTE format('GRANT %I TO %I, %I', prefix || '_trigger', prefix || '_operator',
                   prefix || '_scheduler');
    -- SQL jobs without run_as run as crondeck_job (migration 5): the
    -- database's own scheduler must be able to become it, as
    -- crondeck_scheduler can. (crondeck_job holds only what each database
    -- grants it, so sharing it across databases shares nothing.)
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'crondeck_job') THEN
        EXECUTE format('GRANT crondeck_job TO %I', prefix || '_scheduler');
    END IF;
    FOREACH source_prefix IN ARRAY ARRAY['crondeck', current_prefix] LOOP
        CONTINUE WHEN source_prefix = prefix;
        FOREACH kind IN ARRAY kinds LOOP
            source_role := source_prefix || '_' || kind;
            target_role := prefix || '_' || kind;
            CONTINUE WHEN NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = source_role);
            -- The schema.
            IF has_schema_privilege(source_role, 'crondeck', 'USAGE') AND EXISTS (
                SELECT 1 FROM pg_namespace n, aclexplode(n.nspacl) a
                WHERE n.nspname = 'crondeck' AND a.grantee = source_role::regrole) THEN
                EXECUTE format('GRANT USAGE ON SCHEMA crondeck TO %I', target_role);
                EXECUTE format('REVOKE ALL ON SCHEMA crondeck FROM %I', source_role);
            END IF;
            -- Tables, views and sequences.
            FOR r IN
                SELECT c.oid::regclass AS obj, c.relkind, a.privilege_type
                FROM pg_class c, aclexplode(c.relacl) a
                WHERE c.relnamespace = 'crondeck'::regnamespace
                  AND a.grantee = source_role::regrole
            LOOP
                EXECUTE format('GRANT %s ON %s %s TO %I', r.privilege_type,
                    CASE WHEN r.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, r.obj, target_role);
                EXECUTE format('REVOKE %s ON %s %s FROM %I', r.privilege_type,
                    CASE WHEN r.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, r.obj, source_role);
            END LOOP;
            -- Columns.
            FOR r IN
                SELECT t.attrelid::regclass AS obj, t.attname, a.privilege_type
                FROM pg_attribute t JOIN pg_class c ON c.oid = t.attrelid, aclexplode(t.attacl) a
                WHERE c.relnamespace = 'crondeck'::regnamespace
                  AND a.grantee = source_role::regrole
            LOOP
                EXECUTE format('GRANT %s (%I) ON TABLE %s TO %I', r.privilege_type, r.attname,
                               r.obj, target_role);
                EXECUTE format('REVOKE %s (%I) ON TABLE %s FROM %I', r.privilege_type, r.attname,
                               r.obj, source_role);
            END LOOP;
            -- Functions.
            FOR r IN
                SELECT p.oid::regprocedure AS obj
                FROM pg_proc p, aclexplode(p.proacl) a
                WHERE p.pronamespace = 'crondeck'::regnamespace
                  AND a.grantee = source_role::regrole AND a.privilege_type = 'EXECUTE'
            LOOP
                EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', r.obj, target_role);
                EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM %I', r.obj, source_role);
            END LOOP;
        END LOOP;
    END LOOP;
    INSERT INTO crondeck.settings (key, value) VALUES ('role_prefix', prefix)
    ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;
END;
$$;

REVOKE ALL ON FUNCTION crondeck.use_role_prefix(text) FROM PUBLIC;

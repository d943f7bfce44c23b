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

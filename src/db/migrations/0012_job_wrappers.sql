-- SQL jobs' wrapper functions (issue 15): one per job role, made once.
--
-- An SQL job's statements run inside a SECURITY DEFINER function owned by
-- the job's role, so that PostgreSQL itself refuses role changes and
-- transaction control in them (see `scheduler::sql`). The function used to
-- be a temporary one, created and dropped in every run: two catalog writes
-- per run, whose invalidation messages every other session of the database
-- then had to process (a third of the server's CPU at a few hundred runs a
-- second, measured with perf).
--
-- Now each job role gets one function, crondeck_exec.job_<role oid>(text),
-- made by the first node that runs a job as that role and kept. It lives in
-- a schema the job roles have no privilege on, not even USAGE: its owner
-- (the job's role) cannot name it, so it cannot replace its body, make it
-- SECURITY INVOKER (which would run the statements as the node), grant it
-- or drop it by name. What an owner can do without naming it -- DROP OWNED,
-- REASSIGN OWNED -- either removes it (the next run makes it again) or gives
-- it to another role, which the function's own first check refuses: it runs
-- only as the role it was made for.
--
-- To make it, the node grants the job's role USAGE and CREATE on the schema,
-- becomes the role, creates the function, and revokes the grant, in one
-- transaction: no other session ever sees the grant.

CREATE SCHEMA crondeck_exec;
REVOKE ALL ON SCHEMA crondeck_exec FROM PUBLIC;
DO $$
BEGIN
    EXECUTE format('GRANT USAGE, CREATE ON SCHEMA crondeck_exec TO %I WITH GRANT OPTION',
                   crondeck.role_name('scheduler'));
END;
$$;

-- As in migration 4, plus the schema above.
CREATE OR REPLACE FUNCTION crondeck.use_role_prefix(prefix text) RETURNS void
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
            -- The SQL jobs' wrappers' schema (migration 12): the scheduler
            -- hands its rights on it to a job role for a moment.
            IF kind = 'scheduler' AND EXISTS (
                SELECT 1 FROM pg_namespace n, aclexplode(n.nspacl) a
                WHERE n.nspname = 'crondeck_exec' AND a.grantee = source_role::regrole) THEN
                EXECUTE format('GRANT USAGE, CREATE ON SCHEMA crondeck_exec TO %I WITH GRANT OPTION',
                               target_role);
                EXECUTE format('REVOKE ALL ON SCHEMA crondeck_exec FROM %I CASCADE', source_role);
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

-- Notifications outbox (issue 14.4): at least once, still one per episode.
--
-- A notification row is an episode (unique `dedup_key`). Each channel that
-- takes its event gets one row here, inserted in the same statement as the
-- episode, so an episode is never recorded without its deliveries. Any live
-- node (and `crondeck check`'s delivery process, for `no_live_node` only)
-- claims due deliveries with FOR UPDATE SKIP LOCKED, under a lease, one
-- attempt per claim; a failed attempt is retried with exponential backoff
-- until `max_attempts`, then the delivery is `failed` with its last error
-- kept. A claim whose process died (kill -9) expires with its lease and is
-- claimed again: the receiver may then see the same delivery twice, which
-- the idempotency key (the delivery id, sent with every attempt) lets it
-- drop.

CREATE TABLE crondeck.notification_deliveries (
    id              bigserial PRIMARY KEY,
    notification_id bigint NOT NULL REFERENCES crondeck.notifications (id) ON DELETE CASCADE,
    channel         text NOT NULL,      -- the channel's name in [notifications]
    kind            text NOT NULL CHECK (kind IN ('webhook', 'command', 'smtp')),
    -- pending: never tried; retrying: tried, failed, waits for next_attempt_at;
    -- delivered; failed: gave up after max_attempts (last_error says why).
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'retrying', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,  -- claims so far (a claim is an attempt)
    max_attempts    integer NOT NULL CHECK (max_attempts BETWEEN 1 AND 100),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    claimed_by      text,               -- who holds the current attempt
    lease_until     timestamptz,        -- ... until then (database clock)
    last_error      text,
    last_attempt_at timestamptz,
    delivered_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (notification_id, channel, kind)
);

CREATE INDEX notification_deliveries_due_idx ON crondeck.notification_deliveries (next_attempt_at)
    WHERE status IN ('pending', 'retrying');

GRANT SELECT ON crondeck.notification_deliveries TO crondeck_viewer;
GRANT SELECT, INSERT, UPDATE ON crondeck.notification_deliveries TO crondeck_scheduler;
GRANT USAGE ON SEQUENCE crondeck.notification_deliveries_id_seq TO crondeck_scheduler;

-- Deliveries before this migration were recorded on the notification row
-- only; they are history, nothing to deliver.

-- Claim up to `max_rows` due deliveries of the given channels for one attempt
-- each. A delivery whose last allowed attempt was claimed by a process that
-- never reported (its lease ran out) is closed as failed here.
CREATE FUNCTION crondeck.outbox_claim(claimer text, channels text[], lease_ms integer,
                                      max_rows integer, only_event text DEFAULT NULL)
RETURNS TABLE (delivery_id bigint, notification_id bigint, event text, channel text,
               kind text, attempt integer, max_attempts integer, payload jsonb)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    UPDATE crondeck.notification_deliveries d
    SET status = 'failed', claimed_by = NULL, lease_until = NULL,
        last_error = format('attempt %s of %s was claimed by %s, which stopped before reporting',
                            d.attempts, d.max_attempts, coalesce(d.claimed_by, 'a process'))
    FROM crondeck.notifications n
    WHERE n.id = d.notification_id
      AND d.status IN ('pending', 'retrying') AND d.attempts >= d.max_attempts
      AND d.lease_until < now() AND d.channel = ANY (channels)
      AND (only_event IS NULL OR n.event = only_event);
    RETURN QUERY
    WITH pick AS (
        SELECT x.id FROM crondeck.notification_deliveries x
        JOIN crondeck.notifications n ON n.id = x.notification_id
        WHERE x.status IN ('pending', 'retrying') AND x.next_attempt_at <= now()
          AND (x.lease_until IS NULL OR x.lease_until < now())
          AND x.attempts < x.max_attempts AND x.channel = ANY (channels)
          AND (only_event IS NULL OR n.event = only_event)
        ORDER BY x.next_attempt_at, x.id
        LIMIT max_rows
        FOR UPDATE OF x SKIP LOCKED),
    claimed AS (
        UPDATE crondeck.notification_deliveries d
        SET attempts = d.attempts + 1, claimed_by = left(claimer, 200),
            lease_until = now() + lease_ms * interval '1 millisecond', last_attempt_at = now()
        FROM pick WHERE d.id = pick.id
        RETURNING d.id, d.notification_id, d.channel, d.kind, d.attempts, d.max_attempts)
    SELECT c.id, c.notification_id, n.event, c.channel, c.kind, c.attempts, c.max_attempts,
           n.payload
    FROM claimed c JOIN crondeck.notifications n ON n.id = c.notification_id
    ORDER BY c.id;
END;
$$;

-- Report an attempt: `error` NULL means delivered. Only the claim that holds
-- the attempt (same claimer and attempt number) may report it; a report for a
-- claim that expired and was taken over is ignored (returns false). Then the
-- notification row's summary (status, deliveries, sent_at) is brought up to
-- date for the CLI and console.
CREATE FUNCTION crondeck.outbox_finish(delivery bigint, claimer text, attempt integer,
                                       error text, only_event text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    episode bigint;
BEGIN
    UPDATE crondeck.notification_deliveries d
    SET status = CASE WHEN error IS NULL THEN 'delivered'
                      WHEN d.attempts >= d.max_attempts THEN 'failed'
                      ELSE 'retrying' END,
        delivered_at = CASE WHEN error IS NULL THEN now() END,
        last_error = coalesce(left(error, 2000), d.last_error),
        -- 2 s, 4 s, 8 s, ... at most 10 minutes between attempts.
        next_attempt_at = now() + least(interval '10 minutes',
                                        interval '2 seconds' * power(2, least(d.attempts, 20) - 1)),
        claimed_by = NULL, lease_until = NULL
    FROM crondeck.notifications n
    WHERE d.id = delivery AND n.id = d.notification_id
      AND d.claimed_by = left(claimer, 200) AND d.attempts = attempt
      AND d.status IN ('pending', 'retrying')
      AND (only_event IS NULL OR n.event = only_event)
    RETURNING d.notification_id INTO episode;
    IF episode IS NULL THEN
        RETURN false;
    END IF;
    -- Two channels of one episode may finish at the same moment on two nodes.
    -- Lock the episode first, so the summary below (a new statement, hence a
    -- new snapshot) sees the other finish once it committed; computed in the
    -- same statement as the lock, both would see the other still pending and
    -- the episode would stay 'pending' for ever.
    PERFORM 1 FROM crondeck.notifications WHERE id = episode FOR UPDATE;
    UPDATE crondeck.notifications n
    SET status = s.status, deliveries = s.deliveries, sent_at = s.sent_at
    FROM (SELECT CASE WHEN bool_or(x.status IN ('pending', 'retrying')) THEN 'pending'
                      WHEN bool_and(x.status = 'delivered') THEN 'sent'
                      WHEN NOT bool_or(x.status = 'delivered') THEN 'failed'
                      ELSE 'partial' END AS status,
                 jsonb_agg(jsonb_build_object('channel', x.channel, 'kind', x.kind,
                     'ok', x.status = 'delivered', 'status', x.status,
                     'attempts', x.attempts, 'error', x.last_error) ORDER BY x.id) AS deliveries,
                 CASE WHEN bool_or(x.status IN ('pending', 'retrying')) THEN NULL
                      ELSE max(coalesce(x.delivered_at, x.last_attempt_at)) END AS sent_at
          FROM crondeck.notification_deliveries x WHERE x.notification_id = episode) s
    WHERE n.id = episode;
    RETURN true;
END;
$$;

REVOKE ALL ON FUNCTION crondeck.outbox_claim(text, text[], integer, integer, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION crondeck.outbox_finish(bigint, text, integer, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION crondeck.outbox_claim(text, text[], integer, integer, text)
    TO crondeck_scheduler;
GRANT EXECUTE ON FUNCTION crondeck.outbox_finish(bigint, text, integer, text, text)
    TO crondeck_scheduler;

-- `crondeck check` may run as a viewer. With no live node it records the
-- no-live-node episode and its deliveries (below), and its delivery process
-- claims and reports those, and only those, through these two.
CREATE FUNCTION crondeck.outbox_claim_no_live_node(claimer text, channels text[],
                                                   lease_ms integer, max_rows integer)
RETURNS TABLE (delivery_id bigint, notification_id bigint, event text, channel text,
               kind text, attempt integer, max_attempts integer, payload jsonb)
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    -- Bounded, so that a reader cannot hold the page back with a lease of
    -- weeks: a claim it never reports expires within 10 minutes.
    SELECT * FROM crondeck.outbox_claim(format('%s (role %s)', left(claimer, 150), session_user),
                                        channels, least(greatest(lease_ms, 1000), 600000),
                                        least(max_rows, 50), 'no_live_node');
$$;

CREATE FUNCTION crondeck.outbox_finish_no_live_node(delivery bigint, claimer text,
                                                    attempt integer, error text)
RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT crondeck.outbox_finish(delivery, format('%s (role %s)', left(claimer, 150), session_user),
                                  attempt, error, 'no_live_node');
$$;

-- The no-live-node episode, now with its deliveries in the same transaction:
-- `channels` is a JSON array of {"channel", "kind", "max_attempts"}.
DROP FUNCTION crondeck.record_no_live_node(text);
DROP FUNCTION crondeck.record_no_live_node_delivery(bigint, text, jsonb);

CREATE FUNCTION crondeck.record_no_live_node(sender text, channels jsonb,
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
        INSERT INTO crondeck.notification_deliveries (notification_id, channel, kind, max_attempts)
        SELECT notification_id, left(c.channel, 200), c.kind, c.max_attempts
        FROM jsonb_to_recordset(coalesce(channels, '[]')) AS c(channel text, kind text, max_attempts integer)
        LIMIT 50
        ON CONFLICT DO NOTHING;
        notification_payload := payload;
        RETURN NEXT;
    END IF;
END;
$$;

REVOKE ALL ON FUNCTION crondeck.record_no_live_node(text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION crondeck.outbox_claim_no_live_node(text, text[], integer, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION crondeck.outbox_finish_no_live_node(bigint, text, integer, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION crondeck.record_no_live_node(text, jsonb)
    TO crondeck_viewer, crondeck_scheduler;
GRANT EXECUTE ON FUNCTION crondeck.outbox_claim_no_live_node(text, text[], integer, integer)
    TO crondeck_viewer, crondeck_scheduler;
GRANT EXECUTE ON FUNCTION crondeck.outbox_finish_no_live_node(bigint, text, integer, text)
    TO crondeck_viewer, crondeck_scheduler;

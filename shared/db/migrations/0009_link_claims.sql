-- Acknowledgement tokens leave the database. A token is a credential (whoever holds it
-- may record an assessment as that person), so the outbox keeps the claims a link is
-- made from (key id, signal, person, issue and expiry time, nonce) and the notifier
-- signs and renders the message only when it sends it: the same claims and key give the
-- same token, so a message sent again after a crash carries the same link.
--
-- Existing rows: a pending message gets claims for its person and signal, valid from
-- when it was planned (key id '' names no key, so it is signed with the active key when
-- sent; tokens issued before this version carry no issue time or key id and are refused
-- anyway). Links inside digest items become claims the same way. The stored bodies and
-- links (sent or not) are dropped, and the links are cut out of digest lines.
-- Afterwards run VACUUM FULL deliveries, digest_items so that no old row version keeps a
-- token on disk.

ALTER TABLE deliveries
    ADD COLUMN link_claims      jsonb,
    ADD COLUMN item_link_claims jsonb;

CREATE FUNCTION pg_temp.planned_link(signal text, person text, planned timestamptz, seed text)
RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object(
        'key_id', '',
        'signal_id', signal,
        'person_id', person,
        'issued_at', to_char(date_trunc('second', planned) AT TIME ZONE 'UTC',
                             'YYYY-MM-DD"T"HH24:MI:SS"+00:00"'),
        'expires_at', to_char(date_trunc('second', planned) AT TIME ZONE 'UTC'
                              + interval '168 hours', 'YYYY-MM-DD"T"HH24:MI:SS"+00:00"'),
        'nonce', left(md5(seed), 16))
$$;

-- the pattern of a link Vigil put in a message: " - <base>/signals/<uuid>/acknowledge?token=…"
CREATE FUNCTION pg_temp.link_pattern() RETURNS text LANGUAGE sql AS $$
    SELECT ' - \S*/signals/([0-9a-fA-F-]{36})/acknowledge\?token=\S*'
$$;

UPDATE deliveries
SET link_claims = pg_temp.planned_link(signal_id::text, person_id, created_at,
                                       delivery_id::text)
WHERE link IS NOT NULL AND person_id IS NOT NULL AND status = 'pending';

-- digest deliveries: each item's link becomes claims for the delivery's person
UPDATE deliveries AS d
SET item_link_claims = (
        SELECT jsonb_agg(CASE WHEN m IS NULL OR d.status <> 'pending' THEN 'null'::jsonb
                              ELSE pg_temp.planned_link(m[1], d.person_id, d.created_at,
                                                        d.delivery_id::text || ':' || ord)
                         END ORDER BY ord)
        FROM jsonb_array_elements_text(d.content -> 'items') WITH ORDINALITY AS i (item, ord),
             LATERAL regexp_match(item, pg_temp.link_pattern()) AS m),
    content = jsonb_set(d.content, '{items}', (
        SELECT jsonb_agg(regexp_replace(item, pg_temp.link_pattern(), '') ORDER BY ord)
        FROM jsonb_array_elements_text(d.content -> 'items') WITH ORDINALITY AS i (item, ord)))
WHERE jsonb_typeof(d.content -> 'items') = 'array'
  AND jsonb_array_length(d.content -> 'items') > 0
  AND d.content::text LIKE '%token=%';

ALTER TABLE deliveries
    DROP COLUMN body_text,
    DROP COLUMN body_html,
    DROP COLUMN link;

-- Findings held for a digest keep their line without the link, and the link's claims.
ALTER TABLE digest_items ADD COLUMN link_claims jsonb;
UPDATE digest_items
SET link_claims = CASE WHEN digest_day IS NULL
                       THEN pg_temp.planned_link(signal_id::text, person_id, held_at,
                                                 study_id || ':' || person_id || ':'
                                                 || signal_id || ':' || item)
                  END,
    line = regexp_replace(line, pg_temp.link_pattern(), '')
WHERE line ~ pg_temp.link_pattern();

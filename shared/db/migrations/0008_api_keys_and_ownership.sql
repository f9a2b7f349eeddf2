-- Who may send what (issue 12): API keys, the sender recorded on every receipt, and which
-- source owns each subject and each reported record (so only it, or a key allowed to amend
-- others, may move the subject or correct the record).

-- One row per API key. Only the SHA-256 of the secret is kept: the secret is 256 random
-- bits, so a fast hash cannot be reversed and the table is useless to whoever reads it.
-- Rows are never deleted (an inspector can tell who could write, when); only the times
-- that end a key may change, and only to end it sooner.
CREATE TABLE api_keys (
    key_id           text        PRIMARY KEY CHECK (key_id ~ '^[0-9a-f]{16}$'),
    source           text        NOT NULL CHECK (source ~ '^[A-Za-z0-9._-]{1,64}$'),
    studies          text[]      NOT NULL CHECK (cardinality(studies) > 0),
    sites            text[]      CHECK (sites IS NULL OR cardinality(sites) > 0),
    may_amend_others boolean     NOT NULL DEFAULT false,
    secret_sha256    bytea       NOT NULL CHECK (length(secret_sha256) = 32),
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at       timestamptz,
    revoked_at       timestamptz,
    rotated_from     text        REFERENCES api_keys (key_id)
);
CREATE INDEX api_keys_source_idx ON api_keys (source);

CREATE FUNCTION vigil_api_keys_only_end_sooner() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.key_id, NEW.source, NEW.studies, NEW.sites, NEW.may_amend_others,
        NEW.secret_sha256, NEW.created_at, NEW.rotated_from)
       IS DISTINCT FROM
       (OLD.key_id, OLD.source, OLD.studies, OLD.sites, OLD.may_amend_others,
        OLD.secret_sha256, OLD.created_at, OLD.rotated_from)
    THEN
        RAISE EXCEPTION 'api key %: only expires_at and revoked_at may change', OLD.key_id
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Create a new key (vigil keys create or rotate) instead.';
    END IF;
    IF OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS DISTINCT FROM OLD.revoked_at THEN
        RAISE EXCEPTION 'api key %: a revocation cannot be undone or moved', OLD.key_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF OLD.expires_at IS NOT NULL
       AND (NEW.expires_at IS NULL OR NEW.expires_at > OLD.expires_at) THEN
        RAISE EXCEPTION 'api key %: an expiry can only move earlier', OLD.key_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER api_keys_only_end_sooner BEFORE UPDATE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION vigil_api_keys_only_end_sooner();
CREATE TRIGGER api_keys_refuse_delete BEFORE DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION vigil_refuse_change();
CREATE TRIGGER api_keys_refuse_truncate BEFORE TRUNCATE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION vigil_refuse_change();

-- Who sent each message, as authenticated (NULL: not authenticated, or before this
-- migration), and whether only the first bytes of a refused message were kept.
ALTER TABLE received_messages
    ADD COLUMN principal_source text,
    ADD COLUMN credential       text,
    ADD COLUMN raw_truncated    boolean;

-- The source that first enrolled a subject through ingest owns it; site_id is where the
-- subject is now (moved only by the owner or a key allowed to amend others).
CREATE TABLE ingest_subject_owners (
    study_id         text        NOT NULL,
    subject_id       text        NOT NULL,
    owner_source     text        NOT NULL,
    site_id          text        NOT NULL,
    first_receipt_id uuid        NOT NULL,
    claimed_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    moved_at         timestamptz,
    PRIMARY KEY (study_id, subject_id)
);

-- The source that first reported an observation, an adverse event or a medication record
-- owns it: later reports of it (corrections, cancellations, updates) are its to send.
CREATE TABLE ingest_record_owners (
    study_id         text        NOT NULL,
    subject_id       text        NOT NULL,
    kind             text        NOT NULL
        CHECK (kind IN ('observation', 'adverse-event', 'medication')),
    identity         text        NOT NULL,
    owner_source     text        NOT NULL,
    first_receipt_id uuid        NOT NULL,
    claimed_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (study_id, subject_id, kind, identity)
);

-- Ownership is never given away or forgotten: no deletes, and an owner never changes.
CREATE FUNCTION vigil_owner_is_permanent() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.owner_source IS DISTINCT FROM OLD.owner_source
       OR NEW.first_receipt_id IS DISTINCT FROM OLD.first_receipt_id THEN
        RAISE EXCEPTION 'table %: the owner of a record never changes', TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER ingest_subject_owners_permanent BEFORE UPDATE ON ingest_subject_owners
    FOR EACH ROW EXECUTE FUNCTION vigil_owner_is_permanent();
CREATE TRIGGER ingest_record_owners_permanent BEFORE UPDATE ON ingest_record_owners
    FOR EACH ROW EXECUTE FUNCTION vigil_owner_is_permanent();
CREATE TRIGGER ingest_subject_owners_refuse_delete BEFORE DELETE ON ingest_subject_owners
    FOR EACH ROW EXECUTE FUNCTION vigil_refuse_change();
CREATE TRIGGER ingest_subject_owners_refuse_truncate BEFORE TRUNCATE ON ingest_subject_owners
    FOR EACH STATEMENT EXECUTE FUNCTION vigil_refuse_change();
CREATE TRIGGER ingest_record_owners_refuse_delete BEFORE DELETE ON ingest_record_owners
    FOR EACH ROW EXECUTE FUNCTION vigil_refuse_change();
CREATE TRIGGER ingest_record_owners_refuse_truncate BEFORE TRUNCATE ON ingest_record_owners
    FOR EACH STATEMENT EXECUTE FUNCTION vigil_refuse_change();

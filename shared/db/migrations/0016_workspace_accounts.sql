-- The workspace's people (issue 17): credentials of the roster people who sign in, their
-- sessions, and OpenID Connect sign-ins under way. Who a person is and what they may see
-- stays in the study rosters; these tables hold only what proves it is them.

-- One row per person who has (had) a password or a second factor. The password is kept as
-- an Argon2id hash; the TOTP secret is sealed (AES-GCM) with VIGIL_WORKSPACE_SECRET_KEY,
-- so a copy of the database alone cannot make one-time codes.
CREATE TABLE workspace_accounts (
    person_id           text        PRIMARY KEY CHECK (length(person_id) BETWEEN 1 AND 200),
    password_hash       text        CHECK (password_hash IS NULL OR password_hash LIKE '$argon2%'),
    password_changed_at timestamptz,
    totp_secret         bytea,
    totp_enabled_at     timestamptz,
    totp_pending        bytea,
    totp_last_step      bigint,
    failed_attempts     integer     NOT NULL DEFAULT 0 CHECK (failed_attempts >= 0),
    locked_until        timestamptz,
    created_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    CHECK ((totp_secret IS NULL) = (totp_enabled_at IS NULL))
);

-- One row per session. Only the SHA-256 of the session token is kept (the token is 256
-- random bits): whoever reads the table cannot take over a session. A session in stage
-- 'second-factor' has passed the password and waits for the one-time code; it opens no page.
CREATE TABLE workspace_sessions (
    token_sha256 bytea       PRIMARY KEY CHECK (length(token_sha256) = 32),
    person_id    text        NOT NULL,
    stage        text        NOT NULL CHECK (stage IN ('second-factor', 'signed-in')),
    method       text        NOT NULL CHECK (method IN ('password', 'password+totp', 'oidc')),
    csrf         text        NOT NULL CHECK (length(csrf) >= 32),
    next_url     text        NOT NULL DEFAULT '/workspace/',
    created_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz
);
CREATE INDEX workspace_sessions_person_idx ON workspace_sessions (person_id)
    WHERE revoked_at IS NULL;

-- OpenID Connect sign-ins between the redirect to the identity provider and its answer:
-- the state (hashed), nonce and PKCE verifier, for ten minutes at most, used once.
CREATE TABLE workspace_oidc_logins (
    state_sha256  bytea       PRIMARY KEY CHECK (length(state_sha256) = 32),
    nonce         text        NOT NULL,
    code_verifier text        NOT NULL,
    next_url      text        NOT NULL,
    expires_at    timestamptz NOT NULL
);

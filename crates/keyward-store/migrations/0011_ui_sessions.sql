-- Dashboard sessions: the browser holds a random id in a cookie, and only its SHA-256 hash is
-- stored, with the API token that signed in (so that revoking or expiring the token ends the
-- session at once), when it was last used (the idle limit) and when it ends whatever happens.
CREATE TABLE ui_sessions (
    hash         BYTEA PRIMARY KEY,
    token_id     TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    idle_ms      BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX ui_sessions_token ON ui_sessions (token_id);

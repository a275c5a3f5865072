-- API tokens: who may call the admin API, with what role, for which organization. Only a
-- SHA-256 hash of each token is stored (tokens are 256-bit random values, so a plain hash is
-- enough); the token itself is shown once, at creation.
CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL,
    -- '' for the admin role (every organization).
    org         TEXT NOT NULL,
    prefix      TEXT NOT NULL,
    hash        BYTEA NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    created_by  TEXT NOT NULL,
    expires_at  BIGINT,
    revoked_at  BIGINT,
    last_used_at BIGINT
);

-- Gateway tokens: what an LLM client sends to the gateway instead of a provider key. Bound to
-- one organization, optionally to some providers, with an optional rate limit; stored only as
-- a SHA-256 hash.
CREATE TABLE gateway_tokens (
    id           TEXT PRIMARY KEY,
    org          TEXT NOT NULL REFERENCES organizations (id),
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    hash         BYTEA NOT NULL UNIQUE,
    -- Comma-separated provider ids; '' allows every provider.
    providers    TEXT NOT NULL,
    rpm          BIGINT,
    created_at   BIGINT NOT NULL,
    created_by   TEXT NOT NULL,
    expires_at   BIGINT,
    revoked_at   BIGINT,
    last_used_at BIGINT
);

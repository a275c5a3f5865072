-- Keyward's vault schema. One file serves SQLite and PostgreSQL: it sticks to types and
-- statements both accept (TEXT, BIGINT, BYTEA; booleans as 0/1 BIGINT; times as Unix
-- milliseconds). See docs/ARCHITECTURE.md, "Storage".

CREATE TABLE organizations (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    created_by  TEXT NOT NULL
);

CREATE TABLE credentials (
    id            TEXT PRIMARY KEY,
    org_id        TEXT NOT NULL REFERENCES organizations (id),
    provider      TEXT NOT NULL,
    name          TEXT NOT NULL,
    modalities    TEXT NOT NULL,
    fields        TEXT NOT NULL,
    active        BIGINT NOT NULL,
    priority      BIGINT NOT NULL,
    weight        BIGINT NOT NULL,
    key_hint      TEXT NOT NULL,
    -- The master key id wrapping the data key; the envelope in wrapped_dek says the same and
    -- is authoritative (the kid is part of its associated data). Kept as a column to count and
    -- select rows per kid without parsing envelopes.
    kid           TEXT NOT NULL,
    wrapped_dek   BYTEA NOT NULL,
    sealed_secret BYTEA,
    created_at    BIGINT NOT NULL,
    created_by    TEXT NOT NULL,
    updated_at    BIGINT NOT NULL,
    updated_by    TEXT NOT NULL,
    last_used_at  BIGINT,
    version       BIGINT NOT NULL,
    UNIQUE (org_id, provider, name)
);

CREATE INDEX credentials_org_provider ON credentials (org_id, provider);
CREATE INDEX credentials_kid ON credentials (kid, id);

CREATE TABLE config_vars (
    id           TEXT PRIMARY KEY,
    -- '' for a global variable, else the organization id.
    scope        TEXT NOT NULL,
    name         TEXT NOT NULL,
    sensitive    BIGINT NOT NULL,
    -- Set for non-sensitive variables only.
    value        TEXT,
    -- Set for sensitive variables only.
    kid          TEXT,
    wrapped_dek  BYTEA,
    sealed_value BYTEA,
    description  TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    created_by   TEXT NOT NULL,
    updated_at   BIGINT NOT NULL,
    updated_by   TEXT NOT NULL,
    version      BIGINT NOT NULL,
    UNIQUE (scope, name)
);

CREATE INDEX config_vars_kid ON config_vars (kid, id);

-- Keys of the vault itself (the audit chain key), wrapped under a master key like data keys.
CREATE TABLE vault_keys (
    name        TEXT PRIMARY KEY,
    kid         TEXT NOT NULL,
    wrapped     BYTEA NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE audit_events (
    seq       BIGINT PRIMARY KEY,
    at        BIGINT NOT NULL,
    actor     TEXT NOT NULL,
    org       TEXT,
    category  TEXT NOT NULL,
    action    TEXT NOT NULL,
    target    TEXT NOT NULL,
    outcome   TEXT NOT NULL,
    details   TEXT NOT NULL,
    link      BYTEA NOT NULL
);

CREATE INDEX audit_events_org ON audit_events (org, seq);

-- The head of the audit chain: one row. Appending updates it first, which serialises writers
-- on both SQLite and PostgreSQL and lets verification notice a truncated tail.
CREATE TABLE audit_head (
    id    BIGINT PRIMARY KEY,
    seq   BIGINT NOT NULL,
    link  BYTEA NOT NULL
);

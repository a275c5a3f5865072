-- Single sign-on (issue 22). A console session may be a person's instead of a token's: `person`
-- holds who the identity provider said they are and the grants the rules gave them at sign-in
-- (JSON); `token_id` is then `sso:` and a digest of issuer and subject, so that the bound on
-- sessions per token bounds a person's too. `from_addr` is where the session signed in from,
-- for the admins' list of sessions.
ALTER TABLE ui_sessions ADD COLUMN person TEXT;
ALTER TABLE ui_sessions ADD COLUMN from_addr TEXT;

-- A sign-in under way: the hash of its `state` (the browser carries the state through the
-- provider), its nonce and PKCE verifier, where to go after, and when it lapses. Taken (deleted)
-- at the callback, so that a state, and the code that came with it, works once.
CREATE TABLE sso_logins (
    state_hash BYTEA PRIMARY KEY,
    nonce      TEXT NOT NULL,
    verifier   TEXT NOT NULL,
    return_to  TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sso_logins_created ON sso_logins (created_at);

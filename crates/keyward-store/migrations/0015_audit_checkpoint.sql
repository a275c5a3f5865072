-- How far the audit chain has been verified: the last event checked and its link, sealed with
-- an HMAC under the chain key. The console verifies from here on (new events only) instead of
-- reading the whole log on every page load; `keyward events verify` still reads all of it.
CREATE TABLE audit_checkpoint (
    id BIGINT PRIMARY KEY,
    seq BIGINT NOT NULL,
    link BYTEA NOT NULL,
    at BIGINT NOT NULL,
    mac BYTEA NOT NULL
);

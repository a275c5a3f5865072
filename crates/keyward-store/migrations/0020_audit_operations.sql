-- Operating the audit trail (issue 26).
--
-- Where the chain begins once old events are pruned: event `seq` (gone, with everything before
-- it) had the link `link`; `at` is when the prune happened. Sealed with an HMAC under the chain
-- key, so that the record cannot be moved forward to hide events removed without the key.
CREATE TABLE audit_base (
    id   BIGINT PRIMARY KEY,
    seq  BIGINT NOT NULL,
    link BYTEA NOT NULL,
    at   BIGINT NOT NULL,
    mac  BYTEA NOT NULL
);

-- The audit-logger policy the servers run with, as the last one started or reloaded it
-- (`source` says from where), so that `keyward events prune` keeps it too. Booleans as 0/1.
CREATE TABLE audit_policy (
    id             BIGINT PRIMARY KEY,
    retention_days BIGINT,
    immutable      BIGINT NOT NULL,
    log_all_access BIGINT NOT NULL,
    source         TEXT NOT NULL,
    updated_at     BIGINT NOT NULL
);

-- How far each audit sink has delivered (`seq`, the last event it took), and which replica
-- ships to it (`holder`, until `lease_until`): one at a time, the others stand by.
CREATE TABLE audit_sinks (
    name        TEXT PRIMARY KEY,
    seq         BIGINT NOT NULL,
    holder      TEXT NOT NULL,
    lease_until BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

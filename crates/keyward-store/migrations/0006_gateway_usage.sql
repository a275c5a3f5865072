-- Gateway usage: per credential, gateway token and static target, requests by upstream status,
-- added to in batches by the gateway (never one write per request). Status 0 counts requests
-- that got no answer (connection error, timeout). Rows outlive what they count, as a record of
-- past use. The organization is part of the key: a static target's id is only a name in a
-- configuration file, and the same name may serve another organization after a reload.
CREATE TABLE gateway_usage (
    org          TEXT NOT NULL,
    subject_kind TEXT NOT NULL,
    subject_id   TEXT NOT NULL,
    status       INTEGER NOT NULL,
    requests     BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    PRIMARY KEY (org, subject_kind, subject_id, status)
);

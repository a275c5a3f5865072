-- Gateway usage: per credential and per gateway token, requests by upstream status, added to in
-- batches by the gateway (never one write per request). Status 0 counts requests that got no
-- answer (connection error, timeout). Rows outlive what they count, as a record of past use.
CREATE TABLE gateway_usage (
    subject_kind TEXT NOT NULL,
    subject_id   TEXT NOT NULL,
    org          TEXT NOT NULL,
    status       INTEGER NOT NULL,
    requests     BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    PRIMARY KEY (subject_kind, subject_id, status)
);
CREATE INDEX gateway_usage_org ON gateway_usage (org, subject_kind);

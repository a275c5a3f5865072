-- Gateway usage by the hour, for the console's charts (the last 24 hours and 7 days): the same
-- counts as gateway_usage, kept per hour (milliseconds since the epoch, floored to the hour).
-- Buckets older than eight days are pruned as new ones are written.
CREATE TABLE usage_hourly (
    org          TEXT NOT NULL,
    subject_kind TEXT NOT NULL,
    subject_id   TEXT NOT NULL,
    hour         BIGINT NOT NULL,
    status       INTEGER NOT NULL,
    requests     BIGINT NOT NULL,
    PRIMARY KEY (org, subject_kind, subject_id, hour, status)
);
CREATE INDEX usage_hourly_hour ON usage_hourly (hour);

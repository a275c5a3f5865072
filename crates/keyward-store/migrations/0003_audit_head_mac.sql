-- An HMAC over the head of the audit chain (sequence number and last link), under the chain
-- key, so that dropping events from the end and rewinding the head to match is detected.
ALTER TABLE audit_head ADD COLUMN mac BYTEA;

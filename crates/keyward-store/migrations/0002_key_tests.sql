-- The outcome of the last `keyward cred test`: when, and what the provider said.
ALTER TABLE credentials ADD COLUMN last_tested_at BIGINT;
ALTER TABLE credentials ADD COLUMN last_test_result TEXT;

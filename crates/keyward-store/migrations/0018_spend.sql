-- Spend (issue 23): what the gateway's answers reported, by the hour, per organization, what
-- it counts against (a gateway token: every request; a credential, static target or the
-- environment: the one that answered), provider and model ('' when the answer named none).
-- `unmetered` counts requests whose answer reported no tokens, `unpriced` those whose model
-- has no price; their tokens and cost are not guessed. Money is in integer micro-dollars.
-- Buckets older than 400 days are pruned as new ones are written.
CREATE TABLE spend_hourly (
    org                TEXT NOT NULL,
    subject_kind       TEXT NOT NULL,
    subject_id         TEXT NOT NULL,
    provider           TEXT NOT NULL,
    model              TEXT NOT NULL,
    hour               BIGINT NOT NULL,
    requests           BIGINT NOT NULL,
    unmetered          BIGINT NOT NULL,
    unpriced           BIGINT NOT NULL,
    input_tokens       BIGINT NOT NULL,
    output_tokens      BIGINT NOT NULL,
    cached_tokens      BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    cost_micros        BIGINT NOT NULL,
    PRIMARY KEY (org, subject_kind, subject_id, provider, model, hour)
);
CREATE INDEX spend_hourly_org_hour ON spend_hourly (org, hour);
CREATE INDEX spend_hourly_hour ON spend_hourly (hour);

-- The operator's prices (`keyward prices import`), over the ones Keyward ships: one row per
-- provider and model, the price as JSON (micro-dollars per million tokens).
CREATE TABLE model_prices (
    provider    TEXT NOT NULL,
    model       TEXT NOT NULL,
    price       TEXT NOT NULL,
    imported_at BIGINT NOT NULL,
    PRIMARY KEY (provider, model)
);

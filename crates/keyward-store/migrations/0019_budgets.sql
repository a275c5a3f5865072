-- Budgets and limits (issue 23). A row of `budgets` caps what an organization, one of its
-- gateway tokens or one of its credentials may spend in a period: money (`usd`, in
-- micro-dollars), requests or tokens; `minute` periods are the rate limits (rpm, tpm).
-- `alerts` are the percentages (JSON) at which an audit event, and a POST to `webhook` when
-- set, say how much is spent.
CREATE TABLE budgets (
    id         TEXT PRIMARY KEY,
    org        TEXT NOT NULL,
    scope      TEXT NOT NULL,
    scope_id   TEXT NOT NULL,
    metric     TEXT NOT NULL,
    period     TEXT NOT NULL,
    amount     BIGINT NOT NULL,
    alerts     TEXT NOT NULL,
    webhook    TEXT,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    UNIQUE (org, scope, scope_id, metric, period)
);

-- What a budget's period has spent, as the replicas reported it, and the highest alert sent.
-- `budget_id` is a budget's id, or `rpm:`/`tpm:` and a gateway token's id for the limits a
-- gateway token carries itself.
CREATE TABLE budget_periods (
    budget_id    TEXT NOT NULL,
    period_start BIGINT NOT NULL,
    spent        BIGINT NOT NULL,
    alerted      INTEGER NOT NULL,
    PRIMARY KEY (budget_id, period_start)
);

-- The allowance each replica holds of a period (`holder`: the process), spent locally without
-- asking the database, and given back when it lapses (`expires_at`) unless renewed.
CREATE TABLE budget_leases (
    budget_id    TEXT NOT NULL,
    period_start BIGINT NOT NULL,
    holder       TEXT NOT NULL,
    amount       BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    PRIMARY KEY (budget_id, period_start, holder)
);
CREATE INDEX budget_leases_expires ON budget_leases (expires_at);

-- Which models a gateway token may ask for (comma-separated names or patterns with `*`;
-- empty: any), and its tokens-per-minute limit.
ALTER TABLE gateway_tokens ADD COLUMN models TEXT NOT NULL DEFAULT '';
ALTER TABLE gateway_tokens ADD COLUMN tpm BIGINT;

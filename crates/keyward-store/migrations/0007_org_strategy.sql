-- How an organization picks among several active credentials of one provider, unless a request
-- says otherwise: priority, round_robin or weighted.
ALTER TABLE organizations ADD COLUMN strategy TEXT NOT NULL DEFAULT 'priority';

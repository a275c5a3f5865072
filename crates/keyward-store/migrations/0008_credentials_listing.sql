-- Listings page in SQL in this order (organization, provider, priority, age), and resolution
-- reads an organization's keys for one provider in it.
CREATE INDEX credentials_listing ON credentials (org_id, provider, priority, created_at, id);

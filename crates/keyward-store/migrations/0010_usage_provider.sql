-- The provider the counted requests went to, so that usage of static targets and of the
-- environment fallback shows it (credentials have theirs in their own row).
ALTER TABLE gateway_usage ADD COLUMN provider TEXT;

-- Whether resolutions for an organization may fall back to the process environment: 1 (on),
-- 0 (off), or NULL for the caller's default (on for the CLI and library, the server's
-- --env-fallback for a server).
ALTER TABLE organizations ADD COLUMN env_fallback INTEGER;

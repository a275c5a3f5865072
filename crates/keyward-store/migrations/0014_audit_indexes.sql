-- A credential's history (the console's credential page, `target = credential:ID`) without
-- reading the whole log: a filter that matches little otherwise reads back through every event
-- (about 3 us an event on SQLite). Each index costs every append; this one pays for itself on
-- the page that needs it, the others (actor, action) do not (docs/PERFORMANCE.md, growth).
CREATE INDEX audit_events_target ON audit_events (target, seq);

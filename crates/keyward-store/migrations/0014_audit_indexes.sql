-- The audit log's filters that look far back: a credential's history (the console's credential
-- page, `target = credential:ID`) and one actor's doings (`actor = token:ID`). Without these a
-- filter that matches little reads the whole log (about 3 us an event on SQLite).
CREATE INDEX audit_events_target ON audit_events (target, seq);
CREATE INDEX audit_events_actor ON audit_events (actor, seq);

-- 0006: the events outbox. Every change worth knowing writes one row here in the same
-- transaction as the change (server/events/event_log.h); the types are listed in
-- server/events/event_types.h.
--
-- Ids come from the single row of event_sequence, incremented by the writing transaction, not
-- from a sequence. A sequence hands out ids at insert time, so a transaction holding id 7 may
-- commit after one holding id 8, and a reader that saw 8 and resumes "after 8" misses 7 for
-- good. The counter row instead stays locked by its writer until commit: the next writer waits,
-- so ids are in commit order and, since a rolled-back increment is undone, without gaps. A
-- reader that sees id n sees every id below it. The price is that event-writing transactions
-- commit one at a time from their event on, which is why events are appended last in their
-- transaction and why the check-in path writes none.

CREATE TABLE event_sequence (
  singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
  last_id   BIGINT NOT NULL
);
INSERT INTO event_sequence (last_id) VALUES (0);

CREATE TABLE events (
  id            BIGINT PRIMARY KEY,                  -- event_sequence.last_id, commit order
  type          TEXT NOT NULL CHECK (type ~ '^[a-z_]+\.[a-z_]+$'),  -- "family.what"
  occurred_at   TIMESTAMPTZ NOT NULL DEFAULT now(),  -- the change's transaction start
  actor         TEXT NOT NULL,                       -- "ci#12", "controller", "gate:stage-1"
  subject_kind  TEXT NOT NULL,                       -- "model", "rollout", "device", ...
  subject_id    TEXT NOT NULL,
  payload       JSONB NOT NULL DEFAULT '{}'
);
-- Retention deletes by age.
CREATE INDEX events_occurred_at ON events (occurred_at);
-- "Everything about rollout ro-12 / device dev-..." reads a subject's events in id order.
CREATE INDEX events_subject ON events (subject_kind, subject_id, id);

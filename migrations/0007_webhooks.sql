-- 0007: webhooks. Admins subscribe a URL to event types; the dispatcher (one replica at a
-- time, server/webhooks/webhook_dispatcher.h) copies each matching event into a delivery row
-- and POSTs it until the receiver answers 2xx or the attempts run out.
--
-- The secret is needed in clear to sign (HMAC), so it cannot be hashed: it is sealed with
-- AES-256-GCM under the server's --secret-key-file key (secret_sealed = ciphertext || tag,
-- a random nonce per secret).
--
-- cursor_event_id is the last event id the dispatcher examined for the webhook. Moving it and
-- inserting the delivery rows of the events it passed happen in one transaction, so after a
-- crash every event is either behind the cursor with its delivery row, or ahead of it.
CREATE TABLE webhooks (
  id              BIGSERIAL PRIMARY KEY,
  url             TEXT NOT NULL CHECK (length(url) <= 2048),
  event_types     TEXT[] NOT NULL DEFAULT '{}',   -- exact types or "family.*"; empty: all
  secret_nonce    BYTEA NOT NULL CHECK (length(secret_nonce) = 12),
  secret_sealed   BYTEA NOT NULL,
  cursor_event_id BIGINT NOT NULL,
  created_by      TEXT NOT NULL,
  created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One row per (webhook, event) to deliver. The body is copied at cursor time so retention
-- pruning the event does not lose a delivery still owed. Removing a webhook drops its rows.
CREATE TABLE webhook_deliveries (
  id              BIGSERIAL PRIMARY KEY,
  webhook_id      BIGINT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
  event_id        BIGINT NOT NULL,
  event_type      TEXT NOT NULL,
  body            TEXT NOT NULL,                   -- the event in protobuf JSON
  state           TEXT NOT NULL DEFAULT 'PENDING' CHECK (state IN ('PENDING', 'DELIVERED', 'DEAD')),
  attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  last_http_status INTEGER,                        -- NULL: no answer (refused, timed out)
  last_error      TEXT,
  created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
  UNIQUE (webhook_id, event_id)
);
-- The dispatcher's question: each webhook's oldest pending delivery.
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (webhook_id, event_id) WHERE state = 'PENDING';
-- Admins list a webhook's deliveries by state.
CREATE INDEX webhook_deliveries_by_state ON webhook_deliveries (webhook_id, state, id);

-- 0002: the fleet: enrollment tokens, devices, rollouts, deployments, telemetry.
-- Never edit a landed migration: add a new numbered file.

CREATE TABLE enrollment_tokens (
  id           BIGSERIAL PRIMARY KEY,
  name         TEXT NOT NULL,
  token_hash   TEXT NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
  max_uses     INTEGER NOT NULL DEFAULT 0 CHECK (max_uses >= 0),  -- 0: unlimited
  uses         INTEGER NOT NULL DEFAULT 0,
  auto_accept  BOOLEAN NOT NULL DEFAULT FALSE,
  created_by   TEXT NOT NULL,
  created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
  expires_at   TIMESTAMPTZ,
  revoked_at   TIMESTAMPTZ
);

CREATE TABLE devices (
  id                BIGSERIAL PRIMARY KEY,
  device_id         TEXT NOT NULL UNIQUE,            -- public id, "dev-<hex>"
  hardware_id       TEXT NOT NULL UNIQUE,
  admission         TEXT NOT NULL CHECK (admission IN
                      ('PREAUTHORIZED', 'PENDING', 'ACCEPTED', 'REJECTED', 'DECOMMISSIONED')),
  -- attributes, as columns so selectors compile to SQL
  site              TEXT NOT NULL DEFAULT '',
  hardware_revision TEXT NOT NULL DEFAULT '',
  firmware_version  TEXT NOT NULL DEFAULT '',
  sensor_rows       INTEGER NOT NULL DEFAULT 0,
  sensor_cols       INTEGER NOT NULL DEFAULT 0,
  labels            JSONB NOT NULL DEFAULT '{}',
  attributes        BYTEA NOT NULL DEFAULT '',          -- modelfleet.v1.DeviceAttributes, as reported
  -- the device credential: an api_tokens row of role 'device' named after device_id
  token_id          BIGINT REFERENCES api_tokens(id),
  -- what it reports it really runs
  running_model     TEXT NOT NULL DEFAULT '',
  running_version   TEXT NOT NULL DEFAULT '',
  running_digest    TEXT NOT NULL DEFAULT '',
  agent_state       TEXT NOT NULL DEFAULT 'UNSPECIFIED',
  last_seen         TIMESTAMPTZ,
  enrolled_by       TEXT NOT NULL DEFAULT '',
  created_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX devices_site ON devices (site);
-- The check-in path finds a device by its credential.
CREATE UNIQUE INDEX devices_token ON devices (token_id);
-- No index on last_seen: it changes on every written-behind check-in, and an index on it
-- would make every such update rewrite the row's index entries (no HOT updates).

-- Replicas poll for recently revoked tokens to drop them from their authentication caches.
CREATE INDEX api_tokens_revoked ON api_tokens (revoked_at) WHERE revoked_at IS NOT NULL;

CREATE TABLE device_events (
  id          BIGSERIAL PRIMARY KEY,
  device_id   BIGINT NOT NULL REFERENCES devices(id),
  at          TIMESTAMPTZ NOT NULL DEFAULT now(),
  kind        TEXT NOT NULL,
  detail      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX device_events_device ON device_events (device_id, id);

CREATE TABLE rollouts (
  id                 BIGSERIAL PRIMARY KEY,
  model_id           BIGINT NOT NULL REFERENCES models(id),
  version_id         BIGINT NOT NULL REFERENCES model_versions(id),
  target             TEXT NOT NULL,
  stages             BYTEA NOT NULL,                  -- modelfleet.v1.CreateRolloutRequest (stages only)
  current_stage      INTEGER NOT NULL DEFAULT 0,
  state              TEXT NOT NULL CHECK (state IN ('QUEUED', 'RUNNING', 'WAITING_APPROVAL', 'PAUSED',
                                                   'COMPLETED', 'ABORTED', 'ROLLED_BACK')),
  state_reason       TEXT NOT NULL DEFAULT '',
  cohort_cutoff      DOUBLE PRECISION NOT NULL DEFAULT 0,
  auto_rollback      BOOLEAN NOT NULL DEFAULT FALSE,
  deployment_timeout_seconds INTEGER NOT NULL,
  created_by         TEXT NOT NULL,
  created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
  stage_started_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX rollouts_active ON rollouts (state) WHERE state IN ('QUEUED', 'RUNNING', 'WAITING_APPROVAL', 'PAUSED');

-- Every rollout and stage transition: who or which gate, when, why.
CREATE TABLE rollout_events (
  id          BIGSERIAL PRIMARY KEY,
  rollout_id  BIGINT NOT NULL REFERENCES rollouts(id),
  at          TIMESTAMPTZ NOT NULL DEFAULT now(),
  kind        TEXT NOT NULL,
  from_state  TEXT NOT NULL,
  to_state    TEXT NOT NULL,
  stage       INTEGER NOT NULL,
  actor       TEXT NOT NULL,
  reason      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX rollout_events_rollout ON rollout_events (rollout_id, id);

-- One device's application of one rollout (or of its rollback).
CREATE TABLE deployments (
  id                BIGSERIAL PRIMARY KEY,
  rollout_id        BIGINT NOT NULL REFERENCES rollouts(id),
  device_id         BIGINT NOT NULL REFERENCES devices(id),
  is_rollback       BOOLEAN NOT NULL DEFAULT FALSE,
  target_version    TEXT NOT NULL,
  previous_model    TEXT NOT NULL DEFAULT '',
  previous_version  TEXT NOT NULL DEFAULT '',
  step              TEXT NOT NULL,
  bytes_done        BIGINT NOT NULL DEFAULT 0,
  reason            TEXT NOT NULL DEFAULT '',
  attempt           INTEGER NOT NULL DEFAULT 1,
  created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
  UNIQUE (rollout_id, device_id, is_rollback)
);
CREATE INDEX deployments_step ON deployments (rollout_id, step);
CREATE INDEX deployments_device ON deployments (device_id);

-- On-device telemetry, summed per device and model version (written behind in batches).
CREATE TABLE version_telemetry (
  device_id        BIGINT NOT NULL REFERENCES devices(id),
  model            TEXT NOT NULL,
  version          TEXT NOT NULL,
  inference_count  BIGINT NOT NULL DEFAULT 0,
  error_count      BIGINT NOT NULL DEFAULT 0,
  -- inference-weighted sum of reported p95 latencies, so sum / inference_count is a mean p95
  p95_weighted_ms  DOUBLE PRECISION NOT NULL DEFAULT 0,
  class_histogram  JSONB NOT NULL DEFAULT '{}',
  confidence_sum   DOUBLE PRECISION NOT NULL DEFAULT 0,
  updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (device_id, model, version)
);

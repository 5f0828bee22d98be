-- 0004: telemetry aggregated in time windows, so that a million devices checking in every
-- minute cost a handful of rows per flush instead of one row per check-in.
--
-- One row per (rollout arm, model, version, window): what every device of that arm reported
-- for that model version during the window, summed. Several replicas add to the same row
-- (INSERT ... ON CONFLICT DO UPDATE adding), so the sums are exact whoever wrote them. The
-- rollout gates read the arm of their rollout; the windows can be plotted over time.
-- version_telemetry (0002) keeps the per-device sums, written only with the device's status.
CREATE TABLE telemetry_windows (
  -- the rollout whose cohort held the reporting devices for this model; 0: no rollout's
  -- cohort. Not a foreign key: 0 is no rollout, and telemetry outlives nothing it refers to.
  rollout_id       BIGINT NOT NULL DEFAULT 0,
  model            TEXT NOT NULL,
  version          TEXT NOT NULL,
  window_start     TIMESTAMPTZ NOT NULL,            -- start of the window (one minute by default)
  inference_count  BIGINT NOT NULL DEFAULT 0,
  error_count      BIGINT NOT NULL DEFAULT 0,
  -- inference-weighted sum of reported p95 latencies, so sum / inference_count is a mean p95
  p95_weighted_ms  DOUBLE PRECISION NOT NULL DEFAULT 0,
  confidence_sum   DOUBLE PRECISION NOT NULL DEFAULT 0,
  class_histogram  JSONB NOT NULL DEFAULT '{}',
  reports          BIGINT NOT NULL DEFAULT 0,       -- telemetry entries summed into the row
  updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
  -- The arm first: a rollout's gates read (rollout_id, model) every few seconds.
  PRIMARY KEY (rollout_id, model, version, window_start)
);
-- A version's figures over time, across arms (plots).
CREATE INDEX telemetry_windows_version_time ON telemetry_windows (model, version, window_start);

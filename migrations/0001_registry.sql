-- 0001: the model registry: models, versions (manifests), aliases and their history,
-- API tokens (stored hashed) and trusted publisher keys.
-- Never edit a landed migration: add a new numbered file.

CREATE TABLE models (
  id            BIGSERIAL PRIMARY KEY,
  name          TEXT NOT NULL UNIQUE,
  description   TEXT NOT NULL DEFAULT '',
  task          TEXT NOT NULL DEFAULT '',
  -- the rest of modelfleet.v1.Model (class labels, input spec), serialized protobuf
  definition    BYTEA NOT NULL,
  archived      BOOLEAN NOT NULL DEFAULT FALSE,
  created_by    TEXT NOT NULL,
  created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE model_versions (
  id             BIGSERIAL PRIMARY KEY,
  model_id       BIGINT NOT NULL REFERENCES models(id),
  version        TEXT NOT NULL,
  state          TEXT NOT NULL CHECK (state IN ('READY', 'ARCHIVED')),
  digest         TEXT NOT NULL CHECK (digest ~ '^[0-9a-f]{64}$'),
  size_bytes     BIGINT NOT NULL CHECK (size_bytes >= 0),
  format         TEXT NOT NULL,
  -- filterable copies of manifest fields
  metrics        JSONB NOT NULL DEFAULT '{}',
  labels         JSONB NOT NULL DEFAULT '{}',
  -- the whole modelfleet.v1.Manifest as pushed (serialized protobuf), signature included
  manifest       BYTEA NOT NULL,
  signature_key_id TEXT,
  blob_key       TEXT NOT NULL,
  created_by     TEXT NOT NULL,
  created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
  archived_at    TIMESTAMPTZ,
  UNIQUE (model_id, version)
);
CREATE INDEX model_versions_digest ON model_versions (digest);

CREATE TABLE aliases (
  model_id    BIGINT NOT NULL REFERENCES models(id),
  alias       TEXT NOT NULL,
  version_id  BIGINT NOT NULL REFERENCES model_versions(id),
  updated_by  TEXT NOT NULL,
  updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (model_id, alias)
);
CREATE INDEX aliases_version ON aliases (version_id);

CREATE TABLE alias_history (
  id              BIGSERIAL PRIMARY KEY,
  model_id        BIGINT NOT NULL REFERENCES models(id),
  alias           TEXT NOT NULL,
  -- version strings, not ids: the history outlives purged versions
  from_version    TEXT,
  to_version      TEXT,
  actor           TEXT NOT NULL,
  reason          TEXT NOT NULL DEFAULT '',
  at              TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX alias_history_model_alias ON alias_history (model_id, alias, id);

CREATE TABLE api_tokens (
  id           BIGSERIAL PRIMARY KEY,
  name         TEXT NOT NULL,
  role         TEXT NOT NULL CHECK (role IN ('admin', 'publisher', 'device', 'viewer')),
  -- SHA-256 (hex) of the secret; the secret itself is never stored
  token_hash   TEXT NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
  created_by   TEXT NOT NULL,
  created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
  expires_at   TIMESTAMPTZ,
  revoked_at   TIMESTAMPTZ
);

CREATE TABLE publisher_keys (
  key_id       TEXT PRIMARY KEY,
  -- raw 32-byte Ed25519 public key
  public_key   BYTEA NOT NULL CHECK (length(public_key) = 32),
  added_by     TEXT NOT NULL,
  added_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
  revoked_at   TIMESTAMPTZ
);

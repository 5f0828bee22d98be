-- 0003: device change tracking, so every replica's check-in cache follows admission and
-- attribute changes made anywhere within about a second (instead of a cache TTL).
--
-- devices.changed_at moves whenever what the check-in path caches about a device changes
-- (its public id, admission, reported attributes or credential); the written-behind status
-- updates (last_seen, running_*, agent_state) leave it alone, so they stay HOT updates and do
-- not touch the index below.

ALTER TABLE devices ADD COLUMN changed_at TIMESTAMPTZ NOT NULL DEFAULT now();
CREATE INDEX devices_changed_at ON devices (changed_at);

CREATE FUNCTION devices_touch_changed_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.changed_at := clock_timestamp();
  RETURN NEW;
END
$$;

CREATE TRIGGER devices_changed_at BEFORE UPDATE ON devices FOR EACH ROW
  WHEN (OLD.device_id IS DISTINCT FROM NEW.device_id
        OR OLD.admission IS DISTINCT FROM NEW.admission
        OR OLD.attributes IS DISTINCT FROM NEW.attributes
        OR OLD.token_id IS DISTINCT FROM NEW.token_id)
  EXECUTE FUNCTION devices_touch_changed_at();

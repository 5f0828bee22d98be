-- 0005: deployment change tracking, so every replica's in-memory deployment store (the
-- check-in path's answer for devices being deployed) follows the rows other replicas, the
-- controller and admins change, within about a second.
--
-- Every statement that changes a deployment sets updated_at (creation by its default); the
-- store polls the rows updated since its last poll, which this index makes a range scan. The
-- controller's timeout scan (step in progress, updated_at older than the timeout) uses it too.

CREATE INDEX deployments_updated_at ON deployments (updated_at);

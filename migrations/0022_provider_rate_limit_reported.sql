-- The send-rate limit each worker process was configured with, next to its breaker report, so
-- that `GET /v1/queues` and `/metrics` show the limit in force and which processes were
-- configured otherwise (every process writes its own value to `provider_rate_limits` with its
-- first message under the limit: the last one to write sets the shared row). NULL: the process
-- has no limit for the provider.
--
-- Nullable with no default: adding it rewrites nothing, and a worker of the release before keeps
-- publishing without it during a rolling upgrade. Until a worker of this release reports, the
-- limit in force reads null (no `/metrics` sample) though it is enforced.
ALTER TABLE provider_breakers
    ADD COLUMN rate_limit_per_second double precision
        CHECK (rate_limit_per_second IS NULL OR rate_limit_per_second > 0);

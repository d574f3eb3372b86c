#!/usr/bin/env bash
# What PostgreSQL's sessions wait on during a bulk send (issue #3): samples pg_stat_activity of
# the bench database every ~3 ms, from the moment the worker starts until the bench drops its
# database, and prints how often an active session was seen on CPU or waiting (by wait event),
# overall and per statement. For telling a run that waits on commits (IO:WALSync,
# LWLock:WALWrite) from one that computes or waits on locks. Figures: docs/benchmarks.md.
# Usage: bash bench/bulk_send_waits.sh [BINARY] [bench bulk-send options...]
# (default: 60,000 recipients, 100,000 suppressions; the local PostgreSQL, or PGHOST etc.)
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-./target/release/wedsync-jobs}
shift || true
[ "$#" -gt 0 ] || set -- --recipients 60000 --suppressed 100000
export PGHOST=${PGHOST:-127.0.0.1} PGUSER=${PGUSER:-postgres}
log=$(mktemp)
RUST_LOG=error "$binary" bench bulk-send "$@" >"$log" 2>&1 &
bench=$!
# The ceilings' child processes come and go first; sampling starts with the worker process.
while kill -0 "$bench" 2>/dev/null && ! pgrep -P "$bench" -f -- "worker --queues" >/dev/null; do
    sleep 0.05
done
psql -X -q -d postgres <<'SQL'
CREATE TEMP TABLE samples (wait text, query text);
DO $$
BEGIN
  -- Until the bench drops its database (at most ten minutes).
  FOR i IN 1..200000 LOOP
    PERFORM pg_stat_clear_snapshot();
    EXIT WHEN NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'wedsync_bench_bulk');
    INSERT INTO samples
      SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU'),
             left(regexp_replace(query, '\s+', ' ', 'g'), 60)
        FROM pg_stat_activity
       WHERE datname = 'wedsync_bench_bulk' AND state NOT IN ('idle') AND pid <> pg_backend_pid();
    PERFORM pg_sleep(0.003);
  END LOOP;
END $$;
\echo 'samples of active sessions, by what they were doing'
SELECT wait, count(*) AS samples FROM samples GROUP BY 1 ORDER BY 2 DESC LIMIT 12;
\echo 'by statement'
SELECT wait, query, count(*) AS samples FROM samples GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 16;
SQL
wait "$bench"
grep 'ratio=' "$log"
rm -f "$log"

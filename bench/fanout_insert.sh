#!/usr/bin/env bash
# The fan-out's insert of deliveries (issue #3), statement by statement: the median time of one
# slice (4,286 recipients of a 50,000-recipient send) in a fresh, migrated database, for
#   plain        the statement the fan-out runs (`sql::INSERT_DELIVERIES`),
#   on-conflict  the same with `ON CONFLICT … DO NOTHING` (what every slice ran before),
# each with the deliveries' hashes indexed as migrated (hash index, 0020) and as before 0020
# (a B-tree). 132 slices per variant on an emptied table. Figures and their reading:
# docs/benchmarks.md, "Fan-out without the B-tree of hashes".
# Usage: bash bench/fanout_insert.sh [BINARY]   (DATABASE_URL's server, else the local one)
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-./target/release/wedsync-jobs}
[ -x "$binary" ] || cargo build --release -q
server=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
db=wedsync_bench_fanout
url="${server%/*}/$db"
PGOPTIONS="-c client_min_messages=warning" psql "$server" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
DATABASE_URL=$url RUST_LOG=error "$binary" migrate >/dev/null
psql "$url" -q <<'SQL'
INSERT INTO senders (org_id, name, email, postal_address)
VALUES ('bench', 'Ann', 'ann@example.com', '1 Chapel Lane');
INSERT INTO bulk_sends (id, org_id, channel, category, sender_id, subject_template,
                        text_template, recipient_count, recipients, batch_size)
SELECT ('00000000-0000-0000-0000-0000000000' || lpad(k::text, 2, '0'))::uuid, 'bench', 'email',
       'transactional', (SELECT min(id) FROM senders), 's', 't', 50000,
       (SELECT jsonb_agg(jsonb_build_object('address', 'guest' || i || '@example.com',
                         'variables', jsonb_build_object('name', 'Guest ' || i, 'table', i % 40)))
          FROM generate_series(0, 49999) i), 200
  FROM generate_series(10, 21) k;

-- Median milliseconds per slice over 11 slices of each of the 12 sends.
CREATE FUNCTION pg_temp.time_slices(on_conflict bool) RETURNS numeric LANGUAGE plpgsql AS $f$
DECLARE started timestamptz; times float8[] := '{}'; send uuid;
BEGIN
    TRUNCATE deliveries;
    CHECKPOINT;
    FOR k IN 10..21 LOOP
        send := ('00000000-0000-0000-0000-0000000000' || lpad(k::text, 2, '0'))::uuid;
        FOR s IN 0..10 LOOP
            started := clock_timestamp();
            EXECUTE format($q$
                INSERT INTO deliveries (send_id, ordinal, address, address_hash, variables)
                SELECT b.id, ($2::int + e.n - 1)::int, e.r->>'address',
                       encode(sha256(convert_to(b.channel || ':' || (e.r->>'address'), 'UTF8')), 'hex'),
                       coalesce(e.r->'variables', '{}'::jsonb)
                  FROM bulk_sends b,
                       jsonb_path_query(b.recipients, 'strict $[$first to $last]',
                                        jsonb_build_object('first', $2::int, 'last', $3::int))
                       WITH ORDINALITY AS e(r, n)
                 WHERE b.id = $1::uuid AND strpos(e.r->>'address', '[erased]') = 0
                 ORDER BY e.n %s$q$,
                CASE WHEN on_conflict
                     THEN 'ON CONFLICT ON CONSTRAINT deliveries_send_ordinal_key DO NOTHING'
                     ELSE '' END)
            USING send, s * 4286, s * 4286 + 4285;
            times := times || extract(epoch FROM clock_timestamp() - started) * 1000;
        END LOOP;
    END LOOP;
    RETURN round((SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY t) FROM unnest(times) t)::numeric, 1);
END
$f$;

\pset tuples_only on
\pset format unaligned
SELECT 'hash index:  plain=' || pg_temp.time_slices(false) || ' ms  on-conflict=' || pg_temp.time_slices(true) || ' ms per slice of 4,286';
DROP INDEX deliveries_hash_idx;
CREATE INDEX deliveries_hash_idx ON deliveries (address_hash);
SELECT 'B-tree:      plain=' || pg_temp.time_slices(false) || ' ms  on-conflict=' || pg_temp.time_slices(true) || ' ms per slice of 4,286';
SQL
psql "$server" -qc "DROP DATABASE $db WITH (FORCE)"

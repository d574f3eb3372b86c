#!/usr/bin/env bash
# Where the CPU of a bulk send goes (issue #3): the worker process, PostgreSQL (every server
# process: the worker's and the bench's connections, the WAL writer, the checkpointer) and the
# bench process (its SMTP sink), per message, from the moment the worker starts until the bench
# ends — and how busy that kept the machine's cores. For comparing two builds when messages/s
# drifts with the machine, and for telling a CPU-bound run from one that waits on something.
# Usage: bash bench/bulk_send_cpu.sh [BINARY] [bench bulk-send options...]
# Runs `BINARY bench bulk-send` (default: 60,000 recipients, 100,000 suppressions) and samples
# utime + stime from /proc every 0.1 s. Figures and their reading: docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-./target/release/wedsync-jobs}
shift || true
[ "$#" -gt 0 ] || set -- --recipients 60000 --suppressed 100000
log=$(mktemp)
RUST_LOG=error "$binary" bench bulk-send "$@" >"$log" 2>&1 &
bench=$!
# Seeding and the ceiling runs (two of them child processes of their own) come first; the
# measured part starts with the worker process.
while kill -0 "$bench" 2>/dev/null && ! pgrep -P "$bench" -f -- "worker --queues" >/dev/null; do
    sleep 0.05
done
declare -A first last kind
started=$(date +%s.%N)
while kill -0 "$bench" 2>/dev/null; do
    for p in $(pgrep -x postgres) "$bench" $(pgrep -P "$bench" -f -- "worker --queues"); do
        t=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null) || continue
        if [ -z "${first[$p]:-}" ]; then
            first[$p]=$t
            # What a process was is read when it is first seen: PostgreSQL backends are gone
            # by the end.
            if [ "$p" = "$bench" ]; then kind[$p]=bench
            elif [ "$(cat "/proc/$p/comm" 2>/dev/null)" = postgres ]; then kind[$p]=postgres
            else kind[$p]=worker; fi
        fi
        last[$p]=$t
    done
    sleep 0.1
done
ended=$(date +%s.%N)
wait "$bench"
declare -A ticks=([worker]=0 [postgres]=0 [bench]=0)
for p in "${!last[@]}"; do
    ticks[${kind[$p]}]=$(( ${ticks[${kind[$p]}]} + ${last[$p]} - ${first[$p]} ))
done
sent=$(grep -o 'recipients=[0-9]*' "$log" | head -n 1 | cut -d= -f2)
awk -v w="${ticks[worker]}" -v p="${ticks[postgres]}" -v b="${ticks[bench]}" \
    -v hz="$(getconf CLK_TCK)" -v n="$sent" -v cores="$(nproc)" -v s="$started" -v e="$ended" \
    'BEGIN {
        m = n * 0.95   # every 20th recipient is suppressed
        printf "cpu_us_per_message: worker=%.0f postgres=%.0f bench=%.0f all=%.0f\n",
            w / hz / m * 1e6, p / hz / m * 1e6, b / hz / m * 1e6, (w + p + b) / hz / m * 1e6
        printf "cpu_s: worker=%.2f postgres=%.2f bench=%.2f; cores_busy=%.2f of %d over %.1f s\n",
            w / hz, p / hz, b / hz, (w + p + b) / hz / (e - s), cores, e - s
    }'
grep 'ratio=' "$log"
rm -f "$log"

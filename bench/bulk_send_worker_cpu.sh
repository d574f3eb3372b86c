#!/usr/bin/env bash
# The worker process's CPU per message in a bulk send (issue #3), to compare two builds of the
# worker side by side when the machine's speed drifts too much for messages/s to tell them apart.
# Usage: bash bench/bulk_send_worker_cpu.sh [BINARY] [bench bulk-send options...]
# Runs `BINARY bench bulk-send` (default: 60,000 recipients, 100,000 suppressions) and samples the
# worker's utime + stime from /proc every 0.1 s; prints the last sample, per message, and the
# bench's summary line. Figures and their reading: docs/benchmarks.md, "Bulk messages".
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-./target/release/wedsync-jobs}
shift || true
[ "$#" -gt 0 ] || set -- --recipients 60000 --suppressed 100000
log=$(mktemp)
RUST_LOG=error "$binary" bench bulk-send "$@" >"$log" 2>&1 &
bench=$!
ticks=0
worker=""
while kill -0 "$bench" 2>/dev/null; do
    [ -n "$worker" ] || worker=$(pgrep -P "$bench" -f " worker " | head -n 1 || true)
    if [ -n "$worker" ] && t=$(awk '{print $14 + $15}' "/proc/$worker/stat" 2>/dev/null); then
        ticks=$t
    fi
    sleep 0.1
done
wait "$bench"
hz=$(getconf CLK_TCK)
sent=$(grep -o 'recipients=[0-9]*' "$log" | head -n 1 | cut -d= -f2)
awk -v t="$ticks" -v hz="$hz" -v n="$sent" \
    'BEGIN { printf "worker_cpu_s=%.2f worker_cpu_us_per_message=%.0f\n", t / hz, t / hz / (n * 0.95) * 1e6 }'
grep 'ratio=' "$log"
rm -f "$log"

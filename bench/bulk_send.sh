#!/usr/bin/env bash
# Bulk email throughput (issue #3): 10,000 and 100,000 recipients against a 1,000,000-entry
# suppression list, to a local SMTP sink, compared with a bare lettre loop (the ceiling).
# Figures and their reading: docs/benchmarks.md, "Bulk messages".
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
for n in 10000 100000; do
    for run in 1 2 3; do
        echo "== recipients=$n run=$run"
        RUST_LOG=error ./target/release/wedsync-jobs bench bulk-send \
            --recipients "$n" --suppressed 1000000 "$@" | tail -n +2
    done
done

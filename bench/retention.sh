#!/usr/bin/env bash
# The retention benchmark of docs/benchmarks.md. Needs a local PostgreSQL (or DATABASE_URL) and
# about 2 GB of free disk for the seeded rows.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
export RUST_LOG=${RUST_LOG:-error}
target/release/wedsync-jobs bench retention --finished "${FINISHED:-5000000}" --drain 20000 --runs 5

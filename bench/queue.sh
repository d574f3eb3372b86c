#!/usr/bin/env bash
# The standard queue benchmarks of docs/benchmarks.md. Needs a local PostgreSQL (or DATABASE_URL).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
bin=target/release/wedsync-jobs
export RUST_LOG=${RUST_LOG:-error}
echo "## 20,000 jobs, 2 workers"
"$bin" bench queue --jobs 20000 --workers 2 --pickup-samples 200
echo "## 100,000 jobs, 2 workers"
"$bin" bench queue --jobs 100000 --workers 2 --pickup-samples 50
echo "## 100,000 jobs, 2 workers, 10 back-to-back runs (bloat)"
"$bin" bench queue --jobs 100000 --workers 2 --runs 10 --pickup-samples 10

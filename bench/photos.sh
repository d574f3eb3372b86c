#!/usr/bin/env bash
# The photo benchmark: make the synthetic photos (once) and run `wedsync-jobs bench photos`,
# which also times `vipsthumbnail` on the same files. Needs libvips-tools.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${PHOTO_DIR:-target/bench-photos}
bash bench/make-photos.sh "$dir" "${PHOTO_COUNT:-8}"
cargo build --release --bin wedsync-jobs
./target/release/wedsync-jobs bench photos --dir "$dir" "$@"

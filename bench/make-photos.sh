#!/usr/bin/env bash
# Make synthetic 12–24 MP camera-like JPEGs for `wedsync-jobs bench photos` (no real camera
# photos are available offline): multi-scale Perlin and Worley noise for large structures and
# texture, Gaussian noise for sensor grain, three different mixes for the colour channels,
# saved as quality-92 JPEGs like a camera's. Needs libvips-tools (`apt-get install libvips-tools`).
#
# Usage: bench/make-photos.sh DIR [COUNT]   (default 8 photos: 12, 16, 20 and 24 MP, twice)
set -euo pipefail
dir=${1:?usage: $0 DIR [COUNT]}
count=${2:-8}
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sizes=("4240 2832" "4896 3264" "5472 3648" "6000 4000")
for ((i = 0; i < count; i++)); do
    read -r w h <<<"${sizes[$((i % ${#sizes[@]}))]}"
    out="$dir/photo_$(printf %02d "$i")_${w}x${h}.jpg"
    [[ -f $out ]] && continue
    vips perlin "$tmp/p1.v" "$w" "$h" --cell-size $((200 + 40 * i)) --seed $((i + 1))
    vips perlin "$tmp/p2.v" "$w" "$h" --cell-size 48 --seed $((i + 101))
    vips worley "$tmp/w.v" "$w" "$h" --cell-size $((96 + 16 * i)) --seed $((i + 201))
    vips gaussnoise "$tmp/n.v" "$w" "$h" --sigma 6 --mean 0
    # Channels: mixes of the structure layers (perlin is about -1..1, worley a distance).
    vips linear "$tmp/p1.v" "$tmp/a.v" 90 120
    vips linear "$tmp/p2.v" "$tmp/b.v" 35 0
    vips linear "$tmp/w.v" "$tmp/c.v" 0.6 0
    vips add "$tmp/a.v" "$tmp/b.v" "$tmp/ab.v"
    vips add "$tmp/ab.v" "$tmp/n.v" "$tmp/r.v"
    vips subtract "$tmp/ab.v" "$tmp/c.v" "$tmp/g0.v"
    vips add "$tmp/g0.v" "$tmp/n.v" "$tmp/g.v"
    vips linear "$tmp/c.v" "$tmp/c2.v" 1.5 40
    vips add "$tmp/c2.v" "$tmp/n.v" "$tmp/bl.v"
    vips bandjoin "$tmp/r.v $tmp/g.v $tmp/bl.v" "$tmp/rgb.v"
    vips cast "$tmp/rgb.v" "$tmp/u8.v" uchar
    vips copy "$tmp/u8.v" "$tmp/srgb.v" --interpretation srgb
    vips jpegsave "$tmp/srgb.v" "$out" --Q 92
    echo "made $out ($(du -h "$out" | cut -f1))"
done

#!/usr/bin/env bash
# Packs a built roster binary into the release archive roster-TARGET.tar.gz:
#   roster-TARGET/roster, man/*.1, completions/{roster.bash,_roster,roster.fish},
#   roster.schema.json, README.md
# (the generated files by scripts/dist-assets.sh). The release workflow runs
# it for every target; scripts/install.sh and the Containerfile read the
# layout; tests/distribution.rs runs it on the test build.
#
# usage: scripts/package-release.sh --target TRIPLE [--binary PATH] [--output DIR]
#   default binary: target/TRIPLE/release/roster (cargo build --release --locked --target TRIPLE)
set -euo pipefail
cd "$(dirname "$0")/.."
target=
bin=
output=dist
while [ $# -gt 0 ]; do
  case "$1" in
    --target) target=$2; shift 2 ;;
    --binary) bin=$2; shift 2 ;;
    --output) output=$2; shift 2 ;;
    *) echo "usage: $0 --target TRIPLE [--binary PATH] [--output DIR]" >&2; exit 2 ;;
  esac
done
if [ -z "$target" ]; then
  echo "usage: $0 --target TRIPLE [--binary PATH] [--output DIR]" >&2
  exit 2
fi
bin=${bin:-target/$target/release/roster}
name=roster-$target
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
scripts/dist-assets.sh "$bin" "$stage/$name"
cp "$bin" "$stage/$name/roster"
cp README.md "$stage/$name/README.md"
mkdir -p "$output"
tar -czf "$output/$name.tar.gz" -C "$stage" "$name"
echo "$output/$name.tar.gz"

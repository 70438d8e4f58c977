#!/usr/bin/env bash
# Builds roster_VERSION_ARCH.deb from an already-built binary with cargo-deb
# (`cargo install --locked cargo-deb`), after generating its man pages,
# completions and schema with scripts/dist-assets.sh. The release workflow
# and tests/distribution.rs both run this script.
#
# usage: scripts/package-deb.sh [--profile release|dev|NAME] [--output DIR] [--fast]
#   Build the binary first: cargo build --locked --profile NAME
#   (the dev profile's binary is target/debug/roster).
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release
output=target/debian
fast=()
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile=$2; shift 2 ;;
    --output) output=$2; shift 2 ;;
    --fast) fast=(--fast); shift ;;
    *) echo "usage: $0 [--profile NAME] [--output DIR] [--fast]" >&2; exit 2 ;;
  esac
done
case "$profile" in
  dev) bin=target/debug/roster ;;
  *) bin=target/$profile/roster ;;
esac
if ! cargo deb --version >/dev/null 2>&1; then
  echo "$0: cargo-deb is missing (install it: cargo install --locked cargo-deb)" >&2
  exit 1
fi
# The paths are the ones [package.metadata.deb] assets in Cargo.toml name.
scripts/dist-assets.sh "$bin" target/dist-assets
mkdir -p "$output"
cargo deb --locked --no-build --profile "$profile" --output "$output" "${fast[@]}"

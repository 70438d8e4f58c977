#!/usr/bin/env bash
# Lays out the build context of the Containerfile from the release archives:
# CONTEXT/linux-amd64/ and CONTEXT/linux-arm64/, each with the static (musl)
# roster binary and roster.schema.json. The release workflow runs it before
# building the image; tests/distribution.rs checks the Containerfile's COPY
# sources against what it lays out.
#
# usage: scripts/stage-container.sh DIST_DIR CONTEXT_DIR
#   DIST_DIR holds roster-x86_64-unknown-linux-musl.tar.gz and
#   roster-aarch64-unknown-linux-musl.tar.gz (scripts/package-release.sh).
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 DIST_DIR CONTEXT_DIR" >&2
  exit 2
fi
dist=$1
context=$2
for pair in amd64:x86_64-unknown-linux-musl arm64:aarch64-unknown-linux-musl; do
  arch=${pair%%:*}
  target=${pair#*:}
  archive=$dist/roster-$target.tar.gz
  if [ ! -f "$archive" ]; then
    echo "$0: $archive is missing (scripts/package-release.sh --target $target)" >&2
    exit 1
  fi
  out=$context/linux-$arch
  rm -rf "$out"
  mkdir -p "$out"
  tar -xzf "$archive" -C "$out" --strip-components=1 \
    "roster-$target/roster" "roster-$target/roster.schema.json"
done

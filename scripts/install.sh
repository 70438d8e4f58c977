#!/usr/bin/env bash
# Install a roster release binary: download the archive for this machine's OS
# and architecture and the release's SHA256SUMS, refuse anything whose SHA-256
# does not match, then put `roster` into the install directory. The setup
# action (action.yml) runs it; it works on any Linux or macOS machine with
# bash, curl, tar and sha256sum (or shasum).
#
# Environment:
#   ROSTER_VERSION       release tag (v0.2.0) or `latest` (default)
#   ROSTER_REPOSITORY    OWNER/NAME on GitHub (default: $GITHUB_ACTION_REPOSITORY)
#   ROSTER_DOWNLOAD_URL  where the release assets are (default: the GitHub
#                        release of ROSTER_VERSION in ROSTER_REPOSITORY)
#   ROSTER_INSTALL_DIR   where `roster` goes (default: ~/.local/bin)
#   ROSTER_OS, ROSTER_ARCH  override detection (Linux|macOS, X64|ARM64, as
#                        GitHub's RUNNER_OS and RUNNER_ARCH)
# Option: --dry-run prints the URLs it would download and the install
# directory, and stops.
set -euo pipefail
dry_run=
case "${1:-}" in
  --dry-run) dry_run=1 ;;
  "") ;;
  *) echo "usage: $0 [--dry-run]" >&2; exit 2 ;;
esac

fail() {
  echo "roster install: $*" >&2
  exit 1
}

version=${ROSTER_VERSION:-latest}
repo=${ROSTER_REPOSITORY:-${GITHUB_ACTION_REPOSITORY:-}}
# In a composite action GITHUB_ACTION_REPOSITORY can be empty; the action's
# checkout is at .../_actions/OWNER/NAME/REF.
if [ -z "$repo" ] && [[ "${GITHUB_ACTION_PATH:-}" =~ /_actions/([^/]+)/([^/]+)/[^/]+/?$ ]]; then
  repo=${BASH_REMATCH[1]}/${BASH_REMATCH[2]}
fi
dest=${ROSTER_INSTALL_DIR:-$HOME/.local/bin}
os=${ROSTER_OS:-$(uname -s)}
arch=${ROSTER_ARCH:-$(uname -m)}

case "$os" in
  Linux | linux) os=linux ;;
  macOS | Darwin | darwin) os=macos ;;
  *) os="unsupported:$os" ;;
esac
case "$arch" in
  X64 | x86_64 | amd64) arch=x86_64 ;;
  ARM64 | aarch64 | arm64) arch=aarch64 ;;
  *) arch="unsupported:$arch" ;;
esac
case "$os/$arch" in
  # Linux gets the static musl build: it runs on any distribution and glibc.
  linux/x86_64 | linux/aarch64) target=$arch-unknown-linux-musl ;;
  macos/x86_64 | macos/aarch64) target=$arch-apple-darwin ;;
  *) fail "no release build of roster for ${ROSTER_OS:-$(uname -s)}/${ROSTER_ARCH:-$(uname -m)}; build it from source instead: cargo install --locked --git https://github.com/${repo:-OWNER/roster} roster" ;;
esac
asset=roster-$target.tar.gz

if [ -n "${ROSTER_DOWNLOAD_URL:-}" ]; then
  base=${ROSTER_DOWNLOAD_URL%/}
else
  [ -n "$repo" ] || fail "set ROSTER_REPOSITORY (OWNER/NAME of the repository whose releases to install from)"
  if [ "$version" = latest ]; then
    base=https://github.com/$repo/releases/latest/download
  else
    base=https://github.com/$repo/releases/download/$version
  fi
fi

if [ -n "$dry_run" ]; then
  echo "$base/SHA256SUMS"
  echo "$base/$asset"
  echo "$dest"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fetch() {
  curl --fail --silent --show-error --location --retry 3 --connect-timeout 20 --max-time 300 \
    --output "$work/$1" "$base/$1" \
    || fail "could not download $base/$1 (is $version a published release with an asset for $target?)"
}
fetch SHA256SUMS
fetch "$asset"

# SHA256SUMS lines: "<hex>  <name>" (or "<hex> *<name>").
expected=$(awk -v f="$asset" '$2 == f || $2 == "*" f { print tolower($1); exit }' "$work/SHA256SUMS")
[ -n "$expected" ] || fail "SHA256SUMS of release $version has no entry for $asset; refusing to install"
if command -v sha256sum >/dev/null 2>&1; then
  actual=$(sha256sum "$work/$asset" | awk '{ print $1 }')
elif command -v shasum >/dev/null 2>&1; then
  actual=$(shasum -a 256 "$work/$asset" | awk '{ print $1 }')
else
  fail "neither sha256sum nor shasum is installed: cannot verify $asset"
fi
[ "$actual" = "$expected" ] \
  || fail "checksum mismatch for $asset: SHA256SUMS says $expected, the download is $actual; refusing to install"

mkdir -p "$work/x"
tar -xzf "$work/$asset" -C "$work/x" || fail "$asset is not a gzip tar archive"
bin=$work/x/roster-$target/roster
[ -f "$bin" ] || fail "$asset has no roster-$target/roster"
mkdir -p "$dest"
install -m 0755 "$bin" "$dest/roster.tmp"
mv -f "$dest/roster.tmp" "$dest/roster"
echo "roster install: $("$dest/roster" --version) installed in $dest (sha256 $actual verified)"

#!/usr/bin/env bash
# roster's test command: prepares what the tests need on a fresh machine
# (Debian's etcd-server, age and chromium, a virtualenv with scim2-server 0.8.3), then
# runs the whole test suite. Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v etcd >/dev/null 2>&1 || [ -x /usr/bin/etcd ] || need_apt+=(etcd-server)
command -v age >/dev/null 2>&1 || need_apt+=(age)
# The access report's HTML is tested in a real headless browser.
[ -x /usr/bin/chromium ] || command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "roster tests need: ${need_apt[*]} (run: sudo apt-get install -y ${need_apt[*]})" >&2
    exit 1
  fi
  echo "Installing ${need_apt[*]} from Debian's packages" >&2
  apt-get update -qq
  # Packages may try to start their service; the tests run their own etcd on free ports.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  # Stop a service instance the package may have started (the tests never use it).
  pkill -x etcd 2>/dev/null || true
fi

venv="${ROSTER_SCIM_VENV:-$PWD/target/scim-venv}"
if [ ! -x "$venv/bin/scim2-server" ]; then
  echo "Installing scim2-server==0.8.3 into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'scim2-server==0.8.3'
fi
export ROSTER_SCIM_VENV="$venv"

cargo test --locked "$@"

#!/usr/bin/env bash
# roster's test command: prepares what the tests need on a fresh machine
# (Debian's etcd-server, age, chromium, postgresql, slapd and ldap-utils, a
# virtualenv with scim2-server 0.8.3, another with the connectors'
# requirements), then
# runs the whole test suite. Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v etcd >/dev/null 2>&1 || [ -x /usr/bin/etcd ] || need_apt+=(etcd-server)
command -v age >/dev/null 2>&1 || need_apt+=(age)
# Connectors (connectors/example, tests/connectors) are stdlib Python.
command -v python3 >/dev/null 2>&1 || need_apt+=(python3 python3-venv)
# The access report's HTML is tested in a real headless browser.
[ -x /usr/bin/chromium ] || command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
# The shipped connectors run from a venv (below): python3 -m venv needs ensurepip.
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need_apt+=(python3-venv)
# The PostgreSQL connector is tested against throw-away clusters made with
# initdb/pg_ctl (Debian keeps them under /usr/lib/postgresql/VERSION/bin).
command -v initdb >/dev/null 2>&1 || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need_apt+=(postgresql)
# The LDAP connector's tests run a throw-away slapd (tests/common/slapd.rs)
# and check binds with ldapwhoami.
[ -x /usr/sbin/slapd ] || command -v slapd >/dev/null 2>&1 || need_apt+=(slapd)
command -v ldapwhoami >/dev/null 2>&1 || need_apt+=(ldap-utils)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "roster tests need: ${need_apt[*]} (run: sudo apt-get install -y ${need_apt[*]})" >&2
    exit 1
  fi
  echo "Installing ${need_apt[*]} from Debian's packages" >&2
  apt-get update -qq
  # Packages may try to start their service; the tests run their own etcd,
  # PostgreSQL and slapd on free ports. Keep the package's service from starting (policy-rc.d exit 101
  # = "action forbidden", honoured by invoke-rc.d and deb-systemd-invoke)
  # rather than stopping an etcd afterwards: that could be the developer's own.
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# written by roster scripts/test.sh during a package install\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    own_policy=1
    trap '[ "$own_policy" = 1 ] && rm -f "$policy"' EXIT
  fi
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  if [ "$own_policy" = 1 ]; then
    rm -f "$policy"
    own_policy=0
  fi
  trap - EXIT
fi

venv="${ROSTER_SCIM_VENV:-$PWD/target/scim-venv}"
if [ ! -x "$venv/bin/scim2-server" ]; then
  echo "Installing scim2-server==0.8.3 into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'scim2-server==0.8.3'
fi
export ROSTER_SCIM_VENV="$venv"

# roster's shipped connectors run in the tests from one venv filled from every
# connectors/*/requirements.txt (pinned). The stamp records what it was filled
# from, in the form tests/common/connectors.rs compares, so it is filled again
# only when a requirements file changes.
connector_venv="$PWD/target/connector-venv"
connector_requirements() (
  export LC_ALL=C
  for f in connectors/*/requirements.txt; do
    if [ -f "$f" ]; then printf '%s\n' "$f"; cat "$f"; fi
  done
)
if [ ! -x "$connector_venv/bin/python" ] ||
  ! connector_requirements | cmp -s - "$connector_venv/.roster-requirements"; then
  echo "Installing the connectors' requirements into $connector_venv" >&2
  [ -x "$connector_venv/bin/python" ] || python3 -m venv "$connector_venv"
  reqs=()
  for f in connectors/*/requirements.txt; do
    if [ -f "$f" ]; then reqs+=(-r "$f"); fi
  done
  if [ ${#reqs[@]} -gt 0 ]; then "$connector_venv/bin/pip" install -q "${reqs[@]}"; fi
  connector_requirements >"$connector_venv/.roster-requirements"
fi

# Distribution (tests/distribution.rs): cargo-deb builds the .deb (installing
# it compiles for about 4 minutes on 2 cores, once), man-db renders the packaged
# man page, and check-jsonschema, which ships SchemaStore's GitHub workflow and
# action schemas, checks .github/workflows/, action.yml and the CI templates.
cargo_deb_version=3.8.0 # also CARGO_DEB_VERSION in .github/workflows/release.yml
if ! cargo deb --version 2>/dev/null | grep -qx "cargo-deb $cargo_deb_version"; then
  echo "Installing cargo-deb $cargo_deb_version (cargo install)" >&2
  cargo install -q --locked "cargo-deb@$cargo_deb_version"
fi
if ! command -v man >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "roster tests need: man-db (run: sudo apt-get install -y man-db)" >&2
    exit 1
  fi
  echo "Installing man-db from Debian's packages" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends man-db >/dev/null
fi
cj_venv="${ROSTER_CHECK_JSONSCHEMA_VENV:-$PWD/target/check-jsonschema-venv}"
if [ ! -x "$cj_venv/bin/check-jsonschema" ]; then
  echo "Installing check-jsonschema==0.39.0 into $cj_venv" >&2
  python3 -m venv "$cj_venv"
  "$cj_venv/bin/pip" install -q 'check-jsonschema==0.39.0'
fi
export ROSTER_CHECK_JSONSCHEMA="$cj_venv/bin/check-jsonschema"

cargo test --locked "$@"

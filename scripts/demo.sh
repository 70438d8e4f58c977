#!/usr/bin/env bash
# roster's main job on the bundled examples, with the embedded file store:
# validate, plan, apply (secrets to a new 0600 file), then plan again (no changes).
# Each run uses a fresh store and secrets file under a new temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
roster=target/release/roster
work=$(mktemp -d "${TMPDIR:-/tmp}/roster-demo.XXXXXX")
examples=(examples/avanti examples/iris-hr examples/avaamo)
store="file:$work/state.json"

echo "== roster validate ${examples[*]}"
"$roster" validate "${examples[@]}"
echo
echo "== roster plan (store $store)"
"$roster" plan "${examples[@]}" --store "$store" --out "$work/plan.json"
echo
echo "== roster apply --plan $work/plan.json"
"$roster" apply --plan "$work/plan.json" --store "$store" --yes --secrets-out "$work/secrets.json"
echo
echo "== roster plan again"
"$roster" plan "${examples[@]}" --store "$store" --detailed-exitcode
echo
echo "The generated secrets are in $work/secrets.json (mode 0600, shown nowhere else);"
echo "the state, holding only argon2id hashes, is $work/state.json."

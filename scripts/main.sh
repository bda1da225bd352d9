#!/usr/bin/env bash
# The main job on a fresh machine: set up what is missing, build the CLI, then validate and plan
# the fixture templates offline.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-tools.sh
cargo build --release --locked -p nullspace-cli
bin=target/release/nullspace
for t in fixtures/templates/*/template.toml fixtures/dockerfiles/multistage.Dockerfile; do
  echo "== $t"
  "$bin" validate "$t"
  "$bin" plan "$t" > "target/$(basename "$(dirname "$t")")-$(basename "$t").plan.json"
  echo "plan written to target/$(basename "$(dirname "$t")")-$(basename "$t").plan.json"
done

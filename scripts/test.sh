#!/usr/bin/env bash
# The test command: sets up what is missing, then checks formatting and lints and runs every test
# (unit, integration, conformance corpora, doc examples). Test services are started by the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-tools.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked

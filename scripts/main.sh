#!/usr/bin/env bash
# The main job on a fresh machine: set up what is missing, build the CLI, then build a real
# template on the embedded default (SQLite store + native executor + an OCI image layout, no
# registry, no daemon) and check the image with skopeo. Also validates and plans the other fixtures.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-tools.sh
cargo build --release --locked -p nullspace-cli
bin=$PWD/target/release/nullspace
state=$PWD/target/main-state

template=fixtures/templates/busybox-hello
fixtures/busybox/build.sh "$template/busybox-oci"
echo "== build $template (state in $state)"
"$bin" build "$template/template.toml" --name demo/hello --tag latest --state-dir "$state"
"$bin" templates get demo/hello:latest --state-dir "$state"
echo "== the same build again: every step comes from cache"
"$bin" build "$template/template.toml" --name demo/hello --tag latest --state-dir "$state"
"$bin" builds list demo/hello --state-dir "$state"
image=$(ls -d "$state"/images/demo/hello/* | tail -n 1)
skopeo inspect "oci:$image:latest" | head -n 20

for t in fixtures/templates/python-app/template.toml fixtures/dockerfiles/multistage.Dockerfile; do
  echo "== validate and plan $t"
  "$bin" validate "$t"
  "$bin" plan "$t" > "target/$(basename "$(dirname "$t")")-$(basename "$t").plan.json"
done

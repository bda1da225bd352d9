#!/usr/bin/env bash
# Layer creation from a directory, side by side in one run:
#   nullspace (walk + tar + gzip-6 + diff_id + digest, one process)  vs  tar -cf - DIR | gzip -6
# on the deterministic 20,000-file / 500 MB tree (target/bench-tree-20000-500000000), plus the
# peak RSS of each (GNU time -v). Output to /dev/null for both; the page cache is warm for both
# (hyperfine warms up once).
#
# Usage: benches/layer_vs_tar.sh [FILES] [BYTES]     (needs hyperfine, GNU time)
set -euo pipefail
cd "$(dirname "$0")/.."
files=${1:-20000}
bytes=${2:-500000000}
tree="target/bench-tree-$files-$bytes"

cargo build --release -q -p nullspace-benches --bin gentree --bin mklayer
./target/release/gentree "$tree" "$files" "$bytes"

hyperfine --warmup 1 --runs "${RUNS:-5}" --export-json target/layer_vs_tar.json \
    -n nullspace "./target/release/mklayer $tree /dev/null 6" \
    -n 'tar|gzip -6' "tar -cf - -C $tree . | gzip -6 > /dev/null"

rss() { /usr/bin/time -v "$@" 2>&1 >/dev/null | awk -F': ' '/Maximum resident/ {print $2}'; }
echo "peak RSS nullspace: $(rss ./target/release/mklayer "$tree" /dev/null 6) KiB"
echo "peak RSS tar:       $(rss tar -cf /dev/null -C "$tree" .) KiB"
echo "peak RSS gzip -6:   $( { /usr/bin/time -v gzip -6 < <(tar -cf - -C "$tree" .) > /dev/null; } 2>&1 | awk -F': ' '/Maximum resident/ {print $2}') KiB"
python3 - <<'PY'
import json
r = {x["command"]: x for x in json.load(open("target/layer_vs_tar.json"))["results"]}
ns, tg = r["nullspace"]["mean"], r["tar|gzip -6"]["mean"]
print(f"nullspace {ns:.2f} s, tar|gzip -6 {tg:.2f} s: nullspace is {tg/ns:.2f}x faster")
PY

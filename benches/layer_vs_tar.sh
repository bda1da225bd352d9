#!/usr/bin/env bash
# Layer creation from a directory, side by side:
#   nullspace (walk + tar + gzip-6 + diff_id + digest, one process)  vs  tar -cf - DIR | gzip -6
# on the deterministic 20,000-file / 500 MB tree (target/bench-tree-20000-500000000), plus the
# peak RSS of each and the compressed sizes. Output to /dev/null for both; the page cache is warm
# for both (one warm-up run of each first).
#
# The runs alternate (nullspace, tar|gzip, nullspace, ...) so that both see the same load on a
# shared machine; each run is timed by GNU time (wall, user + system CPU, peak RSS). nullspace
# compresses on every core, so its wall time depends on how many cores are free: "cores used"
# (CPU / wall) shows what each run got, and the load average is printed before and after.
#
# Usage: RUNS=5 benches/layer_vs_tar.sh [FILES] [BYTES]     (needs GNU time, python3)
set -euo pipefail
cd "$(dirname "$0")/.."
files=${1:-20000}
bytes=${2:-500000000}
runs=${RUNS:-5}
tree="target/bench-tree-$files-$bytes"
log=target/layer_vs_tar.tsv

cargo build --release -q -p nullspace-benches --bin gentree --bin mklayer
./target/release/gentree "$tree" "$files" "$bytes"

ns=(./target/release/mklayer "$tree" /dev/null 6)
tg=(sh -c "tar -cf - -C '$tree' . | gzip -6 > /dev/null")
timed() { # NAME CMD...: appends "NAME wall user sys maxrss_kib" to $log
    local name=$1
    shift
    /usr/bin/time -o "$log.one" -f "$name %e %U %S %M" "$@" > /dev/null
    cat "$log.one" >> "$log"
}

"${ns[@]}" > /dev/null
"${tg[@]}"
: > "$log"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for _ in $(seq "$runs"); do
    timed nullspace "${ns[@]}"
    timed 'tar|gzip-6' "${tg[@]}"
done
echo "load after:  $(cut -d' ' -f1-3 /proc/loadavg)"

rss() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -1; }
echo "peak RSS nullspace: $(rss "${ns[@]}") KiB"
echo "peak RSS tar:       $(rss tar -cf /dev/null -C "$tree" .) KiB"
echo "peak RSS gzip -6:   $( { /usr/bin/time -f %M gzip -6 < <(tar -cf - -C "$tree" .) > /dev/null; } 2>&1 | tail -1) KiB"
echo "compressed bytes nullspace:   $("${ns[@]}" | cut -d' ' -f3)"
echo "compressed bytes tar|gzip -6: $(tar -cf - -C "$tree" . | gzip -6 | wc -c)"
python3 - "$log" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
def col(name, f):
    return [f(r) for r in rows if r[0] == name]
wall = lambda r: float(r[1])
cpu = lambda r: float(r[2]) + float(r[3])
for name in ("nullspace", "tar|gzip-6"):
    w, c = col(name, wall), col(name, cpu)
    cores = [x / y for x, y in zip(c, w)]
    print(f"{name:10}  wall {statistics.mean(w):6.2f} s ± {statistics.pstdev(w):.2f}  "
          f"cpu {statistics.mean(c):6.2f} s  cores used {statistics.mean(cores):.2f}  "
          f"walls {' '.join(f'{x:.1f}' for x in w)}")
nw, tw = col("nullspace", wall), col("tar|gzip-6", wall)
nc, tc = col("nullspace", cpu), col("tar|gzip-6", cpu)
pairs = sorted(t / n for n, t in zip(nw, tw))
print(f"wall: nullspace is {statistics.mean(tw) / statistics.mean(nw):.2f}x faster "
      f"(per alternating pair: {' '.join(f'{x:.2f}' for x in pairs)})")
print(f"cpu:  nullspace uses {statistics.mean(tc) / statistics.mean(nc):.2f}x less")
PY

#!/usr/bin/env bash
# Side-by-side context hashing benchmarks (issue 3), written into benches/RESULTS.md.
#
#   benches/context_hash.sh [--quick]
#
# Trees: the generated context (benches/gen_context.py, cached under target/bench-context/)
# and the Rust toolchain directory (`rustc --print sysroot`), or $CONTEXT_BENCH_TREE.
# For each tree, with hyperfine, files in the page cache (one warm-up run first):
#   cold:  `nullspace context hash --no-stat-cache` vs `find | xargs -0 -P2 openssl dgst -sha256`
#          vs `tar -cf - | sha256sum`, and reading every file without hashing
#          (`xargs -P2 cat`: the floor any tool that reads the files pays);
#   warm:  `nullspace context hash` with its stat cache vs `git status` on the same tree indexed
#          in a separate git dir (blobs hashed with --info-only, so nothing is copied);
#   touch: both again after `touch` of 1% of the files before each run;
#   memory: peak RSS of a cold hash with /usr/bin/time -v.
# Uses the release `nullspace` binary (built here if missing). About 10 minutes on 2 cores (3 runs each; --quick: 2).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
work="$repo/target/bench-context"
runs=3
[[ "${1:-}" == "--quick" ]] && runs=2
mkdir -p "$work"

cargo build --release -p nullspace-cli --manifest-path "$repo/Cargo.toml" >&2
bin="$repo/target/release/nullspace"
state="$work/state"
python3 "$here/gen_context.py" "$work/gen"
toolchain=${CONTEXT_BENCH_TREE:-$(rustc --print sysroot)}

results="$work/results"
rm -rf "$results" "$state"
mkdir -p "$results"

# Indexes `tree` in a git dir of its own without copying blobs, and commits it, so that
# `git status` does what it does in a clean checkout: stat every file, look for untracked ones.
git_index() {
    local tree=$1 gitdir=$2
    rm -rf "$gitdir"
    git init -q --bare "$gitdir"
    local g=(git --git-dir="$gitdir" --work-tree="$tree" -c core.bare=false)
    (cd "$tree" && find . \( -type f -o -type l \) -printf '%P\0' |
        "${g[@]}" update-index --add --info-only -z --stdin)
    local t
    t=$("${g[@]}" write-tree --missing-ok)
    "${g[@]}" update-ref HEAD "$(echo bench | GIT_AUTHOR_NAME=b GIT_AUTHOR_EMAIL=b@b GIT_COMMITTER_NAME=b GIT_COMMITTER_EMAIL=b@b "${g[@]}" commit-tree "$t")"
    # A first status writes the refreshed index (as in any checkout used before).
    "${g[@]}" status --porcelain -uall >/dev/null
    sleep 2
    "${g[@]}" status --porcelain -uall >/dev/null
}

bench_tree() {
    local name=$1 tree=$2
    local out="$results/$name"
    mkdir -p "$out"
    local files
    files=$(find "$tree" -type f | wc -l)
    local bytes
    bytes=$(du -sb "$tree" | cut -f1)
    echo "$files $bytes" >"$out/size"
    echo "== $name: $tree ($files files, $bytes bytes)" >&2

    hyperfine -N --warmup 1 --runs "$runs" --export-json "$out/cold.json" \
        -n nullspace "$bin context hash --no-stat-cache $tree" >&2
    hyperfine --warmup 1 --runs "$runs" --export-json "$out/cold-tools.json" \
        -n openssl "find $tree -type f -print0 | xargs -0 -P2 openssl dgst -sha256 >/dev/null" \
        -n tar "tar -cf - $tree 2>/dev/null | sha256sum" \
        -n read "find $tree -type f -print0 | xargs -0 -P2 cat >/dev/null" >&2

    local gitdir="$work/git-$name"
    git_index "$tree" "$gitdir"
    "$bin" context hash --state-dir "$state" "$tree" >/dev/null
    sleep 2 # past the stat cache's racy window
    "$bin" context hash --state-dir "$state" "$tree" >/dev/null
    hyperfine -N --warmup 2 --runs $((runs * 2)) --export-json "$out/warm.json" \
        -n nullspace "$bin context hash --state-dir $state $tree" \
        -n git "git --git-dir=$gitdir --work-tree=$tree -c core.bare=false status --porcelain -uall" >&2

    # 1% of the files (every 100th), touched before each run of either tool. Only for the
    # generated tree: touching files in the live toolchain would be rude.
    if [[ "$name" == generated ]]; then
        find "$tree" -type f | awk 'NR % 100 == 0' >"$out/touch.list"
        hyperfine -N --warmup 1 --runs "$runs" --export-json "$out/touch.json" \
            --prepare "xargs -a $out/touch.list -d '\n' touch" \
            -n nullspace "$bin context hash --state-dir $state $tree" \
            -n git "git --git-dir=$gitdir --work-tree=$tree -c core.bare=false status --porcelain -uall" >&2
    fi

    /usr/bin/time -v "$bin" context hash --no-stat-cache "$tree" 2>"$out/time.txt" >/dev/null
}

bench_tree generated "$work/gen"
bench_tree toolchain "$toolchain"

python3 "$here/context_results.py" "$results" "$here/RESULTS.md"
echo "written: $here/RESULTS.md" >&2

#!/usr/bin/env python3
"""Turns benches/context_hash.sh's hyperfine and /usr/bin/time output into the context-hash
section of RESULTS.md (between its markers; other sections are kept)."""

import json
import os
import re
import subprocess
import sys

BEGIN = "<!-- context-hash:begin -->"
END = "<!-- context-hash:end -->"


def means(path):
    with open(path) as f:
        return {r["command"]: (r["mean"], r["stddev"] or 0.0) for r in json.load(f)["results"]}


def fmt(mean_sd):
    m, sd = mean_sd
    return f"{m * 1000:.0f} ± {sd * 1000:.0f} ms" if m < 10 else f"{m:.2f} ± {sd:.2f} s"


def tree_section(name, d):
    files, size = open(os.path.join(d, "size")).read().split()
    cold = means(os.path.join(d, "cold.json")) | means(os.path.join(d, "cold-tools.json"))
    warm = means(os.path.join(d, "warm.json"))
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(os.path.join(d, "time.txt")).read())
    rss_mib = int(rss.group(1)) / 1024 if rss else float("nan")
    ns = cold["nullspace"][0]
    lines = [
        f"### {name} ({int(files):,} files, {int(size) / 2**30:.2f} GiB)",
        "",
        "| measurement | nullspace | other | ratio (other / nullspace) | goal |",
        "| --- | --- | --- | --- | --- |",
        f"| cold hash vs `find … xargs -P2 openssl dgst` | {fmt(cold['nullspace'])} | {fmt(cold['openssl'])} "
        f"| {cold['openssl'][0] / ns:.2f}× | ≥ 1.5× |",
        f"| cold hash vs `tar -cf - … \\| sha256sum` | {fmt(cold['nullspace'])} | {fmt(cold['tar'])} "
        f"| {cold['tar'][0] / ns:.2f}× | far ahead |",
        f"| cold hash vs only reading the files (`xargs -P2 cat`, no hashing) | {fmt(cold['nullspace'])} "
        f"| {fmt(cold['read'])} | {cold['read'][0] / ns:.2f}× | (the floor) |",
        f"| warm re-hash (stat cache) vs `git status` | {fmt(warm['nullspace'])} | {fmt(warm['git'])} "
        f"| {warm['git'][0] / warm['nullspace'][0]:.2f}× | ≥ 1× |",
    ]
    touch = os.path.join(d, "touch.json")
    if os.path.exists(touch):
        t = means(touch)
        lines.append(
            f"| after touching 1% of files vs `git status` | {fmt(t['nullspace'])} | {fmt(t['git'])} "
            f"| {t['git'][0] / t['nullspace'][0]:.2f}× | close to 1× |"
        )
    lines.append(f"| peak RSS, cold hash | {rss_mib:.0f} MiB | | | < 150 MiB |")
    return "\n".join(lines) + "\n"


def main():
    results, target = sys.argv[1], sys.argv[2]
    cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                         capture_output=True, text=True).stdout.strip()
    body = [
        BEGIN,
        "## Context hashing (`benches/context_hash.sh`)",
        "",
        f"Machine: {os.cpu_count()} cores, {cpu}. Files in the page cache; hyperfine means ± σ.",
        "`nullspace` is the release `nullspace context hash` (walk + .dockerignore + BuildKit "
        "content hash); the other tools hash every file of the same tree. `git status` runs on the "
        "same tree indexed in a separate git dir.",
        "",
    ]
    for name in ("generated", "toolchain"):
        d = os.path.join(results, name)
        if os.path.isdir(d):
            body.append(tree_section(name, d))
    body.append(END)
    section = "\n".join(body) + "\n"
    old = open(target).read() if os.path.exists(target) else "# Benchmark results\n\n"
    if BEGIN in old and END in old:
        new = old[: old.index(BEGIN)] + section + old[old.index(END) + len(END) + 1:]
    else:
        new = old.rstrip("\n") + "\n\n" + section
    with open(target, "w") as f:
        f.write(new)


if __name__ == "__main__":
    main()

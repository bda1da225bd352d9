#!/usr/bin/env python3
"""Deterministic generator of a realistic build context for the context-hash benchmarks.

Usage: gen_context.py OUT_DIR

Makes ~50,000 files (~1.5 GB): application sources, nested node_modules-like package trees,
assets of mixed sizes, a few large data files, logs and caches, and a 60-pattern
.dockerignore (which leaves out only logs, caches and build leftovers, a few per cent of the
bytes, so that tools hashing everything do about the same work). The same seed always gives
the same tree; a stamp file makes a second run with an intact tree a no-op.
"""

import os
import random
import sys

VERSION = "v2"
SEED = 20240601

IGNORE = [
    "**/*.log", "**/*.tmp", "**/*.swp", "**/.DS_Store", "**/Thumbs.db", "**/__pycache__",
    "**/*.pyc", "**/.pytest_cache", "**/.mypy_cache", "**/.cache", ".git", ".hg", ".svn",
    ".idea", ".vscode", "coverage", "coverage/**", ".nyc_output", "tmp", "temp", "logs",
    "*.pid", "*.seed", "*.pid.lock", "npm-debug.log*", "yarn-debug.log*", "yarn-error.log*",
    ".env", ".env.*", "!.env.example", "**/*.orig", "**/*.rej", "**/*.bak", "**/*~",
    "dist/**/*.map", "build/tmp", "target", "**/node_modules/.cache", "**/node_modules/**/test",
    "**/node_modules/**/tests", "**/node_modules/**/__tests__", "**/node_modules/**/*.md",
    "!**/node_modules/**/README.md", "**/node_modules/**/CHANGELOG*", "docs/_build",
    "site", "*.sqlite", "*.sqlite3", "*.db-journal", "secrets", "secrets/**", "*.pem",
    "*.key", "!fixtures/*.key", "Dockerfile.*", "docker-compose*.yml", ".dockerignore.bak",
    "**/.terraform", "*.tfstate", "**/.gradle",
]
assert len(IGNORE) == 60, len(IGNORE)


def write(root, rel, size, rng):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(left, 8 << 20)
            f.write(rng.randbytes(n))
            left -= n


def small(rng):
    # Mostly sub-10 KB, with a tail up to ~64 KB, like source trees.
    return int(min(65536, rng.lognormvariate(7.6, 1.1)))


def package(root, prefix, depth, rng, budget):
    name = f"pkg-{rng.randrange(1 << 20):05x}"
    base = f"{prefix}/node_modules/{name}"
    files = ["package.json", "index.js", "README.md", "LICENSE"]
    files += [f"lib/{rng.choice(['core', 'util', 'io', 'net'])}/{i}.js" for i in range(rng.randrange(5, 30))]
    files += [f"test/t{i}.js" for i in range(rng.randrange(0, 6))]
    files += ["CHANGELOG.md"] if rng.random() < 0.5 else []
    count = 0
    for f in files:
        if budget[0] <= 0:
            return count
        write(root, f"{base}/{f}", small(rng), rng)
        budget[0] -= 1
        count += 1
    if depth < 4:
        for _ in range(rng.randrange(0, 3)):
            count += package(root, base, depth + 1, rng, budget)
    return count


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    root = sys.argv[1]
    stamp = os.path.join(root, f".gen-{VERSION}")
    if os.path.exists(stamp):
        return
    rng = random.Random(SEED)
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, ".dockerignore"), "w") as f:
        f.write("\n".join(IGNORE) + "\n")
    with open(os.path.join(root, "Dockerfile"), "w") as f:
        f.write("FROM node:20\nCOPY package.json /app/\nCOPY src /app/src\nCOPY node_modules /app/node_modules\n")
    write(root, "package.json", 2000, rng)
    # Application sources: ~6,000 files in nested packages.
    for i in range(6000):
        write(root, f"src/mod{i % 40}/sub{i % 7}/file{i}.ts", small(rng), rng)
    # node_modules: ~38,000 files in nested package trees.
    budget = [38000]
    while budget[0] > 0:
        package(root, ".", 0, rng, budget)
    # Assets: ~600 files of 100 KB to 2.2 MB (~700 MB).
    for i in range(600):
        write(root, f"assets/img{i % 12}/a{i}.bin", rng.randrange(100_000, 2_200_000), rng)
    # Large data files (~600 MB), the largest 256 MB.
    for i, size in enumerate([256 << 20, 160 << 20, 100 << 20, 64 << 20]):
        write(root, f"data/blob{i}.bin", size, rng)
    # What the ignore file leaves out: logs, caches, leftovers (~5,000 files, a few % of bytes).
    for i in range(2000):
        write(root, f"logs/app{i}.log", small(rng), rng)
    for i in range(2000):
        write(root, f"src/mod{i % 40}/__pycache__/m{i}.pyc", small(rng), rng)
    for i in range(1000):
        write(root, f".cache/c{i}", small(rng), rng)
    open(stamp, "w").close()


if __name__ == "__main__":
    main()

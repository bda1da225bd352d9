#!/usr/bin/env python3
"""Writes fixtures/dockerfiles/large-1000.Dockerfile: 1,000 instructions over 10 stages, using
global and stage ARGs, ENV, RUN with --mount flags and heredocs, COPY with flags and --from.
Deterministic: the same file every run."""
import pathlib

out = []
out.append("# syntax=docker/dockerfile:1")
out.append("ARG BASE_VERSION=3.12")
out.append("ARG REGISTRY=docker.io")
count = 2
stage = 0
while count < 999:
    name = f"stage{stage}"
    if stage == 0:
        out.append(f"FROM --platform=$BUILDPLATFORM ${{REGISTRY}}/library/python:${{BASE_VERSION}}-slim AS {name}")
    else:
        out.append(f"FROM stage{stage - 1} AS {name}")
    count += 1
    out.append(f"ARG STAGE_ARG_{stage}=value{stage}")
    count += 1
    i = 0
    while count < 999 and i < 96:
        kind = i % 8
        if kind == 0:
            out.append(f"ENV VAR_{stage}_{i}=${{STAGE_ARG_{stage}}}-{i} OTHER_{i}=\"quoted value {i}\"")
        elif kind == 1:
            out.append(f"RUN --mount=type=cache,target=/root/.cache/s{stage},sharing=locked \\")
            out.append(f"    --mount=type=secret,id=tok{stage},required=false \\")
            out.append(f"    echo step {i} && ls /tmp > /dev/null")
        elif kind == 2:
            out.append(f"COPY --chown=1000:1000 --chmod=0644 src/part{i}/ /app/part{i}/")
        elif kind == 3:
            out.append("RUN <<EOT")
            out.append(f"echo heredoc {stage}-{i}")
            out.append("echo $HOME")
            out.append("EOT")
        elif kind == 4:
            out.append(f"WORKDIR /app/$VAR_{stage}_{i - 4}")
        elif kind == 5:
            out.append(f"LABEL org.example.step{i}=\"{stage}\" org.example.name=${{STAGE_ARG_{stage}}}")
        elif kind == 6:
            if stage:
                out.append(f"COPY --from=stage{stage - 1} --link --exclude=*.tmp /app/part{i - 4}/ /opt/copy{i}/")
            else:
                out.append(f"COPY --link --exclude=*.tmp src/part{i - 4}/ /opt/copy{i}/")
        else:
            out.append(f"RUN [\"/bin/sh\", \"-c\", \"echo exec form {i}\"]")
        count += 1
        i += 1
    stage += 1
out.append('CMD ["python", "-m", "http.server"]')
path = pathlib.Path(__file__).resolve().parent.parent / "fixtures/dockerfiles/large-1000.Dockerfile"
path.write_text("\n".join(out) + "\n")
print(f"wrote {path}: {count + 1} instructions")

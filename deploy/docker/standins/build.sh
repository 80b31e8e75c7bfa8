#!/usr/bin/env bash
# Build the local stand-ins for the public images this machine cannot pull:
#   driftloop/debian:bookworm                      debootstrap + docker import (cached)
#   driftloop/python:3.11-slim-bookworm-standin    for python:3.11-slim-bookworm
#   driftloop/postgres:15-bookworm-standin         for postgres:15-bookworm
#   driftloop/redis:7-bookworm-standin             for redis:7.2-bookworm
# An existing tag is kept (like the base): the images built on it stay cached.
# `docker rmi <tag>` rebuilds one after its Dockerfile changed.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
DOCKER="${DOCKER:-docker}"
"$HERE/build-base.sh" driftloop/debian:bookworm
# These Dockerfiles need no BuildKit feature: without the buildx plugin (newer
# docker CLIs refuse BuildKit builds without it) use the classic builder.
if "$DOCKER" buildx version >/dev/null 2>&1; then
    export DOCKER_BUILDKIT=1
else
    export DOCKER_BUILDKIT=0
fi
for spec in python:driftloop/python:3.11-slim-bookworm-standin \
    postgres:driftloop/postgres:15-bookworm-standin \
    redis:driftloop/redis:7-bookworm-standin; do
    name="${spec%%:*}"
    tag="${spec#*:}"
    if "$DOCKER" image inspect "$tag" >/dev/null 2>&1; then
        echo "standins: $tag exists, not rebuilding"
        continue
    fi
    echo "standins: building $tag"
    "$DOCKER" build -q --network host -f "$HERE/$name.Dockerfile" -t "$tag" "$HERE" >/dev/null
done

#!/usr/bin/env bash
# Build the local stand-ins for the public images this machine cannot pull:
#   driftloop/debian:bookworm                      debootstrap + docker import (cached)
#   driftloop/python:3.11-slim-bookworm-standin    for python:3.11-slim-bookworm
#   driftloop/postgres:15-bookworm-standin         for postgres:15-bookworm
#   driftloop/redis:7-bookworm-standin             for redis:7.2-bookworm
# Each build is cached by Docker; a rerun takes seconds.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
DOCKER="${DOCKER:-docker}"
"$HERE/build-base.sh" driftloop/debian:bookworm
export DOCKER_BUILDKIT=1
for spec in python:driftloop/python:3.11-slim-bookworm-standin \
    postgres:driftloop/postgres:15-bookworm-standin \
    redis:driftloop/redis:7-bookworm-standin; do
    name="${spec%%:*}"
    tag="${spec#*:}"
    echo "standins: building $tag"
    "$DOCKER" build -q --network host -f "$HERE/$name.Dockerfile" -t "$tag" "$HERE" >/dev/null
done

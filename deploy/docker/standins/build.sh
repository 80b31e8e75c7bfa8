#!/usr/bin/env bash
# Build the local stand-ins for the public images this machine cannot pull:
#   driftloop/debian:bookworm                      debootstrap + docker import (cached)
#   driftloop/python:3.11-slim-bookworm-standin    for python:3.11-slim-bookworm
#   driftloop/postgres:15-bookworm-standin         for postgres:15-bookworm
#   driftloop/redis:7.0-bookworm-standin           for redis:7.0-bookworm
#   driftloop/prometheus:v2.42.0-standin           for prom/prometheus:v2.42.0
#   driftloop/pushgateway:v1.5.1-standin           for prom/pushgateway:v1.5.1
#   driftloop/alertmanager:v0.25.0-standin         for prom/alertmanager:v0.25.0
# (each built from Debian bookworm's package of that version).
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
    redis:driftloop/redis:7.0-bookworm-standin \
    prometheus:driftloop/prometheus:v2.42.0-standin:prometheus \
    prometheus:driftloop/pushgateway:v1.5.1-standin:pushgateway \
    prometheus:driftloop/alertmanager:v0.25.0-standin:alertmanager; do
    # name:repository:tag[:build target]
    IFS=: read -r name repo version target <<<"$spec"
    tag="$repo:$version"
    if "$DOCKER" image inspect "$tag" >/dev/null 2>&1; then
        echo "standins: $tag exists, not rebuilding"
        continue
    fi
    echo "standins: building $tag"
    "$DOCKER" build -q --network host ${target:+--target "$target"} \
        -f "$HERE/$name.Dockerfile" -t "$tag" "$HERE" >/dev/null
done

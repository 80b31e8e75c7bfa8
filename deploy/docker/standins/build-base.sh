#!/usr/bin/env bash
# Build a Debian bookworm base image from the Debian mirror, for machines that
# reach package mirrors but no image registry.
#
#   deploy/docker/standins/build-base.sh [image]     # default driftloop/debian:bookworm
#
# debootstrap --variant=minbase makes the root file system, `docker import`
# turns it into an image. Skipped when the image already exists (delete it
# with `docker rmi` to rebuild). Needs root and debootstrap.
set -euo pipefail

IMAGE="${1:-driftloop/debian:bookworm}"
SUITE=bookworm

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "build-base.sh: $IMAGE exists, not rebuilding"
    exit 0
fi
if ! command -v debootstrap >/dev/null; then
    if [[ "${DRIFTLOOP_DOCKER_INSTALL:-0}" != 1 ]]; then
        echo "build-base.sh: debootstrap is missing (Debian: apt-get install debootstrap," \
            "or set DRIFTLOOP_DOCKER_INSTALL=1)" >&2
        exit 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q debootstrap >&2
fi

# The mirror this machine's apt already uses, unless one is given.
mirror_from_apt() {
    local uri
    uri="$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' |
        grep -v security | head -n 1 || true)"
    if [[ -z "$uri" ]]; then
        uri="$(grep -hsE '^deb ' /etc/apt/sources.list | awk '{print $2}' | grep -v security |
            head -n 1 || true)"
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}
MIRROR="${DRIFTLOOP_DEBIAN_MIRROR:-$(mirror_from_apt)}"
SECURITY_MIRROR="${DRIFTLOOP_DEBIAN_SECURITY_MIRROR:-${MIRROR%/debian}/debian-security}"

ROOTFS="$(mktemp -d /tmp/driftloop-rootfs.XXXXXX)"
trap 'rm -rf "$ROOTFS"' EXIT

echo "build-base.sh: debootstrap $SUITE (minbase) from $MIRROR"
debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR" >/dev/null
cat >"$ROOTFS/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
SOURCES
# Keep images small: no docs, no caches, no man pages.
cat >"$ROOTFS/etc/dpkg/dpkg.cfg.d/01-nodoc" <<'NODOC'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
NODOC
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/archives/*.deb \
    "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/locale/*

tar --numeric-owner -C "$ROOTFS" -c . |
    docker import --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' - "$IMAGE" >/dev/null
echo "build-base.sh: imported $IMAGE ($(docker image inspect -f '{{.Size}}' "$IMAGE") bytes)"

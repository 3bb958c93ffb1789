#!/usr/bin/env bash
# Builds a Debian bookworm base image with debootstrap and imports it into podman
# as localhost/debian:bookworm, tagged docker.io/library/debian:bookworm and
# :bookworm-slim, so that `FROM debian:bookworm[-slim]` resolves with no registry.
# Cached: does nothing when the image already exists.
# Usage: tests/container/base_image.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/containers.conf}

if podman image exists localhost/debian:bookworm; then
  echo "base_image: localhost/debian:bookworm present (cached)"
else
  # The mirror apt already uses (deb822 or one-line sources).
  mirror=$({ grep -rhoE 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null || true; } |
    grep -v security | head -n1 | tr -d ' ' || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  rootfs=$(mktemp -d /var/tmp/satlab-rootfs.XXXXXX)
  trap 'rm -rf "$rootfs"' EXIT
  echo "base_image: debootstrap --variant=minbase bookworm from $mirror"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
    tail -n 40 "$rootfs.log" >&2
    echo "base_image: debootstrap failed" >&2
    exit 1
  }
  rm -f "$rootfs.log"
  # Trim what slim images drop: apt lists and caches.
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
  tar --numeric-owner -C "$rootfs" -c . | podman import \
    --change 'CMD ["bash"]' --change 'ENV LANG=C.UTF-8' - localhost/debian:bookworm
fi
for tag in docker.io/library/debian:bookworm docker.io/library/debian:bookworm-slim; do
  podman image exists "$tag" || podman tag localhost/debian:bookworm "$tag"
done
echo "base_image: ready ($(podman image inspect --format '{{.Size}}' localhost/debian:bookworm) bytes)"

#!/usr/bin/env bash
# Builds a Debian bookworm base image with debootstrap and imports it into podman
# as localhost/debian:bookworm, tagged docker.io/library/debian:bookworm and
# :bookworm-slim, so that `FROM debian:bookworm[-slim]` resolves with no registry.
# Trimmed like Docker Hub's slim images: no docs (except copyright files), man
# pages, info or locales, and dpkg told to skip them in later installs.
# Cached: does nothing when the image exists with this script's BASE_VERSION.
# Usage: tests/container/base_image.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/containers.conf}
# Bump when the recipe below changes, so cached images are rebuilt.
BASE_VERSION=2

have=$(podman image inspect --format '{{index .Labels "org.satlab.base-version"}}' localhost/debian:bookworm 2>/dev/null || true)
if [[ $have == "$BASE_VERSION" ]]; then
  echo "base_image: localhost/debian:bookworm (version $BASE_VERSION) present (cached)"
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
  # Trim what slim images drop: apt lists and caches, docs, man pages, locales;
  # and keep later `apt-get install`s from bringing them back.
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
CFG
  find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/groff/* "$rootfs"/usr/share/info/* \
    "$rootfs"/usr/share/lintian/* "$rootfs"/usr/share/linda/* "$rootfs"/usr/share/locale/*
  podman rmi -f localhost/debian:bookworm docker.io/library/debian:bookworm \
    docker.io/library/debian:bookworm-slim >/dev/null 2>&1 || true
  tar --numeric-owner -C "$rootfs" -c . | podman import \
    --change 'CMD ["bash"]' --change 'ENV LANG=C.UTF-8' \
    --change "LABEL org.satlab.base-version=$BASE_VERSION" - localhost/debian:bookworm
fi
for tag in docker.io/library/debian:bookworm docker.io/library/debian:bookworm-slim; do
  podman tag localhost/debian:bookworm "$tag"
done
echo "base_image: ready ($(podman image inspect --format '{{.Size}}' localhost/debian:bookworm) bytes)"

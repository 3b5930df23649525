#!/usr/bin/env bash
# Build the production image (the repository's unchanged Dockerfile) on a machine that has no
# Docker engine and cannot reach a container registry, e.g. CI here. On a normal machine use
# `docker build -t cds-fasciculation .` instead.
#
#   deploy/container/build-local.sh [IMAGE]        (default IMAGE: localhost/cds-fasciculation:local)
#
# How: a Debian bookworm root file system with python3 is made with debootstrap and imported as
# the base image (it stands in for python:3.11-slim-bookworm); the service's dependencies are
# built into a wheelhouse on the host (pip inside the build cannot reach the index), mounted
# read-only into the build; then `buildah bud --isolation chroot` builds the Dockerfile.
# The base tarball and the wheelhouse are cached under CDS_BUILD_CACHE
# (default /var/cache/cds-fasciculation), so a repeat build takes seconds; from nothing it takes
# about two minutes (apt-get and debootstrap are most of it). Missing tools are apt-get installed
# when running as root. Prints the image name on the last line of stdout.
set -euo pipefail

image="${1:-localhost/cds-fasciculation:local}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cache="${CDS_BUILD_CACHE:-/var/cache/cds-fasciculation}"
base_image="localhost/cds-fasciculation-base:bookworm"
base_tar="$cache/bookworm-python3-minbase.tar"
python="${PYTHON:-python3}"

say() { echo "build-local: $*" >&2; }

ensure_tools() {
  local missing=()
  command -v buildah >/dev/null 2>&1 || missing+=(buildah)
  command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    say "missing ${missing[*]} and cannot apt-get install them (need root on Debian/Ubuntu)"
    exit 3
  fi
  say "installing ${missing[*]}"
  apt-get update -qq >&2 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
}

ensure_base_tar() {
  [ -s "$base_tar" ] && return 0
  mkdir -p "$cache"
  local work
  work="$(mktemp -d "$cache/rootfs.XXXXXX")"
  say "debootstrap bookworm (minbase + python3) into $work (about 50 s)"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$work/rootfs" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; rm -rf "$work"; exit 4; }
  # What python:3.11-slim also leaves out: package caches and lists, docs, man pages, locales.
  rm -rf "$work/rootfs/var/cache/apt/"*.bin "$work/rootfs/var/cache/apt/archives/"*.deb \
    "$work/rootfs/var/lib/apt/lists/"* "$work/rootfs/usr/share/doc/"* "$work/rootfs/usr/share/man/"* \
    "$work/rootfs/usr/share/locale/"*
  tar -C "$work/rootfs" -cf "$work/base.tar" .
  mv "$work/base.tar" "$base_tar"
  rm -rf "$work"
}

ensure_base_image() {
  local stamp
  stamp="$(stat -c %Y "$base_tar")"
  if buildah inspect --type image --format '{{index .ImageAnnotations "cds.base-tar-mtime"}}' \
      "$base_image" 2>/dev/null | grep -qx "$stamp"; then
    return 0
  fi
  say "importing $base_tar as $base_image"
  local c
  c="$(buildah from scratch)"
  buildah add "$c" "$base_tar" / >/dev/null
  buildah config --cmd '["/bin/bash"]' --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --annotation "cds.base-tar-mtime=$stamp" "$c"
  buildah commit -q --rm "$c" "$base_image" >/dev/null
}

ensure_wheelhouse() {
  # Wheels are built by the base image's own python3 (3.11.2 on bookworm), so environment
  # markers such as `python_full_version < "3.11.3"` resolve as they will in the image; the
  # host's CA bundle is mounted in case PyPI is reached through a TLS-inspecting proxy.
  # One wheelhouse per dependency list: a changed pyproject.toml gets a fresh one.
  local reqs key c
  reqs="$("$python" - "$root/pyproject.toml" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    deps = tomllib.load(f)["project"]["dependencies"]
print("\n".join(sorted(deps + ["setuptools>=69", "wheel"])))
PY
)"
  key="$(printf '%s' "$reqs" | sha256sum | cut -c1-16)"
  wheels="$cache/wheels-$key"
  [ -f "$wheels/.complete" ] && return 0
  say "building the wheelhouse $wheels"
  rm -rf "$wheels.tmp" && mkdir -p "$wheels.tmp"
  printf '%s\n' "$reqs" >"$wheels.tmp/requirements.txt"
  c="$(buildah from "$base_image")"
  if ! buildah run --isolation chroot --network host \
      -v "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}:/etc/ssl/certs/ca-certificates.crt:ro" \
      -v "$wheels.tmp:/wheelhouse" "$c" -- sh -c \
      'python3 -m venv /tmp/pip && /tmp/pip/bin/pip wheel -q --disable-pip-version-check \
         -w /wheelhouse -r /wheelhouse/requirements.txt' >&2; then
    buildah rm "$c" >/dev/null
    exit 5
  fi
  buildah rm "$c" >/dev/null
  touch "$wheels.tmp/.complete"
  rm -rf "$wheels" && mv "$wheels.tmp" "$wheels"
}

ensure_tools
ensure_base_tar
ensure_base_image
ensure_wheelhouse
say "buildah bud -> $image"
buildah bud --isolation chroot --network host --format docker --layers -q \
  --build-arg "BASE_IMAGE=$base_image" \
  --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=/wheelhouse \
  --volume "$wheels:/wheelhouse:ro" \
  -f "$root/Dockerfile" -t "$image" "$root" >&2
# Earlier builds of this project whose tag has moved on: remove them (cached layers stay).
buildah images --filter dangling=true --filter "label=org.opencontainers.image.title=cds-fasciculation" -q \
  | xargs -r buildah rmi >/dev/null 2>&1 || true
echo "$image"

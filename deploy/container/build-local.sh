#!/usr/bin/env bash
# Build the production image (the repository's unchanged Dockerfile) on a machine that has no
# Docker engine and cannot reach a container registry, e.g. CI here. On a normal machine use
# `docker build -t cds-fasciculation .` instead.
#
#   deploy/container/build-local.sh [IMAGE]        (default IMAGE: localhost/cds-fasciculation:local)
#
# How: a Debian bookworm root file system with python3 is made with debootstrap (lib.sh), and the
# stand-in for python:3.11-slim-bookworm is built from it under that exact tag
# (standin-images.sh), so the Dockerfile builds unchanged, FROM the name it gives; the service's
# dependencies are built into a wheelhouse with the base's own python3 (pip inside the build cannot
# reach the index), mounted read-only into the build; then `buildah bud --isolation chroot`.
# The base tarball and the wheelhouse are cached under CDS_BUILD_CACHE
# (default /var/cache/cds-fasciculation), so a repeat build takes seconds; from nothing it takes
# about two minutes (apt-get and debootstrap are most of it). Missing tools are apt-get installed
# when running as root. Prints the image name on the last line of stdout.
set -euo pipefail

image="${1:-localhost/cds-fasciculation:local}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cache="${CDS_BUILD_CACHE:-/var/cache/cds-fasciculation}"
base_image="localhost/cds-fasciculation-base:bookworm"
# shellcheck disable=SC2034  # base_tar and say_prefix are used by lib.sh
base_tar="$cache/bookworm-python3-minbase.tar"
python="${PYTHON:-python3}"
# shellcheck disable=SC2034
say_prefix=build-local

# shellcheck source=deploy/container/lib.sh disable=SC1091  # checked on its own
source "$root/deploy/container/lib.sh"

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
"$root/deploy/container/standin-images.sh" python
old="$(buildah inspect --type image --format '{{.FromImageID}}' "$image" 2>/dev/null || true)"
say "buildah bud -> $image"
buildah bud --isolation chroot --network host --format docker --layers -q --pull-never \
  --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=/wheelhouse \
  --volume "$wheels:/wheelhouse:ro" \
  -f "$root/Dockerfile" -t "$image" "$root" >&2
# The previous build of this tag, now untagged, if nothing uses it. Only that one: the untagged
# intermediate images of both stages are the layer cache that makes the next build fast.
new="$(buildah inspect --type image --format '{{.FromImageID}}' "$image")"
if [ -n "$old" ] && [ "$old" != "$new" ]; then buildah rmi "$old" >/dev/null 2>&1 || true; fi
echo "$image"

#!/usr/bin/env bash
# Build the stand-ins for the official base images that compose.yaml and the Dockerfile name, on a
# machine that cannot pull from a container registry (CI here). They are built from Debian's own
# packages on the project's bookworm base (lib.sh), under the exact tags the files use:
#
#   docker.io/library/python:3.11-slim-bookworm   Debian python3.11 + pip      standin/python
#   docker.io/library/postgres:16-bookworm        Debian postgresql-15         standin/postgres
#   docker.io/library/redis:7-bookworm            Debian redis-server 7.0      standin/redis
#   localhost/cds-proxy:haproxy                   Debian haproxy 2.6 (the two-replica drill's proxy)
#
#   deploy/container/standin-images.sh [python|postgres|redis|haproxy ...]   (default: all four)
#
# They follow the official images' conventions that the project relies on (each Containerfile
# says which), but they are NOT the official images: on a machine that can pull, use those.
# Cached in podman's image store: each image carries a label with the hash of its inputs (its
# directory, the base image, the CA bundle for python) and is rebuilt only when that changes.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cache="${CDS_BUILD_CACHE:-/var/cache/cds-fasciculation}"
base_image="localhost/cds-fasciculation-base:bookworm"
# shellcheck disable=SC2034  # base_tar and say_prefix are used by lib.sh
base_tar="$cache/bookworm-python3-minbase.tar"
# shellcheck disable=SC2034
say_prefix=standin-images
# shellcheck source=deploy/container/lib.sh disable=SC1091  # checked on its own
source "$root/deploy/container/lib.sh"

declare -A tags=(
  [python]=docker.io/library/python:3.11-slim-bookworm
  [postgres]=docker.io/library/postgres:16-bookworm
  [redis]=docker.io/library/redis:7-bookworm
  [haproxy]=localhost/cds-proxy:haproxy
)
ca_bundle="${STANDIN_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"

inputs_hash() {  # the stand-in's directory (names and contents), the base image id, the CA bundle
  local name="$1" dir="$root/deploy/container/standin/$1"
  {
    (cd "$dir" && find . -type f | LC_ALL=C sort | xargs sha256sum)
    buildah inspect --type image --format '{{.FromImageID}}' "$base_image"
    if [ "$name" = python ]; then sha256sum <"$ca_bundle"; fi
  } | sha256sum | cut -c1-24
}

build_one() {
  local name="$1" tag="${tags[$1]}" hash have ctx old
  hash="$(inputs_hash "$name")"
  old="$(buildah inspect --type image --format '{{.FromImageID}}' "$tag" 2>/dev/null || true)"
  have="$(buildah inspect --type image --format '{{index .OCIv1.Config.Labels "cds.standin.inputs"}}' "$tag" 2>/dev/null || true)"
  if [ "$have" = "$hash" ]; then
    say "$tag is current ($hash)"
    return 0
  fi
  say "building $tag (inputs $hash)"
  ctx="$(mktemp -d)"
  cp -a "$root/deploy/container/standin/$name/." "$ctx/"
  if [ "$name" = python ]; then cp "$ca_bundle" "$ctx/ca-certificates.crt"; fi
  local started=$SECONDS
  if ! buildah bud --isolation chroot --network host --format docker --layers -q \
      --build-arg "STANDIN_BASE=$base_image" --label "cds.standin.inputs=$hash" \
      --label "cds.standin.for=$tag" -t "$tag" "$ctx" >&2; then
    rm -rf "$ctx"
    say "building $tag failed"
    exit 6
  fi
  rm -rf "$ctx"
  say "built $tag in $((SECONDS - started)) s"
  # The previous build of this tag, now untagged (kept if something still uses it). Only that one:
  # images built FROM a stand-in inherit its labels, and their layer cache must stay.
  if [ -n "$old" ]; then buildah rmi "$old" >/dev/null 2>&1 || true; fi
}

ensure_tools
ensure_base_tar
ensure_base_image
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(python postgres redis haproxy)
for name in "${names[@]}"; do
  [ -n "${tags[$name]:-}" ] || { say "unknown stand-in: $name"; exit 2; }
  build_one "$name"
done

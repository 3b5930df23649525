# shellcheck shell=bash disable=SC2154  # cache, base_image, base_tar: set by the sourcing script
# Shared by build-local.sh and standin-images.sh (sourced, not run): the tools, and the Debian
# bookworm base image every locally built image starts from. A Debian rootfs (minbase, python3,
# python3-venv, ca-certificates) is made once with debootstrap, kept as a tarball in the cache and
# imported as $base_image; nothing here needs a Docker engine or a container registry.
#
# Expects: cache (directory), base_image (tag), base_tar (path). Missing tools are apt-get
# installed when running as root.

say() { echo "${say_prefix:-build}: $*" >&2; }

ensure_tools() {
  local missing=()
  command -v buildah >/dev/null 2>&1 || missing+=(buildah)
  command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
  command -v podman >/dev/null 2>&1 || missing+=(podman)
  command -v runc >/dev/null 2>&1 || missing+=(runc)
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


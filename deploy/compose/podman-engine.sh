#!/usr/bin/env bash
# A Docker-compatible engine made of podman, for running compose.yaml with the real Docker Compose
# CLI on a machine that has no Docker engine (CI here; docs/deployment.md, "Compose without a
# Docker engine"). Two background processes:
#
#   * `podman system service`: podman's Docker-compatible API on a unix socket (DOCKER_HOST);
#   * a health-check ticker: podman schedules HEALTHCHECKs with systemd timers, and without
#     systemd (containers, CI sandboxes) they never run, so `depends_on: condition:
#     service_healthy` would wait forever. The ticker runs `podman healthcheck run` for every
#     running container that has a health check, every `interval` after it started, as the Docker
#     engine does (retries, timeout and start_period are applied by podman itself).
#
#   deploy/compose/podman-engine.sh start     # prints DOCKER_HOST=unix://...; idempotent
#   deploy/compose/podman-engine.sh stop
#   deploy/compose/podman-engine.sh status    # exit 0 when the API answers
#
# State (socket, pid files, logs) lives in CDS_PODMAN_RUN (default /run/cds-podman).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
run="${CDS_PODMAN_RUN:-/run/cds-podman}"
sock="$run/podman.sock"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/podman/containers.conf}"

api_up() { curl -sf --max-time 2 --unix-socket "$sock" http://d/_ping >/dev/null 2>&1; }

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

seconds() {  # a Go duration as podman prints it (15s, 1m30s, 500ms) -> whole seconds, at least 1
  local d="$1" total=0 n unit
  while [[ "$d" =~ ^([0-9.]+)(h|m|s|ms|us|µs|ns)(.*)$ ]]; do
    n="${BASH_REMATCH[1]}" unit="${BASH_REMATCH[2]}" d="${BASH_REMATCH[3]}"
    case "$unit" in
      h) total=$(awk -v t="$total" -v n="$n" 'BEGIN{print t + n * 3600}') ;;
      m) total=$(awk -v t="$total" -v n="$n" 'BEGIN{print t + n * 60}') ;;
      s) total=$(awk -v t="$total" -v n="$n" 'BEGIN{print t + n}') ;;
      *) ;;
    esac
  done
  awk -v t="$total" 'BEGIN{s = int(t); print (s < 1 ? 1 : s)}'
}

ticker() {
  declare -A last=() busy=()
  local id interval started now due
  while :; do
    now="$(date +%s)"
    while read -r id interval started; do
      [ -n "$id" ] && [ "$interval" != "<nil>" ] && [ -n "$interval" ] || continue
      if [ -n "${busy[$id]:-}" ] && kill -0 "${busy[$id]}" 2>/dev/null; then continue; fi
      due=$(( ${last[$id]:-$started} + $(seconds "$interval") ))
      if [ "$now" -ge "$due" ]; then
        last[$id]=$now
        podman healthcheck run "$id" >/dev/null 2>&1 &
        busy[$id]=$!
      fi
    done < <(podman ps -q --no-trunc --filter status=running 2>/dev/null \
              | xargs -r podman inspect --format '{{.Id}} {{if .Config.Healthcheck}}{{.Config.Healthcheck.Interval}}{{else}}<nil>{{end}} {{.State.StartedAt.Unix}}' 2>/dev/null)
    sleep 1
  done
}

start() {
  mkdir -p "$run"
  if ! alive "$run/service.pid" || ! api_up; then
    alive "$run/service.pid" && kill "$(cat "$run/service.pid")" 2>/dev/null || true
    rm -f "$sock"
    BUILDAH_ISOLATION=chroot setsid podman system service --time=0 "unix://$sock" \
      >>"$run/service.log" 2>&1 </dev/null &
    echo $! >"$run/service.pid"
    for _ in $(seq 1 100); do api_up && break; sleep 0.1; done
    api_up || { echo "podman system service did not answer on $sock (see $run/service.log)" >&2; exit 1; }
  fi
  if ! alive "$run/ticker.pid"; then
    setsid "$0" _ticker >>"$run/ticker.log" 2>&1 </dev/null &
    echo $! >"$run/ticker.pid"
  fi
  echo "DOCKER_HOST=unix://$sock"
}

stop() {
  local f
  for f in ticker service; do
    if alive "$run/$f.pid"; then
      kill -- "-$(cat "$run/$f.pid")" 2>/dev/null || kill "$(cat "$run/$f.pid")" 2>/dev/null || true
    fi
    rm -f "$run/$f.pid"
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) api_up ;;
  _ticker) ticker ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Rolling restart of the two replicas behind the proxy (deploy/compose/replicas.yaml) with no
# failed call: for each replica, drain it in HAProxy (no new calls; the ones in flight finish),
# restart it (SIGTERM: it finishes what it still has, then exits), wait until its health check
# passes, put it back, and wait until HAProxy's own check sees it up, before the next one.
# A bare `docker compose restart cds` under load fails calls: connections that reach a replica
# just as it stops are reset (the drill saw it); draining first is what Kubernetes does with
# endpoint removal and the chart's preStop sleep.
#
#   deploy/compose/rolling-restart.sh [COMPOSE OPTIONS...]
#   e.g. deploy/compose/rolling-restart.sh -f compose.yaml -f deploy/compose/replicas.yaml
#
# COMPOSE (default "docker compose") names the compose command. Prints one line per step.
set -euo pipefail

read -r -a compose <<<"${COMPOSE:-docker compose}"
compose+=("$@")

haproxy() {  # one runtime API command, through socat inside the proxy container
  "${compose[@]}" exec -T proxy sh -c "echo '$1' | socat stdio unix-connect:/tmp/haproxy.sock"
}

field() {  # a column of `show stat` for backend server $1: 5 = current sessions, 18 = status
  haproxy "show stat" | awk -F, -v s="$1" -v f="$2" '$1 == "replicas" && $2 == s { print $f }'
}

wait_for() {  # wait_for SECONDS COMMAND...: until the command succeeds
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "rolling-restart: timed out waiting for: $*" >&2
      haproxy "show servers state replicas" >&2 || true
      return 1
    fi
    sleep 0.5
  done
}

idle() { [ "$(field "$1" 5)" = 0 ]; }
healthy() { "${compose[@]}" ps --format '{{.Health}}' "$1" | grep -qx healthy; }
up_in_proxy() { [ "$(field "$1" 18)" = UP ]; }

for pair in a:cds b:cds-b; do
  server="${pair%%:*}" service="${pair#*:}"
  haproxy "set server replicas/$server state drain" >/dev/null
  wait_for 60 idle "$server"
  echo "rolling-restart: $service drained"
  "${compose[@]}" restart "$service" >/dev/null 2>&1
  wait_for 180 healthy "$service"
  haproxy "set server replicas/$server state ready" >/dev/null
  wait_for 60 up_in_proxy "$server"
  echo "rolling-restart: $service restarted and back in the proxy"
done

#!/bin/sh
# Entry point of the redis stand-in: the official image's conventions, written for Debian's
# redis-server. Options alone (`--save ""`) or a config file as the command mean redis-server.
set -e
case "$1" in
  -*|*.conf) set -- redis-server "$@" ;;
esac
if [ "$1" = redis-server ]; then
  if [ "$(id -u)" = 0 ]; then
    find . ! -user redis -exec chown redis '{}' +
    exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
  fi
  # Protected mode off (the official build's default), right after the config file if there is
  # one, so the caller's own options still win.
  shift
  case "$1" in
    *.conf) conf="$1"; shift; set -- redis-server "$conf" --protected-mode no "$@" ;;
    *) set -- redis-server --protected-mode no "$@" ;;
  esac
  umask 0077
fi
exec "$@"

#!/usr/bin/env bash
# Stops the daemons scripts/env/up.sh started (it knows them by their pid files under
# $BERTH_ENV_STATE/run, default /var/lib/berth-env/run); daemons it did not start are
# left alone.
#   down.sh          stop podman (rootless, rootful), the registries, dockerd, containerd
#   down.sh --purge  also delete the state dir (registry data, password, cached fixture
#                    rootfs tarballs, logs) and the config files up.sh wrote under
#                    /etc/containers; the next up.sh starts from scratch (except packages,
#                    the berth-rootless user and the engines' own image stores)
set -euo pipefail
# shellcheck source=scripts/env/lib.sh
source "$(dirname "$(readlink -f "$0")")/lib.sh"

purge=
case ${1:-} in
  --purge) purge=1 ;;
  "") ;;
  *) echo "usage: $0 [--purge]" >&2; exit 2 ;;
esac
[[ $(id -u) -eq 0 ]] || { echo "down.sh: run as root" >&2; exit 1; }

log() { printf '[down.sh] %s\n' "$*"; }

if [[ -d $STATE ]]; then
  exec 9>"$STATE/.lock"
  flock -w 1800 9 || { echo "down.sh: timed out waiting for $STATE/.lock" >&2; exit 1; }
fi

ROOTLESS_USER=berth-rootless
for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
  name=${DAEMONS[i]}
  if pgid=$(daemon_pgid "$name") && pid_alive "$name"; then
    log "stopping $name (process group $pgid)"
    timeout=20
    [[ $name == dockerd ]] && timeout=60 # gives running containers 10s+ to stop
    stop_daemon "$name" "$timeout"
  else
    [[ -f $PIDS/$name.pid ]] && log "$name: not running (stale pid file removed)"
    rm -f "$PIDS/$name.pid"
  fi
  # rootless podman leaves its user-namespace holder ("pause" process, catatonit) behind
  if [[ $name == podman-rootless ]] && uid=$(id -u "$ROOTLESS_USER" 2>/dev/null); then
    pause_pid_file=/run/user/$uid/libpod/tmp/pause.pid
    if [[ -f $pause_pid_file ]]; then
      pause_pid=$(<"$pause_pid_file")
      if [[ $pause_pid =~ ^[0-9]+$ ]] && [[ $(stat -c %u "/proc/$pause_pid" 2>/dev/null) == "$uid" ]]; then
        log "stopping $ROOTLESS_USER's podman pause process ($pause_pid)"
        kill -TERM "$pause_pid" 2>/dev/null || true
      fi
      rm -f "$pause_pid_file"
    fi
  fi
done

if [[ -n $purge ]]; then
  log "removing $STATE and /etc/containers/{registries.conf.d/berth-local.conf,containers.conf.d/50-berth-env.conf}"
  rm -rf "$STATE"
  rm -f /etc/containers/registries.conf.d/berth-local.conf /etc/containers/containers.conf.d/50-berth-env.conf
  # the token registry's CA, trusted by token-registry.sh (the next up.sh makes a new one)
  log "removing the token registry's CA from the system store and the engines' certs.d"
  rm -rf /etc/docker/certs.d/10.203.0.1:5443 /etc/containers/certs.d/10.203.0.1:5443
  if [[ -f /usr/local/share/ca-certificates/berth-test-ca.crt ]]; then
    rm -f /usr/local/share/ca-certificates/berth-test-ca.crt
    update-ca-certificates --fresh >/dev/null 2>&1 || true
  fi
fi
log "done"

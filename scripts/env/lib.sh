# shellcheck shell=bash disable=SC2034
# Shared by up.sh and down.sh (sourced, not run).
#
# Every daemon up.sh starts leads its own session and process group (setsid), and its
# pid file $PIDS/NAME.pid holds that group id. Whole groups are checked and stopped,
# because rootless podman re-executes itself inside its user namespace: the process
# that serves the socket is a child of the one we started.

STATE=${BERTH_ENV_STATE:-/var/lib/berth-env}
LOGS=$STATE/logs
PIDS=$STATE/run
DAEMONS=(containerd dockerd registry public-registry podman podman-rootless lxd remote-lxd remote-dockerd
  token-issuer token-registry remote-sshd remote-podman remote-podman-rootless) # start order

# daemon_comm NAME -> the process name (comm) of that daemon
daemon_comm() {
  case $1 in
    registry | public-registry | token-registry) echo docker-registry ;;
    token-issuer) echo python3 ;;
    podman-rootless | remote-podman | remote-podman-rootless) echo podman ;;
    remote-lxd) echo lxd ;;
    remote-dockerd) echo dockerd ;;
    remote-sshd) echo sshd ;;
    *) echo "$1" ;;
  esac
}

# daemon_pgid NAME -> the process group id from the pid file (fails if none)
daemon_pgid() {
  local f=$PIDS/$1.pid pgid
  [[ -f $f ]] || return 1
  pgid=$(<"$f")
  [[ $pgid =~ ^[0-9]+$ ]] || return 1
  echo "$pgid"
}

# group_alive NAME -> any process left in the daemon's process group
group_alive() {
  local pgid
  pgid=$(daemon_pgid "$1") || return 1
  kill -0 -- "-$pgid" 2>/dev/null
}

# pid_alive NAME -> the daemon itself (right process name) runs in its process group;
# guards against a stale pid file whose number was reused after a reboot.
pid_alive() {
  local pgid
  pgid=$(daemon_pgid "$1") || return 1
  pgrep -g "$pgid" -x "$(daemon_comm "$1")" >/dev/null 2>&1
}

# stop_daemon NAME [TIMEOUT]: SIGTERM to the daemon's process group, SIGKILL after
# TIMEOUT seconds; removes the pid file. Does nothing for daemons we did not start.
stop_daemon() {
  local name=$1 timeout=${2:-30} pgid i
  if ! pgid=$(daemon_pgid "$name"); then
    return 0
  fi
  if pid_alive "$name"; then
    kill -TERM -- "-$pgid" 2>/dev/null || true
    for ((i = 0; i < timeout * 4; i++)); do
      group_alive "$name" || break
      sleep 0.25
    done
    if group_alive "$name"; then
      echo "$name (process group $pgid) did not stop in ${timeout}s: SIGKILL" >&2
      kill -KILL -- "-$pgid" 2>/dev/null || true
      sleep 0.5
    fi
  fi
  rm -f "$PIDS/$name.pid"
}

#!/usr/bin/env bash
# Installs and starts, idempotently, everything berth's end-to-end tests need:
# containerd, dockerd, an authenticated docker-registry on 127.0.0.1:5000, a
# public one (no authentication) on 127.0.0.1:5001, rootful and rootless Podman
# API services, and fixture base images in the registry. See
# scripts/env/README.md. Run as root. Safe to re-run.
set -Eeuo pipefail

# shellcheck source=scripts/env/lib.sh
source "$(dirname "$(readlink -f "$0")")/lib.sh" # STATE LOGS PIDS, pid_alive, stop_daemon
REGISTRY=127.0.0.1:5000
REGISTRY_USER=berth
REGISTRY_DIR=$STATE/registry
PASSWORD_FILE=$REGISTRY_DIR/password
# A registry anyone may pull from (and push to): what a cluster without pull secrets sees
# of a public repository (`berth verify-public`).
PUBLIC_REGISTRY=127.0.0.1:5001
PUBLIC_REGISTRY_DIR=$STATE/public-registry
FIXTURES=$STATE/fixtures
CONTAINERD_SOCK=/run/containerd/containerd.sock
DOCKER_SOCK=/var/run/docker.sock
PODMAN_SOCK=/run/podman/podman.sock
ROOTLESS_USER=berth-rootless
PLAIN_USER=berth-plain # no subordinate ids, no Podman service: what `berth doctor` must diagnose
# Debian mirror used for the python fixture (debootstrap and apt inside the image).
MIRROR=${BERTH_ENV_MIRROR:-}
SECURITY_MIRROR=${BERTH_ENV_SECURITY_MIRROR:-}
# uv, from PyPI (static musl build, same binary as ghcr.io/astral-sh/uv:0.5.1).
UV_VERSION=0.5.1
UV_WHEEL_URL=https://files.pythonhosted.org/packages/c5/0a/956467ee8bfa59f698f384eef6e072b14b971d36b7ee6d9b8ed15cfed065/uv-0.5.1-py3-none-musllinux_1_1_x86_64.whl
UV_WHEEL_SHA256=6a76765c3cc49268f3c6773bd89a0dacf8a91b040fc3faea6c527ef6f2308eba
# A current uv too: `uv venv` changed behaviour between the two (0.5.1 replaces an existing venv, current ones
# refuse), and specs built on other specs must work with both.
UV_CURRENT_VERSION=0.13.9
UV_CURRENT_WHEEL_URL=https://files.pythonhosted.org/packages/fe/fe/794884de0efd3ac77a427cab21aa72c0483e100c55a42cd5cbb02c141b84/uv-0.13.9-py3-none-musllinux_1_1_x86_64.whl
UV_CURRENT_WHEEL_SHA256=2c45530751517d6c3bbc69a19473f6effe47cce047bede01ffd8af7ea7b36b25

BUSYBOX_IMAGE=$REGISTRY/fixtures/busybox:1
PYTHON_IMAGE=$REGISTRY/fixtures/bookworm-python:1
UV_IMAGE=$REGISTRY/fixtures/uv:$UV_VERSION
UV_CURRENT_IMAGE=$REGISTRY/fixtures/uv:$UV_CURRENT_VERSION
# Bump when a fixture recipe changes, so cached rootfs tarballs are rebuilt.
BUSYBOX_RECIPE=r1
PYTHON_RECIPE=r2
UV_RECIPE=r1

PACKAGES=(
  docker.io containerd runc podman uidmap docker-registry skopeo debootstrap
  busybox-static apache2-utils protobuf-compiler ca-certificates curl git
  # the remote host's sshd (scripts/env/remote-ssh.sh)
  openssh-server
  # scripts/python-test.sh: the flytekit venv (from /usr/bin/python3, so the rootless user can run it)
  python3-venv
  # podman's Recommends we rely on (installed with --no-install-recommends):
  slirp4netns fuse-overlayfs netavark aardvark-dns catatonit
  # docker.io Recommends worth having: faster/compatible layer (de)compression
  xz-utils pigz
  # the LXD engine (lxd pulls in lxc, its client, and lxcfs)
  lxd
  # backend-lxd's init programs for aarch64, riscv64 and ppc64le servers run under qemu-user in its tests
  qemu-user-static
)

T0=$(date +%s)
log() { printf '[up.sh %4ss] %s\n' "$(($(date +%s) - T0))" "$*"; }
step() { printf '[up.sh %4ss] === %s\n' "$(($(date +%s) - T0))" "$*"; }
die() { printf '[up.sh] ERROR: %s\n' "$*" >&2; exit 1; }
on_err() {
  local rc=$? line=$1
  printf '[up.sh] ERROR: command failed (exit %s) at line %s: %s\n' "$rc" "$line" "$BASH_COMMAND" >&2
}
trap 'on_err $LINENO' ERR
policy_created=
on_exit() { if [[ -n $policy_created ]]; then rm -f /usr/sbin/policy-rc.d; fi; }
trap on_exit EXIT

# Print the last lines of a daemon log (for error messages).
log_tail() {
  local f=$1
  if [[ -s $f ]]; then
    echo "---- last 30 lines of $f ----"
    tail -n 30 "$f"
    echo "----"
  else
    echo "(log $f is empty or missing)"
  fi
}

# start_daemon NAME CMD...: runs CMD detached (own session), output to $LOGS/NAME.log,
# pid to $PIDS/NAME.pid.
start_daemon() {
  local name=$1; shift
  local logf=$LOGS/$name.log
  {
    echo
    echo "===== $(date -Is) starting: $*"
  } >>"$logf"
  # subshell execs setsid, which execs the command: $! is the daemon's pid. fd 9 (the
  # lock) is not inherited, or the next up.sh would wait for the daemons to exit.
  (cd / && exec setsid "$@" </dev/null >>"$logf" 2>&1 9>&-) &
  echo $! >"$PIDS/$name.pid"
  log "started $name (pid $!, log $logf)"
}

# wait_for NAME TIMEOUT DESCRIPTION CMD...: polls CMD until it succeeds; fails with the
# daemon's log tail on timeout or if the daemon died.
wait_for() {
  local name=$1 timeout=$2 desc=$3; shift 3
  local deadline=$(($(date +%s) + timeout))
  while ! "$@" >/dev/null 2>&1; do
    if [[ -f $PIDS/$name.pid ]] && ! group_alive "$name"; then
      log_tail "$LOGS/$name.log" >&2
      die "$name exited before $desc (see $LOGS/$name.log)"
    fi
    if (($(date +%s) >= deadline)); then
      log_tail "$LOGS/$name.log" >&2
      die "timed out after ${timeout}s waiting for $name: $desc (see $LOGS/$name.log)"
    fi
    sleep 0.5
  done
}

# Write FILE with content from stdin only if it differs; returns 0 if changed, 1 if unchanged.
write_if_changed() {
  local f=$1 mode=${2:-644} tmp
  tmp=$(mktemp)
  cat >"$tmp"
  if [[ -f $f ]] && cmp -s "$tmp" "$f"; then
    rm -f "$tmp"
    return 1
  fi
  mkdir -p "$(dirname "$f")"
  install -m "$mode" "$tmp" "$f"
  rm -f "$tmp"
  return 0
}

[[ $(id -u) -eq 0 ]] || die "run as root (sudo $0)"
mkdir -p "$STATE" "$LOGS" "$PIDS" "$REGISTRY_DIR" "$PUBLIC_REGISTRY_DIR" "$FIXTURES"
chmod 755 "$STATE"
chmod 700 "$REGISTRY_DIR" "$PUBLIC_REGISTRY_DIR" # password, htpasswd, http secrets
# One up.sh/down.sh at a time (several test sessions may call it at once).
exec 9>"$STATE/.lock"
if ! flock -n 9; then
  log "another up.sh/down.sh holds $STATE/.lock: waiting (up to 30 min)"
  flock -w 1800 9 || die "timed out waiting for $STATE/.lock"
fi

#######################################################################################
step "1/7 packages"
pkg_installed() { [[ $(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null) == ii* ]]; }
missing=()
installed=" $(dpkg-query -W -f='${db:Status-Abbrev}${Package} \n' "${PACKAGES[@]}" 2>/dev/null | awk '/^ii/ {printf "%s ", $2}' || true) "
for p in "${PACKAGES[@]}"; do [[ $installed == *" $p "* ]] || missing+=("$p"); done
if ((${#missing[@]} == 0)); then
  log "all ${#PACKAGES[@]} packages already installed"
else
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Keep package maintainer scripts from starting services (docker-registry's init
  # script would grab port 5000 with its default, unauthenticated config).
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    policy_created=1
  fi
  apt_opts=(-y -q -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold --no-install-recommends)
  # apt-get update only when needed: some package has no install candidate, or the
  # package lists are missing. If the install still fails (stale lists -> 404), update
  # and retry once.
  need_update=
  for p in "${missing[@]}"; do
    cand=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ {print $2}')
    if [[ -z $cand || $cand == "(none)" ]]; then need_update=1; break; fi
  done
  if [[ -n $need_update ]]; then
    log "apt-get update (no install candidate for some packages)"
    apt-get update -q || die "apt-get update failed"
  fi
  if ! apt-get install "${apt_opts[@]}" "${missing[@]}"; then
    if [[ -z $need_update ]]; then
      log "install failed; apt-get update and retry"
      apt-get update -q || die "apt-get update failed"
      apt-get install "${apt_opts[@]}" "${missing[@]}" || die "apt-get install failed: ${missing[*]}"
    else
      die "apt-get install failed: ${missing[*]}"
    fi
  fi
  rm -f /usr/sbin/policy-rc.d && policy_created=
  for p in "${missing[@]}"; do pkg_installed "$p" || die "package $p is still not installed"; done
fi

# The mirror for the python fixture: the one this machine's apt uses.
if [[ -z $MIRROR ]]; then
  MIRROR=$(
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
      grep -E '^[[:space:]]*(URIs:|deb[[:space:]])' | grep -oE 'https?://[^[:space:]]+' |
      grep -E '/debian/?$' | head -n1 || true
  )
  MIRROR=${MIRROR%/}
  [[ -n $MIRROR ]] || MIRROR=http://deb.debian.org/debian
fi
MIRROR=${MIRROR/#https:/http:}
[[ -n $SECURITY_MIRROR ]] || SECURITY_MIRROR=${MIRROR%/debian}/debian-security

#######################################################################################
step "2/7 containerd + dockerd"
ctr_version() { [[ -S $CONTAINERD_SOCK ]] && timeout 10 ctr --address "$CONTAINERD_SOCK" --connect-timeout 2s version; }
if ctr_version >/dev/null 2>&1; then
  log "containerd already answers on $CONTAINERD_SOCK"
else
  if pid_alive containerd; then
    log "containerd (pid $(<"$PIDS/containerd.pid")) is running but not answering yet"
  else
    start_daemon containerd containerd --address "$CONTAINERD_SOCK"
  fi
  wait_for containerd 60 "ctr version on $CONTAINERD_SOCK" ctr_version
  log "containerd is up"
fi

docker_info() { timeout 20 docker info; }
if docker_info >/dev/null 2>&1; then
  log "dockerd already answers on $DOCKER_SOCK"
else
  if pid_alive dockerd; then
    log "dockerd (pid $(<"$PIDS/dockerd.pid")) is running but not answering yet"
  else
    start_daemon dockerd dockerd --containerd="$CONTAINERD_SOCK" --host "unix://$DOCKER_SOCK"
  fi
  wait_for dockerd 90 "docker info" docker_info
  log "dockerd is up"
fi
insecure=$(docker info --format '{{json .RegistryConfig.InsecureRegistryCIDRs}}')
[[ $insecure == *'"127.0.0.0/8"'* ]] ||
  die "dockerd does not treat 127.0.0.0/8 as an insecure registry (InsecureRegistryCIDRs=$insecure)"
log "dockerd treats 127.0.0.0/8 (so $REGISTRY) as insecure: ok"

#######################################################################################
step "3/7 registries on $REGISTRY (authenticated) and $PUBLIC_REGISTRY (public)"
if [[ ! -s $PASSWORD_FILE ]]; then
  (umask 077 && head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$PASSWORD_FILE")
  log "generated registry password in $PASSWORD_FILE"
fi
chmod 600 "$PASSWORD_FILE"
REGISTRY_PASSWORD=$(<"$PASSWORD_FILE")
CREDS="$REGISTRY_USER:$REGISTRY_PASSWORD"
registry_changed=
if [[ ! -s $REGISTRY_DIR/htpasswd ]] || ! htpasswd -vb "$REGISTRY_DIR/htpasswd" "$REGISTRY_USER" "$REGISTRY_PASSWORD" >/dev/null 2>&1; then
  htpasswd -Bbn "$REGISTRY_USER" "$REGISTRY_PASSWORD" | (umask 077 && cat >"$REGISTRY_DIR/htpasswd.tmp")
  mv "$REGISTRY_DIR/htpasswd.tmp" "$REGISTRY_DIR/htpasswd"
  registry_changed=1
  log "wrote $REGISTRY_DIR/htpasswd (bcrypt)"
fi
# registry_config DIR ADDR: prints docker-registry's config for storage in DIR/data, served on ADDR
# with the secret in DIR/http-secret (made once); callers append an auth section, or none.
registry_config() {
  local dir=$1 addr=$2
  [[ -s $dir/http-secret ]] || (umask 077 && head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$dir/http-secret")
  mkdir -p "$dir/data"
  cat <<EOF
# Written by berth scripts/env/up.sh
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: $addr
  secret: $(<"$dir/http-secret")
EOF
}
if {
  registry_config "$REGISTRY_DIR" "$REGISTRY"
  cat <<EOF
auth:
  htpasswd:
    realm: berth-test-registry
    path: $REGISTRY_DIR/htpasswd
EOF
} | write_if_changed "$REGISTRY_DIR/config.yml" 600; then
  registry_changed=1
  log "wrote $REGISTRY_DIR/config.yml"
fi
registry_status() { curl -s -o /dev/null -m 5 -w '%{http_code}' "http://$REGISTRY/v2/" || true; }
if [[ -n $registry_changed ]] && pid_alive registry; then
  log "registry config changed: restarting it"
  stop_daemon registry 10
fi
code=$(registry_status)
if [[ $code == 401 ]]; then
  log "registry already answers 401 on http://$REGISTRY/v2/"
else
  if [[ $code != 000 ]] && ! pid_alive registry; then
    die "something else listens on $REGISTRY (GET /v2/ -> HTTP $code, expected 401 from an authenticated registry): $(ss -ltnp "sport = :5000" 2>/dev/null | tail -n +2)"
  fi
  pid_alive registry || start_daemon registry docker-registry serve "$REGISTRY_DIR/config.yml"
  wait_for registry 30 "GET http://$REGISTRY/v2/ -> 401" bash -c "[[ \$(curl -s -o /dev/null -m 5 -w '%{http_code}' http://$REGISTRY/v2/) == 401 ]]"
  log "registry is up (401 without credentials)"
fi
code=$(curl -s -o /dev/null -m 5 -w '%{http_code}' -u "$CREDS" "http://$REGISTRY/v2/" || true)
[[ $code == 200 ]] || { log_tail "$LOGS/registry.log" >&2; die "registry rejects the credentials from $PASSWORD_FILE (HTTP $code)"; }
log "registry accepts user $REGISTRY_USER: ok"

# The public registry: the same server with its own storage and secret, and no auth section, so
# anonymous clients may pull (and push).
public_changed=
if registry_config "$PUBLIC_REGISTRY_DIR" "$PUBLIC_REGISTRY" | write_if_changed "$PUBLIC_REGISTRY_DIR/config.yml" 600; then
  public_changed=1
  log "wrote $PUBLIC_REGISTRY_DIR/config.yml"
fi
if [[ -n $public_changed ]] && pid_alive public-registry; then
  log "public registry config changed: restarting it"
  stop_daemon public-registry 10
fi
code=$(curl -s -o /dev/null -m 5 -w '%{http_code}' "http://$PUBLIC_REGISTRY/v2/" || true)
if [[ $code == 200 ]] && pid_alive public-registry; then
  log "public registry already answers 200 on http://$PUBLIC_REGISTRY/v2/"
else
  if [[ $code != 000 ]] && ! pid_alive public-registry; then
    die "something else listens on $PUBLIC_REGISTRY (GET /v2/ -> HTTP $code, expected berth's public registry): $(ss -ltnp "sport = :5001" 2>/dev/null | tail -n +2)"
  fi
  pid_alive public-registry || start_daemon public-registry docker-registry serve "$PUBLIC_REGISTRY_DIR/config.yml"
  wait_for public-registry 30 "GET http://$PUBLIC_REGISTRY/v2/ -> 200" bash -c "[[ \$(curl -s -o /dev/null -m 5 -w '%{http_code}' http://$PUBLIC_REGISTRY/v2/) == 200 ]]"
  log "public registry is up (200 without credentials)"
fi

#######################################################################################
step "4/7 podman (rootful + rootless API services)"
podman_conf_changed=
# No registries.conf entries for the test registries: a user's machine has none, and berth itself tells Podman
# which registries speak plain HTTP (loopback ones and --insecure-registry), for pulls during builds as for pushes.
# Earlier versions of this script wrote one; remove it.
if [[ -f /etc/containers/registries.conf.d/berth-local.conf ]]; then
  rm -f /etc/containers/registries.conf.d/berth-local.conf
  podman_conf_changed=1
  log "removed /etc/containers/registries.conf.d/berth-local.conf (written by an earlier up.sh)"
fi
# No systemd here: cgroupfs cgroup manager and a file events log, for root and users
# (podman's defaults, systemd + journald, only produce warnings/fallbacks here).
# netavark explicitly: the podman package also ships a CNI config, whose plugins are not
# installed. And if root lacks CAP_SYS_RESOURCE (true on this VM kind), rootful
# `podman run` fails with "error setting rlimit type 7/6" because podman asks for
# nofile=1048576 and nproc=1048576 above the hard limits: default to the limits we have
# (podman itself caps its own nproc at 32768).
cap_eff=$(awk '/^CapEff:/ {print $2}' /proc/self/status)
ulimit_line=
if ((!((16#$cap_eff >> 24) & 1))); then
  h_nofile=$(ulimit -Hn) h_nproc=$(ulimit -Hu)
  [[ $h_nofile == unlimited ]] && h_nofile=1048576
  [[ $h_nproc == unlimited || $h_nproc -gt 32768 ]] && h_nproc=32768
  ulimit_line="default_ulimits = [\"nofile=$h_nofile:$h_nofile\", \"nproc=$h_nproc:$h_nproc\"]"
fi
if write_if_changed /etc/containers/containers.conf.d/50-berth-env.conf 644 <<EOF; then
# Written by berth scripts/env/up.sh: this machine has no systemd.
[containers]
$ulimit_line

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"

[network]
network_backend = "netavark"
EOF
  podman_conf_changed=1
  log "wrote /etc/containers/containers.conf.d/50-berth-env.conf"
fi

# Rootless podman wants / to be a shared mount (it is under systemd; here it is private).
if [[ $(findmnt -no PROPAGATION / 2>/dev/null) != shared ]]; then
  if mount --make-rshared /; then
    log "made / a shared mount (as systemd does)"
  else
    log "warning: could not make / a shared mount"
  fi
fi

# rootless slirp4netns opens /dev/net/tun from inside the user's namespaces; it must be
# world read/writable (udev makes it 0666 on a normal system; here it is 0600).
if [[ -c /dev/net/tun ]] && [[ $(stat -c %a /dev/net/tun) != 666 ]]; then
  chmod 666 /dev/net/tun
  log "chmod 666 /dev/net/tun (was 0600: rootless slirp4netns cannot open it)"
fi

# buildah 1.28 (podman 4.3) keeps RUN --mount=type=cache dirs in $TMPDIR/buildah-cache (/var/tmp by default),
# one folder for root and all users. Leave it as root's first Podman build leaves it on a user's machine (root's,
# mode 755), so the rootless tests meet what rootless users meet after root has built (berth must cope; doctor
# names it). Earlier versions of this script made it 1777.
install -d -m 755 /var/tmp/buildah-cache
chown root:root /var/tmp/buildah-cache
chmod 755 /var/tmp/buildah-cache

podman_ping() { curl -sf -m 5 --unix-socket "$1" http://d/_ping 2>/dev/null | grep -q OK; }

# stop_ours NAME: stop a daemon we started, to restart it (podman reads its configuration
# only when it starts)
stop_ours() {
  pid_alive "$1" || return 0
  log "stopping $1 (process group $(daemon_pgid "$1")) to reload its configuration"
  stop_daemon "$1" 15
}

if [[ -n $podman_conf_changed ]]; then
  stop_ours podman
  stop_ours podman-rootless
fi

mkdir -p /run/podman
if podman_ping "$PODMAN_SOCK"; then
  log "rootful podman service already answers on $PODMAN_SOCK"
else
  pid_alive podman || start_daemon podman podman system service --time=0 "unix://$PODMAN_SOCK"
  wait_for podman 60 "_ping on $PODMAN_SOCK" podman_ping "$PODMAN_SOCK"
  log "rootful podman service is up on $PODMAN_SOCK"
fi

# Rootless user.
if ! id -u "$ROOTLESS_USER" >/dev/null 2>&1; then
  useradd --create-home --shell /bin/bash --comment "berth rootless podman tests" "$ROOTLESS_USER"
  log "created user $ROOTLESS_USER"
fi
RL_UID=$(id -u "$ROOTLESS_USER")
RL_GID=$(id -g "$ROOTLESS_USER")
RL_HOME=$(getent passwd "$ROOTLESS_USER" | cut -d: -f6)
# add_subid_ranges USER: 65536 subordinate uids and gids for USER in a free range, unless it has some (useradd
# may already have added a range; it is kept)
add_subid_ranges() {
  local user=$1 f start
  for f in /etc/subuid /etc/subgid; do
    touch "$f"
    if ! grep -q "^$user:" "$f"; then
      start=200000
      while awk -F: -v s="$start" '$2 < s + 65536 && $2 + $3 > s {found=1} END {exit !found}' "$f"; do
        start=$((start + 65536))
      done
      echo "$user:$start:65536" >>"$f"
      log "added $user:$start:65536 to $f"
    fi
  done
}
add_subid_ranges "$ROOTLESS_USER"
RL_RUNTIME=/run/user/$RL_UID
install -d -m 755 /run/user
install -d -m 700 -o "$RL_UID" -g "$RL_GID" "$RL_RUNTIME" "$RL_RUNTIME/podman"
# A user with a runtime folder but no subordinate ids and no Podman service: `berth doctor` must name
# both fixes for it (tests/e2e/doctor.rs). useradd allocates subordinate ids by itself; remove any.
if ! id -u "$PLAIN_USER" >/dev/null 2>&1; then
  useradd --create-home --shell /bin/bash --comment "berth doctor tests, no rootless setup" \
    -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 "$PLAIN_USER"
  log "created user $PLAIN_USER"
fi
PL_UID=$(id -u "$PLAIN_USER")
for f in /etc/subuid /etc/subgid; do
  if grep -qE "^($PLAIN_USER|$PL_UID):" "$f"; then
    sed -i -E "/^($PLAIN_USER|$PL_UID):/d" "$f"
    log "removed $PLAIN_USER's range from $f (it must have none)"
  fi
done
install -d -m 700 -o "$PL_UID" -g "$(id -g "$PLAIN_USER")" "/run/user/$PL_UID"
ROOTLESS_SOCK=$RL_RUNTIME/podman/podman.sock
# Rootless storage: without a config podman 4.3 falls back to the slow, disk-hungry vfs
# driver here; the kernel supports native rootless overlay, so ask for it.
rl_storage_changed=
if write_if_changed "$RL_HOME/.config/containers/storage.conf" 644 <<'EOF'; then
# Written by berth scripts/env/up.sh
[storage]
driver = "overlay"
EOF
  chown -R "$RL_UID:$RL_GID" "$RL_HOME/.config"
  rl_storage_changed=1
  log "wrote $RL_HOME/.config/containers/storage.conf (driver overlay)"
fi
# run a command as the rootless user, with a clean login-like environment
ROOTLESS_ENV=(setpriv --reuid="$RL_UID" --regid="$RL_GID" --init-groups
  env -i HOME="$RL_HOME" USER="$ROOTLESS_USER" LOGNAME="$ROOTLESS_USER" SHELL=/bin/bash
  PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin
  XDG_RUNTIME_DIR="$RL_RUNTIME")
# A service an earlier version of this script started with a private TMPDIR hides what users meet: restart it.
rl_tmpdir_set=
if pid_alive podman-rootless; then
  for p in $(pgrep -u "$RL_UID" -f 'podman system service' || true); do
    # podman's re-executed process sets TMPDIR=/var/tmp itself: only another folder is a private one
    if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep '^TMPDIR=' | grep -qvx 'TMPDIR=/var/tmp'; then
      rl_tmpdir_set=1
    fi
  done
fi
if [[ -n $rl_storage_changed || -n $podman_conf_changed || -n $rl_tmpdir_set ]]; then
  stop_ours podman-rootless
fi
if [[ -n $rl_storage_changed && -d $RL_HOME/.local/share/containers/storage/vfs ]]; then
  log "resetting $ROOTLESS_USER's podman storage (was created with the vfs driver)"
  (cd / && "${ROOTLESS_ENV[@]}" podman system reset --force 9>&-) >>"$LOGS/podman-rootless.log" 2>&1 ||
    die "podman system reset as $ROOTLESS_USER failed (see $LOGS/podman-rootless.log)"
fi
if podman_ping "$ROOTLESS_SOCK"; then
  log "rootless podman service already answers on $ROOTLESS_SOCK"
else
  if ! pid_alive podman-rootless; then
    # picks up new /etc/subuid ranges; harmless otherwise
    (cd / && "${ROOTLESS_ENV[@]}" podman system migrate 9>&-) >>"$LOGS/podman-rootless.log" 2>&1 || true
    start_daemon podman-rootless "${ROOTLESS_ENV[@]}" podman system service --time=0 "unix://$ROOTLESS_SOCK"
  fi
  wait_for podman-rootless 60 "_ping on $ROOTLESS_SOCK" podman_ping "$ROOTLESS_SOCK"
  log "rootless podman service is up on $ROOTLESS_SOCK (user $ROOTLESS_USER)"
fi

#######################################################################################
step "5/7 lxd"
# No systemd: lxd runs as a daemon of its own (group lxd may use the socket). The
# preseed is applied only while the server has no storage pool, so a re-run changes
# nothing. The default profile gets a root disk on a `dir` pool and no NIC: berth gives
# its build containers the host's network itself (see crates/backend-lxd).
LXD_DIR_PATH=/var/lib/lxd
LXD_SOCK=$LXD_DIR_PATH/unix.socket
lxd_ready() { [[ -S $LXD_SOCK ]] && LXD_DIR=$LXD_DIR_PATH timeout 10 lxd waitready --timeout 5; }
if lxd_ready; then
  log "lxd already answers on $LXD_SOCK"
else
  if pid_alive lxd; then
    log "lxd (pid $(<"$PIDS/lxd.pid")) is running but not answering yet"
  else
    start_daemon lxd env LXD_DIR=$LXD_DIR_PATH lxd --group lxd --logfile "$LOGS/lxd-server.log"
  fi
  wait_for lxd 120 "lxd waitready on $LXD_SOCK" lxd_ready
  log "lxd is up"
fi
# lxd_init_dir_pool DIR: the preseed for the server in LXD folder DIR (also remote-lxd.sh's)
lxd_init_dir_pool() {
  LXD_DIR=$1 lxd init --preseed <<'PRESEED' || die "lxd init --preseed failed for $1"
storage_pools:
- name: default
  driver: dir
profiles:
- name: default
  devices:
    root:
      path: /
      pool: default
      type: disk
PRESEED
}
if [[ $(LXD_DIR=$LXD_DIR_PATH lxc storage list --format csv | wc -l) -eq 0 ]]; then
  lxd_init_dir_pool "$LXD_DIR_PATH"
  log "lxd initialised: storage pool default (dir)"
else
  log "lxd already has a storage pool"
fi

#######################################################################################
step "6/7 fixture images"
# remove_tree DIR: unmount whatever a failed debootstrap left mounted below DIR, then delete it
remove_tree() {
  local dir m
  dir=$(readlink -f "$1")
  findmnt -rn -o TARGET | awk -v d="$dir/" 'index($0 "/", d) == 1' | sort -r | while read -r m; do
    umount -l "$m" || true
  done
  rm -rf --one-file-system "$dir"
}
# leftovers of an interrupted build
for d in "$FIXTURES"/*-root.*; do
  if [[ -d $d ]]; then
    log "removing leftover $d"
    remove_tree "$d"
  fi
done
RECIPE_LABEL=org.berth.fixture.recipe
# registry_state IMAGE -> "DIGEST RECIPE" of IMAGE in the registry, or nothing
registry_state() {
  skopeo inspect --creds "$CREDS" --tls-verify=false \
    --format "{{.Digest}} {{index .Labels \"$RECIPE_LABEL\"}}" "docker://$1" 2>/dev/null || true
}
# push_tar NAME TAR IMAGE [--change ...]: docker import + push via skopeo (no docker login,
# so no credentials end up in ~/.docker/config.json), then drop the local copy.
push_tar() {
  local tar=$1 image=$2; shift 2
  docker import "$@" "$tar" "$image" >/dev/null
  skopeo copy -q --dest-creds "$CREDS" --dest-tls-verify=false "docker-daemon:$image" "docker://$image"
  docker rmi "$image" >/dev/null 2>&1 || log "note: could not remove the local $image (in use?)"
}
# pull IMAGE into dockerd using a throwaway docker config (no stored login)
docker_pull() {
  local cfg rc=0
  cfg=$(mktemp -d)
  DOCKER_CONFIG=$cfg docker login -u "$REGISTRY_USER" --password-stdin "$REGISTRY" <<<"$REGISTRY_PASSWORD" >/dev/null 2>"$cfg/login.err" ||
    { cat "$cfg/login.err" >&2; rm -rf "$cfg"; die "docker login to $REGISTRY failed"; }
  DOCKER_CONFIG=$cfg docker pull -q "$1" >/dev/null || rc=$?
  rm -rf "$cfg"
  return $rc
}

# ensure_fixture NAME IMAGE RECIPE TARBALL BUILD_FN VERIFY_FN CHANGES...
# The registry copy is current if it carries the recipe label; the rootfs tarball is
# cached per recipe. Verification (pull + run) is remembered in $FIXTURES/NAME.verified
# by registry digest and by tarball: re-pushing an already verified tarball (after the
# registry was wiped) is not verified again.
ensure_fixture() {
  local name=$1 image=$2 recipe=$3 tar=$4 build=$5 verify=$6; shift 6
  local state digest tar_id='' marker=$FIXTURES/$name.verified from_verified_tar=''
  local t
  state=$(registry_state "$image")
  if [[ -n $state && ${state#* } == "$recipe" ]]; then
    log "$image: already in the registry (recipe $recipe)"
  else
    [[ -n $state ]] && log "$image: registry has an older recipe (${state#* }), replacing it"
    if [[ -s $tar ]]; then
      log "$image: using cached rootfs $tar"
      tar_id=$(stat -c '%n %s %Y' "$tar")
      [[ -f $marker && $(sed -n 2p "$marker") == "$tar_id" ]] && from_verified_tar=1
    else
      log "$image: building rootfs"
      t=$(date +%s)
      "$build" "$tar"
      log "$image: rootfs built in $(($(date +%s) - t))s ($(du -h "$tar" | cut -f1))"
    fi
    push_tar "$tar" "$image" --change "LABEL $RECIPE_LABEL=$recipe" "$@"
    log "$image: pushed"
    state=$(registry_state "$image")
    [[ ${state#* } == "$recipe" ]] || die "$image: not in the registry after the push"
  fi
  digest=${state%% *}
  [[ -f $tar ]] && tar_id=$(stat -c '%n %s %Y' "$tar")
  if [[ -f $marker && $(sed -n 1p "$marker") == "$digest" ]]; then
    log "$image: verified before ($digest)"
  elif [[ -n $from_verified_tar ]]; then
    printf '%s\n%s\n' "$digest" "$tar_id" >"$marker"
    log "$image: pushed from a verified rootfs tarball ($digest)"
  else
    log "$image: verifying"
    docker_pull "$image"
    "$verify" "$image"
    docker rmi "$image" >/dev/null 2>&1 || log "note: could not remove the local $image (in use?)"
    printf '%s\n%s\n' "$digest" "$tar_id" >"$marker"
    log "$image: verified ($digest)"
  fi
}

ENV_PATH='PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

build_busybox() {
  local out=$1 root
  root=$(mktemp -d "$FIXTURES/busybox-root.XXXXXX")
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,root,tmp,var/tmp,proc,sys,dev,home}
  chmod 1777 "$root/tmp" "$root/var/tmp"
  chmod 700 "$root/root"
  install -m 755 /bin/busybox "$root/bin/busybox"
  local applet
  while read -r applet; do
    [[ $applet == bin/busybox ]] && continue
    [[ -e $root/$applet ]] || ln -s /bin/busybox "$root/$applet"
  done < <(/bin/busybox --list-full)
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  tar --numeric-owner --owner=0 --group=0 -C "$root" -cf "$out.tmp" .
  mv "$out.tmp" "$out"
  remove_tree "$root"
}
verify_busybox() {
  local out
  out=$(docker run --rm "$1" sh -c 'echo hello from $(busybox | head -n1 | cut -d" " -f1,2); id -un; ls -d /tmp')
  log "  ${out//$'\n'/ }"
  [[ $out == *"hello from BusyBox"* && $out == *root* ]] || die "busybox fixture does not work: $out"
}

CA_IN_IMAGE=/etc/berth/ca-certificates.crt
build_python() {
  local out=$1 root
  root=$(mktemp -d "$FIXTURES/python-root.XXXXXX")
  log "  debootstrap --variant=minbase bookworm from $MIRROR (log $LOGS/debootstrap.log)"
  local attempt
  for attempt in 1 2; do
    if debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
      bookworm "$root" "$MIRROR" >"$LOGS/debootstrap.log" 2>&1; then
      break
    fi
    log_tail "$LOGS/debootstrap.log" >&2
    if [[ -f $root/debootstrap/debootstrap.log ]]; then log_tail "$root/debootstrap/debootstrap.log" >&2; fi
    ((attempt == 1)) || die "debootstrap failed twice (log $LOGS/debootstrap.log)"
    log "  debootstrap failed; retrying once from scratch"
    remove_tree "$root" && mkdir -p "$root"
  done
  # this machine's CA bundle (it may contain a TLS-intercepting proxy's CA), at a path
  # apt never regenerates; plus the local extra CAs in the image's own trust store
  install -D -m 644 /etc/ssl/certs/ca-certificates.crt "$root$CA_IN_IMAGE"
  if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
    install -d "$root/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    chroot "$root" update-ca-certificates >>"$LOGS/debootstrap.log" 2>&1
  fi
  cat >"$root/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb $SECURITY_MIRROR bookworm-security main
EOF
  # the mirror may serve a snapshot whose Release files are past Valid-Until
  cat >"$root/etc/apt/apt.conf.d/99berth" <<'EOF'
Acquire::Check-Valid-Until "false";
APT::Install-Recommends "false";
EOF
  chroot "$root" apt-get clean
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/var/log/*.log "$root"/var/log/apt/* "$root/debootstrap" "$root"/tmp/* "$root"/root/.cache
  rm -rf "${root:?}"/dev/* "${root:?}"/proc/* "${root:?}"/sys/*
  # Behave like the official python images: `pip install` / `uv pip install --system`
  # into the system interpreter are allowed (no PEP 668 EXTERNALLY-MANAGED marker).
  rm -f "$root"/usr/lib/python3*/EXTERNALLY-MANAGED
  : >"$root/etc/machine-id" 2>/dev/null || true
  tar --numeric-owner -C "$root" -cf "$out.tmp" .
  mv "$out.tmp" "$out"
  remove_tree "$root"
}
PYTHON_CHANGES=(
  --change "ENV $ENV_PATH"
  --change "ENV LANG=C.UTF-8"
  --change "ENV SSL_CERT_FILE=$CA_IN_IMAGE"
  --change "ENV PIP_CERT=$CA_IN_IMAGE"
  --change "ENV REQUESTS_CA_BUNDLE=$CA_IN_IMAGE"
  --change 'CMD ["/bin/bash"]'
)
verify_python() {
  local out uvbin
  out=$(docker run --rm "$1" python3 -c 'import ssl,sys; print(sys.version.split()[0], ssl.OPENSSL_VERSION)')
  log "  python: $out"
  out=$(docker run --rm --network host "$1" sh -c 'cd /tmp && python3 -m pip download -q --no-deps -d /tmp/dl six && ls /tmp/dl && python3 -m pip install -q --root-user-action=ignore --no-deps six && echo system-install-ok') ||
    die "pip in $1 cannot download from PyPI (CA setup?)"
  log "  pip: ${out//$'\n'/ }"
  # uv (from the uv fixture tarball) inside the python image: proves uv honours SSL_CERT_FILE
  out=$(docker run --rm --network host "$1" apt-get update -qq 2>&1) || die "apt-get update in $1 fails: $out"
  log "  apt-get update inside the image: ok"
  [[ -s $FIXTURES/uv-$UV_VERSION-$UV_RECIPE.tar ]] || build_uv "$FIXTURES/uv-$UV_VERSION-$UV_RECIPE.tar"
  uvbin=$(mktemp -d)
  tar -C "$uvbin" -xf "$FIXTURES/uv-$UV_VERSION-$UV_RECIPE.tar" ./uv
  out=$(docker run --rm --network host -v "$uvbin/uv:/usr/bin/uv:ro" "$1" \
    sh -c 'uv --version && uv venv -q /tmp/venv && uv pip install -q --python /tmp/venv/bin/python six && /tmp/venv/bin/python -c "import six; print(\"six in venv\", six.__version__)" && uv pip install -q --system six && python3 -c "import six; print(\"six in system\", six.__version__)"') ||
    { rm -rf "$uvbin"; die "uv in $1 cannot install from PyPI (CA setup?)"; }
  rm -rf "$uvbin"
  log "  uv: ${out//$'\n'/ }"
}

# build_uv_from VERSION URL SHA256 OUT: a scratch image's rootfs with the static uv (and uvx) from the wheel
build_uv_from() {
  local version=$1 url=$2 sha=$3 out=$4 dir
  dir=$(mktemp -d "$FIXTURES/uv-root.XXXXXX")
  curl -fsSL --retry 3 -o "$dir/uv.whl" "$url" || die "cannot download $url"
  echo "$sha  $dir/uv.whl" | sha256sum -c --quiet - || die "uv $version wheel checksum mismatch"
  mkdir -p "$dir/x" "$dir/root"
  busybox unzip -q "$dir/uv.whl" "uv-$version.data/scripts/*" -d "$dir/x"
  install -m 755 "$dir/x/uv-$version.data/scripts/uv" "$dir/root/uv"
  [[ -f $dir/x/uv-$version.data/scripts/uvx ]] && install -m 755 "$dir/x/uv-$version.data/scripts/uvx" "$dir/root/uvx"
  tar --numeric-owner --owner=0 --group=0 -C "$dir/root" -cf "$out.tmp" .
  mv "$out.tmp" "$out"
  remove_tree "$dir"
}
# verify_uv_version VERSION IMAGE
verify_uv_version() {
  local out
  out=$(docker run --rm --entrypoint /uv "$2" --version)
  log "  $out"
  [[ $out == "uv $1"* ]] || die "uv fixture reports '$out', expected uv $1"
}
build_uv() { build_uv_from "$UV_VERSION" "$UV_WHEEL_URL" "$UV_WHEEL_SHA256" "$1"; }
verify_uv() { verify_uv_version "$UV_VERSION" "$1"; }
build_uv_current() { build_uv_from "$UV_CURRENT_VERSION" "$UV_CURRENT_WHEEL_URL" "$UV_CURRENT_WHEEL_SHA256" "$1"; }
verify_uv_current() { verify_uv_version "$UV_CURRENT_VERSION" "$1"; }

ensure_fixture busybox "$BUSYBOX_IMAGE" "$BUSYBOX_RECIPE" "$FIXTURES/busybox-$BUSYBOX_RECIPE.tar" build_busybox verify_busybox \
  --change "ENV $ENV_PATH" --change 'CMD ["/bin/sh"]'
# uv before python: the python image's verification uses the uv binary
ensure_fixture uv "$UV_IMAGE" "$UV_RECIPE" "$FIXTURES/uv-$UV_VERSION-$UV_RECIPE.tar" build_uv verify_uv \
  --change 'ENTRYPOINT ["/uv"]'
ensure_fixture uv-current "$UV_CURRENT_IMAGE" "$UV_RECIPE" "$FIXTURES/uv-$UV_CURRENT_VERSION-$UV_RECIPE.tar" \
  build_uv_current verify_uv_current --change 'ENTRYPOINT ["/uv"]'
ensure_fixture bookworm-python "$PYTHON_IMAGE" "$PYTHON_RECIPE" "$FIXTURES/bookworm-python-$PYTHON_RECIPE.tar" build_python verify_python \
  "${PYTHON_CHANGES[@]}"

# The remote host for issue 18's tests: a network namespace reached over the network.
# shellcheck source=scripts/env/remote-host.sh
source "$(dirname "$(readlink -f "$0")")/remote-host.sh"
remote_host_up
log "remote host $REMOTE_ADDR (network namespace $REMOTE_NETNS) is up"
# A remote LXD server in it (issue 17), reached over HTTPS with lxc's client certificate.
# shellcheck source=scripts/env/remote-lxd.sh
source "$(dirname "$(readlink -f "$0")")/remote-lxd.sh"
remote_lxd_up
# shellcheck source=scripts/env/remote-docker.sh
source "$(dirname "$(readlink -f "$0")")/remote-docker.sh"
remote_docker_up

# The token registry of issue 15 (TLS from a private CA, Docker's token auth), on the remote host's link.
# shellcheck source=scripts/env/token-registry.sh
source "$(dirname "$(readlink -f "$0")")/token-registry.sh"
token_registry_up
# shellcheck source=scripts/env/remote-ssh.sh
source "$(dirname "$(readlink -f "$0")")/remote-ssh.sh"
remote_ssh_up

#######################################################################################
step "7/7 env file"
ENV_FILE=$STATE/env.sh
env_changed=
write_if_changed "$ENV_FILE" 644 <<EOF && env_changed=1
# Written by berth scripts/env/up.sh. Usage: source $ENV_FILE
export BERTH_TEST_ENV_STATE=$STATE
export BERTH_TEST_REGISTRY=$REGISTRY
export BERTH_TEST_REGISTRY_USER=$REGISTRY_USER
export BERTH_TEST_REGISTRY_PASSWORD_FILE=$PASSWORD_FILE
export BERTH_TEST_PUBLIC_REGISTRY=$PUBLIC_REGISTRY
export BERTH_TEST_BUSYBOX_IMAGE=$BUSYBOX_IMAGE
export BERTH_TEST_PYTHON_IMAGE=$PYTHON_IMAGE
export BERTH_TEST_UV_IMAGE=$UV_IMAGE
export BERTH_TEST_UV_CURRENT_IMAGE=$UV_CURRENT_IMAGE
export BERTH_TEST_DOCKER_SOCKET=$DOCKER_SOCK
export BERTH_TEST_PODMAN_SOCKET=$PODMAN_SOCK
export BERTH_TEST_PODMAN_ROOTLESS_SOCKET=$ROOTLESS_SOCK
export BERTH_TEST_PODMAN_ROOTLESS_USER=$ROOTLESS_USER
export CONTAINERD_ADDRESS=$CONTAINERD_SOCK
export LXD_DIR=$LXD_DIR_PATH
export BERTH_TEST_REMOTE_NETNS=$REMOTE_NETNS
export BERTH_TEST_REMOTE_ADDR=$REMOTE_ADDR
export BERTH_TEST_REMOTE_GATEWAY=$REMOTE_GATEWAY
export BERTH_TEST_REMOTE_LXD_CONF=$REMOTE_LXD_CONF
export BERTH_TEST_REMOTE_LXD_UNTRUSTED_CONF=$REMOTE_LXD_UNTRUSTED_CONF
export BERTH_TEST_REMOTE_LXD=$REMOTE_LXD_NAME
export BERTH_TEST_REMOTE_DOCKER_HOST=$REMOTE_DOCKER_HOST
export BERTH_TEST_REMOTE_DOCKER_CERT_PATH=$REMOTE_DOCKER_CERTS
export BERTH_TEST_REMOTE_DOCKER_UNNAMED_HOST=tcp://$REMOTE_ADDR_UNNAMED:$REMOTE_DOCKER_PORT
export BERTH_TEST_TOKEN_REGISTRY=$TOKEN_REGISTRY
export BERTH_TEST_TOKEN_REGISTRY_REALM=$TOKEN_REALM
export BERTH_TEST_TOKEN_REGISTRY_USER=$TOKEN_USER
export BERTH_TEST_TOKEN_REGISTRY_SHORT_USER=$TOKEN_SHORT_USER
export BERTH_TEST_TOKEN_REGISTRY_SHORT_LIFETIME=$TOKEN_SHORT_LIFETIME
export BERTH_TEST_TOKEN_REGISTRY_STALE_USER=$TOKEN_STALE_USER
export BERTH_TEST_TOKEN_REGISTRY_PASSWORD_FILE=$TOKEN_PASSWORD_FILE
export BERTH_TEST_TOKEN_REGISTRY_CA=$TOKEN_CA
export BERTH_TEST_TOKEN_REGISTRY_BUSYBOX_IMAGE=$TOKEN_BUSYBOX_IMAGE
export BERTH_TEST_TOKEN_REGISTRY_PUBLIC_BUSYBOX_IMAGE=$TOKEN_PUBLIC_BUSYBOX_IMAGE
export BERTH_TEST_TOKEN_REGISTRY_PYTHON_IMAGE=$TOKEN_PYTHON_IMAGE
export BERTH_TEST_REMOTE_SSH_KEY=$REMOTE_SSH_DIR/id_ed25519
export BERTH_TEST_REMOTE_USER=$REMOTE_USER
export BERTH_TEST_REMOTE_PODMAN_SOCKET=$REMOTE_PODMAN_SOCK
export BERTH_TEST_REMOTE_PODMAN_ROOTLESS_SOCKET=$REMOTE_ROOTLESS_SOCK
# dockerd is on its default socket
# (a DOCKER_HOST of your own is left as it is: berth names it when it does not answer)
EOF
chmod 644 "$ENV_FILE"
if [[ -n $env_changed ]]; then log "wrote $ENV_FILE"; else log "$ENV_FILE is up to date"; fi

log "done in $(($(date +%s) - T0))s"
echo
echo "Test environment is up. Use it with:"
echo "  source $ENV_FILE"

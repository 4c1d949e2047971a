# shellcheck shell=bash
# A remote LXD server for the LXD backend's remote tests (issue 17), sourced by up.sh after
# remote-host.sh: a second lxd daemon inside the network namespace berth-remote, with its
# own LXD_DIR and `dir` pool, listening on https://10.203.0.2:8443.
#
# berth reaches it only as lxc does: over HTTPS with the client certificate that
# `lxc remote add` set up. The client side is a test-owned lxc configuration
# ($REMOTE_LXD_CONF: config.yml, client.crt/.key, servercerts/berth-remote.crt) whose
# certificate the server trusts (`lxc config trust add`); a second one
# ($REMOTE_LXD_UNTRUSTED_CONF) names the same server with a certificate it does not trust,
# for the "certificate not trusted" error and doctor check. Everything is checked before it
# is made, so a re-run changes nothing.
#
# Build containers share the server's network namespace (berth's lxc.namespace.share.net
# names the server's pid): inside berth-remote that is the namespace's network, which
# reaches Debian's mirror through remote-host.sh's NAT.
REMOTE_LXD_DIR=/var/lib/berth-remote-lxd
REMOTE_LXD_PORT=8443
REMOTE_LXD_NAME=berth-remote
REMOTE_LXD_CONF=$STATE/remote-lxd/client
REMOTE_LXD_UNTRUSTED_CONF=$STATE/remote-lxd/untrusted

remote_lxc() { LXD_DIR=$REMOTE_LXD_DIR lxc "$@"; }
remote_lxd_ready() {
  [[ -S $REMOTE_LXD_DIR/unix.socket ]] && LXD_DIR=$REMOTE_LXD_DIR timeout 10 lxd waitready --timeout 5
}

# client_cert DIR: a self-signed client certificate in DIR (client.crt, client.key), as lxc
# makes one, unless there is one
client_cert() {
  [[ -s $1/client.crt && -s $1/client.key ]] && return 0
  mkdir -p "$1"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:secp384r1 -nodes -days 3650 \
    -subj "/CN=berth-test@$(hostname)" -keyout "$1/client.key" -out "$1/client.crt" 2>/dev/null ||
    die "openssl could not make a client certificate in $1"
  chmod 600 "$1/client.key"
}

remote_lxd_up() {
  mkdir -p "$REMOTE_LXD_DIR"
  if remote_lxd_ready; then
    log "remote lxd already answers on $REMOTE_LXD_DIR/unix.socket"
  else
    if ! pid_alive remote-lxd; then
      # nsenter joins the network namespace only (and execs lxd: its server pid is in it);
      # `ip netns exec` would also remount /sys, hiding /sys/fs/cgroup, and LXC then fails
      # every start with "Failed to setup cgroup limits"
      start_daemon remote-lxd nsenter --net="/run/netns/$REMOTE_NETNS" env LXD_DIR="$REMOTE_LXD_DIR" \
        lxd --group lxd --logfile "$LOGS/remote-lxd-server.log"
    fi
    wait_for remote-lxd 120 "lxd waitready on $REMOTE_LXD_DIR/unix.socket" remote_lxd_ready
  fi
  if [[ $(remote_lxc storage list --format csv | wc -l) -eq 0 ]]; then
    lxd_init_dir_pool "$REMOTE_LXD_DIR" # up.sh's preseed: a dir pool, a root disk in default
    log "remote lxd initialised: pool default (dir), https://$REMOTE_ADDR:$REMOTE_LXD_PORT"
  fi
  if [[ $(remote_lxc config get core.https_address) != "$REMOTE_ADDR:$REMOTE_LXD_PORT" ]]; then
    # the only address it listens on: inside the namespace, berth's way in
    remote_lxc config set core.https_address "$REMOTE_ADDR:$REMOTE_LXD_PORT"
  fi

  # the trusted client: its certificate in the server's trust store, then `lxc remote add`
  # (which pins the server's certificate in servercerts/) as root in that configuration
  client_cert "$REMOTE_LXD_CONF"
  local fingerprint
  fingerprint=$(openssl x509 -in "$REMOTE_LXD_CONF/client.crt" -noout -fingerprint -sha256 |
    cut -d= -f2 | tr -d : | tr 'A-F' 'a-f')
  if ! remote_lxc config trust list --format csv | grep -q "${fingerprint:0:12}"; then
    remote_lxc config trust add "$REMOTE_LXD_CONF/client.crt" --name berth-test ||
      die "lxc config trust add failed on the remote lxd"
  fi
  if ! LXD_CONF=$REMOTE_LXD_CONF lxc remote list --format csv | grep -q "^$REMOTE_LXD_NAME"; then
    LXD_CONF=$REMOTE_LXD_CONF lxc remote add "$REMOTE_LXD_NAME" "https://$REMOTE_ADDR:$REMOTE_LXD_PORT" \
      --accept-certificate || die "lxc remote add $REMOTE_LXD_NAME failed"
  fi
  LXD_CONF=$REMOTE_LXD_CONF lxc info "$REMOTE_LXD_NAME:" >/dev/null ||
    die "the remote lxd does not trust $REMOTE_LXD_CONF/client.crt"

  # the untrusted client: the same remote and pinned server certificate, a certificate the
  # server never trusted (written as lxc writes it: lxc itself would ask for a token)
  client_cert "$REMOTE_LXD_UNTRUSTED_CONF"
  mkdir -p "$REMOTE_LXD_UNTRUSTED_CONF/servercerts"
  cp "$REMOTE_LXD_CONF/servercerts/$REMOTE_LXD_NAME.crt" "$REMOTE_LXD_UNTRUSTED_CONF/servercerts/"
  write_if_changed "$REMOTE_LXD_UNTRUSTED_CONF/config.yml" 644 <<EOF || true
default-remote: local
remotes:
  $REMOTE_LXD_NAME:
    addr: https://$REMOTE_ADDR:$REMOTE_LXD_PORT
    protocol: lxd
    auth_type: tls
    public: false
aliases: {}
EOF
  log "remote lxd: https://$REMOTE_ADDR:$REMOTE_LXD_PORT, remote $REMOTE_LXD_NAME in LXD_CONF=$REMOTE_LXD_CONF"
}

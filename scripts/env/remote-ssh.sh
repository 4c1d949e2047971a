# shellcheck shell=bash
# sshd and Podman services on the remote host (issue 18's SSH tests), sourced by up.sh after remote-host.sh.
#
# Inside the network namespace berth-remote (10.203.0.2):
#   - sshd with a config, host key and pid file of its own, on 10.203.0.2:22 only, public keys only;
#   - a rootful `podman system service` on /run/berth-remote/podman/podman.sock (not the host's socket);
#   - the user berth-remote (subordinate ids, its own storage.conf) with its rootless service on
#     /run/user/UID/podman/podman.sock;
#   - the registries at 127.0.0.1:5000 and :5001, as on this machine: forwarded to this machine's, so a spec
#     names its base image the same way whichever host builds it.
# Root's client key (authorized for root and berth-remote) is $REMOTE_SSH_DIR/id_ed25519; root's ~/.ssh/config
# gets a block for 10.203.0.2 naming it and a known_hosts file with the host key, as a user would set it up.
# Daemons enter only the namespace's network (nsenter --net): `ip netns exec` would also mount a sysfs of its
# own over /sys, hiding the cgroup mounts runc needs to run a build's RUN steps.
# Needs from up.sh: log, die, add_subid_ranges, start_daemon, wait_for, write_if_changed, pid_alive, podman_ping, STATE, PIDS.
REMOTE_SSH_DIR=$STATE/remote-ssh
REMOTE_PODMAN_SOCK=/run/berth-remote/podman/podman.sock
REMOTE_USER=berth-remote
REMOTE_NET=(nsenter "--net=/var/run/netns/$REMOTE_NETNS")
REMOTE_SSH_MARK="berth remote host, written by remote-ssh.sh"

remote_ssh_up() {
  local dir=$REMOTE_SSH_DIR
  [[ -x /usr/sbin/sshd ]] || die "openssh-server is not installed (up.sh's PACKAGES has it)"
  install -d -m 755 "$dir" "$dir/authorized_keys"
  [[ -s $dir/ssh_host_ed25519_key ]] || ssh-keygen -q -t ed25519 -N '' -C berth-remote-host -f "$dir/ssh_host_ed25519_key"
  [[ -s $dir/id_ed25519 ]] || ssh-keygen -q -t ed25519 -N '' -C berth-remote-client -f "$dir/id_ed25519"
  chmod 600 "$dir/id_ed25519" "$dir/ssh_host_ed25519_key"

  # the rootless remote user: subordinate ids, a login shell and an unlocked account (sshd refuses locked ones)
  if ! id -u "$REMOTE_USER" >/dev/null 2>&1; then
    useradd --create-home --shell /bin/bash --comment "berth remote host, rootless podman" "$REMOTE_USER"
    log "created user $REMOTE_USER"
  fi
  usermod -p '*' "$REMOTE_USER"
  local uid gid home f
  uid=$(id -u "$REMOTE_USER") gid=$(id -g "$REMOTE_USER")
  home=$(getent passwd "$REMOTE_USER" | cut -d: -f6)
  add_subid_ranges "$REMOTE_USER"
  local pub
  pub=$(<"$dir/id_ed25519.pub")
  for f in root "$REMOTE_USER"; do
    write_if_changed "$dir/authorized_keys/$f" 644 <<<"$pub" || true
  done

  write_if_changed "$dir/sshd_config" 644 <<EOF || true
# Written by berth scripts/env/remote-ssh.sh
ListenAddress $REMOTE_ADDR:22
HostKey $dir/ssh_host_ed25519_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys/%u
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers root $REMOTE_USER
AllowStreamLocalForwarding yes
AllowTcpForwarding yes
UsePAM no
MaxSessions 64
MaxStartups 64:30:128
Subsystem sftp internal-sftp
EOF
  install -d -m 755 /run/sshd # sshd's privilege separation folder
  /usr/sbin/sshd -t -f "$dir/sshd_config" || die "sshd rejects $dir/sshd_config"
  write_if_changed "$dir/known_hosts" 644 <<<"$REMOTE_ADDR $(cut -d' ' -f1,2 "$dir/ssh_host_ed25519_key.pub")" || true
  # root's ssh configuration for the remote host: its key and host key, checked strictly
  install -d -m 700 /root/.ssh
  touch /root/.ssh/config && chmod 600 /root/.ssh/config
  sed -i "/^# >>> $REMOTE_SSH_MARK/,/^# <<< $REMOTE_SSH_MARK/d" /root/.ssh/config
  cat >>/root/.ssh/config <<EOF
# >>> $REMOTE_SSH_MARK
Host $REMOTE_ADDR
  IdentityFile $dir/id_ed25519
  UserKnownHostsFile $dir/known_hosts
  StrictHostKeyChecking yes
# <<< $REMOTE_SSH_MARK
EOF

  remote_ssh_ok() { ssh -o BatchMode=yes -o ConnectTimeout=5 "root@$REMOTE_ADDR" true; }
  if remote_ssh_ok >/dev/null 2>&1; then
    log "remote sshd already answers on $REMOTE_ADDR:22"
  else
    pid_alive remote-sshd || start_daemon remote-sshd "${REMOTE_NET[@]}" /usr/sbin/sshd -D -e -f "$dir/sshd_config"
    wait_for remote-sshd 30 "ssh root@$REMOTE_ADDR" remote_ssh_ok
    log "remote sshd is up on $REMOTE_ADDR:22"
  fi

  # the registries are at the addresses this machine's tests name (remote-host.sh forwards them)
  in_remote curl -s -o /dev/null -m 5 "http://127.0.0.1:5000/v2/" ||
    die "the remote host does not reach the registry at 127.0.0.1:5000 (see remote_registry_forward in remote-host.sh)"

  # rootful Podman of the remote host, with a /var/tmp of its own as another machine has: buildah keeps cache
  # mounts in $TMPDIR/buildah-cache, and sharing this machine's would make its builds wait on this machine's
  # cache locks
  install -d -m 755 /run/berth-remote /run/berth-remote/podman
  install -d -m 1777 /var/tmp/berth-remote
  if podman_ping "$REMOTE_PODMAN_SOCK"; then
    log "remote rootful podman already answers on $REMOTE_PODMAN_SOCK"
  else
    pid_alive remote-podman || start_daemon remote-podman "${REMOTE_NET[@]}" env TMPDIR=/var/tmp/berth-remote \
      podman system service --time=0 "unix://$REMOTE_PODMAN_SOCK"
    wait_for remote-podman 60 "_ping on $REMOTE_PODMAN_SOCK" podman_ping "$REMOTE_PODMAN_SOCK"
    log "remote rootful podman is up on $REMOTE_PODMAN_SOCK"
  fi

  # rootless Podman of the remote user, with its own storage configuration
  local runtime=/run/user/$uid
  install -d -m 755 /run/user
  install -d -m 700 -o "$uid" -g "$gid" "$runtime" "$runtime/podman"
  if write_if_changed "$home/.config/containers/storage.conf" 644 <<'EOF'; then
# Written by berth scripts/env/remote-ssh.sh
[storage]
driver = "overlay"
EOF
    chown -R "$uid:$gid" "$home/.config"
  fi
  local sock=$runtime/podman/podman.sock
  if podman_ping "$sock"; then
    log "remote rootless podman already answers on $sock"
  else
    if ! pid_alive remote-podman-rootless; then
      start_daemon remote-podman-rootless "${REMOTE_NET[@]}" \
        setpriv --reuid="$uid" --regid="$gid" --init-groups \
        env -i HOME="$home" USER="$REMOTE_USER" LOGNAME="$REMOTE_USER" SHELL=/bin/bash \
        PATH=/usr/local/bin:/usr/bin:/bin XDG_RUNTIME_DIR="$runtime" \
        podman system service --time=0 "unix://$sock"
    fi
    wait_for remote-podman-rootless 60 "_ping on $sock" podman_ping "$sock"
    log "remote rootless podman is up on $sock (user $REMOTE_USER)"
  fi
  REMOTE_ROOTLESS_SOCK=$sock
}

# shellcheck shell=bash
# A Docker daemon on the remote host (issue 18), reached over TCP with TLS, sourced by up.sh after
# remote-host.sh. Idempotent: certificates are made once, the daemon is started when it does not answer.
#
# dockerd runs in the network namespace only (nsenter --net, not `ip netns exec`, which would also give it a
# mount namespace of its own: the containers it hands to the host's containerd would then not see their root
# file systems). It has its own data root, exec root, pid file, unix socket and daemon.json, shares this
# machine's containerd under namespaces of its own, and has its own docker0 inside the namespace. It listens on
#   tcp://10.203.0.2:2376   with --tlsverify: the address its certificate names
#   tcp://10.203.0.3:2376   the same daemon at an address its certificate does not name (berth doctor's
#                           "wrong host name" case)
# The private CA, the server's certificate and a client folder shaped as DOCKER_CERT_PATH (ca.pem, cert.pem,
# key.pem) are under $REMOTE_DOCKER_DIR/certs and $REMOTE_DOCKER_CERTS.
#
# Registries: the remote host's own 127.0.0.1:5000 and :5001 are forwarded (DNAT, no daemon) to this machine's
# registries, so an image has the same name on both sides and the remote daemon pulls FROM images and pushes
# with --push-via engine the way the local one does. On real machines a user names a registry both machines
# reach (or runs one on the build host).
REMOTE_DOCKER_DIR=$STATE/remote-docker
REMOTE_DOCKER_CERTS=$REMOTE_DOCKER_DIR/client        # DOCKER_CERT_PATH for berth
REMOTE_DOCKER_SOCK=$REMOTE_DOCKER_DIR/docker.sock    # for administration on this machine
REMOTE_DOCKER_PORT=2376
REMOTE_DOCKER_HOST=tcp://$REMOTE_ADDR:$REMOTE_DOCKER_PORT
REMOTE_ADDR_UNNAMED=10.203.0.3 # not in the server certificate

# remote_docker_certs: a private CA, the daemon's certificate (IP 10.203.0.2, DNS berth-remote) and a
# client certificate, made once (kept while the CA is there).
remote_docker_certs() {
  local certs=$REMOTE_DOCKER_DIR/certs
  mkdir -p "$certs" "$REMOTE_DOCKER_CERTS"
  chmod 700 "$certs"
  if [[ -s $certs/ca.pem && -s $certs/server-cert.pem && -s $REMOTE_DOCKER_CERTS/cert.pem ]]; then
    return 0
  fi
  log "remote dockerd: making a private CA and certificates in $certs"
  (
    cd "$certs"
    umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=berth-remote test CA" \
      -keyout ca-key.pem -out ca.pem 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=berth-remote" -keyout server-key.pem -out server.csr 2>/dev/null
    printf '%s\n' "subjectAltName=IP:$REMOTE_ADDR,DNS:berth-remote" "extendedKeyUsage=serverAuth" \
      "basicConstraints=CA:FALSE" >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 3650 \
      -extfile server.ext -out server-cert.pem 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=berth-client" -keyout client-key.pem -out client.csr 2>/dev/null
    printf '%s\n' "extendedKeyUsage=clientAuth" "basicConstraints=CA:FALSE" >client.ext
    openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 3650 \
      -extfile client.ext -out client-cert.pem 2>/dev/null
    install -m 644 ca.pem "$REMOTE_DOCKER_CERTS/ca.pem"
    install -m 644 client-cert.pem "$REMOTE_DOCKER_CERTS/cert.pem"
    install -m 600 client-key.pem "$REMOTE_DOCKER_CERTS/key.pem"
  )
}


remote_docker_info() {
  timeout 20 docker --host "$REMOTE_DOCKER_HOST" --tlsverify --tlscacert "$REMOTE_DOCKER_CERTS/ca.pem" \
    --tlscert "$REMOTE_DOCKER_CERTS/cert.pem" --tlskey "$REMOTE_DOCKER_CERTS/key.pem" info
}

remote_docker_up() {
  remote_docker_certs
  in_remote ip addr replace "$REMOTE_ADDR_UNNAMED/24" dev "$REMOTE_VETH_PEER"
  mkdir -p "$REMOTE_DOCKER_DIR/data" "$REMOTE_DOCKER_DIR/exec"
  # its own (empty) daemon.json: the host's /etc/docker/daemon.json is the local daemon's
  printf '{}\n' | write_if_changed "$REMOTE_DOCKER_DIR/daemon.json" 644 || true
  if remote_docker_info >/dev/null 2>&1; then
    log "remote dockerd already answers on $REMOTE_DOCKER_HOST (tls)"
  else
    if pid_alive remote-dockerd; then
      log "remote dockerd (pid $(<"$PIDS/remote-dockerd.pid")) is running but not answering yet"
    else
      local certs=$REMOTE_DOCKER_DIR/certs
      start_daemon remote-dockerd nsenter --net="/run/netns/$REMOTE_NETNS" -- dockerd \
        --config-file "$REMOTE_DOCKER_DIR/daemon.json" \
        --data-root "$REMOTE_DOCKER_DIR/data" --exec-root "$REMOTE_DOCKER_DIR/exec" \
        --pidfile "$REMOTE_DOCKER_DIR/dockerd.pid" \
        --containerd="$CONTAINERD_SOCK" \
        --containerd-namespace berth-remote --containerd-plugins-namespace berth-remote-plugins \
        --bip 172.30.203.1/24 \
        -H "unix://$REMOTE_DOCKER_SOCK" \
        -H "tcp://$REMOTE_ADDR:$REMOTE_DOCKER_PORT" -H "tcp://$REMOTE_ADDR_UNNAMED:$REMOTE_DOCKER_PORT" \
        --tlsverify --tlscacert "$certs/ca.pem" --tlscert "$certs/server-cert.pem" --tlskey "$certs/server-key.pem"
    fi
    wait_for remote-dockerd 90 "docker info over TLS on $REMOTE_DOCKER_HOST" remote_docker_info
    log "remote dockerd is up on $REMOTE_DOCKER_HOST (tls; client certificates in $REMOTE_DOCKER_CERTS)"
  fi
  local code
  code=$(in_remote curl -s -o /dev/null -m 5 -w '%{http_code}' "http://$REGISTRY/v2/" || true)
  [[ $code == 401 ]] || die "the remote host does not reach the registry as $REGISTRY (GET /v2/ answered $code)"
  log "the remote host reaches $REGISTRY and $PUBLIC_REGISTRY (forwarded to this machine's registries)"
}

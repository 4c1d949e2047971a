# shellcheck shell=bash
# A registry shaped like GHCR and Docker Hub for issue 15's tests, sourced by up.sh after
# remote-host.sh (it serves on this machine's address on the remote host's link, 10.203.0.1:
# not loopback, which Docker and berth would treat as insecure and skip verifying).
#
# - A private CA (openssl) and a server certificate for 10.203.0.1, 127.0.0.1 and localhost.
#   The CA is trusted the way a user trusts one: the system store
#   (/usr/local/share/ca-certificates + update-ca-certificates: berth's own client, skopeo,
#   curl) and the engines' certs.d folders (/etc/docker/certs.d/HOST:PORT/ca.crt,
#   /etc/containers/certs.d/HOST:PORT/ca.crt), which dockerd and Podman read per connection,
#   so no daemon is restarted.
# - docker-registry on https://10.203.0.1:5443 with `auth: token`.
# - token-issuer.py on https://10.203.0.1:5444/token: Docker's token protocol, users from a
#   file (`berth`, tokens for 5 min; `berth-short`, the same password, tokens for 10 s;
#   `berth-stale`, tokens that die after 10 s though the answer says 5 min),
#   anonymous pull only for `public/...`, push only with credentials.
# - The busybox fixture copied in twice: fixtures/busybox:1 (private) and public/busybox:1; the
#   python fixture as fixtures/bookworm-python:1 (private: the base of the tests' builds).
# Everything is checked before it is made, so a re-run changes nothing.
TOKEN_REGISTRY_DIR=$STATE/token-registry
TOKEN_REGISTRY_ADDR=$REMOTE_GATEWAY
TOKEN_REGISTRY=$TOKEN_REGISTRY_ADDR:5443
TOKEN_ISSUER=$TOKEN_REGISTRY_ADDR:5444
TOKEN_REALM=https://$TOKEN_ISSUER/token
TOKEN_SERVICE=berth-token-registry
TOKEN_ISSUER_NAME=berth-token-issuer
TOKEN_USER=berth
TOKEN_SHORT_USER=berth-short
TOKEN_SHORT_LIFETIME=10
# tokens that live TOKEN_SHORT_LIFETIME seconds while the answer says they live 5 minutes
TOKEN_STALE_USER=berth-stale
TOKEN_PASSWORD_FILE=$TOKEN_REGISTRY_DIR/password
TOKEN_CA=$TOKEN_REGISTRY_DIR/ca.crt
TOKEN_SYSTEM_CA=/usr/local/share/ca-certificates/berth-test-ca.crt
TOKEN_BUSYBOX_IMAGE=$TOKEN_REGISTRY/fixtures/busybox:1
TOKEN_PUBLIC_BUSYBOX_IMAGE=$TOKEN_REGISTRY/public/busybox:1
TOKEN_PYTHON_IMAGE=$TOKEN_REGISTRY/fixtures/bookworm-python:1

# token_certificates: the CA, the server certificate it signs, and the token signing certificate
# (self-signed: the registry's rootcertbundle), each made once
token_certificates() {
  local d=$TOKEN_REGISTRY_DIR
  if [[ ! -s $d/ca.key || ! -s $d/ca.crt ]]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=berth test CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null || die "openssl could not make the test CA"
    rm -f "$d/server.crt"
    log "made the test CA $d/ca.crt"
  fi
  if [[ ! -s $d/server.crt ]] || ! openssl verify -CAfile "$d/ca.crt" "$d/server.crt" >/dev/null 2>&1; then
    printf 'subjectAltName=IP:%s,IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' \
      "$TOKEN_REGISTRY_ADDR" >"$d/server.ext"
    openssl req -newkey rsa:2048 -nodes -subj "/CN=berth token registry" -keyout "$d/server.key" \
      -out "$d/server.csr" 2>/dev/null || die "openssl could not make the server key"
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 825 \
      -extfile "$d/server.ext" -out "$d/server.crt" 2>/dev/null || die "openssl could not sign the server certificate"
    rm -f "$d/server.csr"
    log "made the server certificate for $TOKEN_REGISTRY_ADDR, 127.0.0.1, localhost"
  fi
  if [[ ! -s $d/signing.crt ]]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=berth token signer" \
      -keyout "$d/signing.key" -out "$d/signing.crt" 2>/dev/null || die "openssl could not make the signing key"
    log "made the token signing certificate"
  fi
  chmod 600 "$d"/*.key
}

# token_trust: the CA in the system store and in Docker's and Podman's certs.d for the registry
token_trust() {
  if write_if_changed "$TOKEN_SYSTEM_CA" 644 <"$TOKEN_CA"; then
    update-ca-certificates >/dev/null 2>&1 || die "update-ca-certificates failed"
    log "trusted the test CA in the system store ($TOKEN_SYSTEM_CA)"
  fi
  local dir
  for dir in "/etc/docker/certs.d/$TOKEN_REGISTRY" "/etc/containers/certs.d/$TOKEN_REGISTRY"; do
    if write_if_changed "$dir/ca.crt" 644 <"$TOKEN_CA"; then
      log "trusted the test CA in $dir"
    fi
  done
}

# token_users: the password (made once) and the users file (both users share it)
token_users() {
  local users=$TOKEN_REGISTRY_DIR/users
  if [[ ! -s $TOKEN_PASSWORD_FILE ]]; then
    (umask 077 && head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$TOKEN_PASSWORD_FILE")
    log "generated the token registry password in $TOKEN_PASSWORD_FILE"
  fi
  chmod 600 "$TOKEN_PASSWORD_FILE"
  if [[ ! -s $users || $TOKEN_PASSWORD_FILE -nt $users ]] || ! grep -q "^$TOKEN_STALE_USER:" "$users"; then
    {
      echo "# NAME:TOKEN_LIFETIME_SECONDS:SALT:PBKDF2_SHA256 (scripts/env/token-issuer.py)"
      python3 "$TOKEN_REGISTRY_DIR/token-issuer.py" hash "$TOKEN_USER" 300 <"$TOKEN_PASSWORD_FILE"
      python3 "$TOKEN_REGISTRY_DIR/token-issuer.py" hash "$TOKEN_SHORT_USER" "$TOKEN_SHORT_LIFETIME" <"$TOKEN_PASSWORD_FILE"
      python3 "$TOKEN_REGISTRY_DIR/token-issuer.py" hash "$TOKEN_STALE_USER" "$TOKEN_SHORT_LIFETIME" 300 <"$TOKEN_PASSWORD_FILE"
    } | (umask 077 && cat >"$users.tmp")
    mv "$users.tmp" "$users"
    log "wrote $users ($TOKEN_USER; $TOKEN_SHORT_USER with ${TOKEN_SHORT_LIFETIME}-second tokens; $TOKEN_STALE_USER with tokens that die early)"
  fi
}

token_issuer_answers() {
  [[ $(curl -s -o /dev/null -m 5 -w '%{http_code}' --cacert "$TOKEN_CA" "$TOKEN_REALM?service=$TOKEN_SERVICE") == 200 ]]
}
token_registry_answers() {
  [[ $(curl -s -o /dev/null -m 5 -w '%{http_code}' --cacert "$TOKEN_CA" "https://$TOKEN_REGISTRY/v2/") == 401 ]]
}

# token_fixture SOURCE DEST: copies SOURCE from the htpasswd registry unless DEST has the same digest
token_fixture() {
  local src=$1 dest=$2 password want have
  password=$(<"$TOKEN_PASSWORD_FILE")
  want=$(skopeo inspect --creds "$CREDS" --tls-verify=false --format '{{.Digest}}' "docker://$src")
  have=$(skopeo inspect --creds "$TOKEN_USER:$password" --format '{{.Digest}}' "docker://$dest" 2>/dev/null || true)
  if [[ $have == "$want" ]]; then
    log "$dest: already in the token registry"
    return
  fi
  # verified against the system store and /etc/containers/certs.d: the trust set up above
  skopeo copy -q --src-creds "$CREDS" --src-tls-verify=false --dest-creds "$TOKEN_USER:$password" \
    "docker://$src" "docker://$dest" || die "could not copy $src to $dest"
  log "$dest: copied from $src"
}

# token_registry_verify: what the tests rely on, checked once per CA: anonymous pulls of public/...
# only, Docker and Podman trust the CA through certs.d
token_registry_verify() {
  local marker=$TOKEN_REGISTRY_DIR/verified fingerprint anon code
  fingerprint=$(openssl x509 -in "$TOKEN_CA" -noout -fingerprint -sha256)
  [[ -f $marker && $(<"$marker") == "$fingerprint" ]] && return
  anon=$(curl -sf --cacert "$TOKEN_CA" "$TOKEN_REALM?service=$TOKEN_SERVICE&scope=repository:public/busybox:pull" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$TOKEN_CA" -H "Authorization: Bearer $anon" \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' "https://$TOKEN_REGISTRY/v2/public/busybox/manifests/1")
  [[ $code == 200 ]] || die "an anonymous token does not pull public/busybox (HTTP $code)"
  anon=$(curl -sf --cacert "$TOKEN_CA" "$TOKEN_REALM?service=$TOKEN_SERVICE&scope=repository:fixtures/busybox:pull" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$TOKEN_CA" -H "Authorization: Bearer $anon" \
    "https://$TOKEN_REGISTRY/v2/fixtures/busybox/manifests/1")
  [[ $code == 401 ]] || die "an anonymous token pulls the private fixtures/busybox (HTTP $code, expected 401)"
  code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$TOKEN_CA" -u "$TOKEN_USER:wrong" "$TOKEN_REALM?service=$TOKEN_SERVICE")
  [[ $code == 401 ]] || die "the token issuer accepts a wrong password (HTTP $code)"
  docker pull -q "$TOKEN_PUBLIC_BUSYBOX_IMAGE" >/dev/null || die "docker does not pull $TOKEN_PUBLIC_BUSYBOX_IMAGE (certs.d?)"
  docker rmi "$TOKEN_PUBLIC_BUSYBOX_IMAGE" >/dev/null 2>&1 || true
  podman pull -q "$TOKEN_PUBLIC_BUSYBOX_IMAGE" >/dev/null || die "podman does not pull $TOKEN_PUBLIC_BUSYBOX_IMAGE (certs.d?)"
  podman rmi "$TOKEN_PUBLIC_BUSYBOX_IMAGE" >/dev/null 2>&1 || true
  echo "$fingerprint" >"$marker"
  log "token registry verified: anonymous pulls of public/ only, wrong passwords refused, docker and podman trust the CA"
}

token_registry_up() {
  mkdir -p "$TOKEN_REGISTRY_DIR"
  chmod 700 "$TOKEN_REGISTRY_DIR"
  local here changed=
  here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
  # the issuer runs from the state folder, not from whichever checkout ran up.sh
  if write_if_changed "$TOKEN_REGISTRY_DIR/token-issuer.py" 755 <"$here/token-issuer.py"; then
    changed=1
  fi
  token_certificates
  token_trust
  token_users
  if [[ -n $changed ]] && pid_alive token-issuer; then
    log "token issuer changed: restarting it"
    stop_daemon token-issuer 10
  fi
  if ! token_issuer_answers; then
    local d=$TOKEN_REGISTRY_DIR
    pid_alive token-issuer || start_daemon token-issuer python3 "$d/token-issuer.py" serve "$TOKEN_REGISTRY_ADDR" \
      "${TOKEN_ISSUER##*:}" "$d/server.crt" "$d/server.key" "$d/signing.crt" "$d/signing.key" "$d/users" \
      "$TOKEN_SERVICE" "$TOKEN_ISSUER_NAME"
    wait_for token-issuer 30 "GET $TOKEN_REALM -> 200" token_issuer_answers
    log "token issuer is up on $TOKEN_REALM"
  fi
  if {
    registry_config "$TOKEN_REGISTRY_DIR" "$TOKEN_REGISTRY"
    cat <<EOF
  tls:
    certificate: $TOKEN_REGISTRY_DIR/server.crt
    key: $TOKEN_REGISTRY_DIR/server.key
auth:
  token:
    realm: $TOKEN_REALM
    service: $TOKEN_SERVICE
    issuer: $TOKEN_ISSUER_NAME
    rootcertbundle: $TOKEN_REGISTRY_DIR/signing.crt
EOF
  } | write_if_changed "$TOKEN_REGISTRY_DIR/config.yml" 600 && pid_alive token-registry; then
    log "token registry config changed: restarting it"
    stop_daemon token-registry 10
  fi
  if ! token_registry_answers; then
    pid_alive token-registry || start_daemon token-registry docker-registry serve "$TOKEN_REGISTRY_DIR/config.yml"
    wait_for token-registry 30 "GET https://$TOKEN_REGISTRY/v2/ -> 401" token_registry_answers
    log "token registry is up on https://$TOKEN_REGISTRY (401 without a token)"
  fi
  token_fixture "$BUSYBOX_IMAGE" "$TOKEN_BUSYBOX_IMAGE"
  token_fixture "$BUSYBOX_IMAGE" "$TOKEN_PUBLIC_BUSYBOX_IMAGE"
  token_fixture "$PYTHON_IMAGE" "$TOKEN_PYTHON_IMAGE"
  token_registry_verify
}

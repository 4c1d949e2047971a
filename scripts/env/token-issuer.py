#!/usr/bin/env python3
"""A small token server speaking Docker's registry token protocol, for berth's tests (scripts/env/token-registry.sh).

    GET /token?service=SERVICE&scope=repository:NAME:pull,push[&scope=...]
    Authorization: Basic ... (optional)
    -> 200 {"token": JWT, "access_token": JWT, "expires_in": N, "issued_at": RFC 3339}

As Docker Hub and GHCR do: a client with valid credentials gets what it asked for; an anonymous one gets `pull`
on public repositories (names under PUBLIC_PREFIX) and nothing else (an empty grant, so the registry answers
401 insufficient_scope); wrong credentials get 401. The JWT is RS256, signed with the openssl CLI, and carries
the signing certificate in `x5c`: the registry's `rootcertbundle` holds that certificate.

Users come from a file of `NAME:LIFETIME:SALT:HASH[:ADVERTISED]` lines (PBKDF2-SHA256 of the password, ITERATIONS
rounds); LIFETIME is how long that user's tokens live, in seconds, so a test can get 10-second tokens by logging in
as a user whose line says 10. ADVERTISED, when given, is the `expires_in` the answer claims instead: a token that
dies before its holder expects, as when the token server's clock runs ahead or tokens are revoked, which only a
client that re-authenticates on a 401 survives. docker-registry 2.8 allows 60 s of clock skew past a token's `exp`; so that a token
really stops working LIFETIME seconds after it was issued, `exp` is written LEEWAY seconds early.

    token-issuer.py serve ADDR PORT CERT KEY SIGNING_CERT SIGNING_KEY USERS SERVICE ISSUER
    token-issuer.py hash NAME LIFETIME [ADVERTISED] < password      (prints a users-file line)

Python standard library only, plus the openssl binary.
"""

import base64
import binascii
import datetime
import hashlib
import hmac
import http.server
import json
import os
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse

ITERATIONS = 50_000
LEEWAY = 60  # docker-registry's clock-skew allowance past `exp` (registry/auth/token/token.go)
PUBLIC_PREFIX = "public/"
ANONYMOUS_LIFETIME = 300


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pbkdf2(password: str, salt: bytes) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, ITERATIONS)


def read_users(path):
    """{name: (lifetime, advertised, salt, hash)} from the users file."""
    users = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, lifetime, salt, digest, *advertised = line.split(":")
            users[name] = (
                int(lifetime),
                int(advertised[0]) if advertised else int(lifetime),
                binascii.unhexlify(salt),
                binascii.unhexlify(digest),
            )
    return users


def parse_scope(scope: str):
    """`repository:NAME:pull,push` -> (type, name, [actions]); names may hold ':' only in the type's place."""
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    if not kind or not name:
        return None
    return kind, name, [a for a in actions.split(",") if a]


class Issuer:
    def __init__(self, signing_cert, signing_key, users, service, issuer):
        with open(signing_cert, "rb") as f:
            pem = f.read().decode()
        der = ssl.PEM_cert_to_DER_cert(pem)
        self.x5c = base64.b64encode(der).decode()
        self.signing_key = signing_key
        self.users_path = users
        self.service = service
        self.issuer = issuer
        # name -> sha256 of a password already checked: PBKDF2 runs once per user, not once per token
        self.checked = {}
        self.lock = threading.Lock()

    def authenticate(self, header):
        """(user, lifetime, advertised) for valid Basic credentials, anonymous for none, None if refused."""
        if not header:
            return "", ANONYMOUS_LIFETIME, ANONYMOUS_LIFETIME
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            name, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        user = read_users(self.users_path).get(name)
        if user is None:
            return None
        lifetime, advertised, salt, digest = user
        quick = hashlib.sha256(salt + password.encode()).digest()
        with self.lock:
            known = self.checked.get(name) == (quick, digest)
        if not known:
            if not hmac.compare_digest(pbkdf2(password, salt), digest):
                return None
            with self.lock:
                self.checked[name] = (quick, digest)
        return name, lifetime, advertised

    def grant(self, user, scopes):
        access = []
        for scope in scopes:
            parsed = parse_scope(scope)
            if parsed is None:
                continue
            kind, name, actions = parsed
            if kind != "repository":
                continue
            if user:
                allowed = [a for a in actions if a in ("pull", "push", "delete", "*")]
            elif name.startswith(PUBLIC_PREFIX):
                allowed = [a for a in actions if a == "pull"]
            else:
                allowed = []
            if allowed:
                access.append({"type": kind, "name": name, "actions": allowed})
        return access

    def sign(self, claims):
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        payload = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", self.signing_key],
            input=payload.encode(),
            capture_output=True,
            check=True,
        ).stdout
        return payload + "." + b64url(signature)

    def token(self, user, lifetime, advertised, scopes):
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": user,
            "aud": self.service,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime - LEEWAY,
            "jti": b64url(os.urandom(12)),
            "access": self.grant(user, scopes),
        }
        jwt = self.sign(claims)
        issued = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return claims, {"token": jwt, "access_token": jwt, "expires_in": advertised, "issued_at": issued}


class Handler(http.server.BaseHTTPRequestHandler):
    issuer: Issuer = None
    timeout = 30  # a client that stalls the handshake or the request holds only its own thread
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.request.do_handshake()

    def answer(self, status, body, extra=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path != "/token":
            self.answer(404, {"errors": [{"code": "NOT_FOUND", "message": "no such endpoint"}]})
            return
        query = urllib.parse.parse_qs(url.query)
        service = query.get("service", [self.issuer.service])[0]
        if service != self.issuer.service:
            self.answer(400, {"errors": [{"code": "DENIED", "message": f"unknown service {service}"}]})
            return
        scopes = [s for value in query.get("scope", []) for s in value.split(" ") if s]
        who = self.issuer.authenticate(self.headers.get("Authorization"))
        if who is None:
            self.answer(
                401,
                {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
                [("WWW-Authenticate", 'Basic realm="berth-token-issuer"')],
            )
            self.log_message("refused credentials, scopes %s", scopes)
            return
        user, lifetime, advertised = who
        claims, body = self.issuer.token(user, lifetime, advertised, scopes)
        self.log_message(
            "token for %s: %s, %d s (expires_in %d)",
            user or "(anonymous)",
            json.dumps(claims["access"]),
            lifetime,
            advertised,
        )
        self.answer(200, body)

    def log_message(self, fmt, *args):
        sys.stderr.write(
            "%s %s %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S"), self.client_address[0], fmt % args)
        )


def serve(addr, port, cert, key, signing_cert, signing_key, users, service, issuer):
    Handler.issuer = Issuer(signing_cert, signing_key, users, service, issuer)
    server = http.server.ThreadingHTTPServer((addr, int(port)), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    # the handshake happens in the handler's thread, so a stalled client cannot block accept()
    server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    sys.stderr.write(f"token issuer for {service} on https://{addr}:{port}/token\n")
    sys.stderr.flush()
    server.serve_forever()


def hash_line(name, lifetime, advertised=None):
    password = sys.stdin.read().rstrip("\n")
    salt = os.urandom(16)
    extra = f":{int(advertised)}" if advertised else ""
    print(f"{name}:{int(lifetime)}:{salt.hex()}:{pbkdf2(password, salt).hex()}{extra}")


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "serve" and len(args) == 9:
        serve(*args)
    elif command == "hash" and len(args) in (2, 3):
        hash_line(*args)
    else:
        sys.exit(__doc__)

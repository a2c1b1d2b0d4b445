"""A real OpenID Connect issuer for Easel's tests: Flask + joserfc on 127.0.0.1.

It serves what a relying party uses:
- GET  /.well-known/openid-configuration  the discovery document
- GET  /jwks                              the public keys (RSA, RS256), with Cache-Control max-age
- GET  /authorize                         auto-approves the test user and redirects to the
                                          redirect_uri with ?code=...&state=... (S256 PKCE required)
- POST /token                             checks client authentication, the code (single use,
                                          60 s), redirect_uri and the PKCE verifier; answers with
                                          an RS256 ID token carrying nonce, email, email_verified,
                                          name and picture
- GET  /picture.png                       a small PNG (with a tEXt comment), for picture claims
                                          that point back here

At start it prints ONE JSON line to stdout:

    {"issuer": ..., "client_id": ..., "client_secret": ..., "redirect_uri": ..., "kid": ...}

and serves until its stdin is closed (so it dies with the test process that started it).

Each line on stdin is a JSON command, answered with one JSON line ({"ok": true, ...}):
- {"command": "next_token", "fault": F}  the NEXT ID token misbehaves; F is one of FAULTS
- {"command": "rotate_keys", "keep_old": true}  a new signing key with a new kid; the old key
                                          stays in the JWKS unless keep_old is false
- {"command": "set_discovery", "fields": {...}}  overrides fields of the discovery document
                                          (null removes a field); {} restores it
- {"command": "set_auth_methods", "methods": [...]}  token_endpoint_auth_methods_supported; the
                                          token endpoint then accepts only these
- {"command": "set_jwks_max_age", "seconds": N}
- {"command": "stall_next", "path": P, "seconds": S}  the next request for path P waits S seconds
- {"command": "set_picture", "url": U}   the picture claim of the next ID tokens (null restores
                                          the default, https://images.example.test/ada.png)
- {"command": "stats"}                    how many requests each endpoint has answered
"""

import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
import sys
import threading
import time
import struct
import zlib
from urllib.parse import unquote, urlencode

from flask import Flask, jsonify, request
from joserfc import jwt
from joserfc.jwk import RSAKey
from werkzeug.serving import make_server

CLIENT_ID = "easel-test-client"
REDIRECT_URI = "https://easel.test/auth/oidc/callback"
CODE_LIFETIME = 60
TEST_USER = {
    "sub": "248289761001",
    "email": "ada@example.test",
    "name": "Ada Lovelace",
    "picture": "https://images.example.test/ada.png",
}
VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
FAULTS = {
    "wrong_audience",  # aud is another client
    "extra_audience",  # aud is [client, other] and azp is the client: acceptable
    "extra_audience_wrong_azp",  # aud is [client, other] and azp is the other client
    "wrong_issuer",  # iss is another issuer
    "google_short_issuer",  # iss without https:// (as Google sometimes sends)
    "expired",  # exp ten minutes ago
    "issued_in_future",  # iat an hour from now
    "wrong_nonce",
    "missing_nonce",
    "unknown_kid",  # signed by a key whose kid is not in the JWKS
    "foreign_key",  # signed by a key not in the JWKS, but with the current kid
    "hs256",  # HS256 with the RSA public key as HMAC secret, current kid
    "alg_none",  # unsigned
    "no_kid",  # RS256 by the current key, without kid
    "email_unverified",  # email_verified false
    "email_verified_string",  # email_verified "true" (a string)
}


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def handmade_token(header, claims, secret=None):
    """For tokens joserfc rightly refuses to make (alg none, HS256 with an RSA public key)."""
    signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    if secret is None:
        return signing_input + "."
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url(signature)


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def picture_png(width=64, height=48):
    """An RGB gradient with a tEXt chunk, so a test can see the metadata is gone after import."""
    rows = b"".join(b"\x00" + bytes(v for x in range(width) for v in (x * 4 % 256, y * 5 % 256, 128)) for y in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + png_chunk(b"tEXt", b"Comment\x00secret-provider-metadata")
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


PICTURE = picture_png()


def new_key(kid):
    return RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"}, private=True)


class Issuer:
    def __init__(self):
        self.lock = threading.Lock()
        self.issuer = None  # set once the port is known
        self.client_secret = secrets.token_urlsafe(24)
        self.key_number = 1
        self.signing_key = new_key("key-1")
        self.published = [self.signing_key]
        self.codes = {}
        self.next_fault = None
        self.discovery_overrides = {}
        self.auth_methods = ["client_secret_basic", "client_secret_post"]
        self.jwks_max_age = 3600
        self.stalls = {}  # path -> seconds
        self.picture = TEST_USER["picture"]
        self.stop = threading.Event()
        self.counts = {"discovery": 0, "jwks": 0, "authorize": 0, "token": 0, "picture": 0}

    # Commands from stdin.

    def handle(self, command):
        name = command.get("command")
        with self.lock:
            if name == "next_token":
                fault = command.get("fault")
                if fault not in FAULTS:
                    raise ValueError(f"unknown fault {fault!r}; known: {sorted(FAULTS)}")
                self.next_fault = fault
                return {}
            if name == "rotate_keys":
                self.key_number += 1
                self.signing_key = new_key(f"key-{self.key_number}")
                old = self.published if command.get("keep_old", True) else []
                self.published = [self.signing_key] + old
                return {"kid": self.signing_key.kid}
            if name == "set_discovery":
                self.discovery_overrides = dict(command.get("fields") or {})
                return {}
            if name == "set_auth_methods":
                self.auth_methods = list(command["methods"])
                return {}
            if name == "set_jwks_max_age":
                self.jwks_max_age = int(command["seconds"])
                return {}
            if name == "stall_next":
                self.stalls[str(command["path"])] = float(command["seconds"])
                return {}
            if name == "set_picture":
                self.picture = command.get("url") or TEST_USER["picture"]
                return {}
            if name == "stats":
                return dict(self.counts)
        raise ValueError(f"unknown command {name!r}")

    def take_stall(self, path):
        with self.lock:
            return self.stalls.pop(path, 0)

    def count(self, endpoint):
        with self.lock:
            self.counts[endpoint] += 1

    # Documents.

    def discovery(self):
        document = {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": list(self.auth_methods),
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["sub", "email", "email_verified", "name", "picture", "nonce"],
        }
        for field, value in self.discovery_overrides.items():
            if value is None:
                document.pop(field, None)
            else:
                document[field] = value
        return document

    def jwks(self):
        return {"keys": [key.as_dict(private=False) for key in self.published]}

    # Codes and tokens.

    def new_code(self, nonce, challenge, redirect_uri, login_hint):
        code = secrets.token_urlsafe(24)
        user = dict(TEST_USER)
        user["picture"] = self.picture
        if login_hint:
            user["email"] = login_hint
        with self.lock:
            self.codes[code] = {
                "nonce": nonce,
                "challenge": challenge,
                "redirect_uri": redirect_uri,
                "user": user,
                "issued": time.time(),
                "used": False,
            }
        return code

    def redeem(self, code):
        """Returns the code's grant once; a second redemption (or an unknown code) gets None."""
        with self.lock:
            grant = self.codes.get(code)
            if grant is None or grant["used"]:
                return None
            grant["used"] = True  # spent even if a later check fails: codes are single-use
            if time.time() - grant["issued"] > CODE_LIFETIME:
                return None
            return grant

    def id_token(self, grant):
        with self.lock:
            fault, self.next_fault = self.next_fault, None
            key = self.signing_key
        now = int(time.time())
        user = grant["user"]
        claims = {
            "iss": self.issuer,
            "sub": user["sub"],
            "aud": CLIENT_ID,
            "azp": CLIENT_ID,
            "iat": now,
            "exp": now + 3600,
            "nonce": grant["nonce"],
            "email": user["email"],
            "email_verified": True,
            "name": user["name"],
            "picture": user["picture"],
        }
        if grant["nonce"] is None:
            del claims["nonce"]
        header = {"alg": "RS256", "kid": key.kid, "typ": "JWT"}

        if fault == "wrong_audience":
            claims["aud"] = claims["azp"] = "someone-else"
        elif fault == "extra_audience":
            claims["aud"] = [CLIENT_ID, "another-service"]
        elif fault == "extra_audience_wrong_azp":
            claims["aud"] = [CLIENT_ID, "another-service"]
            claims["azp"] = "another-service"
        elif fault == "wrong_issuer":
            claims["iss"] = "https://evil.example.test"
        elif fault == "google_short_issuer":
            claims["iss"] = self.issuer.split("://", 1)[1]
        elif fault == "expired":
            claims["iat"] = now - 7200
            claims["exp"] = now - 600
        elif fault == "issued_in_future":
            claims["iat"] = now + 3600
            claims["exp"] = now + 7200
        elif fault == "wrong_nonce":
            claims["nonce"] = secrets.token_urlsafe(32)
        elif fault == "missing_nonce":
            claims.pop("nonce", None)
        elif fault == "email_unverified":
            claims["email_verified"] = False
        elif fault == "email_verified_string":
            claims["email_verified"] = "true"
        elif fault == "unknown_kid":
            return jwt.encode({"alg": "RS256", "kid": "key-nobody-published"}, claims, new_key("key-nobody-published"))
        elif fault == "foreign_key":
            return jwt.encode(header, claims, new_key(key.kid))
        elif fault == "hs256":
            secret = key.as_pem(private=False)
            return handmade_token({"alg": "HS256", "kid": key.kid, "typ": "JWT"}, claims, secret)
        elif fault == "alg_none":
            return handmade_token({"alg": "none", "kid": key.kid, "typ": "JWT"}, claims)
        elif fault == "no_kid":
            return jwt.encode({"alg": "RS256", "typ": "JWT"}, claims, key)
        return jwt.encode(header, claims, key)

    def client_authentication_error(self, form):
        """None when the client authenticated with a method the discovery document offers."""
        authorization = request.headers.get("Authorization", "")
        if authorization.startswith("Basic "):
            if "client_secret_basic" not in self.auth_methods:
                return "client_secret_basic is not allowed here"
            try:
                decoded = base64.b64decode(authorization[6:], validate=True).decode()
                client_id, _, secret = decoded.partition(":")
                client_id, secret = unquote(client_id.replace("+", " ")), unquote(secret.replace("+", " "))
            except (ValueError, UnicodeDecodeError):
                return "the Basic authorization header is malformed"
            if "client_secret" in form:
                return "use one client authentication method, not two"
        elif "client_secret" in form:
            if "client_secret_post" not in self.auth_methods:
                return "client_secret_post is not allowed here"
            client_id, secret = form.get("client_id", ""), form["client_secret"]
        else:
            return "no client authentication"
        if client_id != CLIENT_ID or not hmac.compare_digest(secret, self.client_secret):
            return "unknown client or wrong secret"
        return None


def create_app(issuer):
    app = Flask("oidc_issuer")

    @app.before_request
    def stall():
        seconds = issuer.take_stall(request.path)
        if seconds:
            # Interrupted when the peer stops, so a stalled request never outlives it.
            issuer.stop.wait(seconds)

    def oauth_error(status, error, description):
        response = jsonify({"error": error, "error_description": description})
        response.status_code = status
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/.well-known/openid-configuration")
    def discovery():
        issuer.count("discovery")
        return jsonify(issuer.discovery())

    @app.get("/jwks")
    def jwks():
        issuer.count("jwks")
        response = jsonify(issuer.jwks())
        response.headers["Cache-Control"] = f"public, max-age={issuer.jwks_max_age}"
        return response

    @app.get("/authorize")
    def authorize():
        issuer.count("authorize")
        args = request.args
        # Errors about the client or the redirect URI must not redirect (RFC 6749 4.1.2.1).
        if args.get("client_id") != CLIENT_ID:
            return ("unknown client_id", 400)
        if args.get("redirect_uri") != REDIRECT_URI:
            return ("redirect_uri is not registered for this client", 400)

        def refuse(error, description):
            query = {"error": error, "error_description": description}
            if "state" in args:
                query["state"] = args["state"]
            return ("", 302, {"Location": f"{REDIRECT_URI}?{urlencode(query)}"})

        if args.get("response_type") != "code":
            return refuse("unsupported_response_type", "only response_type=code")
        if "openid" not in args.get("scope", "").split(" "):
            return refuse("invalid_scope", "scope must contain openid")
        if args.get("code_challenge_method") != "S256" or not args.get("code_challenge"):
            return refuse("invalid_request", "PKCE with code_challenge_method=S256 is required")
        code = issuer.new_code(args.get("nonce"), args["code_challenge"], args["redirect_uri"], args.get("login_hint"))
        query = {"code": code}
        if "state" in args:
            query["state"] = args["state"]
        return ("", 302, {"Location": f"{REDIRECT_URI}?{urlencode(query)}"})

    @app.get("/picture.png")
    def picture():
        issuer.count("picture")
        return (PICTURE, 200, {"Content-Type": "image/png"})

    @app.post("/token")
    def token():
        issuer.count("token")
        form = request.form
        problem = issuer.client_authentication_error(form)
        if problem is not None:
            response = oauth_error(401, "invalid_client", problem)
            response.headers["WWW-Authenticate"] = 'Basic realm="oidc-issuer"'
            return response
        if form.get("grant_type") != "authorization_code":
            return oauth_error(400, "unsupported_grant_type", "only authorization_code")
        grant = issuer.redeem(form.get("code", ""))
        if grant is None:
            return oauth_error(400, "invalid_grant", "the code is unknown, expired or already used")
        if form.get("redirect_uri") != grant["redirect_uri"]:
            return oauth_error(400, "invalid_grant", "redirect_uri does not match the authorization request")
        verifier = form.get("code_verifier", "")
        if not VERIFIER.match(verifier):
            return oauth_error(400, "invalid_grant", "code_verifier must be 43-128 unreserved characters")
        if not hmac.compare_digest(b64url(hashlib.sha256(verifier.encode()).digest()), grant["challenge"]):
            return oauth_error(400, "invalid_grant", "PKCE verification failed")
        response = jsonify(
            {
                "access_token": secrets.token_urlsafe(32),
                "token_type": "Bearer",
                "expires_in": 3600,
                "scope": "openid email profile",
                "id_token": issuer.id_token(grant),
            }
        )
        response.headers["Cache-Control"] = "no-store"
        return response

    return app


def main() -> int:
    # Request logs would fill the pipe of a parent that does not read stderr.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    issuer = Issuer()
    server = make_server("127.0.0.1", 0, create_app(issuer), threaded=True)
    host, port = server.server_address[:2]
    issuer.issuer = f"http://{host}:{port}"
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def answer(line):
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()

    answer(
        {
            "issuer": issuer.issuer,
            "client_id": CLIENT_ID,
            "client_secret": issuer.client_secret,
            "redirect_uri": REDIRECT_URI,
            "kid": issuer.signing_key.kid,
        }
    )

    # Serve until the parent closes our stdin (or dies, which closes it too).
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            reply = issuer.handle(json.loads(line))
            answer({"ok": True, **reply})
        except (ValueError, KeyError, TypeError) as error:
            answer({"ok": False, "error": str(error)})
    issuer.stop.set()
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

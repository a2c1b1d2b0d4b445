"""A real S3 peer for Easel's tests: moto on 127.0.0.1 with SigV4 checking switched on.

Starts moto's server on a free loopback port, spends moto's three unauthenticated calls on
creating an IAM user with an allow-all policy and an access key, prints ONE JSON line

    {"endpoint": ..., "access_key_id": ..., "secret_access_key": ..., "region": ...}

to stdout and then serves until its stdin is closed (so it dies with the test process that
started it). From the fourth call on, moto checks the SigV4 signature of every request.

Two additions in front of moto, both WSGI middleware:
- Presigned URLs: moto's signature check needs an Authorization header and fails with a 500 on
  a presigned URL. Here botocore (AWS's own signer) checks the URL's query signature and expiry;
  a good URL is then handed to moto as the same request signed with a header, a bad one gets
  S3's 403 answer.
- Faults for retry tests: a line {"command": "fail_next", "bucket": B, "count": N, "status": S,
  "code": C} on stdin makes the next N requests for bucket B (path-style) fail with that status
  and S3 error code. Each command line is answered with one JSON line on stdout.
"""

import datetime
import hmac
import json
import logging
import os
import sys
import threading
from urllib.parse import unquote

# moto reads this when it is imported: the next three calls are the only unsigned ones.
os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"
# boto3 needs some credentials to sign the three bootstrap calls; moto does not check them.
os.environ["AWS_ACCESS_KEY_ID"] = "bootstrap"
os.environ["AWS_SECRET_ACCESS_KEY"] = "bootstrap"
os.environ.pop("AWS_SESSION_TOKEN", None)
os.environ.pop("AWS_PROFILE", None)

import boto3  # noqa: E402
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402
from moto.moto_server.werkzeug_app import (  # noqa: E402
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server  # noqa: E402

REGION = "us-east-1"
ALLOW_ALL_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}
QUERY_AUTH_PARAMS = {
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Security-Token",
    "X-Amz-Signature",
}


def s3_error(start_response, status, code, message):
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    ).encode()
    start_response(
        status,
        [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))],
    )
    return [body]


def raw_path(environ):
    return (environ.get("RAW_URI") or environ.get("PATH_INFO") or "/").split("?", 1)[0]


class PresignedURLs:
    """Checks SigV4 presigned URLs with botocore, then lets moto serve them."""

    def __init__(self, app):
        self.app = app
        self.credentials = None  # set once the access key exists

    def __call__(self, environ, start_response):
        query = environ.get("QUERY_STRING", "")
        if "X-Amz-Signature=" not in query or "HTTP_AUTHORIZATION" in environ:
            return self.app(environ, start_response)
        pairs = [pair.partition("=") for pair in query.split("&") if pair]
        params = {unquote(name): unquote(value) for name, _, value in pairs}
        refusal = self.refusal(environ, pairs, params)
        if refusal is not None:
            return s3_error(start_response, *refusal)
        self.sign_with_header(environ, pairs)
        return self.app(environ, start_response)

    def refusal(self, environ, pairs, params):
        if self.credentials is None:
            return ("403 Forbidden", "AccessDenied", "The peer has no access key yet")
        if params.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256":
            return ("400 Bad Request", "AuthorizationQueryParametersError", "X-Amz-Algorithm must be AWS4-HMAC-SHA256")
        scope = params.get("X-Amz-Credential", "").split("/")
        if len(scope) != 5 or scope[0] != self.credentials.access_key:
            return ("403 Forbidden", "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")
        if scope[2] != REGION or scope[3] != "s3" or scope[4] != "aws4_request":
            return ("400 Bad Request", "AuthorizationQueryParametersError", "The credential scope is wrong")
        try:
            expires = int(params.get("X-Amz-Expires", ""))
            signed_at = datetime.datetime.strptime(params.get("X-Amz-Date", ""), "%Y%m%dT%H%M%SZ").replace(
                tzinfo=datetime.timezone.utc
            )
        except ValueError:
            return ("400 Bad Request", "AuthorizationQueryParametersError", "X-Amz-Expires or X-Amz-Date is malformed")
        if not 1 <= expires <= 604800:
            return ("400 Bad Request", "AuthorizationQueryParametersError", "X-Amz-Expires must be between 1 and 604800 seconds")
        if scope[1] != params["X-Amz-Date"][:8]:
            return ("403 Forbidden", "SignatureDoesNotMatch", "The credential date does not match X-Amz-Date")
        if datetime.datetime.now(datetime.timezone.utc) > signed_at + datetime.timedelta(seconds=expires):
            return ("403 Forbidden", "AccessDenied", "Request has expired")

        # botocore rebuilds the canonical request from the URL as sent (query as it is, path not
        # normalised: S3's rules) and the signed headers, and computes the signature.
        signed_names = params.get("X-Amz-SignedHeaders", "").split(";")
        headers = {}
        for name in signed_names:
            key = "HTTP_HOST" if name == "host" else "HTTP_" + name.upper().replace("-", "_")
            if key not in environ:
                return ("403 Forbidden", "SignatureDoesNotMatch", f"Signed header {name} is missing")
            headers[name] = environ[key]
        unsigned_query = "&".join(f"{n}{s}{v}" for n, s, v in pairs if unquote(n) != "X-Amz-Signature")
        request = AWSRequest(
            method=environ["REQUEST_METHOD"],
            url=f"http://{environ['HTTP_HOST']}{raw_path(environ)}?{unsigned_query}",
            headers=headers,
        )
        request.context["timestamp"] = params["X-Amz-Date"]
        auth = S3SigV4QueryAuth(self.credentials, "s3", REGION, expires=expires)
        canonical_request = auth.canonical_request(request)
        string_to_sign = auth.string_to_sign(request, canonical_request)
        expected = auth.signature(string_to_sign, request)
        if not hmac.compare_digest(expected, params.get("X-Amz-Signature", "")):
            return (
                "403 Forbidden",
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        return None

    def sign_with_header(self, environ, pairs):
        rest = "&".join(f"{n}{s}{v}" for n, s, v in pairs if unquote(n) not in QUERY_AUTH_PARAMS)
        path = raw_path(environ)
        request = AWSRequest(
            method=environ["REQUEST_METHOD"],
            url=f"http://{environ['HTTP_HOST']}{path}" + (f"?{rest}" if rest else ""),
            headers={"host": environ["HTTP_HOST"]},
        )
        S3SigV4Auth(self.credentials, "s3", REGION).add_auth(request)
        environ["HTTP_AUTHORIZATION"] = request.headers["Authorization"]
        environ["HTTP_X_AMZ_DATE"] = request.headers["X-Amz-Date"]
        environ["HTTP_X_AMZ_CONTENT_SHA256"] = request.headers["X-Amz-Content-SHA256"]
        environ["QUERY_STRING"] = rest
        environ["RAW_URI"] = environ["REQUEST_URI"] = path + (f"?{rest}" if rest else "")


class Faults:
    """Fails the next requests for a bucket with a chosen status and S3 error code."""

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()
        self.pending = {}  # bucket -> [count, status line, code]

    def fail_next(self, bucket, count, status, code):
        reasons = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}
        with self.lock:
            self.pending[bucket] = [count, f"{status} {reasons.get(status, 'Error')}", code]

    def __call__(self, environ, start_response):
        bucket = unquote(raw_path(environ).lstrip("/").split("/", 1)[0])
        with self.lock:
            fault = self.pending.get(bucket)
            if fault and fault[0] > 0:
                fault[0] -= 1
                status, code = fault[1], fault[2]
            else:
                fault = None
        if fault is not None:
            environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            return s3_error(start_response, status, code, "Injected by the test peer")
        return self.app(environ, start_response)


def main() -> int:
    # Request logs would fill the pipe of a parent that does not read stderr.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    presigned = PresignedURLs(DomainDispatcherApplication(create_backend_app))
    faults = Faults(presigned)
    # As moto's ThreadedMotoServer does, with our middleware in front; port 0 = a free port.
    server = make_server("127.0.0.1", 0, faults, threaded=True, request_handler=MotoRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]
    endpoint = f"http://{host}:{port}"

    iam = boto3.client("iam", endpoint_url=endpoint, region_name=REGION)
    iam.create_user(UserName="easel-tests")
    iam.put_user_policy(
        UserName="easel-tests",
        PolicyName="allow-all",
        PolicyDocument=json.dumps(ALLOW_ALL_POLICY),
    )
    key = iam.create_access_key(UserName="easel-tests")["AccessKey"]
    presigned.credentials = Credentials(key["AccessKeyId"], key["SecretAccessKey"])

    def answer(line):
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()

    answer(
        {
            "endpoint": endpoint,
            "access_key_id": key["AccessKeyId"],
            "secret_access_key": key["SecretAccessKey"],
            "region": REGION,
        }
    )

    # Serve until the parent closes our stdin (or dies, which closes it too).
    for line in sys.stdin:
        try:
            command = json.loads(line)
            if command.get("command") != "fail_next":
                raise ValueError(f"unknown command {command.get('command')!r}")
            faults.fail_next(command["bucket"], int(command["count"]), int(command["status"]), str(command["code"]))
            answer({"ok": True})
        except (ValueError, KeyError, TypeError) as error:
            answer({"ok": False, "error": str(error)})
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

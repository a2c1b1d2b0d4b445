"""A loopback stand-in for Resend's HTTP API (https://resend.com/docs/api-reference), for tests.

No official offline Resend server exists, so this follows the documented contract of the one
endpoint Easel uses:

    POST /emails   Authorization: Bearer <key>   Content-Type: application/json
                   optional Idempotency-Key
    body: {from, to, subject, text?, html?, reply_to?, cc?, bcc?, headers?, ...}
    200 -> {"id": "<uuid>"}
    errors -> {"statusCode": N, "name": "...", "message": "..."}: 401 missing_api_key,
              403 invalid_api_key, 422 validation_error, 409 invalid_idempotent_request,
              429 rate_limit_exceeded, 500 application_error

Idempotency as documented: the same key with the same body answers the first id again and
sends nothing new; the same key with another body is a 409.

Prints ONE JSON line {"base_url", "api_key"} and then answers one JSON command per stdin line
with one JSON line:

    {"command": "requests"}  -> every request received so far (method, path, headers, json, status)
    {"command": "emails"}    -> every email accepted (sent once each)
    {"command": "fail_next", "to": ADDRESS, "count": N, "status": S, "delay": SECONDS}
                             -> the next N requests addressed to ADDRESS get status S (429, 422,
                                500, ...) with Resend's error body, after `delay` seconds (0 if
                                absent: a slow server for timeout tests); keyed by recipient so
                                tests running in parallel do not disturb each other.

Exits when stdin closes.
"""

import hashlib
import json
import logging
import re
import sys
import threading
import time
import uuid

from flask import Flask, jsonify, request
from werkzeug.serving import make_server

API_KEY = "re_test_" + uuid.uuid4().hex
ADDRESS = re.compile(r"^(?:[^<>]*<[^<>@\s]+@[^<>@\s]+>|[^<>@\s]+@[^<>@\s]+)$")
ERROR_NAMES = {
    400: ("validation_error", "The request is invalid."),
    401: ("missing_api_key", "Missing API key in the authorization header."),
    403: ("invalid_api_key", "API key is invalid."),
    409: ("invalid_idempotent_request", "Same idempotency key used with a different request payload."),
    422: ("validation_error", "The `to` field contains an address that cannot receive mail."),
    429: ("rate_limit_exceeded", "Too many requests. You can only make 2 requests per second."),
    500: ("application_error", "An unexpected error occurred."),
    503: ("application_error", "Service temporarily unavailable."),
}


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []
        self.emails = []
        self.idempotency = {}  # key -> (body digest, id)
        self.faults = {}  # recipient -> [count, status, delay]

    def take_fault(self, recipients):
        with self.lock:
            for recipient in recipients:
                fault = self.faults.get(recipient.lower())
                if fault and fault[0] > 0:
                    fault[0] -= 1
                    return fault[1], fault[2]
        return None


state = State()
app = Flask(__name__)


def error(status, message=None, name=None):
    default_name, default_message = ERROR_NAMES.get(status, ("application_error", "Error."))
    body = {"statusCode": status, "name": name or default_name, "message": message or default_message}
    return jsonify(body), status


def recipients_of(body):
    to = body.get("to") if isinstance(body, dict) else None
    if isinstance(to, str):
        to = [to]
    if not isinstance(to, list):
        return []
    # "Name <a@b>" or "a@b": keep the address.
    return [re.sub(r"^.*<([^>]*)>$", r"\1", str(item)).strip() for item in to]


def validate(body):
    if not isinstance(body, dict):
        return "The body must be a JSON object."
    for field in ("from", "subject"):
        if not isinstance(body.get(field), str) or not body[field]:
            return f"Missing `{field}` field."
    if not ADDRESS.match(body["from"]):
        return "Invalid `from` field. The email address needs to follow the `email@example.com` or `Name <email@example.com>` format."
    to = body.get("to")
    to = [to] if isinstance(to, str) else to
    if not isinstance(to, list) or not to or len(to) > 50:
        return "Invalid `to` field: between 1 and 50 recipients."
    for item in to:
        if not isinstance(item, str) or not ADDRESS.match(item):
            return f"Invalid `to` field: {item!r}."
    if not any(isinstance(body.get(field), str) and body[field] for field in ("text", "html")):
        return "Missing `html` or `text` field."
    reply_to = body.get("reply_to")
    if reply_to is not None:
        items = [reply_to] if isinstance(reply_to, str) else reply_to
        if not isinstance(items, list) or not all(isinstance(i, str) and ADDRESS.match(i) for i in items):
            return "Invalid `reply_to` field."
    headers = body.get("headers")
    if headers is not None:
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            return "Invalid `headers` field: an object of strings."
        for name, value in headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                return "Invalid `headers` field: no line breaks."
    return None


@app.post("/emails")
def send_email():
    raw = request.get_data()
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    record = {
        "method": request.method,
        "path": request.path,
        "headers": {name.lower(): value for name, value in request.headers.items()},
        "json": body,
    }

    def finish(response):
        record["status"] = response[1]
        record["answer"] = response[0].get_json()
        with state.lock:
            state.requests.append(record)
        return response

    authorization = request.headers.get("Authorization", "")
    if not authorization:
        return finish(error(401))
    if authorization != f"Bearer {API_KEY}":
        return finish(error(403))
    if not request.is_json:
        return finish(error(400, "Content-Type must be application/json."))

    fault = state.take_fault(recipients_of(body))
    if fault is not None:
        status, delay = fault
        time.sleep(delay)
        return finish(error(status))

    problem = validate(body)
    if problem is not None:
        return finish(error(422, problem))

    key = request.headers.get("Idempotency-Key")
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    with state.lock:
        if key is not None and key in state.idempotency:
            first_digest, first_id = state.idempotency[key]
            if first_digest != digest:
                conflict = True
            else:
                conflict = False
                email_id = first_id
        else:
            conflict = False
            email_id = str(uuid.uuid4())
            if key is not None:
                state.idempotency[key] = (digest, email_id)
            state.emails.append({"id": email_id, "json": body, "idempotency_key": key})
    if conflict:
        return finish(error(409))
    return finish((jsonify({"id": email_id}), 200))


def main() -> int:
    # Request logs would fill the pipe of a parent that does not read stderr.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]

    def answer(value):
        sys.stdout.write(json.dumps(value) + "\n")
        sys.stdout.flush()

    answer({"base_url": f"http://{host}:{port}", "api_key": API_KEY})

    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            command = json.loads(line)
            name = command.get("command")
            if name == "requests":
                with state.lock:
                    answer(list(state.requests))
            elif name == "emails":
                with state.lock:
                    answer(list(state.emails))
            elif name == "fail_next":
                with state.lock:
                    state.faults[str(command["to"]).lower()] = [
                        int(command["count"]),
                        int(command["status"]),
                        float(command.get("delay", 0)),
                    ]
                answer({"ok": True})
            else:
                raise ValueError(f"unknown command {name!r}")
        except (ValueError, KeyError, TypeError, AttributeError) as problem:
            answer({"ok": False, "error": str(problem)})
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

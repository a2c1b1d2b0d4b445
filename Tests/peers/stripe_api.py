"""A loopback stand-in for the few Stripe API endpoints Easel calls (https://docs.stripe.com/api), for tests.

No official Stripe server runs offline, so this follows the documented contract:

    Authorization: Bearer <secret key>      else 401 with Stripe's error body
    POST bodies application/x-www-form-urlencoded, nested params in bracket notation
        (metadata[user_id]=7, line_items[0][price]=price_x); unknown params are refused
        ("Received unknown parameter: …") as Stripe does
    Idempotency-Key on every POST (Stripe makes it optional; we require it to prove Easel sends
        one): the same key with the same params replays the first answer (with the header
        Idempotent-Replayed: true); the same key with other params, or on another endpoint, is a
        400 idempotency_error. As at Stripe, answers to requests that failed validation or never
        started executing (injected 5xx/429) are not saved, so a retry with the same key runs anew.

    POST /v1/customers                  -> customer {id: cus_…}
    GET  /v1/customers/<id>
    POST /v1/checkout/sessions          mode (payment|subscription), success_url, line_items[i][price]
                                        and [quantity], customer (must exist), cancel_url optional,
                                        subscription_data only in subscription mode,
                                        payment_intent_data only in payment mode
                                        -> checkout.session {id: cs_test_…, url: https://checkout.stripe.test/c/pay/cs_test_…}
    GET  /v1/checkout/sessions/<id>
    POST /v1/billing_portal/sessions    customer (must exist), return_url optional
                                        -> billing_portal.session {url: https://billing.stripe.test/p/session/test_…}

Errors: {"error": {"type", "code"?, "message", "param"?}} with Stripe's statuses and a Request-Id.

Prints ONE JSON line {"base_url", "secret_key"} and then answers one JSON command per stdin line
with one JSON line:

    {"command": "requests"}  -> every request so far, oldest first: method, path, headers (lower-case
                                names: authorization, content-type, idempotency-key, stripe-version,
                                user-agent), form (flat key -> value, as sent), raw_body, status,
                                answer (JSON), replayed
    {"command": "fail_next", "count": N, "status": S, "code"?, "message"?, "type"?, "delay"?,
     "idempotency_key_prefix"?, "malformed"?}
                             -> the next N requests (whose Idempotency-Key starts with the prefix,
                                if given, so parallel tests do not disturb each other) get status S
                                with Stripe's error body for it, after `delay` seconds; with
                                "malformed": true, a 200 whose body is not JSON instead
    {"command": "add_price", "id": "price_…", "type": "one_time"|"recurring", "unit_amount": N,
     "currency": "usd"}      -> a price the fake knows (then mode and price type must agree, and
                                amount_total is filled in); any other "price_…" id is accepted as is
    {"command": "add_customer", "id"?: "cus_…", "email"?: …} -> a customer created without a request
                                (answers {"ok": true, "id"})

Exits when stdin closes.
"""

import hashlib
import json
import logging
import re
import secrets
import sys
import threading
import time
from urllib.parse import parse_qsl

from flask import Flask, Response, request
from werkzeug.serving import make_server

SECRET_KEY = "sk_test_" + secrets.token_hex(16)

CHECKOUT_LOCALES = {
    "auto", "bg", "cs", "da", "de", "el", "en", "en-GB", "es", "es-419", "et", "fi", "fil", "fr", "fr-CA", "hr",
    "hu", "id", "it", "ja", "ko", "lt", "lv", "ms", "mt", "nb", "nl", "pl", "pt", "pt-BR", "ro", "ru", "sk", "sl",
    "sv", "th", "tr", "vi", "zh", "zh-HK", "zh-TW",
}

# Top-level parameters each endpoint documents (https://docs.stripe.com/api); anything else is
# "Received unknown parameter", as at Stripe.
CUSTOMER_PARAMS = {
    "address", "balance", "cash_balance", "description", "email", "expand", "invoice_prefix", "invoice_settings",
    "metadata", "name", "next_invoice_sequence", "payment_method", "phone", "preferred_locales", "shipping",
    "source", "tax", "tax_exempt", "tax_id_data", "test_clock",
}
CHECKOUT_PARAMS = {
    "adaptive_pricing", "after_expiration", "allow_promotion_codes", "automatic_tax", "billing_address_collection",
    "cancel_url", "client_reference_id", "consent_collection", "currency", "custom_fields", "custom_text",
    "customer", "customer_creation", "customer_email", "customer_update", "discounts", "expand", "expires_at",
    "invoice_creation", "line_items", "locale", "metadata", "mode", "optional_items", "payment_intent_data",
    "payment_method_collection", "payment_method_configuration", "payment_method_data", "payment_method_options",
    "payment_method_types", "permissions", "phone_number_collection", "redirect_on_completion", "return_url",
    "saved_payment_method_options", "setup_intent_data", "shipping_address_collection", "shipping_options",
    "submit_type", "subscription_data", "success_url", "tax_id_collection", "ui_mode", "wallet_options",
}
PORTAL_PARAMS = {"configuration", "customer", "expand", "flow_data", "locale", "on_behalf_of", "return_url"}

ERROR_DEFAULTS = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", None, "Invalid API Key provided."),
    402: ("card_error", "card_declined", "Your card was declined."),
    403: ("invalid_request_error", "secret_key_required", "The provided key does not have the required permissions."),
    404: ("invalid_request_error", "resource_missing", "No such resource."),
    409: ("invalid_request_error", "lock_timeout", "This object cannot be accessed right now because another API request or Stripe process is currently accessing it."),
    429: ("invalid_request_error", "rate_limit", "Request rate limit exceeded. You can learn more about rate limits here https://stripe.com/docs/rate-limits."),
    500: ("api_error", None, "An unknown error occurred"),
    502: ("api_error", None, "An unknown error occurred"),
    503: ("api_error", None, "Stripe is temporarily unavailable."),
}


class StripeProblem(Exception):
    def __init__(self, status, message, type_="invalid_request_error", code=None, param=None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []
        self.customers = {}
        self.sessions = {}
        self.portal_sessions = {}
        self.prices = {}
        self.idempotency = {}  # key -> (method path, params digest, status, body)
        self.faults = []  # [{count, status, ...}]

    def take_fault(self, idempotency_key):
        with self.lock:
            for fault in self.faults:
                prefix = fault.get("idempotency_key_prefix")
                if fault["count"] > 0 and (prefix is None or (idempotency_key or "").startswith(prefix)):
                    fault["count"] -= 1
                    return dict(fault)
        return None


state = State()
app = Flask(__name__)


def request_id():
    return "req_" + secrets.token_hex(7)


def json_response(body, status, extra_headers=None):
    response = Response(json.dumps(body, indent=2), status=status, mimetype="application/json")
    response.headers["Request-Id"] = request_id()
    response.headers["Stripe-Version"] = "2025-03-31.basil"
    for name, value in (extra_headers or {}).items():
        response.headers[name] = value
    return response


def error_body(status, message=None, type_=None, code=None, param=None):
    default_type, default_code, default_message = ERROR_DEFAULTS.get(status, ("api_error", None, "Error."))
    error = {"type": type_ or default_type, "message": message or default_message}
    code = code or default_code
    if code:
        error["code"] = code
        error["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
    if param:
        error["param"] = param
    error["request_log_url"] = "https://dashboard.stripe.test/test/logs/" + request_id()
    return {"error": error}


def now():
    return int(time.time())


def parse_form(raw):
    """Flat (key, value) pairs of a form body, as sent; refuses what is not valid form encoding."""
    text = raw.decode("utf-8")
    return parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text), errors="strict")


def nest(pairs):
    """Bracket notation into nested dicts: a[b][0][c]=v -> {"a": {"b": {"0": {"c": "v"}}}}."""
    root = {}
    for key, value in pairs:
        match = re.fullmatch(r"([^\[\]]+)((?:\[[^\[\]]*\])*)", key)
        if not match:
            raise StripeProblem(400, f"Invalid parameter name: {key}", param=key)
        path = [match.group(1)] + re.findall(r"\[([^\[\]]*)\]", match.group(2))
        node = root
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise StripeProblem(400, f"Invalid {part}: cannot be both a value and a hash", param=key)
            node = child
        if isinstance(node.get(path[-1]), dict):
            raise StripeProblem(400, f"Invalid {path[-1]}: cannot be both a value and a hash", param=key)
        node[path[-1]] = value
    return root


def check_unknown(params, allowed):
    for name in params:
        if name not in allowed:
            raise StripeProblem(400, f"Received unknown parameter: {name}", code="parameter_unknown", param=name)


def check_metadata(params, name="metadata"):
    metadata = params.get(name)
    if metadata is None:
        return {}
    if metadata == "":
        return {}
    if not isinstance(metadata, dict):
        raise StripeProblem(400, f"Invalid object", code="parameter_invalid_string", param=name)
    if len(metadata) > 50:
        raise StripeProblem(400, "You can only specify up to 50 keys in metadata.", param=name)
    for key, value in metadata.items():
        if not isinstance(value, str):
            raise StripeProblem(400, f"Invalid value for metadata key {key}.", param=f"{name}[{key}]")
        if len(key) > 40:
            raise StripeProblem(400, f"Metadata keys can have up to 40 characters; {key!r} has {len(key)}.", param=f"{name}[{key}]")
        if len(value) > 500:
            raise StripeProblem(400, f"Metadata values can have up to 500 characters, but you passed in a value that is {len(value)} characters.", param=f"{name}[{key}]")
    return dict(metadata)


def require_string(params, name, param=None):
    value = params.get(name)
    if value is None or value == "":
        raise StripeProblem(400, f"Missing required param: {param or name}.", code="parameter_missing", param=param or name)
    if not isinstance(value, str):
        raise StripeProblem(400, f"Invalid string: {param or name}", code="parameter_invalid_string", param=param or name)
    return value


def check_url(value, param):
    if not re.match(r"^https?://[^/\s]+", value):
        raise StripeProblem(400, "Not a valid URL", code="url_invalid", param=param)


def customer_object(customer_id, params):
    return {
        "id": customer_id, "object": "customer", "address": None, "balance": 0, "created": now(), "currency": None,
        "default_source": None, "delinquent": False, "description": params.get("description"),
        "email": params.get("email"), "invoice_prefix": secrets.token_hex(4).upper(),
        "invoice_settings": {"custom_fields": None, "default_payment_method": None, "footer": None, "rendering_options": None},
        "livemode": False, "metadata": check_metadata(params), "name": params.get("name"), "phone": params.get("phone"),
        "preferred_locales": [], "shipping": None, "tax_exempt": "none", "test_clock": None,
    }


def create_customer(params):
    check_unknown(params, CUSTOMER_PARAMS)
    email = params.get("email")
    if email is not None and (not isinstance(email, str) or (email and "@" not in email)):
        raise StripeProblem(400, "Invalid email address: " + str(email), code="email_invalid", param="email")
    customer = customer_object("cus_" + secrets.token_hex(7), params)
    with state.lock:
        state.customers[customer["id"]] = customer
    return customer


def line_items_of(params, mode):
    items = params.get("line_items")
    if items is None:
        raise StripeProblem(400, f"Missing required param: line_items.", code="parameter_missing", param="line_items")
    if not isinstance(items, dict) or not all(key.isdigit() for key in items):
        raise StripeProblem(400, "Invalid array", code="parameter_invalid_array", param="line_items")
    result = []
    for index in sorted(items, key=int):
        item = items[index]
        if not isinstance(item, dict):
            raise StripeProblem(400, "Invalid hash", param=f"line_items[{index}]")
        for name in item:
            if name not in {"price", "price_data", "quantity", "adjustable_quantity", "dynamic_tax_rates", "tax_rates", "optional_items"}:
                raise StripeProblem(400, f"Received unknown parameter: line_items[{index}][{name}]", code="parameter_unknown", param=f"line_items[{index}][{name}]")
        price = require_string(item, "price", f"line_items[{index}][price]")
        quantity_text = item.get("quantity")
        if quantity_text is None:
            raise StripeProblem(400, f"Quantity is required. Add `quantity` to `line_items[{index}]`", code="parameter_missing", param=f"line_items[{index}][quantity]")
        if not re.fullmatch(r"[0-9]+", str(quantity_text)) or int(quantity_text) < 1:
            raise StripeProblem(400, f"Invalid integer: {quantity_text}", code="parameter_invalid_integer", param=f"line_items[{index}][quantity]")
        with state.lock:
            known = state.prices.get(price)
        if known is None and not price.startswith("price_"):
            raise StripeProblem(400, f"No such price: '{price}'", code="resource_missing", param=f"line_items[{index}][price]")
        if known is not None:
            if mode == "payment" and known["type"] == "recurring":
                raise StripeProblem(400, "You specified `payment` mode but passed a recurring price. Either switch to `subscription` mode or use only one-time prices.", param="mode")
        result.append({"price": price, "quantity": int(quantity_text), "known": known})
    if mode == "subscription" and any(i["known"] is not None for i in result) and not any(
        i["known"] is not None and i["known"]["type"] == "recurring" for i in result
    ):
        raise StripeProblem(400, "You must provide at least one recurring price in `subscription` mode when using prices.", param="mode")
    return result


def create_checkout_session(params):
    check_unknown(params, CHECKOUT_PARAMS)
    mode = params.get("mode")
    if mode is None or mode == "":
        raise StripeProblem(400, "Missing required param: mode.", code="parameter_missing", param="mode")
    if mode not in ("payment", "subscription", "setup"):
        raise StripeProblem(400, f"Invalid mode: must be one of payment, setup, or subscription", code="parameter_invalid_string", param="mode")
    if mode == "setup":
        raise StripeProblem(400, "This fake only knows payment and subscription mode.", param="mode")
    ui_mode = params.get("ui_mode", "hosted")
    success_url = params.get("success_url")
    if ui_mode == "hosted":
        success_url = require_string(params, "success_url")
        check_url(success_url.replace("{CHECKOUT_SESSION_ID}", "x"), "success_url")
    cancel_url = params.get("cancel_url")
    if cancel_url:
        check_url(cancel_url, "cancel_url")
    if mode == "payment" and "subscription_data" in params:
        raise StripeProblem(400, "You can not pass `subscription_data` in `payment` mode.", param="subscription_data")
    if mode == "subscription" and "payment_intent_data" in params:
        raise StripeProblem(400, "You can not pass `payment_intent_data` in `subscription` mode.", param="payment_intent_data")
    customer = params.get("customer")
    if customer:
        with state.lock:
            known_customer = customer in state.customers
        if not known_customer:
            raise StripeProblem(400, f"No such customer: '{customer}'", code="resource_missing", param="customer")
        if params.get("customer_email"):
            raise StripeProblem(400, "You may only specify one of these parameters: customer, customer_email.", param="customer_email")
    locale = params.get("locale")
    if locale is not None and locale not in CHECKOUT_LOCALES:
        raise StripeProblem(400, f"Invalid locale: must be one of {', '.join(sorted(CHECKOUT_LOCALES))}", code="parameter_invalid_string", param="locale")
    client_reference_id = params.get("client_reference_id")
    if client_reference_id is not None and len(client_reference_id) > 200:
        raise StripeProblem(400, "client_reference_id: must be at most 200 characters", param="client_reference_id")
    metadata = check_metadata(params)
    subscription_metadata = check_metadata(params.get("subscription_data") or {}, "metadata") if isinstance(params.get("subscription_data"), dict) else {}
    payment_intent_metadata = check_metadata(params.get("payment_intent_data") or {}, "metadata") if isinstance(params.get("payment_intent_data"), dict) else {}
    items = line_items_of(params, mode)

    amount_total = None
    currency = None
    if items and all(i["known"] is not None for i in items):
        amount_total = sum(i["known"]["unit_amount"] * i["quantity"] for i in items)
        currency = items[0]["known"]["currency"]

    session_id = "cs_test_" + secrets.token_hex(24)
    session = {
        "id": session_id, "object": "checkout.session", "amount_subtotal": amount_total, "amount_total": amount_total,
        "cancel_url": cancel_url, "client_reference_id": client_reference_id, "created": now(), "currency": currency,
        "customer": customer or None, "customer_details": None, "customer_email": params.get("customer_email"),
        "expires_at": now() + 24 * 3600, "livemode": False, "locale": locale, "metadata": metadata, "mode": mode,
        "payment_intent": None, "payment_status": "unpaid", "status": "open", "subscription": None,
        "success_url": success_url, "ui_mode": ui_mode,
        "url": f"https://checkout.stripe.test/c/pay/{session_id}",
        # Not part of Stripe's object: what the session would copy on, for tests to check.
        "x_subscription_metadata": subscription_metadata, "x_payment_intent_metadata": payment_intent_metadata,
        "x_line_items": [{"price": i["price"], "quantity": i["quantity"]} for i in items],
    }
    with state.lock:
        state.sessions[session_id] = session
    return session


def create_portal_session(params):
    check_unknown(params, PORTAL_PARAMS)
    customer = require_string(params, "customer")
    with state.lock:
        known_customer = customer in state.customers
    if not known_customer:
        raise StripeProblem(400, f"No such customer: '{customer}'", code="resource_missing", param="customer")
    return_url = params.get("return_url")
    if return_url:
        check_url(return_url, "return_url")
    portal_id = "bps_" + secrets.token_hex(12)
    session = {
        "id": portal_id, "object": "billing_portal.session", "configuration": "bpc_" + secrets.token_hex(8),
        "created": now(), "customer": customer, "flow": None, "livemode": False, "locale": params.get("locale"),
        "on_behalf_of": None, "return_url": return_url or None,
        "url": f"https://billing.stripe.test/p/session/test_{secrets.token_hex(16)}",
    }
    with state.lock:
        state.portal_sessions[portal_id] = session
    return session


POST_ROUTES = {
    "/v1/customers": create_customer,
    "/v1/checkout/sessions": create_checkout_session,
    "/v1/billing_portal/sessions": create_portal_session,
}


def public(obj):
    return {k: v for k, v in obj.items() if not k.startswith("x_")}


@app.route("/", defaults={"path": ""}, methods=["GET", "POST", "DELETE", "PUT", "PATCH"])
@app.route("/<path:path>", methods=["GET", "POST", "DELETE", "PUT", "PATCH"])
def handle(path):
    raw = request.get_data()
    record = {
        "method": request.method,
        "path": request.path,
        "headers": {
            name: request.headers[name]
            for name in ("authorization", "content-type", "idempotency-key", "stripe-version", "user-agent", "accept")
            if name in request.headers
        },
        "form": {},
        "raw_body": raw.decode("utf-8", errors="replace"),
        "replayed": False,
    }

    def finish(body, status, headers=None, raw_text=None):
        record["status"] = status
        record["answer"] = body
        with state.lock:
            state.requests.append(record)
        if raw_text is not None:
            return Response(raw_text, status=status, mimetype="text/html")
        return json_response(body, status, headers)

    authorization = request.headers.get("Authorization", "")
    if not authorization:
        return finish(error_body(401, "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY')."), 401)
    if authorization != f"Bearer {SECRET_KEY}":
        presented = authorization.removeprefix("Bearer ").strip()
        return finish(error_body(401, f"Invalid API Key provided: {presented[:8]}{'*' * 8}{presented[-4:]}"), 401)

    key = request.headers.get("Idempotency-Key")
    fault = state.take_fault(key)
    if fault is not None:
        time.sleep(float(fault.get("delay") or 0))
        if fault.get("malformed"):
            return finish(None, 200, raw_text="<html><body>Bad gateway</body></html>")
        status = int(fault["status"])
        headers = {"Stripe-Should-Retry": "true"} if status >= 500 or status == 429 else {}
        return finish(error_body(status, fault.get("message"), fault.get("type"), fault.get("code")), status, headers)

    try:
        if request.method == "GET":
            match = re.fullmatch(r"/v1/(customers|checkout/sessions)/([^/]+)", request.path)
            if not match:
                raise StripeProblem(404, f"Unrecognized request URL (GET: {request.path}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.")
            kind, object_id = match.groups()
            with state.lock:
                found = (state.customers if kind == "customers" else state.sessions).get(object_id)
            if found is None:
                name = "customer" if kind == "customers" else "checkout.session"
                raise StripeProblem(404, f"No such {name}: '{object_id}'", code="resource_missing", param="id")
            return finish(public(found), 200)

        if request.method != "POST" or request.path not in POST_ROUTES:
            raise StripeProblem(404, f"Unrecognized request URL ({request.method}: {request.path}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.")
        content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if raw and content_type != "application/x-www-form-urlencoded":
            raise StripeProblem(400, f"Invalid request: the body must be application/x-www-form-urlencoded, not {content_type or 'untyped'}.")
        try:
            pairs = parse_form(raw)
        except (ValueError, UnicodeDecodeError):
            raise StripeProblem(400, "Invalid request: the body is not valid form encoding.")
        record["form"] = {name: value for name, value in pairs}
        if not key:
            raise StripeProblem(400, "This fake requires an Idempotency-Key header on every POST.", code="idempotency_key_missing")
        if len(key) > 255:
            raise StripeProblem(400, "Idempotency keys can be at most 255 characters long.", type_="idempotency_error")
        params = nest(pairs)
        digest = hashlib.sha256(json.dumps(sorted(pairs)).encode()).hexdigest()
        endpoint = f"{request.method} {request.path}"
        with state.lock:
            saved = state.idempotency.get(key)
        if saved is not None:
            saved_endpoint, saved_digest, saved_status, saved_body = saved
            if saved_endpoint != endpoint or saved_digest != digest:
                raise StripeProblem(
                    400,
                    f"Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{key}' if you meant to execute a different request.",
                    type_="idempotency_error",
                )
            record["replayed"] = True
            return finish(saved_body, saved_status, {"Idempotent-Replayed": "true", "Original-Request": "req_original"})
        body = public(POST_ROUTES[request.path](params))
        with state.lock:
            # Two concurrent first uses of one key: the first saved answer wins, as Stripe's lock does.
            saved = state.idempotency.setdefault(key, (endpoint, digest, 200, body))
        if saved[2:] != (200, body):
            record["replayed"] = True
            return finish(saved[3], saved[2], {"Idempotent-Replayed": "true"})
        return finish(body, 200, {"Idempotency-Key": key})
    except StripeProblem as problem:
        return finish(error_body(problem.status, problem.message, problem.type, problem.code, problem.param), problem.status)


def main() -> int:
    # Request logs would fill the pipe of a parent that does not read stderr.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]

    def answer(value):
        sys.stdout.write(json.dumps(value) + "\n")
        sys.stdout.flush()

    answer({"base_url": f"http://{host}:{port}", "secret_key": SECRET_KEY})

    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            command = json.loads(line)
            name = command.get("command")
            if name == "requests":
                with state.lock:
                    answer(list(state.requests))
            elif name == "fail_next":
                fault = {
                    "count": int(command["count"]),
                    "status": int(command.get("status") or 500),
                    "code": command.get("code"),
                    "message": command.get("message"),
                    "type": command.get("type"),
                    "delay": float(command.get("delay") or 0),
                    "idempotency_key_prefix": command.get("idempotency_key_prefix"),
                    "malformed": bool(command.get("malformed")),
                }
                with state.lock:
                    state.faults.append(fault)
                answer({"ok": True})
            elif name == "add_price":
                price_type = command.get("type", "one_time")
                if price_type not in ("one_time", "recurring"):
                    raise ValueError(f"price type {price_type!r}")
                with state.lock:
                    state.prices[str(command["id"])] = {
                        "type": price_type,
                        "unit_amount": int(command.get("unit_amount", 0)),
                        "currency": str(command.get("currency", "usd")),
                    }
                answer({"ok": True})
            elif name == "add_customer":
                customer_id = command.get("id") or "cus_" + secrets.token_hex(7)
                customer = customer_object(customer_id, {"email": command.get("email"), "name": command.get("name")})
                with state.lock:
                    state.customers[customer_id] = customer
                answer({"ok": True, "id": customer_id})
            else:
                raise ValueError(f"unknown command {name!r}")
        except (ValueError, KeyError, TypeError, AttributeError, StripeProblem) as problem:
            answer({"ok": False, "error": str(problem)})
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A loopback stand-in for the image providers of shared/PROVIDERS.md, for tests.

Two providers on one server, each under its own prefix (both use /v1/images/generations):

  OpenAI Images API (synchronous), base {base_url}/openai:
    POST /openai/v1/images/generations   JSON {model, prompt, n, size, quality, output_format?,
                                         background?, moderation?, user?, ...}
    POST /openai/v1/images/edits         multipart: repeated image[] files (png/jpeg/webp, <= 16)
                                         plus the same text fields
    200 -> {created, data:[{b64_json}], background, output_format, quality, size, usage:{...}}
    errors -> {"error":{message, type, param, code}}

  Evolink (asynchronous tasks), base {base_url}/evolink:
    POST /evolink/v1/images/generations  JSON {model, prompt, size?, quality?, n?, image_urls?,
                                         callback_url?} -> {id:"task-unified-...", object,
                                         status:"pending", progress:0, created, model, task_info, usage}
    GET  /evolink/v1/tasks/<id>          -> the task body: status pending|processing|completed|failed,
                                         progress, results:[url] when completed,
                                         error:{code,message} when failed
    errors -> {"error":{code, message, type}} (code numeric by default; a script may give a string)

  Result URLs (no key, like a CDN): GET /results/<task id>/<index>.png

Every /openai and /evolink route checks `Authorization: Bearer <api_key>` (401 otherwise).
Images are real 64x64 PNGs of one colour derived from the prompt and the image's index
(written here with zlib + struct). The peer only makes PNG, so `output_format` in its answers
is always "png".

Behaviour is scripted per prompt (tests run in parallel; each uses its own prompt). A step is an
object; steps are consumed one per request with that prompt and the last one repeats:
    {"ok": true}                    normal answer (the default when nothing is scripted);
                                    OpenAI: "images": K answers K images instead of n
    {"status": S}                   answer S with the provider's error body; optional "code"
                                    (e.g. "moderation_blocked", "insufficient_quota",
                                    "rate_limit_exceeded", or a number for Evolink), "message",
                                    "type"; OpenAI 502/504 answer an HTML page like a proxy
    {"retry_after": X}              with a status: Retry-After header (a number of seconds, or a
                                    string sent as is); {"retry_after_date": S} sends an HTTP date
                                    S seconds ahead; {"retry_after_ms": M} sends retry-after-ms
    {"delay": S}                    sleep S seconds first (then answer the rest of the step)
    {"malformed": true}             200 with an HTML body; or "empty_data" ({"data": []}),
                                    "bad_base64" (b64_json not base64), "no_id" (Evolink submit
                                    answer without id), "truncated" (cut-off JSON)
    {"body": "...", "content_type": "..."}   with a status: this raw body instead

Commands, one JSON object per stdin line, one JSON line answered:
    {"command": "script", "prompt": P, "openai": [step, ...]}
    {"command": "script", "prompt": P, "evolink": {
        "submit": [step, ...],              for POST /evolink/v1/images/generations
        "poll": [step, ...],                for GET /evolink/v1/tasks/<id> (e.g. [{"status":503},{"ok":true}])
        "polls_until_done": K,              ok polls before the end (default 2: pending, processing,
                                            then the outcome on the third)
        "outcome": "completed" | {"failed": CODE, "message": optional},
        "result": "ok" | "404" | "expired", what the result URLs answer (expired: 410)
        "callback": "none" | "normal" | "before_first_poll" | "duplicate"
                                            (default "normal" when the submit has a callback_url)
        "complete_after": S,                the task also ends by itself S seconds after submit
                                            (default 0.5 with callback normal/duplicate, else never)
        "callback_retry_delays": [1, 2, 4]  waits before the retries of a failed callback
    }}
        -> {"ok": true}. Scripting a prompt again replaces its script and restarts its steps.
    {"command": "requests"[, "prompt": P]}  -> every request seen, oldest first: provider,
        method, path, prompt, model, n, size, quality, output_format, user, images (count of
        image[] parts for edits), image_content_types, image_filenames, image_urls,
        callback_url, task_id, authorized, status (answered)
    {"command": "tasks"[, "prompt": P]}     -> Evolink tasks: id, prompt, status, progress,
        polls, submit_count (tasks created so far for that prompt), callback_url, callbacks
        (each delivery attempt: {delivery, attempt, status | error})

Callbacks: when a task with a callback_url ends, the peer POSTs the task body (the same JSON as
GET /v1/tasks/<id>) to it; a non-2xx answer or an error is retried after the
callback_retry_delays (Evolink documents 1, 2, 4 s) and then given up. "before_first_poll" ends
the task at submit and calls back right after the submit answer, before any poll;
"duplicate" delivers twice. http callback URLs are allowed here (Evolink requires https).

Prints ONE JSON line {"base_url", "api_key", "openai_base_url", "evolink_base_url"} first.
Exits when stdin closes.
"""

import base64
import email.utils
import hashlib
import json
import logging
import re
import struct
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
import zlib

from flask import Flask, Response, request
from werkzeug.serving import make_server

API_KEY = "sk-test-" + uuid.uuid4().hex
BASE_URL = None  # set in main()

SIZES = {"1024x1024", "1536x1024", "1024x1536", "auto"}
QUALITIES = {"low", "medium", "high", "auto"}
FORMATS = {"png", "jpeg", "webp"}
IMAGE_TYPES = {"image/png", "image/jpeg", "image/webp"}
# Output tokens per image (square / portrait / landscape), PROVIDERS.md.
TOKENS = {"low": (272, 408, 400), "medium": (1056, 1584, 1568), "high": (4160, 6240, 6208)}

EVOLINK_TASK_ERRORS = {
    "content_policy_violation": "The request was rejected by the content safety policy.",
    "invalid_parameters": "Invalid parameters.",
    "image_processing_error": "A reference image could not be processed.",
    "image_dimension_mismatch": "The reference image dimensions do not match.",
    "request_cancelled": "The request was cancelled.",
    "generation_failed_no_content": "The generation produced no content.",
    "service_error": "An internal service error occurred.",
    "generation_timeout": "The generation timed out.",
    "resource_exhausted": "Resources are exhausted.",
    "quota_exceeded": "The quota was exceeded.",
    "service_unavailable": "The service is unavailable.",
    "unknown_error": "An unknown error occurred.",
}
EVOLINK_HTTP_ERRORS = {
    400: ("invalid_request_error", "Invalid request parameters."),
    401: ("authentication_error", "Invalid or missing API key."),
    402: ("insufficient_quota_error", "Insufficient quota: please top up your balance."),
    403: ("permission_error", "Access denied."),
    404: ("not_found_error", "The resource was not found."),
    413: ("request_too_large_error", "The request body is too large."),
    429: ("rate_limit_error", "Rate limit exceeded: retry after 60 seconds."),
    500: ("internal_server_error", "Internal server error."),
    502: ("upstream_error", "Upstream service error."),
    503: ("service_unavailable_error", "Service temporarily unavailable: retry after 30 seconds."),
}
OPENAI_HTTP_ERRORS = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Country, region, or territory not supported."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist or you do not have access to it."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for images per minute. Please try again later."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}
OPENAI_SPECIAL_CODES = {
    "moderation_blocked": (
        "image_generation_user_error",
        "Your request was rejected as a result of our safety system. Your request may contain content "
        "that is not allowed by our safety system.",
    ),
    "insufficient_quota": (
        "insufficient_quota",
        "You exceeded your current quota, please check your plan and billing details.",
    ),
    "billing_hard_limit_reached": ("billing_limit_user_error", "Billing hard limit has been reached."),
}
PROXY_PAGE = "<html><head><title>{0}</title></head><body><center><h1>{0}</h1></center><hr><center>cloudflare</center></body></html>\n"
PROXY_TITLES = {502: "502 Bad Gateway", 504: "504 Gateway Time-out"}


# ---------------------------------------------------------------- images

def png(width, height, rgb):
    """A solid-colour 8-bit RGB PNG."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b"")


def image_for(prompt, index):
    digest = hashlib.sha256(f"{prompt}\n{index}".encode()).digest()
    return png(64, 64, digest[:3])


# ---------------------------------------------------------------- state

class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []
        self.scripts = {}  # prompt -> {"openai": {"steps", "used"}, "evolink": {..., "submit_used", "poll_used"}}
        self.tasks = {}  # id -> task dict
        self.submit_counts = {}  # prompt -> tasks created

    def take_step(self, prompt, provider, kind):
        with self.lock:
            script = self.scripts.get(prompt, {}).get(provider)
            if script is None:
                return {"ok": True}
            steps = script.get(kind) or []
            if not steps:
                return {"ok": True}
            used = script.setdefault(f"{kind}_used", 0)
            script[f"{kind}_used"] = used + 1
            return steps[min(used, len(steps) - 1)]

    def evolink_script(self, prompt):
        with self.lock:
            return dict(self.scripts.get(prompt, {}).get("evolink") or {})


state = State()
app = Flask(__name__)


def record(entry, response):
    entry["status"] = response.status_code
    with state.lock:
        state.requests.append(entry)
    return response


def json_response(value, status=200, headers=None):
    return Response(json.dumps(value), status=status, mimetype="application/json", headers=headers or {})


def retry_headers(step):
    headers = {}
    if "retry_after" in step:
        value = step["retry_after"]
        headers["Retry-After"] = value if isinstance(value, str) else format(value, "g")
    if "retry_after_date" in step:
        headers["Retry-After"] = email.utils.formatdate(time.time() + float(step["retry_after_date"]), usegmt=True)
    if "retry_after_ms" in step:
        headers["retry-after-ms"] = format(step["retry_after_ms"], "g")
    return headers


def malformed_kind(step):
    value = step.get("malformed")
    if value is True:
        return "non_json"
    return value or None


def authorized():
    return request.headers.get("Authorization") == f"Bearer {API_KEY}"


# ---------------------------------------------------------------- OpenAI

def openai_error(status, message=None, code=None, param=None, error_type=None, headers=None):
    default_type, default_code, default_message = OPENAI_HTTP_ERRORS.get(status, ("server_error", None, "Error."))
    code = code if code is not None else default_code
    if code in OPENAI_SPECIAL_CODES:
        special_type, special_message = OPENAI_SPECIAL_CODES[code]
        default_type, default_message = special_type, special_message
    body = {"error": {"message": message or default_message, "type": error_type or default_type, "param": param, "code": code}}
    return json_response(body, status, headers)


def openai_step_response(step):
    """A response for a fault step, or None to answer normally."""
    status = step.get("status")
    if status is not None and status >= 300:
        headers = retry_headers(step)
        if "body" in step:
            return Response(step["body"], status=status, content_type=step.get("content_type", "text/plain"), headers=headers)
        if status in PROXY_TITLES and "code" not in step:
            return Response(PROXY_PAGE.format(PROXY_TITLES[status]), status=status, content_type="text/html", headers=headers)
        return openai_error(status, step.get("message"), step.get("code"), error_type=step.get("type"), headers=headers)
    if malformed_kind(step) == "non_json":
        return Response("<html><body>Service temporarily unavailable</body></html>", status=200, content_type="text/html")
    if malformed_kind(step) == "truncated":
        return Response('{"created": 1, "data": [{"b64_json": "iVBORw0K', status=200, mimetype="application/json")
    return None


def valid_size(model, size):
    if size in SIZES:
        return True
    if not model.startswith("gpt-image-2"):
        return False
    match = re.fullmatch(r"(\d+)x(\d+)", size)
    if not match:
        return False
    width, height = int(match.group(1)), int(match.group(2))
    if width % 16 or height % 16 or max(width, height) > 3840:
        return False
    if max(width, height) > 3 * min(width, height):
        return False
    return 655_360 <= width * height <= 8_294_400


def openai_validate(fields):
    """Returns (message, param) of the first problem, or None."""
    model = fields.get("model")
    if not isinstance(model, str) or not model.startswith("gpt-image-"):
        return (f"Invalid value for 'model': {model!r}.", "model")
    prompt = fields.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        return ("Missing required parameter: 'prompt'.", "prompt")
    if len(prompt) > 32_000:
        return ("Invalid 'prompt': string too long. Expected a string with maximum length 32000.", "prompt")
    n = fields.get("n", 1)
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 10:
        return ("Invalid 'n': expected an integer between 1 and 10.", "n")
    if not valid_size(model, fields.get("size", "auto")):
        return (f"Invalid value for 'size': {fields.get('size')!r}.", "size")
    if fields.get("quality", "auto") not in QUALITIES:
        return (f"Invalid value for 'quality': {fields.get('quality')!r}.", "quality")
    if fields.get("output_format", "png") not in FORMATS:
        return (f"Invalid value for 'output_format': {fields.get('output_format')!r}.", "output_format")
    if "response_format" in fields:
        return ("Unknown parameter: 'response_format'.", "response_format")
    return None


def openai_answer(fields, step):
    prompt = fields["prompt"]
    n = fields.get("n", 1)
    count = int(step.get("images", n))
    kind = malformed_kind(step)
    if kind == "empty_data":
        data = []
    elif kind == "bad_base64":
        data = [{"b64_json": "this is *not* base64!"} for _ in range(count)]
    else:
        data = [{"b64_json": base64.b64encode(image_for(prompt, index)).decode()} for index in range(count)]
    quality = fields.get("quality", "auto")
    size = fields.get("size", "auto")
    shape = 0
    match = re.fullmatch(r"(\d+)x(\d+)", size)
    if match:
        width, height = int(match.group(1)), int(match.group(2))
        shape = 0 if width == height else (1 if height > width else 2)
    per_image = TOKENS.get(quality, TOKENS["medium"])[shape]
    text_tokens = max(1, len(prompt) // 4)
    image_tokens = 0 if fields.get("_images", 0) == 0 else 323 * fields["_images"]
    body = {
        "created": int(time.time()),
        "data": data,
        "background": fields.get("background", "opaque") if fields.get("background") != "auto" else "opaque",
        "output_format": "png",
        "quality": "medium" if quality == "auto" else quality,
        "size": "1024x1024" if size == "auto" else size,
        "usage": {
            "input_tokens": text_tokens + image_tokens,
            "input_tokens_details": {"image_tokens": image_tokens, "text_tokens": text_tokens},
            "output_tokens": per_image * count,
            "total_tokens": text_tokens + image_tokens + per_image * count,
        },
    }
    return json_response(body)


def openai_entry(path):
    return {"provider": "openai", "method": request.method, "path": path, "prompt": None, "authorized": authorized()}


def fill_entry(entry, fields):
    for key in ("prompt", "model", "n", "size", "quality", "output_format", "user"):
        entry[key] = fields.get(key)


@app.post("/openai/v1/images/generations")
def openai_generations():
    entry = openai_entry(request.path)
    body = request.get_json(silent=True)
    fields = body if isinstance(body, dict) else {}
    fill_entry(entry, fields)
    if not entry["authorized"]:
        return record(entry, openai_error(401))
    if not isinstance(body, dict):
        return record(entry, openai_error(400, "We could not parse the JSON body of your request."))
    return record(entry, openai_generate(fields))


@app.post("/openai/v1/images/edits")
def openai_edits():
    entry = openai_entry(request.path)
    files = request.files.getlist("image[]") + request.files.getlist("image")
    images = [(file.filename, file.mimetype, file.read()) for file in files]
    fields = {key: request.form.get(key) for key in request.form.keys()}
    if "n" in fields:
        try:
            fields["n"] = int(fields["n"])
        except ValueError:
            pass
    fields["_images"] = len(images)
    fill_entry(entry, fields)
    entry["images"] = len(images)
    entry["image_content_types"] = [content_type for _, content_type, _ in images]
    entry["image_filenames"] = [name for name, _, _ in images]
    if not entry["authorized"]:
        return record(entry, openai_error(401))
    if not request.content_type or not request.content_type.startswith("multipart/form-data"):
        return record(entry, openai_error(400, "Expected multipart/form-data."))
    if not images:
        return record(entry, openai_error(400, "Missing required parameter: 'image'.", param="image"))
    if len(images) > 16:
        return record(entry, openai_error(400, "Invalid 'image': at most 16 images.", param="image"))
    for name, content_type, data in images:
        if content_type not in IMAGE_TYPES or not data:
            return record(entry, openai_error(400, f"Invalid image file {name!r} ({content_type}).", param="image"))
        if len(data) >= 50 * 1024 * 1024:
            return record(entry, openai_error(400, f"Image {name!r} is 50 MB or more.", param="image"))
    return record(entry, openai_generate(fields))


def openai_generate(fields):
    step = state.take_step(fields.get("prompt"), "openai", "openai")
    if step.get("delay"):
        time.sleep(float(step["delay"]))
    fault = openai_step_response(step)
    if fault is not None:
        return fault
    problem = openai_validate({key: value for key, value in fields.items() if not key.startswith("_")})
    if problem is not None:
        message, param = problem
        return openai_error(400, message, "invalid_value", param=param)
    return openai_answer(fields, step)


# ---------------------------------------------------------------- Evolink

def evolink_error(status, message=None, code=None, error_type=None, headers=None):
    default_type, default_message = EVOLINK_HTTP_ERRORS.get(status, ("internal_server_error", "Error."))
    body = {"error": {"code": code if code is not None else status, "message": message or default_message, "type": error_type or default_type}}
    return json_response(body, status, headers)


def evolink_step_response(step):
    status = step.get("status")
    if status is not None and status >= 300:
        headers = retry_headers(step)
        if "body" in step:
            return Response(step["body"], status=status, content_type=step.get("content_type", "text/plain"), headers=headers)
        return evolink_error(status, step.get("message"), step.get("code"), step.get("type"), headers)
    kind = malformed_kind(step)
    if kind == "non_json":
        return Response("<html><body>upstream connect error</body></html>", status=200, content_type="text/html")
    if kind == "truncated":
        return Response('{"id": "task-unified-', status=200, mimetype="application/json")
    return None


def evolink_validate(body):
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model is required"
    if not isinstance(body.get("prompt"), str) or not body["prompt"]:
        return "prompt is required"
    n = body.get("n", 1)
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 10:
        return "n must be an integer between 1 and 10"
    size = body.get("size", "auto")
    if not isinstance(size, str) or not (size == "auto" or re.fullmatch(r"\d+:\d+", size) or re.fullmatch(r"\d+x\d+", size)):
        return f"invalid size {size!r}"
    if "quality" in body and body["quality"] not in ("low", "medium", "high"):
        return f"invalid quality {body['quality']!r}"
    if "resolution" in body and body["resolution"] not in ("1K", "2K", "4K"):
        return f"invalid resolution {body['resolution']!r}"
    urls = body.get("image_urls")
    if urls is not None:
        if not isinstance(urls, list) or not 1 <= len(urls) <= 16:
            return "image_urls must hold 1 to 16 URLs"
        if not all(isinstance(url, str) and re.match(r"https?://", url) for url in urls):
            return "image_urls must be http(s) URLs"
    callback = body.get("callback_url")
    if callback is not None:
        if not isinstance(callback, str) or len(callback) > 2048 or not re.match(r"https?://", callback):
            return "callback_url must be a URL of at most 2048 characters"
    return None


def task_body(task):
    body = {
        "id": task["id"],
        "object": "image.generation.task",
        "status": task["status"],
        "progress": task["progress"],
        "created": task["created"],
        "model": task["model"],
        "task_info": {"can_cancel": task["status"] == "pending", "estimated_time": 30},
        "type": "image",
        "usage": {"billing_rule": "per_call", "credits_reserved": 10 * task["n"], "user_group": "default"},
    }
    if task["status"] == "completed":
        body["results"] = [f"{BASE_URL}/results/{task['id']}/{index}.png" for index in range(task["n"])]
    if task["status"] == "failed":
        body["error"] = {"code": task["error_code"], "message": task["error_message"]}
    return body


def finish_locked(task):
    """Ends the task (under state.lock); returns True if it was still running."""
    if task["status"] in ("completed", "failed"):
        return False
    outcome = task["script"].get("outcome", "completed")
    if isinstance(outcome, dict) and "failed" in outcome:
        task["status"] = "failed"
        task["error_code"] = outcome["failed"]
        task["error_message"] = outcome.get("message") or EVOLINK_TASK_ERRORS.get(outcome["failed"], "The task failed.")
    else:
        task["status"] = "completed"
        task["progress"] = 100
    return True


def finish_and_call_back(task_id):
    with state.lock:
        task = state.tasks[task_id]
        ended = finish_locked(task)
        mode = task["callback_mode"]
    if ended and mode in ("normal", "duplicate"):
        start_callbacks(task_id, 2 if mode == "duplicate" else 1)


def start_callbacks(task_id, deliveries):
    threading.Thread(target=deliver_callbacks, args=(task_id, deliveries), daemon=True).start()


def deliver_callbacks(task_id, deliveries):
    with state.lock:
        task = state.tasks[task_id]
        url = task["callback_url"]
        body = json.dumps(task_body(task)).encode()
        delays = [0] + list(task["script"].get("callback_retry_delays", [1, 2, 4]))
    for delivery in range(1, deliveries + 1):
        for attempt, delay in enumerate(delays, start=1):
            time.sleep(float(delay))
            outcome = {"delivery": delivery, "attempt": attempt}
            try:
                call = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json", "User-Agent": "evolink-callback"})
                with urllib.request.urlopen(call, timeout=10) as answer:
                    outcome["status"] = answer.status
            except urllib.error.HTTPError as problem:
                outcome["status"] = problem.code
            except Exception as problem:  # noqa: BLE001 - any failure is recorded and retried
                outcome["error"] = str(problem)
            with state.lock:
                task["callbacks"].append(outcome)
            if 200 <= outcome.get("status", 0) < 300:
                break


def evolink_entry(path):
    return {"provider": "evolink", "method": request.method, "path": path, "prompt": None, "authorized": authorized()}


@app.post("/evolink/v1/images/generations")
def evolink_submit():
    entry = evolink_entry(request.path)
    body = request.get_json(silent=True)
    fields = body if isinstance(body, dict) else {}
    fill_entry(entry, fields)
    entry["image_urls"] = fields.get("image_urls")
    entry["callback_url"] = fields.get("callback_url")
    if not entry["authorized"]:
        return record(entry, evolink_error(401))
    if not isinstance(body, dict):
        return record(entry, evolink_error(400, "The body must be a JSON object."))
    prompt = fields.get("prompt")
    step = state.take_step(prompt, "evolink", "submit")
    if step.get("delay"):
        time.sleep(float(step["delay"]))
    fault = evolink_step_response(step)
    if fault is not None:
        return record(entry, fault)
    problem = evolink_validate(fields)
    if problem is not None:
        return record(entry, evolink_error(400, problem, "invalid_parameters"))

    script = state.evolink_script(prompt)
    callback_url = fields.get("callback_url")
    mode = script.get("callback", "normal") if callback_url else "none"
    task = {
        "id": "task-unified-" + uuid.uuid4().hex,
        "prompt": prompt,
        "model": fields["model"],
        "n": fields.get("n", 1),
        "created": int(time.time()),
        "status": "pending",
        "progress": 0,
        "ok_polls": 0,
        "polls": 0,
        "callback_url": callback_url,
        "callback_mode": mode,
        "callbacks": [],
        "script": script,
        "error_code": None,
        "error_message": None,
    }
    with state.lock:
        state.tasks[task["id"]] = task
        state.submit_counts[prompt] = state.submit_counts.get(prompt, 0) + 1
        answer = task_body(task)
        if mode == "before_first_poll":
            finish_locked(task)
    entry["task_id"] = task["id"]
    if malformed_kind(step) == "no_id":
        del answer["id"]
    response = json_response(answer)
    if mode == "before_first_poll":
        response.call_on_close(lambda: start_callbacks(task["id"], 1))
    complete_after = script.get("complete_after", 0.5 if mode in ("normal", "duplicate") else None)
    if complete_after is not None:
        timer = threading.Timer(float(complete_after), finish_and_call_back, args=(task["id"],))
        timer.daemon = True
        timer.start()
    return record(entry, response)


@app.get("/evolink/v1/tasks/<task_id>")
def evolink_task(task_id):
    entry = evolink_entry(request.path)
    entry["task_id"] = task_id
    with state.lock:
        task = state.tasks.get(task_id)
        if task is not None:
            entry["prompt"] = task["prompt"]
            task["polls"] += 1
    if not entry["authorized"]:
        return record(entry, evolink_error(401))
    if task is None:
        return record(entry, evolink_error(404, f"Task {task_id} not found.", "task_not_found"))
    step = state.take_step(task["prompt"], "evolink", "poll")
    if step.get("delay"):
        time.sleep(float(step["delay"]))
    fault = evolink_step_response(step)
    if fault is not None:
        return record(entry, fault)
    ended = False
    with state.lock:
        if task["status"] not in ("completed", "failed"):
            task["ok_polls"] += 1
            until_done = int(task["script"].get("polls_until_done", 2))
            if task["ok_polls"] > until_done:
                ended = finish_locked(task)
            elif task["ok_polls"] == 1 and until_done >= 2:
                task["status"], task["progress"] = "pending", 0
            else:
                task["status"], task["progress"] = "processing", int(100 * task["ok_polls"] / (until_done + 1))
        answer = task_body(task)
        mode = task["callback_mode"]
    if ended and mode in ("normal", "duplicate"):
        start_callbacks(task_id, 2 if mode == "duplicate" else 1)
    return record(entry, json_response(answer))


@app.get("/results/<task_id>/<int:index>.png")
def result(task_id, index):
    entry = {"provider": "results", "method": "GET", "path": request.path, "prompt": None, "task_id": task_id, "authorized": True}
    with state.lock:
        task = state.tasks.get(task_id)
        if task is not None:
            entry["prompt"] = task["prompt"]
    if task is None or task["status"] != "completed" or index >= task["n"]:
        return record(entry, Response("Not Found", status=404, content_type="text/plain"))
    mode = str(task["script"].get("result", "ok"))
    if mode == "404":
        return record(entry, Response("<Error><Code>NoSuchKey</Code></Error>", status=404, content_type="application/xml"))
    if mode == "expired":
        return record(entry, Response("<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>", status=410, content_type="application/xml"))
    return record(entry, Response(image_for(task["prompt"], index), status=200, content_type="image/png"))


@app.errorhandler(404)
def not_found(_):
    entry = {"provider": None, "method": request.method, "path": request.path, "prompt": None, "authorized": authorized()}
    return record(entry, json_response({"error": {"message": f"Unknown route {request.method} {request.path} (OpenAI is under /openai, Evolink under /evolink).", "type": "invalid_request_error", "code": 404}}, 404))


# ---------------------------------------------------------------- commands

def public_task(task):
    return {
        "id": task["id"],
        "prompt": task["prompt"],
        "status": task["status"],
        "progress": task["progress"],
        "polls": task["polls"],
        "submit_count": state.submit_counts.get(task["prompt"], 0),
        "callback_url": task["callback_url"],
        "callbacks": list(task["callbacks"]),
    }


def main() -> int:
    global BASE_URL
    # Request logs would fill the pipe of a parent that does not read stderr.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]
    BASE_URL = f"http://{host}:{port}"

    def answer(value):
        sys.stdout.write(json.dumps(value) + "\n")
        sys.stdout.flush()

    answer({"base_url": BASE_URL, "api_key": API_KEY, "openai_base_url": BASE_URL + "/openai", "evolink_base_url": BASE_URL + "/evolink"})

    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            command = json.loads(line)
            name = command.get("command")
            prompt = command.get("prompt")
            if name == "script":
                if not isinstance(prompt, str):
                    raise ValueError("script needs a prompt")
                with state.lock:
                    script = {}
                    if "openai" in command:
                        steps = command["openai"]
                        if not isinstance(steps, list) or not all(isinstance(step, dict) for step in steps):
                            raise ValueError("openai must be a list of step objects")
                        script["openai"] = {"openai": steps}
                    if "evolink" in command:
                        evolink = command["evolink"]
                        if not isinstance(evolink, dict):
                            raise ValueError("evolink must be an object")
                        script["evolink"] = dict(evolink)
                    state.scripts[prompt] = script
                answer({"ok": True})
            elif name == "requests":
                with state.lock:
                    answer([entry for entry in state.requests if prompt is None or entry.get("prompt") == prompt])
            elif name == "tasks":
                with state.lock:
                    answer([public_task(task) for task in state.tasks.values() if prompt is None or task["prompt"] == prompt])
            else:
                raise ValueError(f"unknown command {name!r}")
        except (ValueError, KeyError, TypeError, AttributeError) as problem:
            answer({"ok": False, "error": str(problem)})
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

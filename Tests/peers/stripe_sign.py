"""Signs and verifies Stripe webhook deliveries with the official `stripe` SDK, in batches.

Python and the SDK take a while to start, so each run handles a whole list.

    stripe_sign.py sign     stdin:  [{"payload_b64": …, "secrets": ["whsec_…", …], "timestamp": UNIX}, …]
                                    ("secret": "whsec_…" is accepted for one secret; "payload" for a
                                    UTF-8 text payload instead of "payload_b64")
                            stdout: ["t=…,v1=…[,v1=…]", …], one header per item. With several secrets,
                                    one header carrying one v1 per secret, in order, as Stripe sends
                                    while a secret is being rolled. Each v1 is made by
                                    stripe.WebhookSignature.generate_signature_header.

    stripe_sign.py verify   stdin:  [{"payload_b64": …, "header": "t=…", "secret": "whsec_…", "tolerance"?: 300}, …]
                            stdout: [{"ok": true, "id": "evt_…", "type": "…"} | {"ok": false, "error": "…"}, …],
                                    by stripe.Webhook.construct_event (which checks the signature and
                                    refuses timestamps older than the tolerance).
"""

import base64
import json
import sys

import stripe


def payload_of(item):
    if "payload_b64" in item:
        return base64.b64decode(item["payload_b64"]).decode("utf-8")
    return item["payload"]


def sign(item):
    payload = payload_of(item)
    secrets = item.get("secrets")
    if secrets is None:
        secrets = [item["secret"]]
    if not secrets:
        raise ValueError("no secret to sign with")
    timestamp = int(item["timestamp"])
    timestamp_part = None
    signatures = []
    for secret in secrets:
        header = stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=timestamp)
        parts = header.split(",")
        timestamp_part = parts[0]
        signatures += [part for part in parts[1:] if part.startswith("v1=")]
    return ",".join([timestamp_part] + signatures)


def verify(item):
    payload = payload_of(item)
    try:
        event = stripe.Webhook.construct_event(payload, item["header"], item["secret"], tolerance=int(item.get("tolerance", 300)))
    except stripe.SignatureVerificationError as problem:
        return {"ok": False, "error": str(problem)}
    except ValueError as problem:  # the payload is not JSON
        return {"ok": False, "error": f"invalid payload: {problem}"}
    data = event.to_dict()
    return {"ok": True, "id": data.get("id"), "type": data.get("type")}


def main() -> int:
    if len(sys.argv) != 2 or sys.argv[1] not in ("sign", "verify"):
        sys.stderr.write("usage: stripe_sign.py sign|verify < items.json\n")
        return 2
    items = json.load(sys.stdin)
    if not isinstance(items, list):
        sys.stderr.write("stdin must hold a JSON list\n")
        return 2
    work = sign if sys.argv[1] == "sign" else verify
    json.dump([work(item) for item in items], sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

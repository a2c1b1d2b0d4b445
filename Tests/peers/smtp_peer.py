"""A real SMTP peer for Easel's tests: aiosmtpd on 127.0.0.1.

Makes a throwaway certificate authority and a server certificate for "localhost" (and no
IP address) signed by it, then starts five listeners on free loopback ports:

- "starttls": STARTTLS required before MAIL, AUTH PLAIN and LOGIN offered only after STARTTLS;
- "starttls_login": the same, but offering AUTH LOGIN only;
- "tls": TLS from the first byte (port 465 style), with the same AUTH;
- "plain": no TLS and no AUTH (STARTTLS is not offered);
- "silent": a socket that accepts connections and never says anything, for timeout tests;

and names an "unused" port, free when the peer started, where nothing listens.

Every listener with a handler refuses any recipient at REJECTED_DOMAIN with a 550 and records
each delivered message, parsed by Python's `email` package, so tests compare what a real mail
reader sees. Prints ONE JSON line

    {"host", "starttls_port", "starttls_login_port", "tls_port", "plain_port", "silent_port",
     "unused_port", "ca_file", "username", "password", "rejected_domain"}

then answers one command per stdin line with one JSON line on stdout:

    messages  -> a JSON list of every message delivered so far (oldest first)

Messages are kept, not reset, so tests running in parallel each find their own (by
Message-ID). The peer exits when its stdin closes, so it dies with the test process.
"""

import datetime
import email
import email.policy
import json
import os
import socket
import ssl
import sys
import tempfile
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

USERNAME = "easel-test"
PASSWORD = "correct horse battery staple"
REJECTED_DOMAIN = "rejected.invalid"


def make_certificates(folder):
    """A CA certificate (what tests trust) and a server certificate it signed; returns paths."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Easel test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            # A name only: NIOSSL accepts a certificate for the connected IP address whatever
            # name it was asked to check, so an IP entry would hide name mismatches.
            x509.SubjectAlternativeName([x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    ca_path = os.path.join(folder, "ca.pem")
    cert_path = os.path.join(folder, "server.pem")
    key_path = os.path.join(folder, "server-key.pem")
    with open(ca_path, "wb") as f:
        f.write(ca_cert.public_bytes(serialization.Encoding.PEM))
    with open(cert_path, "wb") as f:
        f.write(server_cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(
            server_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return ca_path, cert_path, key_path


class Mailbox:
    """Everything delivered to any listener, parsed as a mail reader would."""

    def __init__(self):
        self.lock = threading.Lock()
        self.messages = []

    def add(self, record):
        with self.lock:
            self.messages.append(record)

    def all(self):
        with self.lock:
            return list(self.messages)


def parse(raw):
    message = email.message_from_bytes(raw, policy=email.policy.default)
    parts = []
    for part in message.walk():
        if part.is_multipart():
            continue
        content = part.get_content()
        if isinstance(content, bytes):
            content = content.decode("utf-8", "replace")
        parts.append(
            {
                "content_type": part.get_content_type(),
                "charset": part.get_content_charset(),
                "transfer_encoding": part.get("Content-Transfer-Encoding"),
                # The wire has CRLF; the texts Easel sends use "\n".
                "content": content.replace("\r\n", "\n"),
            }
        )
    header = lambda name: str(message[name]) if message[name] is not None else None  # noqa: E731
    return {
        "subject": header("Subject"),
        "from": header("From"),
        "to": header("To"),
        "reply_to": header("Reply-To"),
        "message_id": header("Message-ID"),
        "date": header("Date"),
        "content_type": message.get_content_type(),
        "header_names": [name for name, _ in message.raw_items()],
        "defects": [type(defect).__name__ for defect in message.defects],
        "parts": parts,
    }


class Handler:
    def __init__(self, server_name, mailbox):
        self.server_name = server_name
        self.mailbox = mailbox

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower().endswith("@" + REJECTED_DOMAIN):
            return "550 5.1.1 <%s>: Recipient address rejected: no such user" % address
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        record = {
            "server": self.server_name,
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "auth_login": session.auth_data.decode() if isinstance(session.auth_data, bytes) else None,
            "auth_mechanism": getattr(session, "easel_auth_mechanism", None),
            "data": raw.decode("utf-8", "replace"),
            "longest_line": max((len(line) for line in raw.split(b"\r\n")), default=0),
            "parsed": parse(raw),
        }
        self.mailbox.add(record)
        return "250 2.0.0 OK: queued"


def authenticator(server, session, envelope, mechanism, auth_data):
    if not isinstance(auth_data, LoginPassword):
        return AuthResult(success=False, handled=False)
    if auth_data.login == USERNAME.encode() and auth_data.password == PASSWORD.encode():
        # Kept on the session so the delivered message records how the client logged in.
        session.easel_auth_mechanism = mechanism
        return AuthResult(success=True, auth_data=auth_data.login)
    return AuthResult(success=False, handled=False)


class FreePortController(Controller):
    """aiosmtpd's Controller on port 0: it pokes its own listener once started, so tell it the
    port the system chose first."""

    def _trigger_server(self):
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


def main() -> int:
    folder = tempfile.mkdtemp(prefix="easel-smtp-peer-")
    ca_path, cert_path, key_path = make_certificates(folder)
    tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_context.load_cert_chain(cert_path, key_path)

    mailbox = Mailbox()
    common = {"hostname": "127.0.0.1", "port": 0, "server_hostname": "peer.easel.test"}
    controllers = [
        FreePortController(
            Handler("starttls", mailbox),
            tls_context=tls_context,
            require_starttls=True,
            authenticator=authenticator,
            auth_require_tls=True,
            **common,
        ),
        FreePortController(
            Handler("starttls_login", mailbox),
            tls_context=tls_context,
            require_starttls=True,
            authenticator=authenticator,
            auth_require_tls=True,
            auth_exclude_mechanism=["PLAIN"],
            **common,
        ),
        FreePortController(
            Handler("tls", mailbox),
            ssl_context=tls_context,
            authenticator=authenticator,
            auth_require_tls=False,
            **common,
        ),
        FreePortController(Handler("plain", mailbox), **common),
    ]
    for controller in controllers:
        controller.start()

    # Listening without ever accepting: the kernel completes the TCP handshake, then nothing.
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    # Bound and released: nothing listens there (unless another program takes it meanwhile).
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        unused_port = probe.getsockname()[1]

    def answer(value):
        sys.stdout.write(json.dumps(value) + "\n")
        sys.stdout.flush()

    answer(
        {
            "host": "127.0.0.1",
            "starttls_port": controllers[0].port,
            "starttls_login_port": controllers[1].port,
            "tls_port": controllers[2].port,
            "plain_port": controllers[3].port,
            "silent_port": silent.getsockname()[1],
            "unused_port": unused_port,
            "ca_file": ca_path,
            "username": USERNAME,
            "password": PASSWORD,
            "rejected_domain": REJECTED_DOMAIN,
        }
    )

    for line in sys.stdin:
        command = line.strip()
        if command == "messages":
            answer(mailbox.all())
        elif command:
            answer({"error": f"unknown command {command!r}"})

    for controller in controllers:
        controller.stop()
    silent.close()
    for path in (ca_path, cert_path, key_path):
        os.remove(path)
    os.rmdir(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())

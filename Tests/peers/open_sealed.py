"""Opens an object Easel stored encrypted, written from docs/encryption.md alone (not from the
Swift code), so the test that runs it proves the documented format, and benchmarks can check
archives in storage.

Usage: open_sealed.py MASTER_KEY_FILE DATABASE OBJECT_FILE BLOB_KEY OUTPUT_FILE
Exit status 0 and OUTPUT_FILE holds the plaintext; 1 with a reason on stderr otherwise.
"""
import base64
import os
import sqlite3
import sys

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

CHUNK, TAG, HEADER = 64 * 1024, 16, 40


def fail(reason):
    print(reason, file=sys.stderr)
    sys.exit(1)


def master_keys(path):
    keys = {}
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if line and not line.startswith("#"):
            key_id, value = line.split()
            keys[key_id] = base64.b64decode(value)
    return keys


def data_key(database, key_id, masters):
    row = sqlite3.connect(database).execute("SELECT user_id, master_key_id, wrapped FROM data_key WHERE id = ?", (key_id,)).fetchone()
    if row is None:
        fail(f"data key {key_id} does not exist (destroyed)")
    owner, master_id, wrapped = row
    key = AESGCM(masters[master_id]).decrypt(wrapped[:12], wrapped[12:], f"easel data key v1 u{owner}".encode())
    return owner, key


def main():
    master_file, database, object_file, blob_key, output = sys.argv[1:6]
    sealed = open(object_file, "rb")
    header = sealed.read(HEADER)
    if header[:8] != b"EASELENC" or header[8] != 1:
        fail("no Easel header")
    prefix, key_id, salt = header[9:16], int.from_bytes(header[16:24], "big"), header[24:40]
    owner, key = data_key(database, key_id, master_keys(master_file))
    if f"/u{owner}/" not in f"/{blob_key}":
        fail("sealed with another person's key")
    object_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"easel blob v1 " + blob_key.encode()).derive(key)
    aad, cipher = header + blob_key.encode(), AESGCM(object_key)
    # Chunk by chunk, so archives of any size open in constant memory.
    body_size = os.path.getsize(object_file) - HEADER
    count = max(1, -(-body_size // (CHUNK + TAG)))
    with open(output, "wb") as out:
        for index in range(count):
            chunk = sealed.read(CHUNK + TAG)
            nonce = prefix + index.to_bytes(4, "big") + bytes([1 if index == count - 1 else 0])
            out.write(cipher.decrypt(nonce, chunk, aad))


if __name__ == "__main__":
    main()

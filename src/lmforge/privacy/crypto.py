"""Encryption at rest: AES-256-GCM with a user's key file, for data files (`FILE.enc`) and folders
(model folders, checkpoints: `FOLDER.enc/`, every file encrypted on its own).

Authenticated encryption, so a modified file is refused rather than read as subtly different
training data. The header carries a key id (an HMAC of a constant under the key, which reveals
nothing about a random 256-bit key) so a wrong key is told apart from a tampered file; the header
is authenticated too. The whole file is one GCM message: data files are read whole anyway. In a
folder, each file's relative path is authenticated with it, so files cannot be swapped unnoticed.

Layout: MAGIC | key id (8 bytes) | nonce (12 bytes) | ciphertext + 16-byte tag.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path

from lmforge.atomic import write_dir, write_file
from lmforge.errors import LmforgeError

MAGIC = b"LMFORGE-AESGCM-1\n"
SUFFIX = ".enc"
_KEY_BYTES, _ID_BYTES, _NONCE_BYTES = 32, 8, 12


def new_key_file(path: Path) -> None:
    """Write a fresh random key (base64, one line), readable by the owner only."""
    path = Path(path)
    if path.exists():
        raise LmforgeError(f"{path} already exists; refusing to replace a key (files encrypted with it would be lost)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(base64.urlsafe_b64encode(os.urandom(_KEY_BYTES)).decode() + "\n")


def read_key(path: str | Path) -> bytes:
    """The 32-byte key in a key file written by `new_key_file`."""
    path = Path(path)
    try:
        key = base64.urlsafe_b64decode(path.read_text().strip())
    except FileNotFoundError:
        raise LmforgeError(f"key file not found: {path}") from None
    except (ValueError, OSError) as exc:
        raise LmforgeError(f"{path}: not a key file ({exc})") from None
    if len(key) != _KEY_BYTES:
        raise LmforgeError(f"{path}: not a key file (expected {_KEY_BYTES} bytes of base64, got {len(key)})")
    return key


def encrypt(data: bytes, key: bytes, context: bytes = b"") -> bytes:
    """`data` encrypted and authenticated together with `context` (which must match to decrypt)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    header = MAGIC + _key_id(key)
    nonce = os.urandom(_NONCE_BYTES)  # random 96-bit nonces: safe far beyond any number of files here
    return header + nonce + AESGCM(key).encrypt(nonce, data, header + context)


def decrypt(blob: bytes, key: bytes, name: str | Path, context: bytes = b"") -> bytes:
    """The plaintext, or an error naming `name` when the file is not ours, the key is another, or
    any byte (or the context) was changed."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if not blob.startswith(MAGIC):
        raise LmforgeError(f"{name}: not a file encrypted by `lmforge encrypt` (unknown header)")
    split = len(MAGIC) + _ID_BYTES
    header, nonce, body = blob[:split], blob[split : split + _NONCE_BYTES], blob[split + _NONCE_BYTES :]
    if header[len(MAGIC) :] != _key_id(key):
        raise LmforgeError(f"{name}: encrypted with a different key than the one given")
    try:
        return AESGCM(key).decrypt(nonce, body, header + context)
    except InvalidTag:
        raise LmforgeError(f"{name}: integrity check failed: the encrypted file was modified or is corrupt; "
                           "refusing to read it") from None


def encrypt_file(src: Path, dst: Path, key_file: Path) -> None:
    """`src` encrypted into `dst` (atomically)."""
    blob = encrypt(Path(src).read_bytes(), read_key(key_file))
    write_file(Path(dst), lambda tmp: tmp.write_bytes(blob))


def decrypt_file(src: Path, key_file: str | Path) -> bytes:
    """The plaintext of the encrypted file `src`."""
    return decrypt(Path(src).read_bytes(), read_key(key_file), src)


def encrypt_folder(src: Path, dst: Path, key_file: Path) -> int:
    """Every file under `src` encrypted to the same relative path + .enc under `dst`; returns the count."""
    key = read_key(key_file)
    files = sorted(p for p in Path(src).rglob("*") if p.is_file())

    def fill(tmp: Path) -> None:
        for path in files:
            relative = path.relative_to(src).as_posix()
            target = tmp / f"{relative}{SUFFIX}"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(encrypt(path.read_bytes(), key, relative.encode()))

    write_dir(Path(dst), fill)
    return len(files)


def decrypt_folder(src: Path, dst: Path, key_file: str | Path) -> int:
    """The inverse of `encrypt_folder`; refuses the whole folder if any file was modified or moved."""
    key = read_key(key_file)
    files = sorted(p for p in Path(src).rglob(f"*{SUFFIX}") if p.is_file())
    if not files:
        raise LmforgeError(f"{src}: no {SUFFIX} files to decrypt")
    plain = {}
    for path in files:  # everything is checked before anything is written
        relative = path.relative_to(src).as_posix()[: -len(SUFFIX)]
        plain[relative] = decrypt(path.read_bytes(), key, path, relative.encode())

    def fill(tmp: Path) -> None:
        for relative, data in plain.items():
            (tmp / relative).parent.mkdir(parents=True, exist_ok=True)
            (tmp / relative).write_bytes(data)

    write_dir(Path(dst), fill)
    return len(files)


def _key_id(key: bytes) -> bytes:
    return hmac.new(key, b"lmforge key id", hashlib.sha256).digest()[:_ID_BYTES]

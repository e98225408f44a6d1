"""`lmforge encrypt|decrypt FILE --key-file K`: AES-256-GCM encryption at rest of data files."""

from __future__ import annotations

from pathlib import Path

from lmforge.atomic import write_file
from lmforge.errors import LmforgeError
from lmforge.log import logger
from lmforge.privacy.crypto import SUFFIX, decrypt_file, encrypt_file, new_key_file


def encrypt(file: str, key_file: str, out: str | None = None) -> Path:
    """`lmforge encrypt FILE --key-file K`: FILE.enc beside FILE; a missing key file is created."""
    dst = Path(out or f"{file}{SUFFIX}")
    if not Path(key_file).exists():
        new_key_file(Path(key_file))
        logger.warning(f"created a new key in {key_file}: keep it safe, without it {dst} cannot be read")
    encrypt_file(Path(file), dst, Path(key_file))
    logger.info(f"encrypted {file} -> {dst}; the plaintext {file} is left in place (delete it yourself)")
    return dst


def decrypt(file: str, key_file: str, out: str | None = None) -> Path:
    """`lmforge decrypt FILE.enc --key-file K`: the plaintext beside it (FILE without .enc)."""
    if out is None and not file.endswith(SUFFIX):
        raise LmforgeError(f"{file} does not end in {SUFFIX}: give --out")
    dst = Path(out or file[: -len(SUFFIX)])
    plain = decrypt_file(Path(file), key_file)
    write_file(dst, lambda tmp: tmp.write_bytes(plain))
    logger.info(f"decrypted {file} -> {dst}")
    return dst

"""`lmforge decrypt FILE.enc --key-file K`: the plaintext of a file or folder `lmforge encrypt` wrote."""

from __future__ import annotations

from pathlib import Path

from lmforge.atomic import write_file
from lmforge.errors import LmforgeError
from lmforge.log import logger
from lmforge.outputs import Output, check_outputs
from lmforge.privacy.crypto import SUFFIX, decrypt_file, decrypt_folder


def run(file: str, key_file: str, out: str | None = None, overwrite: bool = False) -> Path:
    """`lmforge decrypt FILE.enc --key-file K`: the plaintext beside it (FILE without .enc); a
    FOLDER.enc/ is decrypted whole or, if any file in it was modified, not at all."""
    file = file.rstrip("/")
    if out is None and not file.endswith(SUFFIX):
        raise LmforgeError(f"{file} does not end in {SUFFIX}: give --out")
    dst = Path(out or file[: -len(SUFFIX)])
    if not Path(file).exists():
        raise LmforgeError(f"file not found: {file}")
    check_outputs([Output(dst, "--out", "folder" if Path(file).is_dir() else "file")], [file, key_file], overwrite)
    if Path(file).is_dir():
        decrypt_folder(Path(file), dst, key_file)
    else:
        plain = decrypt_file(Path(file), key_file)
        write_file(dst, lambda tmp: tmp.write_bytes(plain))
    logger.info(f"decrypted {file} -> {dst}")
    return dst

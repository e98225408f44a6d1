"""`lmforge encrypt|decrypt FILE|FOLDER --key-file K`: AES-256-GCM encryption at rest of data files,
model folders and checkpoints."""

from __future__ import annotations

from pathlib import Path

from lmforge.atomic import write_file
from lmforge.errors import LmforgeError
from lmforge.log import logger
from lmforge.outputs import Output, check_outputs
from lmforge.privacy.crypto import (SUFFIX, decrypt_file, decrypt_folder, encrypt_file, encrypt_folder,
                                    new_key_file)


def encrypt(file: str, key_file: str, out: str | None = None, overwrite: bool = False) -> Path:
    """`lmforge encrypt FILE --key-file K`: FILE.enc beside FILE (a folder: FOLDER.enc/ of encrypted
    files); a missing key file is created. The plaintext is never replaced: `--out FILE` is refused."""
    dst = Path(out or f"{file.rstrip('/')}{SUFFIX}")
    if not Path(file).exists():
        raise LmforgeError(f"file not found: {file}")
    new_key = not Path(key_file).exists()
    outputs = [Output(dst, "--out", "folder" if Path(file).is_dir() else "file")]
    outputs += [Output(key_file, "--key-file", "file")] if new_key else []
    check_outputs(outputs, [file] if new_key else [file, key_file], overwrite)
    if new_key:
        new_key_file(Path(key_file))
        logger.warning(f"created a new key in {key_file}: keep it safe, without it {dst} cannot be read")
    if Path(file).is_dir():
        encrypt_folder(Path(file), dst, Path(key_file))
    else:
        encrypt_file(Path(file), dst, Path(key_file))
    logger.info(f"encrypted {file} -> {dst}; the plaintext {file} is left in place (delete it yourself)")
    return dst


def decrypt(file: str, key_file: str, out: str | None = None, overwrite: bool = False) -> Path:
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

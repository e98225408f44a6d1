"""`lmforge encrypt FILE|FOLDER --key-file K`: AES-256-GCM encryption at rest of data files, model
folders and checkpoints (`lmforge decrypt` reverses it)."""

from __future__ import annotations

from pathlib import Path

from lmforge.errors import LmforgeError
from lmforge.log import logger
from lmforge.outputs import Output, check_outputs
from lmforge.privacy.crypto import SUFFIX, encrypt_file, encrypt_folder, new_key_file


def run(file: str, key_file: str, out: str | None = None, overwrite: bool = False) -> Path:
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

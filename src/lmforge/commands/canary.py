"""`lmforge canary FILE --out FILE --canaries C.json`: plant random secrets for `lmforge audit`."""

from __future__ import annotations

from pathlib import Path

from lmforge.log import logger
from lmforge.outputs import Output, check_outputs
from lmforge.privacy.canary import DEFAULT_PROMPT, DEFAULT_TEMPLATE, Canaries, insert_canaries, make_canaries


def run(input: str, out: str, canaries: str, count: int = 10, repeat: int = 1, digits: int = 6,
           template: str = DEFAULT_TEMPLATE, prompt: str = DEFAULT_PROMPT, encoding: str = "utf-8",
           seed: int = 0, overwrite: bool = False) -> Canaries:
    """Plant `count` random secrets `repeat` times each into a copy of `input`; save them to `canaries`."""
    check_outputs([Output(out, "--out", "file"), Output(canaries, "--canaries", "file")], [input], overwrite)
    made = make_canaries(count, repeat, digits, template, prompt, seed)
    rows = insert_canaries(Path(input), Path(out), made, encoding, seed)
    made.save(Path(canaries))
    logger.info(f"planted {count} canaries x{repeat} -> {out} ({rows} rows); secrets in {canaries} (keep it private)")
    return made

"""`lmforge redact INPUT --out FILE`: replace personal data in a data file with placeholders."""

from __future__ import annotations

import json
from pathlib import Path

from lmforge.atomic import write_text
from lmforge.commands.args import comma_list
from lmforge.log import logger
from lmforge.outputs import Output, check_outputs
from lmforge.privacy.pii import redact_file


def run(input: str, out: str, report: str | None = None, columns: str | None = None,
        encoding: str = "utf-8", overwrite: bool = False) -> dict:
    """Redact `input` into `out` and return the report; with `report`, also save it as JSON.
    Both output paths are checked before either is written."""
    names = None if columns is None else comma_list(columns, "--columns", "text,answer")
    outputs = [Output(out, "--out", "file")] + ([Output(report, "--report", "file")] if report is not None else [])
    check_outputs(outputs, [input], overwrite)
    result = redact_file(Path(input), Path(out), names, encoding)
    if report is not None:
        write_text(Path(report), json.dumps(result, ensure_ascii=False, indent=2) + "\n")
    logger.info(_summary(result, out))
    return result


def _summary(result: dict, out: str) -> str:
    """One line: how much was found, in how many rows, by kind."""
    found = {kind: n for kind, n in result["counts"].items() if n}
    kinds = ", ".join(f"{kind} {n}" for kind, n in found.items()) or "nothing found"
    return (f"redacted {sum(found.values())} item(s) in {result['rows_changed']} of "
            f"{result['rows']} rows ({kinds}) -> {out}")

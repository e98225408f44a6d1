"""`lmforge compare M1 M2 ... --data test.csv [--out DIR]`: size, speed and accuracy side by side."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from lmforge.atomic import write_text
from lmforge.compress.measure import Row, html_table, measure, table, with_speedups
from lmforge.log import logger
from lmforge.outputs import Output, check_outputs


def run(models: list[str], data: str, out: str | None = None, precision: str = "fp32",
        latency_texts: int = 50, overwrite: bool = False) -> list[Row]:
    """Measure every classifier folder in `models` on `data` (the first is the reference); print the
    table and, with `out`, write compare.json and compare.html there."""
    if out:
        check_outputs([Output(out, "--out", "folder")], [*models, data], overwrite)
    rows = with_speedups([measure(m, data, precision, latency_texts) for m in models])
    print(table(rows))
    if out:
        write(rows, data, Path(out))
    return rows


def write(rows: list[Row], data: str, out: Path) -> None:
    """compare.json (every measurement) and compare.html (the table) in `out`."""
    write_text(out / "compare.json", json.dumps({"data": data, "models": [asdict(r) for r in rows]},
                                                ensure_ascii=False, indent=1))
    write_text(out / "compare.html", html_table(rows, f"compare on {Path(data).name}"))
    logger.info(f"wrote {out / 'compare.json'} and {out / 'compare.html'}")

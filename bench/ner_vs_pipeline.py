"""Token-classification predict throughput: `lmforge.load(model).predict` vs transformers'
`pipeline("ner")` on the same model folder and texts, two ways:

- each tool as a user calls it, no options: `lmforge.load(folder).predict(texts)` (precision=auto —
  bf16 on a CPU with fast bf16, else fp32 — batches of 64) against `pipeline("ner", model=folder)(texts)`
  (fp32, one text per forward: the pipeline's default batch_size);
- matched: both at `--batch` and `--precision` (fp32, or bf16 where the CPU has it), so what is left is
  what lmforge does differently (length-sorted batches cut by cost and padded exactly,
  `runtime.forward.inference_order`), not a dtype or batch size the pipeline could also be given.
  An int8-weights row (`lmforge.load(quantize="int8")`, as `serve --quantize int8`) too.

The pipeline groups sub-tokens into entities with `aggregation_strategy="first"` (the rule lmforge
trains with); both return character offsets. Each variant runs once to warm up, then is timed over
every text; the entity spans are compared with lmforge's matched row, so a speed-up is not bought
with different answers.

Each variant runs in its own process (bench/variants.py); set OMP_NUM_THREADS for the thread count.

Usage: flock /tmp/lmforge-bench.lock python bench/ner_vs_pipeline.py MODEL_FOLDER TEXTS.jsonl [--n 1000]
(e.g. runs/zh_ner/best and data/zh_ner/test.jsonl from configs/ner/zh_people_daily.yaml)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from variants import in_own_process, report

from lmforge.runtime.device import describe_box

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def lmforge_spans(folder: str, texts: list[str], **options: object) -> tuple[float, list[set]]:
    import lmforge

    loaded = lmforge.load(folder, **options)
    loaded.predict(texts[:32])
    start = time.perf_counter()
    records = loaded.predict(texts)
    seconds = time.perf_counter() - start
    return seconds, [{(e["start"], e["end"], e["label"]) for e in r["entities"]} for r in records]


def pipeline_spans(folder: str, texts: list[str], **call: object) -> tuple[float, list[set]]:
    from transformers import pipeline

    dtype = call.pop("dtype", None)
    tagger = pipeline("ner", model=folder, aggregation_strategy="first", device="cpu",
                      **({"dtype": dtype} if dtype is not None else {}))
    tagger(texts[:32], **call)
    start = time.perf_counter()
    found = tagger(texts, **call)
    seconds = time.perf_counter() - start
    # The pipeline names entity groups by the tag without its B-/I- prefix, as lmforge does.
    return seconds, [{(e["start"], e["end"], e["entity_group"]) for e in row} for row in found]


def variants(batch: int, precision: str) -> dict[str, tuple]:
    """name -> (function, keyword arguments): each tool's defaults, then both at `batch` and `precision`."""
    return {
        "lmforge predict, defaults": (lmforge_spans, {}),
        "pipeline('ner'), defaults": (pipeline_spans, {}),
        f"lmforge predict, {precision}, batch {batch}": (lmforge_spans, {"precision": precision, "batch_size": batch}),
        f"pipeline('ner'), {precision}, batch {batch}": (pipeline_spans, {"dtype": DTYPES[precision], "batch_size": batch}),
        f"lmforge predict, int8 weights, batch {batch}": (lmforge_spans, {"precision": "fp32", "batch_size": batch,
                                                                            "quantize": "int8"}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("texts")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--precision", choices=DTYPES, default="fp32", help="the matched rows' dtype")
    args = parser.parse_args()
    lines = Path(args.texts).read_text(encoding="utf-8").splitlines()[: args.n]
    texts = [json.loads(line)["text"] for line in lines]
    table = variants(args.batch, args.precision)
    if args.variant:
        function, options = table[args.variant]
        seconds, spans = function(args.model, texts, **options)
        report({"variant": args.variant, "seconds": seconds, "spans": [sorted(s) for s in spans]})
        return
    results = [in_own_process(__file__, name, sys.argv[1:]) for name in table]
    peer, reference, matched_peer = results[1], results[2], results[3]
    print(f"box: {describe_box()}")
    print(f"{len(texts)} texts; speed-ups against the pipeline with its defaults, and against the pipeline at the "
          f"same batch and dtype (rows 3-5)\n\n| variant | texts/s | seconds | vs pipeline defaults | vs pipeline matched "
          "| same entities as lmforge matched |\n|---|---|---|---|---|---|")
    for r in results:
        same = sum(a == b for a, b in zip(reference["spans"], r["spans"])) / len(texts)
        print(f"| {r['variant']} | {len(texts) / r['seconds']:.1f} | {r['seconds']:.2f} | "
              f"{peer['seconds'] / r['seconds']:.2f}x | {matched_peer['seconds'] / r['seconds']:.2f}x | {same:.1%} |")


if __name__ == "__main__":
    main()

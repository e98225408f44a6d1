"""`lmforge explain MODEL --text "..." | --input FILE | --global --data FILE [--out DIR]`: which words drove
each prediction, and how far to trust that (explain.jsonl + explain.html; printed without --out)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from lmforge.atomic import write_dir, write_json, write_text
from lmforge.errors import LmforgeError
from lmforge.evaluate.baseline import tfidf_top_terms
from lmforge.explain import Budget, Choice, Explanation, explain
from lmforge.explain.global_view import ClassView, class_words
from lmforge.explain.html import write_answers, write_explanations
from lmforge.inference import Loaded, load
from lmforge.log import logger
from lmforge.outputs import Output, check_outputs
from lmforge.run import training_split
from lmforge.tasks.contracts import Generates

SHOWN_WORDS = 8  # words printed per explanation without --out, strongest first


def run(model: str, text: str | None = None, input: str | None = None, column: str | None = None,
        out: str | None = None, method: str = "auto", global_view: bool = False, data: str | None = None,
        ig_steps: int = Budget.ig_steps, shap_samples: int = Budget.shap_samples, precision: str = "auto",
        batch_size: int = 64, overwrite: bool = False) -> list[dict[str, Any]]:
    """Explain `text`, every row of `input`, or (`global_view`) every row of `data` plus the per-class
    view; write explain.jsonl and explain.html (and global.json) into `out`. Returns the records."""
    _check_sources(text, input, global_view, data)
    if out is not None:
        check_outputs([Output(out, "--out", "folder")], [model, input, data], overwrite)
    loaded = load(model, precision=precision, batch_size=batch_size)
    if isinstance(loaded.task, Generates):
        questions = [text] if text is not None else [c[-1]["content"] for c in
                                                     loaded.generator("answer").read_prompts(input or "")]
        return _answers(loaded, questions, out)
    scorer = loaded.scorer("explain predictions (explanations cover classifiers and generation models)")
    texts = [text] if text is not None else _read(loaded, input or data or "", column)
    budget = dataclasses.replace(Budget(), ig_steps=ig_steps, shap_samples=shap_samples)
    # the global view explains a whole dataset: faithfulness is measured on auto's sample only
    explanations, choice = explain(scorer, texts, method, budget, faithfulness=not global_view)
    views = _global(loaded, explanations) if global_view else []
    if out is None:
        _show(explanations, views)  # the log already said what auto chose
    else:
        _write(Path(out), model, explanations, choice, views)
    return [e.record() for e in explanations]


def _answers(loaded: Loaded, questions: list[str], out: str | None) -> list[dict[str, Any]]:
    """A generation model: which words of each question (the last user turn) its answer relied on."""
    records = [loaded.explain_answer(q) for q in questions]
    if out is None:
        for r in records:
            print(f"{r['text']}\n  answer: {r['answer']}\n  {_strongest(r['words'])}")
    else:
        def fill(tmp: Path) -> None:
            _write_jsonl(tmp / "explain.jsonl", records)
            write_answers(tmp / "explain.html", f"explanations: {Path(loaded.cfg.model.path).name}", records)

        write_dir(Path(out), fill)
    return records


def _check_sources(text: str | None, input: str | None, global_view: bool, data: str | None) -> None:
    given = [flag for flag, value in (("--text", text), ("--input", input), ("--global", global_view or None))
             if value is not None]  # `--text ""` was given: said empty below, not "give one of"
    if len(given) != 1:
        raise LmforgeError("give exactly one of --text, --input FILE or --global --data FILE"
                           + (f" (got {', '.join(given)})" if given else ""))
    if global_view != (data is not None):
        raise LmforgeError("--global needs --data FILE" if global_view else "--data is the dataset of --global")
    if text is not None and not text.strip():
        raise LmforgeError("--text is empty")


def _read(loaded: Loaded, path: str, column: str | None) -> list[str]:
    if column:
        loaded.cfg.data.text_column = column  # the task reads the loaded run config's column
    split = loaded.predictor("read texts").read_texts(path)
    return loaded.classifier("read texts").texts(split)


def _global(loaded: Loaded, explanations: list[Explanation]) -> list[ClassView]:
    """Per-class words, with the baseline's n-grams when the model's training data is still there."""
    task = loaded.classifier("show what it learned")
    views = class_words(explanations, task.label_names)
    train = training_split(loaded)
    if train is None:
        logger.info("no TF-IDF column: the model's training data was not found")
        return views
    for view, terms in zip(views, tfidf_top_terms(task.texts(train), task.targets(train), loaded.cfg.train.seed)):
        view.baseline = terms
    return views


def _show(explanations: list[Explanation], views: list[ClassView]) -> None:
    for e in explanations:
        print(e.text)
        for t in e.targets:
            trust = ""
            if t.faithfulness:
                f = t.faithfulness
                trust = (f"; comprehensiveness {f.comprehensiveness:.3f} (random {f.random_comprehensiveness:.3f}), "
                         f"sufficiency {f.sufficiency:.3f} (random {f.random_sufficiency:.3f})")
            print(f"  {t.label} {t.prob:.3f} ({e.method}{trust})")
            print(f"  {_strongest(t.words)}")
    for view in views:
        print(f"{view.label} ({view.texts} texts): " + ", ".join(f"{w} {s:+.3f}" for w, s, _ in view.words))
        if view.baseline:
            print("  TF-IDF: " + ", ".join(f"{g} {c:+.2f}" for g, c in view.baseline))


def _strongest(words: list[dict[str, Any]]) -> str:
    return "  ".join(f"{w['word']} {w['score']:+.3f}" for w in sorted(words, key=lambda w: -abs(w["score"]))[:SHOWN_WORDS])


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def _write(out: Path, model: str, explanations: list[Explanation], choice: Choice | None,
           views: list[ClassView]) -> None:
    """The output folder, replaced whole and atomically (no file of an earlier run stays behind)."""
    def fill(tmp: Path) -> None:
        _write_jsonl(tmp / "explain.jsonl", [e.record() for e in explanations])
        if views:
            write_json(tmp / "global.json", [v.record() for v in views])
        write_explanations(tmp / "explain.html", f"explanations: {Path(model).name}", explanations, choice, views)

    write_dir(out, fill)
    logger.info(f"wrote {len(explanations)} explanations to {out / 'explain.jsonl'} and {out / 'explain.html'}")

"""`lmforge kb build|ask|eval`: knowledge-base question answering from the command line.

    lmforge kb build faq.jsonl --out kb/ --encoder sentence-transformers/all-MiniLM-L6-v2
    lmforge kb ask kb/ "How do I reset my password?" [--generate-with runs/x/best [--explain]] [-k 3]
    lmforge kb eval kb/ --data held_out.jsonl
"""

from __future__ import annotations

from pathlib import Path

from lmforge.errors import DataError, LmforgeError, Problem

# Flags each action reads; giving any other is a mistake worth reporting, not ignoring.
_FLAGS = {"build": {"out", "encoder"}, "ask": {"generate_with", "explain"}, "eval": {"data"}}
_USAGE = {"build": "kb build needs SOURCE, --out DIR and --encoder ENC",
          "ask": 'kb ask needs INDEX and a question: kb ask INDEX "question"',
          "eval": "kb eval needs INDEX and --data FILE (with question and answer columns)"}


def run(action: str, args: list[str], out: str | None = None, encoder: str | None = None,
        generate_with: str | None = None, k: int = 3, data: str | None = None, overwrite: bool = False,
        explain: bool = False) -> dict:
    """Build an index, answer one question, or score retrieval on held-out questions.

    `ask` joins the words after INDEX, so an unquoted question still reads as one question.
    """
    given = {"out": out, "encoder": encoder, "generate_with": generate_with, "data": data, "explain": explain}
    _check(action, args, given)
    if action == "build":
        return build(args[0], out, encoder, overwrite)
    if action == "ask":
        if explain and not generate_with:
            raise LmforgeError("--explain attributes a generated answer to the passages: give --generate-with MODEL")
        return ask(args[0], " ".join(args[1:]), generate_with, k, explain)
    return evaluate(args[0], data, k)


def _check(action: str, args: list[str], given: dict[str, str | bool | None]) -> None:
    """Positional count and flags for the action, with the action's usage in every message."""
    if action not in _FLAGS:
        raise LmforgeError(f"unknown kb action {action!r}; choose one of: {', '.join(_FLAGS)}")
    stray = [f"--{name.replace('_', '-')}" for name, value in given.items() if value and name not in _FLAGS[action]]
    if stray:
        raise LmforgeError(f"{', '.join(stray)} does not apply to kb {action}; {_USAGE[action]}")
    wanted = {"build": len(args) == 1, "ask": len(args) >= 2, "eval": len(args) == 1}[action]
    missing = [name for name in _FLAGS[action] - {"generate_with", "explain"} if not given[name]]
    if not wanted or missing:
        raise LmforgeError(_USAGE[action])


def build(source: str, out: str, encoder: str, overwrite: bool = False) -> dict:
    """`kb build`: see `lmforge.kb.build_index`."""
    from lmforge.kb import build_index

    return build_index(source, Path(out), encoder, overwrite=overwrite)


def ask(index: str, question: str, generate_with: str | None, k: int, explain: bool = False) -> dict:
    """`kb ask`: print the answer, then each source's score and question (or passage); with `explain`,
    how much of the answer's log-probability each passage and question word carried."""
    from lmforge.inference import load
    from lmforge.kb import KnowledgeBase

    kb = KnowledgeBase.load(index)
    generator = load(generate_with) if generate_with else None
    result = kb.answer(question, k=k, generator=generator, explain=explain)
    print(result["answer"])
    print("\nsources:")
    for source in result["sources"]:
        print(f"  {source['score']:.3f}  {_one_line(source.get('question', source.get('text', '')))}")
    if explain:
        why = result["explanation"]
        print("\nwhat the answer relied on (log-probability lost when deleted):")
        for i, passage in enumerate(why["passages"], start=1):
            print(f"  passage {i}: {passage['score']:+.3f}")
        words = sorted(why["words"], key=lambda w: -w["score"])[:5]
        print("  question words: " + ", ".join(f"{w['word']} {w['score']:+.3f}" for w in words))
    return result


def evaluate(index: str, data: str, k: int) -> dict:
    """`kb eval`: hit@1/3/5 and MRR, ranking at least 5 deep so every hit@k is defined."""
    from lmforge.kb import KnowledgeBase, evaluate_retrieval

    kb = KnowledgeBase.load(index)
    questions, gold = _held_out(data, kb.entries)
    metrics = evaluate_retrieval(kb, questions, gold, k=max(k, 5))
    print(f"{len(questions)} questions: " + "  ".join(f"{name} {value:.3f}" for name, value in metrics.items()))
    return metrics


def _held_out(path: str, entries: list[dict[str, str]]) -> tuple[list[str], list[int]]:
    """Questions and the entry each should retrieve: the first whose answer equals the row's answer."""
    from lmforge.data.readers import read_rows

    by_answer: dict[str, int] = {}
    for i, entry in enumerate(entries):
        by_answer.setdefault(entry["answer"].strip(), i)
    questions, gold, problems = [], [], []
    for row in read_rows(path):
        question, answer = row.values.get("question"), row.values.get("answer")
        if not isinstance(question, str) or not question.strip():
            problems.append(Problem(row.location, "question", "expected a non-empty string"))
        elif not isinstance(answer, str) or answer.strip() not in by_answer:
            problems.append(Problem(row.location, "answer", "no index entry has this answer"))
        else:
            questions.append(question)
            gold.append(by_answer[answer.strip()])
    if problems:
        raise DataError(problems)
    if not questions:
        raise LmforgeError(f"{path}: no rows to evaluate on")
    return questions, gold


def _one_line(text: str, width: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"

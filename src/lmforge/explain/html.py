"""explain.html: every explained text with its words shaded, the faithfulness of each explanation,
what `auto` measured, and the per-class global view; built from the report's pieces (one style, one
escaping) and as self-contained as report.html."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from lmforge.atomic import write_text
from lmforge.evaluate.report import HIGHLIGHT_LEGEND, esc, highlight, html_page, html_table
from lmforge.explain.explainer import Choice, Explanation
from lmforge.explain.global_view import ClassView

MAX_SHOWN = 200  # texts shaded in the page; explain.jsonl holds them all


def write_explanations(path: Path, title: str, explanations: Sequence[Explanation], choice: Choice | None = None,
                       views: Sequence[ClassView] = ()) -> None:
    """Write the page to `path` atomically."""
    sections = [f"<h1>{esc(title)}</h1>", _choice_html(choice), _global_html(views), _texts_html(explanations)]
    write_text(Path(path), html_page(title, sections))


def _num(value: float) -> str:
    return f'<td class="num">{value:.4f}</td>'


def _choice_html(choice: Choice | None) -> str:
    if choice is None:
        return ""
    rows = [[esc(name), _num(s.comprehensiveness), _num(s.random_comprehensiveness), _num(s.sufficiency),
             _num(s.random_sufficiency), _num(s.seconds_per_text)] for name, s in choice.scores.items()]
    return (f'<h2>Method</h2><div class="notes">{esc(choice.summary())}</div>'
            + html_table(["Method", "Comprehensiveness ↑", "Random", "Sufficiency ↓", "Random", "Seconds per text"],
                         rows))


def _global_html(views: Sequence[ClassView]) -> str:
    if not views:
        return ""
    parts = ["<h2>What the model learned, per class</h2><p>Words with the largest mean attribution over the texts "
             "predicted as each class, beside the TF-IDF baseline's strongest character n-grams.</p>"]
    for view in views:
        depth = max(len(view.words), len(view.baseline))
        rows = [[esc(view.words[i][0]) if i < len(view.words) else "",
                 _num(view.words[i][1]) if i < len(view.words) else "<td></td>",
                 str(view.words[i][2]) if i < len(view.words) else "",
                 esc(view.baseline[i][0]) if i < len(view.baseline) else "",
                 _num(view.baseline[i][1]) if i < len(view.baseline) else "<td></td>"] for i in range(depth)]
        parts.append(f"<h3>{esc(view.label)} ({view.texts} texts)</h3>"
                     + html_table(["Model: word", "Mean attribution", "Count", "TF-IDF: n-gram", "Coefficient"], rows))
    return "".join(parts)


def _texts_html(explanations: Sequence[Explanation]) -> str:
    if not explanations:
        return ""
    rows = []
    for i, e in enumerate(explanations[:MAX_SHOWN], start=1):
        for t in e.targets:
            f = t.faithfulness
            trust = (f"{f.comprehensiveness:.3f} (random {f.random_comprehensiveness:.3f}) / "
                     f"{f.sufficiency:.3f} (random {f.random_sufficiency:.3f})") if f else "—"
            note = " (truncated: later words not read)" if e.truncated else ""
            rows.append([str(i), f'<td class="text">{highlight(e.text, t.words)}{esc(note)}</td>', esc(t.label),
                         _num(t.prob), esc(e.method), esc(trust)])
    shown = f"{min(len(explanations), MAX_SHOWN)} of {len(explanations)}"
    return (f"<h2>Texts ({shown})</h2>{HIGHLIGHT_LEGEND}"
            + html_table(["#", "Text", "Label", "Probability", "Method", "Comprehensiveness / sufficiency"], rows))


def write_answers(path: Path, title: str, records: Sequence[dict]) -> None:
    """The page for a generation model: each question shaded by what its answer relied on."""
    rows = [[str(i), f'<td class="text">{highlight(r["text"], r["words"])}</td>',
             f'<td class="text">{esc(r["answer"])}</td>'] for i, r in enumerate(records, start=1)]
    legend = HIGHLIGHT_LEGEND.replace("the predicted label", "the answer")
    write_text(Path(path), html_page(title, [f"<h1>{esc(title)}</h1>", legend,
                                             html_table(["#", "Question", "Answer"], rows)]))

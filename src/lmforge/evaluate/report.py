"""Render evaluation results as one self-contained HTML file a person opens in a browser.

The file has no external references: charts are inline base64 PNGs and the CSS is inline, so a
report can be mailed, archived or opened offline and still look the same. matplotlib is imported
inside the rendering functions because importing it costs a second, and most callers of this
package (training, the CLI's --help) never draw anything.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lmforge.atomic import write_text

_HEADLINE = ("accuracy", "f1_macro", "f1_micro", "f1_weighted", "precision_macro",
             "recall_macro", "precision_micro", "recall_micro", "token_accuracy", "ece")
_MAX_ERRORS = 50
_NOT_PLOTTED = {"step", "epoch", "elapsed_s"}
# Class names are often Chinese; use a CJK font when the machine has one, DejaVu otherwise.
_FONTS = ["Noto Sans CJK SC", "WenQuanYi Zen Hei", "DejaVu Sans"]

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.text { white-space: pre-wrap; max-width: 40em; }
.notes { background: #fff8e0; border-left: 4px solid #e0b000; padding: 0.5em 1em; }
.small { display: inline-block; margin-right: 1.5em; }
img { max-width: 100%; }
mark { border-radius: 3px; padding: 0 1px; color: inherit; }
mark.entity { background: #dbeafe; padding: 0 0.1em; }
mark sub { color: #555; font-size: 0.7em; margin-left: 0.15em; }
.legend mark { margin: 0 0.3em; }
"""


def write_report(
    path: Path,
    *,
    title: str,
    metrics: dict,
    history: list[dict] | None = None,
    errors: list[dict] | None = None,
    baseline: dict | None = None,
    notes: list[str] | None = None,
) -> None:
    """Write the evaluation report for `metrics` to `path` as a single HTML file.

    `metrics` and `baseline` are dicts from `lmforge.evaluate.metrics` (a baseline's "method", when
    it says, heads its column); `history` is the training log (one dict per record, keyed by `step`);
    `errors` are the caller's worst mistakes, most confident first, or generated answers (records with
    source, reference, hypothesis and score), worst first. The file is written to a temporary sibling
    and moved into place, so a reader never sees half a report and a crash leaves the previous one intact.
    """
    sections = [
        f"<h1>{_esc(title)}</h1>",
        _notes_html(notes or []),
        _headline_html(metrics, baseline),
        _history_html(history or []),
        _confusion_html(metrics.get("confusion_matrix")),
        _per_class_html(metrics.get("per_class") or {}),
        _errors_html(errors or []),
    ]
    write_text(Path(path), html_page(title, sections))


def write_table(path: Path, *, title: str, headers: list[str], rows: list[list[Any]],
                notes: list[str] | None = None) -> None:
    """A page holding one table (a sweep's leaderboard), same look and same atomic write as a report."""
    cells = [[_num_cell(v) if _is_number(v) else _fmt(v) for v in row] for row in rows]
    write_text(Path(path), html_page(title, [f"<h1>{_esc(title)}</h1>", _notes_html(notes or []),
                                             _table([_esc(h) for h in headers], cells)]))


def html_page(title: str, sections: list[str]) -> str:
    """A whole self-contained page: the report's style around already-escaped HTML sections."""
    body = "\n".join(s for s in sections if s)
    return (
        '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


def highlight(text: str, words: list[dict]) -> str:
    """`text` with each scored word shaded: red where it supports the predicted label, blue where it
    speaks against it, stronger for larger |score| (relative to the text's largest); the score shows
    on hover. Everything between and inside the words is escaped."""
    peak = max((abs(w["score"]) for w in words), default=0.0) or 1.0
    parts, at = [], 0
    for w in sorted(words, key=lambda w: w["start"]):
        alpha = min(abs(w["score"]) / peak, 1.0) * 0.8
        colour = f"rgba(220,50,30,{alpha:.2f})" if w["score"] >= 0 else f"rgba(30,90,220,{alpha:.2f})"
        parts += [_esc(text[at : w["start"]]), f'<mark style="background:{colour}" title="{w["score"]:+.4f}">'
                  f'{_esc(text[w["start"] : w["end"]])}</mark>']
        at = w["end"]
    return "".join(parts) + _esc(text[at:])


HIGHLIGHT_LEGEND = ('<p class="legend">word shading: <mark style="background:rgba(220,50,30,0.6)">supports</mark>'
                    '<mark style="background:rgba(30,90,220,0.6)">opposes</mark> the predicted label</p>')


def esc(value: Any) -> str:
    """HTML-escape anything (the report's own escaping, for pages built from its pieces)."""
    return _esc(value)


def _esc(value: Any) -> str:
    """HTML-escape anything: texts, label names and metric keys all come from user data."""
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    """Show floats to 4 places and ints as they are; missing values as a dash."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4f}"
    return _esc(value)


def _is_number(value: Any) -> bool:
    """True for int/float but not bool, which is an int subclass yet never a metric."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def html_table(headers: list[str], rows: list[list[str]]) -> str:
    """An HTML table from already-escaped cells (see `_table`)."""
    return _table(headers, rows)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    """An HTML table from already-escaped cells; cells starting with '<td' are used as-is."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in row) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _num_cell(value: Any) -> str:
    """A right-aligned numeric cell."""
    return f'<td class="num">{_fmt(value)}</td>'


def _notes_html(notes: list[str]) -> str:
    """Caveats the reader must see before the numbers (e.g. 'trained from random init')."""
    if not notes:
        return ""
    items = "".join(f"<li>{_esc(n)}</li>" for n in notes)
    return f'<div class="notes"><ul>{items}</ul></div>'


def _headline_keys(metrics: dict, baseline: dict | None) -> list[str]:
    """The usual metrics first in a fixed order, then any other top-level number (e.g. loss)."""
    sources = [metrics, baseline or {}]
    keys = [k for k in _HEADLINE if any(k in s for s in sources)]
    for source in sources:
        keys += [k for k, v in source.items() if _is_number(v) and k not in keys]
    return keys


def _headline_html(metrics: dict, baseline: dict | None) -> str:
    """Scalar metrics, with the baseline and the difference beside them when there is one."""
    headers = ["Metric", "Model"]
    if baseline is not None:
        method = baseline.get("method")
        headers += [f"Baseline ({_esc(method)})" if method else "Baseline", "Δ (model − baseline)"]
    rows = []
    for key in _headline_keys(metrics, baseline):
        value = metrics.get(key)
        row = [_esc(key), _num_cell(value)]
        if baseline is not None:
            base = baseline.get(key)
            diff = value - base if _is_number(value) and _is_number(base) else None
            row += [_num_cell(base), _num_cell(diff)]
        rows.append(row)
    return "<h2>Summary</h2>" + _table(headers, rows)


def _per_class_html(per_class: dict[str, dict]) -> str:
    """Precision, recall, f1 and support per class, in label order."""
    if not per_class:
        return ""
    rows = [
        [_esc(name)] + [_num_cell(s.get(k)) for k in ("precision", "recall", "f1", "support")]
        for name, s in per_class.items()
    ]
    return "<h2>Per class</h2>" + _table(["Class", "Precision", "Recall", "F1", "Support"], rows)


def _errors_html(errors: list[dict]) -> str:
    """The most confident mistakes, which usually show label noise or a systematic confusion."""
    if not errors:
        return ""
    if "gold_spans" in errors[0]:
        return _spans_html(errors)
    if "hypothesis" in errors[0]:
        return _generated_html(errors)
    rows = [
        [str(i), f'<td class="text">{_error_text(e)}</td>', _esc(e.get("label", "")),
         _esc(e.get("pred", "")), _num_cell(e.get("confidence"))]
        for i, e in enumerate(errors[:_MAX_ERRORS], start=1)
    ]
    shown = f"{len(rows)} of {len(errors)}" if len(errors) > len(rows) else str(len(rows))
    explained = [e for e in errors[:_MAX_ERRORS] if e.get("words")]
    legend = (f"<p>The first {len(explained)} show which words drove the wrong prediction "
              f"({_esc(explained[0].get('method', ''))}).</p>{HIGHLIGHT_LEGEND}") if explained else ""
    return (
        f"<h2>Worst errors ({shown}, most confident first)</h2>{legend}"
        + _table(["#", "Text", "True", "Predicted", "Confidence"], rows)
    )


def _spans_html(examples: list[dict]) -> str:
    """Sentences a tagger got wrong, gold and predicted spans highlighted side by side."""
    rows = [
        [str(i), f'<td class="text">{_highlight(e["text"], e["gold_spans"])}</td>',
         f'<td class="text">{_highlight(e["text"], e["pred_spans"])}</td>']
        for i, e in enumerate(examples[:_MAX_ERRORS], start=1)
    ]
    shown = f"{len(rows)} of {len(examples)}" if len(examples) > len(rows) else str(len(rows))
    return (f"<h2>Sentences with wrong entities ({shown}, most wrong first)</h2>"
            + _table(["#", "Gold entities", "Predicted entities"], rows))


def _highlight(text: str, spans: list[list]) -> str:
    """`text` escaped, each [start, end, label] span marked and its label written after it."""
    parts, at = [], 0
    for start, end, label in sorted(spans):
        mark = f'<mark class="entity" title="{_esc(label)}">{_esc(text[start:end])}<sub>{_esc(label)}</sub></mark>'
        parts += [_esc(text[at:start]), mark]
        at = end
    return "".join(parts) + _esc(text[at:])


def _error_text(error: dict) -> str:
    """The error's text, its words shaded when the report explained it."""
    text = str(error.get("text", ""))
    return highlight(text, error["words"]) if error.get("words") else _esc(text)


def _generated_html(examples: list[dict]) -> str:
    """Generated answers (translations) beside their prompts and references, lowest score first."""
    rows = [
        [str(i)] + [f'<td class="text">{_esc(e.get(k, ""))}</td>' for k in ("source", "reference", "hypothesis")]
        + [_num_cell(e.get("score"))]
        for i, e in enumerate(examples[:_MAX_ERRORS], start=1)
    ]
    shown = f"{len(rows)} of {len(examples)}" if len(examples) > len(rows) else str(len(rows))
    return (f"<h2>Generated answers ({shown}, lowest chrF++ first)</h2>"
            + _table(["#", "Prompt", "Reference", "Generated", "chrF++"], rows))


def _confusion_html(confusion: dict | None) -> str:
    """A heat map for a k x k matrix; small 2x2 tables for the per-label multi-label form."""
    if not confusion or not confusion.get("matrix"):
        return ""
    names, matrix = confusion["labels"], confusion["matrix"]
    if isinstance(matrix[0][0], list):
        return "<h2>Confusion per label</h2>" + "".join(
            _binary_confusion_html(n, m) for n, m in zip(names, matrix)
        )
    with _chart_context():
        uri = _confusion_png(names, matrix)
    return "<h2>Confusion matrix</h2>" + _img(uri, "confusion matrix, rows true, columns predicted")


def _binary_confusion_html(name: str, m: list[list[int]]) -> str:
    """One label's [[tn, fp], [fn, tp]] as a labelled 2x2 table."""
    (tn, fp), (fn, tp) = m
    table = _table(
        [_esc(name), "pred 0", "pred 1"],
        [["true 0", _num_cell(tn), _num_cell(fp)], ["true 1", _num_cell(fn), _num_cell(tp)]],
    )
    return f'<div class="small">{table}</div>'


def _history_html(history: list[dict]) -> str:
    """Training curves: losses on one chart, eval metrics on another, anything else on a third."""
    groups = _group_series(history)
    if not groups:
        return ""
    with _chart_context():
        images = [_img(_curve_png(title, series), title) for title, series in groups.items()]
    return "<h2>Training history</h2>" + "\n".join(images)


def _group_series(history: list[dict]) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """Split every numeric key except step/epoch into (step, value) series, by chart.

    Learning rate, throughput or the privacy budget would flatten each other's curves on a shared
    axis, so every key that is neither a loss nor an eval metric gets a chart of its own.
    """
    groups: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for record in history:
        step = record.get("step")
        if not _is_number(step):
            continue
        for key, value in record.items():
            if key in _NOT_PLOTTED or not _is_number(value):
                continue
            groups.setdefault(_chart_for(key), {}).setdefault(key, []).append((step, value))
    fixed = [t for t in ("Loss", "Eval metrics") if t in groups]
    return {t: groups[t] for t in fixed + sorted(set(groups) - set(fixed))}


def _chart_for(key: str) -> str:
    """Which history chart a logged key belongs on."""
    if "loss" in key:
        return "Loss"
    return "Eval metrics" if key.startswith("eval_") else key


def _img(uri: str, alt: str) -> str:
    """An <img> for an inline data URI."""
    return f'<p><img src="{uri}" alt="{_esc(alt)}"></p>'


@contextmanager
def _chart_context() -> Iterator[None]:
    """Scope matplotlib font settings and silence missing-font noise while drawing.

    rc_context keeps our font list from leaking into the caller's own plots. Without a CJK font,
    Chinese glyphs render as boxes: a cosmetic loss the report can live with, so the glyph
    warnings and the font manager's 'family not found' log lines are suppressed, not raised.
    """
    import matplotlib

    font_log = logging.getLogger("matplotlib.font_manager")
    old_level = font_log.level
    font_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), matplotlib.rc_context(
            {"font.family": "sans-serif", "font.sans-serif": _FONTS, "axes.unicode_minus": False}
        ):
            warnings.filterwarnings("ignore", message=r".*[Gg]lyph.*missing.*")
            warnings.filterwarnings("ignore", message=r".*findfont.*")
            yield
    finally:
        font_log.setLevel(old_level)


def _new_figure(width: float, height: float) -> Any:
    """An Agg-backed figure that never touches pyplot's global state or a display."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png_uri(fig: Any) -> str:
    """Encode a figure as a data: URI; the Software tag is dropped so no URL is embedded."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _curve_png(title: str, series: dict[str, list[tuple[float, float]]]) -> str:
    """One line chart of several series against step."""
    fig = _new_figure(7, 3.5)
    ax = fig.add_subplot()
    for key, points in series.items():
        steps, values = zip(*sorted(points))
        # Eval records are sparse; markers keep a two-point curve readable.
        ax.plot(steps, values, label=key, marker="o" if len(points) < 30 else None)
    ax.set(title=title, xlabel="step")
    ax.grid(alpha=0.3)
    ax.legend()
    return _png_uri(fig)


def _confusion_png(names: list[str], matrix: list[list[int]]) -> str:
    """Heat map with a count in every cell; rows are true classes, columns predicted."""
    k = len(names)
    size = min(max(4.0, 0.55 * k + 2.0), 20.0)
    fig = _new_figure(size, size)
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_xticks(range(k), names, rotation=45, ha="right")
    ax.set_yticks(range(k), names)
    ax.set(xlabel="predicted", ylabel="true")
    peak = max((max(row) for row in matrix), default=0)
    font_size = max(5, 11 - k // 5)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            colour = "white" if count > peak / 2 else "black"
            ax.text(j, i, str(count), ha="center", va="center", color=colour, fontsize=font_size)
    return _png_uri(fig)

"""Task-agnostic checks on rows read from disk: text columns, duplicates, leakage, splitting.

Tasks call these before any tokenizing or training so that bad data is reported up front,
with file locations, instead of surfacing as a crash or a silently skewed metric hours later.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence

from sklearn.model_selection import train_test_split

from lmforge.data.normalize import unicode_problem
from lmforge.data.readers import Row
from lmforge.errors import LmforgeError, Problem


def check_text(rows: list[Row], column: str) -> list[Problem]:
    """Problems with `column` as a text field: missing, not a string, or blank.

    If no row has the column at all, that is almost always a misnamed column in the config,
    so one problem naming the file and the columns present replaces a flood of per-row ones.
    """
    absent = check_column(rows, column)
    if absent is not None:
        return [absent]
    problems = (_text_problem(row, column) for row in rows)
    return [problem for problem in problems if problem is not None]


def check_column(rows: list[Row], column: str) -> Problem | None:
    """One problem naming the file and the columns present when no row has `column`: almost always a
    misnamed column in the config, which a flood of per-row problems would hide."""
    if not rows or any(column in row.values for row in rows):
        return None
    source = rows[0].location.rsplit(":", 1)[0]
    found = _columns(rows)
    tabs = " — the header holds tabs: a tab-separated file needs the .tsv suffix" if "\t" in found else ""
    return Problem(source, column, f"no row has column '{column}' (columns found: {found}){tabs}")


def _columns(rows: list[Row]) -> str:
    """Every column name seen, in first-seen order, for messages that suggest the right name."""
    names = dict.fromkeys(name for row in rows for name in row.values)
    return ", ".join(names) or "none"


def _text_problem(row: Row, column: str) -> Problem | None:
    """The one thing wrong with this row's text, if anything."""
    if column not in row.values:
        found = ", ".join(row.values) or "none"
        return Problem(row.location, column, f"missing column '{column}' (columns found: {found})")
    problem = text_problem(row.values[column])
    return Problem(row.location, column, problem) if problem else None


def text_problem(value: object) -> str | None:
    """Why `value` cannot be an input text (from a file, the Python API or a server request), or None."""
    # Numbers and other JSON values are not coerced: a number where text is expected usually
    # means columns are swapped, which coercion would hide.
    if not isinstance(value, str):
        return f"expected a string, got {'null' if value is None else type(value).__name__}"
    if not value.strip():
        return "empty text"
    if "\x00" in value:
        return "text holds a NUL byte: binary data in a text file? (remove it)"
    return unicode_problem(value)


def mixed_number_spellings(names: Sequence[str]) -> list[list[str]]:
    """Groups of label names that are one number spelled differently ('1' and '1.0'): as strings
    they would be separate classes, silently splitting one class in two."""
    groups: dict[float, list[str]] = {}
    for name in names:
        try:
            groups.setdefault(float(name), []).append(name)
        except ValueError:
            continue
    return [sorted(group) for group in groups.values() if len(group) > 1]


def duplicate_count(texts: Sequence[str]) -> int:
    """How many texts repeat an earlier one (after stripping whitespace).

    Reported rather than removed: duplicates inflate some classes and the user should decide.
    """
    seen: set[str] = set()
    count = 0
    for text in texts:
        key = text.strip()
        count += key in seen
        seen.add(key)
    return count


def overlap_count(a: Sequence[str], b: Sequence[str]) -> int:
    """How many texts of `b` also occur in `a` (after stripping): train/test leakage that
    would make evaluation scores look better than the model really is."""
    known = {text.strip() for text in a}
    return sum(text.strip() in known for text in b)


def stratified_split(labels: Sequence[Hashable], fraction: float,
                     seed: int) -> tuple[list[int], list[int]]:
    """Split row indices into (train, validation), keeping each class's share in both parts.

    `fraction` is the share held out for validation. Classes with a single example cannot be
    split across both parts, and sklearn refuses to stratify when any class is that small, so
    singletons go to train (a model cannot learn a class it never sees) and only the rest is
    stratified. The same labels, fraction and seed always give the same split.
    """
    if not 0.0 < fraction < 1.0:
        raise LmforgeError(f"data.validation_fraction={fraction:g}: the share of data.train held out for validation "
                           "must be between 0 and 1 (both excluded); or give data.validation=FILE")
    codes = _label_codes(labels)
    counts = Counter(codes)
    singletons = [i for i, code in enumerate(codes) if counts[code] < 2]
    splittable = [i for i, code in enumerate(codes) if counts[code] >= 2]
    if not splittable:
        return singletons, []
    # Rounded up, as sklearn does for fractions, so any fraction holds out at least one row.
    n_validation = math.ceil(fraction * len(splittable))
    if n_validation == len(splittable):
        raise LmforgeError(f"validation fraction {fraction} of {len(splittable)} rows leaves "
                           f"no rows to train on; lower the fraction or add data")
    stratify = _stratify_or_none([codes[i] for i in splittable], n_validation)
    train, validation = train_test_split(splittable, test_size=n_validation, random_state=seed,
                                         stratify=stratify)
    return sorted(singletons + list(train)), sorted(validation)


def _label_codes(labels: Sequence[Hashable]) -> list[int]:
    """Integer codes per label, because sklearn sorts labels and mixed types do not sort."""
    index: dict[Hashable, int] = {}
    return [index.setdefault(label, len(index)) for label in labels]


def _stratify_or_none(codes: list[int], n_validation: int) -> list[int] | None:
    """The stratification labels, or None when either side is too small to hold every class.

    Then class proportions cannot be kept whatever we do, and sklearn would raise; a plain
    random split is the best available.
    """
    n_train = len(codes) - n_validation
    n_classes = len(set(codes))
    return codes if min(n_validation, n_train) >= n_classes else None

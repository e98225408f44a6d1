"""Parallel text for translation: two line-aligned files as rows, and the prompt of one direction.

Two shapes of data are accepted, and both end up as rows with `source` and `target` columns (and
`src_lang`/`tgt_lang` when known), which `data.conversations` turns into one user turn (the
prompt) and one assistant turn (the reference translation):

- a table with `source` and `target` columns, optionally `src_lang` and `tgt_lang` per row;
- two plain-text files with one sentence per line, given as `SOURCE_FILE,TARGET_FILE`
  (e.g. `data.train=train.zh,train.en`, the layout of WMT, OPUS and Moses corpora). A file's
  suffix names its language unless it is `.txt`.

The prompt comes from one template (`generation.translation_prompt`) whose `{src}` and `{tgt}` are
the two languages' English names, so each direction gets its own wording from one setting.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

from lmforge.config import GenerationConfig
from lmforge.data.readers import Row, decode_text, file_bytes
from lmforge.errors import DataError, LmforgeError, Problem

PAIR_SEPARATOR = ","
# English names of the languages a prompt most often names; any other code is used as given.
LANGUAGES = {
    "zh": "Chinese", "en": "English", "ja": "Japanese", "ko": "Korean", "fr": "French", "de": "German",
    "es": "Spanish", "ru": "Russian", "ar": "Arabic", "pt": "Portuguese", "it": "Italian", "vi": "Vietnamese",
    "th": "Thai", "id": "Indonesian", "yue": "Cantonese",
}
PLACEHOLDERS = ("source", "src", "tgt")


@dataclass(frozen=True)
class TranslationPrompt:
    """How a source sentence becomes a prompt: the template, and the languages rows do not name."""

    template: str
    src_lang: str = ""
    tgt_lang: str = ""

    @classmethod
    def from_config(cls, cfg: GenerationConfig) -> TranslationPrompt:
        return cls(cfg.translation_prompt, cfg.src_lang, cfg.tgt_lang)


def pair_paths(spec: str) -> tuple[Path, Path] | None:
    """The (source, target) files of a `SOURCE,TARGET` data setting; None for a single file or folder.

    A path that exists as given is one file, even with a comma in its name."""
    if Path(spec).exists() or spec.count(PAIR_SEPARATOR) != 1:
        return None
    source, target = (Path(p.strip()) for p in spec.split(PAIR_SEPARATOR))
    return source, target


def input_paths(spec: str) -> list[str]:
    """The files a data setting reads: both files of a pair, else the setting itself."""
    pair = pair_paths(spec) if spec else None
    return [str(p) for p in pair] if pair else [spec]


def read_pair(source: Path, target: Path, encoding: str = "utf-8", key_file: str = "") -> list[Row]:
    """Rows of two line-aligned text files: line N of `source` translates to line N of `target`.

    Different line counts are refused naming both files and both counts (a shifted line would pair
    every later sentence with the wrong translation); an empty line is refused at its file:line.
    """
    sources, targets = _lines(source, encoding, key_file), _lines(target, encoding, key_file)
    if len(sources) != len(targets):
        raise LmforgeError(f"{source} has {len(sources)} lines but {target} has {len(targets)}: "
                           f"line N of one must translate line N of the other")
    problems = [Problem(f"{path}:{n}", "", f"empty line (its pair {other}:{n} is not)")
                for n, (a, b) in enumerate(zip(sources, targets), start=1)
                for path, other, text in ((source, target, a), (target, source, b)) if not text.strip()]
    if problems:
        raise DataError(problems)
    langs = {k: lang for k, lang in (("src_lang", _language(source)), ("tgt_lang", _language(target))) if lang}
    return [Row(f"{source}:{n}", {"source": a, "target": b, **langs})
            for n, (a, b) in enumerate(zip(sources, targets), start=1)]


def render_prompt(template: str, source: str, src_lang: str, tgt_lang: str) -> str:
    """`template` with `{source}` and the language names `{src}`/`{tgt}` filled in.

    Raises ValueError when the template needs a language the data and config leave empty."""
    values = {"source": source, "src": language_name(src_lang), "tgt": language_name(tgt_lang)}
    for name in template_fields(template):
        if not values[name]:
            side = "source" if name == "src" else "target"
            raise ValueError(f"the prompt names the {side} language ({{{name}}}) but none is given: add a "
                             f"{name}_lang column or set generation.{name}_lang")
    return template.format(**values)


def template_fields(template: str) -> list[str]:
    """The placeholder names of a prompt template; a malformed one, or one naming anything but
    PLACEHOLDERS, is refused (once, before any row is read)."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise LmforgeError(f"generation.translation_prompt is not a valid template: {exc}") from None
    unknown = [name for name in names if name not in PLACEHOLDERS]
    if unknown:
        raise LmforgeError(f"generation.translation_prompt: unknown placeholder {{{unknown[0]}}} "
                           f"(use {', '.join('{' + p + '}' for p in PLACEHOLDERS)}; write {{{{ for a brace)")
    return names


def language_name(code: str) -> str:
    """The English name of a language code ("zh" -> "Chinese"; "zh-Hans" reads as "zh")."""
    code = code.strip()
    return LANGUAGES.get(code.lower().replace("_", "-").split("-")[0], code)


def _lines(path: Path, encoding: str, key_file: str) -> list[str]:
    if not path.is_file():
        raise LmforgeError(f"file not found: {path}")
    data, _ = file_bytes(path, key_file)
    lines = decode_text(path, data, encoding).split("\n")  # not splitlines(): U+2028 inside a sentence is not a line break
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not start another
    return [line.removesuffix("\r") for line in lines]


def _language(path: Path) -> str:
    """The language a file's suffix names (train.zh -> zh; the suffix under .enc), '' for .txt."""
    name = path.name.removesuffix(".enc")
    suffix = Path(name).suffix.lstrip(".")
    return "" if suffix.lower() in ("", "txt") else suffix

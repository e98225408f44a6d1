"""Text normalisation and language detection for raw pretraining corpora (duplicates: `data.dedup`).

NFKC alone is wrong for Chinese: it turns the full-width comma "，" into ",", so Chinese sentences
would end up with English punctuation. Here full-width punctuation stays full-width after a CJK
character and becomes half-width elsewhere; half-width punctuation squeezed between two CJK
characters becomes full-width. Full-width letters and digits (１９９８) become ASCII, as NFKC does.
"""

from __future__ import annotations

import re
import unicodedata

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af"
_CJK_CHAR = re.compile(f"[{_CJK}]")
_CJK_CONTEXT = re.compile(f"[{_CJK}，。！？：；、（）《》“”「」]")  # after these, punctuation stays full-width
# Control characters except tab and newline, plus zero-width characters and the BOM.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\u2060\ufeff]")
_FULL_PUNCT = "，！？：；（）［］｛｝＂＇"
_HALF_PUNCT = ",!?:;()[]{}\"'"
_TO_FULL = dict(zip(_HALF_PUNCT, _FULL_PUNCT))
_TOKEN = re.compile(f"[{_FULL_PUNCT}]|(?<=[{_CJK}])[,!?:;](?=[{_CJK}])")
_SPACES = re.compile(r"[ \t\u00a0\u3000]+")
_CJK_GAP = re.compile(f"(?<={_CJK_CONTEXT.pattern}) (?={_CJK_CONTEXT.pattern})")
_BLANK_LINES = re.compile(r"\n{3,}")
_SURROGATE = re.compile("[\ud800-\udfff]")


def unicode_problem(text: str) -> str | None:
    """An unpaired surrogate (JSON may spell one, "\\ud800") is not a character: encoders and
    tokenizers fail on it deep inside, so readers refuse it where it is."""
    match = _SURROGATE.search(text)
    return f"text holds an unpaired surrogate (U+{ord(match.group()):04X}): not valid Unicode" if match else None


def normalize(text: str) -> str:
    """Clean one document: controls removed, Unicode and punctuation width made consistent,
    whitespace collapsed (and removed between CJK characters, where it is never meaningful)."""
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    pieces, start = [], 0
    for match in _TOKEN.finditer(text):
        pieces.append(unicodedata.normalize("NFKC", text[start:match.start()]))
        pieces.append(_punct(match.group(), text, match.start()))
        start = match.end()
    pieces.append(unicodedata.normalize("NFKC", text[start:]))
    lines = (_CJK_GAP.sub("", _SPACES.sub(" ", line)).strip() for line in "".join(pieces).split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def _punct(char: str, text: str, at: int) -> str:
    if char in _TO_FULL:  # half-width between two CJK characters (the pattern checked both sides)
        return _TO_FULL[char]
    before = text[:at].rstrip()
    after_cjk = bool(before) and bool(_CJK_CONTEXT.match(before[-1]))
    return char if after_cjk else unicodedata.normalize("NFKC", char)


def language(text: str) -> str:
    """'zh', 'en', 'mixed' or 'other' from the share of CJK characters among letters."""
    cjk = len(_CJK_CHAR.findall(text))
    latin = sum(1 for c in text if c.isascii() and c.isalpha())
    letters = cjk + latin
    if letters == 0:
        return "other"
    share = cjk / letters
    return "zh" if share >= 0.8 else "en" if share <= 0.2 else "mixed"

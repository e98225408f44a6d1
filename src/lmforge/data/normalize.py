"""Text normalisation and duplicate detection for raw pretraining corpora.

NFKC alone is wrong for Chinese: it turns the full-width comma "，" into ",", so Chinese sentences
would end up with English punctuation. Here full-width punctuation stays full-width after a CJK
character and becomes half-width elsewhere; half-width punctuation squeezed between two CJK
characters becomes full-width. Full-width letters and digits (１９９８) become ASCII, as NFKC does.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Any

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


def fingerprint(text: str) -> bytes:
    """Exact-duplicate key: a hash of the text with all whitespace removed."""
    return hashlib.blake2b("".join(text.split()).encode("utf-8"), digest_size=16).digest()


class NearDuplicates:
    """MinHash-LSH over character 5-gram shingles (datasketch): catches copies with small edits,
    which exact hashing misses (re-posted news with a changed date line, say)."""

    def __init__(self, threshold: float = 0.8, num_perm: int = 128):
        from datasketch import MinHashLSH

        self.num_perm = num_perm
        self.index: Any = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self.count = 0

    def seen(self, text: str) -> bool:
        """True if a near-duplicate was added before; otherwise remember this text."""
        from datasketch import MinHash

        compact = "".join(text.split())
        shingles = {compact[i:i + 5] for i in range(max(1, len(compact) - 4))}
        signature = MinHash(num_perm=self.num_perm)
        signature.update_batch([s.encode("utf-8") for s in shingles])
        if self.index.query(signature):
            return True
        self.index.insert(str(self.count), signature)
        self.count += 1
        return False

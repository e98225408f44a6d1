"""Find and redact personal data (PII) in Chinese and English text, and in whole data files.

Detection is a regex candidate followed by a validator: a long digit run becomes an ID or a bank
card only if its checksum (and birth date, for IDs) holds, because the digit runs in real corpora
are mostly order numbers, timestamps and dates, and redacting those damages the data for no
privacy gain. Boundaries are lookarounds such as `(?<!\\d)`, never `\\b`: Python counts CJK
characters as word characters, so `\\b` does not fire between 号 and the digit after it.
Patterns are compiled with re.ASCII, so full-width digits (１３８...) are not detected.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from lmforge.atomic import write_file
from lmforge.data.readers import Row, read_rows
from lmforge.data.writers import Record, writer_for
from lmforge.errors import LmforgeError

# Kinds in priority order: when two candidates start at the same place and are equally long,
# the earlier kind wins (an 18-digit number that is both a valid ID and Luhn-valid is an ID).
PLACEHOLDERS: dict[str, str] = {
    "URL_CREDENTIALS": "[CREDENTIALS]",
    "EMAIL": "[EMAIL]",
    "ID": "[ID]",
    "BANK_CARD": "[BANK_CARD]",
    "PHONE": "[PHONE]",
    "IP": "[IP]",
}
KINDS = tuple(PLACEHOLDERS)


@dataclass(frozen=True)
class Span:
    """One piece of personal data: its [start, end) offsets in the text, its kind, and the text."""

    start: int
    end: int
    kind: str
    text: str


@dataclass(frozen=True)
class _Rule:
    """A candidate pattern for one kind and the check a candidate must pass to count as PII.

    The reported span is the pattern's `pii` group when it has one (a URL's userinfo), else the
    whole match.
    """

    kind: str
    pattern: re.Pattern[str]
    accept: Callable[[str, re.Match[str]], bool] = lambda text, match: True

    def spans(self, text: str) -> list[Span]:
        group = "pii" if "pii" in self.pattern.groupindex else 0
        return [Span(m.start(group), m.end(group), self.kind, m.group(group))
                for m in self.pattern.finditer(text) if self.accept(text, m)]


# ---------------------------------------------------------------------------- validators

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK_CHARS = "10X98765432"  # ISO 7064 MOD 11-2, indexed by the weighted sum mod 11


def _valid_resident_id(text: str, match: re.Match[str]) -> bool:
    """GB 11643: the 18th character is a checksum of the first 17, and 7-14 are a birth date."""
    number = match.group().upper()
    total = sum(int(digit) * weight for digit, weight in zip(number, _ID_WEIGHTS))
    return _ID_CHECK_CHARS[total % 11] == number[17] and _valid_birth_date(number[6:14])


def _valid_birth_date(digits: str) -> bool:
    """A real calendar date between 1900 and today; rejects order numbers that start with 2023..."""
    try:
        born = date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return False
    return date(1900, 1, 1) <= born <= date.today()


# Issuer prefixes of real cards: Amex/JCB/Diners (3), Visa (4), Mastercard (5, 2221-2720),
# UnionPay/Discover (6) and Chinese domestic cards such as ICBC's 9558. Without this filter one
# in ten 13-19-digit order numbers or millisecond timestamps (which start with 1 or 20xx)
# would pass Luhn and be redacted.
_CARD_ISSUER = re.compile(r"[34569]|2(?:22[1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720)", re.ASCII)


def _valid_card(text: str, match: re.Match[str]) -> bool:
    """13-19 digits from a known issuer range, passing the Luhn check."""
    digits = re.sub(r"\D", "", match.group())
    return 13 <= len(digits) <= 19 and bool(_CARD_ISSUER.match(digits)) and _luhn(digits)


def _luhn(digits: str) -> bool:
    """Luhn mod 10: double every second digit from the right; the sum must end in 0."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


# A dotted quad right after one of these words is a version number, not an address: `v1.2.3.4`,
# `version 10.0.0.1`, `版本号：2.4.1.0`. We accept missing the odd IP written after "version"
# in exchange for not redacting every four-part version string in release notes.
_VERSION_WORD = re.compile(r"(?:(?<![A-Za-z])(?:v|ver|version)|版本号?)\s*[:：]?\s*$",
                           re.ASCII | re.IGNORECASE)


def _not_version(text: str, match: re.Match[str]) -> bool:
    """True unless the address is preceded by a version word (see _VERSION_WORD)."""
    return not _VERSION_WORD.search(text, max(0, match.start() - 20), match.start())


def _valid_ipv6(text: str, match: re.Match[str]) -> bool:
    """A parseable IPv6 address with at least two non-empty groups and a decimal digit.

    Requiring two groups drops `::`, `::1` and `::2`: the loopback is not personal, and the others
    are mostly Python slices (`a[::2]`) in code-heavy text. Requiring a digit drops scoped names
    that happen to be hex words, such as Ruby's `Cafe::Bad`.
    """
    candidate = match.group()
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    groups = [group for group in re.split(r"[:.]", candidate) if group]
    return len(groups) >= 2 and any(char.isdigit() for char in candidate)


# Image names such as icon@2x.png have the shape of an email address.
_FILE_SUFFIXES = {"png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "ico"}


def _not_file_name(text: str, match: re.Match[str]) -> bool:
    """True unless the 'domain' ends in an image file suffix."""
    return match.group().rsplit(".", 1)[1].lower() not in _FILE_SUFFIXES


# ---------------------------------------------------------------------------- patterns

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_USERINFO_CHAR = r"[A-Za-z0-9\-._~%!$&'()*+,;=]"  # RFC 3986; excludes CJK, so 联系 never joins a URL


def _compile(pattern: str) -> re.Pattern[str]:
    """VERBOSE for the comments below; ASCII so `\\d` means 0-9 and `[1-8]`-style checks agree."""
    return re.compile(pattern, re.ASCII | re.VERBOSE)


_RULES = (
    _Rule("URL_CREDENTIALS", _compile(rf"""
        [A-Za-z][A-Za-z0-9+.\-]*://
        (?P<pii>{_USERINFO_CHAR}*:{_USERINFO_CHAR}+)@      # only user:password; user@ is no secret
    """)),
    _Rule("EMAIL", _compile(r"""
        (?<![A-Za-z0-9_.%+\-])(?<!://)                    # not a URL's user (ssh://git@github.com)
        [A-Za-z0-9_.%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}
        (?![A-Za-z0-9\-])
    """), _not_file_name),
    _Rule("ID", _compile(r"(?<!\d) [1-8]\d{16}[\dXx] (?![\dXx])"), _valid_resident_id),
    _Rule("BANK_CARD", _compile(r"""
        (?<!\d)
        (?: \d{13,19}
          | \d{4}(?P<sep>[ \-])\d{4}(?:(?P=sep)\d{4}){1,2}(?:(?P=sep)\d{1,4})? )  # 4-4-4-4(-3)
        (?!\d)
    """), _valid_card),
    _Rule("PHONE", _compile(r"""                           # mainland mobile, 3-4-4
        (?<![\d+]) (?:(?:\+|00)86[ \-]?)? 1[3-9]\d[ \-]?\d{4}[ \-]?\d{4} (?!\d)
    """)),
    _Rule("PHONE", _compile(r"""                           # landline: 010, 02x or 0xxx area codes
        (?<!\d) (?:\(0(?:10|2\d|[3-9]\d\d)\)\ ?|0(?:10|2\d|[3-9]\d\d)-) [2-9]\d{6,7} (?!\d)
    """)),
    _Rule("PHONE", _compile(r"""                           # international, 8-15 digits in all
        (?<![A-Za-z0-9+]) \+[1-9](?:[ \-()]{0,2}\d){7,14} (?!\d)
    """)),
    _Rule("IP", _compile(rf"(?<![\d.]) (?:{_OCTET}\.){{3}}{_OCTET} (?!\d)(?!\.\d)"), _not_version),
    _Rule("IP", _compile(r"""
        (?<![0-9A-Za-z.])
        (?:[0-9A-Fa-f]{1,4}|(?=::))                        # first group, empty only before '::'
        (?::[0-9A-Fa-f]{0,4}){2,7}                         # an empty group marks the '::'
        (?:(?<=:)(?:\d{1,3}\.){3}\d{1,3})?                 # embedded IPv4 (::ffff:1.2.3.4)
        (?![0-9A-Za-z:])(?!\.\d)
    """), _valid_ipv6),
)


# ---------------------------------------------------------------------------- text

def find_pii(text: str) -> list[Span]:
    """Every piece of PII in `text`, sorted and non-overlapping.

    Overlaps are settled leftmost-longest, then by kind priority, so a URL's `user:pass` beats
    the `pass@host.com` email inside it and an embedded IPv4 stays inside its IPv6 address.
    """
    candidates = [span for rule in _RULES for span in rule.spans(text)]
    candidates.sort(key=lambda s: (s.start, s.start - s.end, KINDS.index(s.kind)))
    chosen: list[Span] = []
    for span in candidates:
        if not chosen or span.start >= chosen[-1].end:
            chosen.append(span)
    return chosen


def redact(text: str, kinds: set[str] | None = None) -> tuple[str, Counter[str]]:
    """Replace each PII span (of `kinds`, default all) with its placeholder; count per kind."""
    wanted = _check_kinds(kinds)
    counts: Counter[str] = Counter()
    parts: list[str] = []
    last = 0
    for span in find_pii(text):
        if span.kind in wanted:
            parts += [text[last:span.start], PLACEHOLDERS[span.kind]]
            last = span.end
            counts[span.kind] += 1
    parts.append(text[last:])
    return "".join(parts), counts


def _check_kinds(kinds: set[str] | None) -> set[str]:
    """All kinds by default; a misspelt kind is an error rather than a silent no-op."""
    if kinds is None:
        return set(KINDS)
    unknown = sorted(kinds - set(KINDS))
    if unknown:
        raise LmforgeError(f"unknown PII kind(s) {', '.join(unknown)}; known: {', '.join(KINDS)}")
    return set(kinds)


# ---------------------------------------------------------------------------- files


def redact_file(src: Path, dst: Path, columns: list[str] | None,
                encoding: str = "utf-8") -> dict:
    """Redact every string (or only `columns`) of a data file into `dst`, in the same format.

    Strings nested in lists and objects (chat `messages`) are redacted too; numbers, booleans
    and nulls are left as they are. `dst` is written atomically and never equals `src`.
    Returns {"file": src, "rows", "counts": {kind: n for every kind}, "rows_changed"}.
    """
    src, dst = Path(src), Path(dst)
    write = writer_for(src, dst, encoding)
    rows = read_rows(src, encoding)
    _check_columns(src, [row.values for row in rows], columns)
    redacted, counts, changed = redact_rows(rows, columns)
    records = [row.values for row in redacted]
    write_file(dst, lambda tmp: write(tmp, records))
    return {"file": str(src), "rows": len(rows), "counts": {kind: counts[kind] for kind in KINDS},
            "rows_changed": changed}


def redact_rows(rows: list[Row], columns: list[str] | None = None) -> tuple[list[Row], Counter[str], int]:
    """Rows with their strings (or only `columns`) redacted, counts per kind, and rows changed."""
    counts: Counter[str] = Counter()
    out, changed = [], 0
    for row in rows:
        found: Counter[str] = Counter()
        values = {key: _redact_value(value, found) if columns is None or key in columns else value
                  for key, value in row.values.items()}
        out.append(Row(row.location, values))
        counts += found
        changed += bool(found)
    return out, counts, changed


def _redact_value(value: Any, counts: Counter[str]) -> Any:
    """Redact a string, or every string inside a list or object; other values pass through."""
    if isinstance(value, str):
        text, found = redact(value)
        counts.update(found)
        return text
    if isinstance(value, list):
        return [_redact_value(item, counts) for item in value]
    if isinstance(value, dict):
        return {key: _redact_value(item, counts) for key, item in value.items()}
    return value


def _check_columns(src: Path, records: list[Record], columns: list[str] | None) -> None:
    """A named column missing from every row is a typo that would leave PII in place."""
    present = {key for record in records for key in record}
    missing = [name for name in columns or [] if name not in present]
    if records and missing:
        raise LmforgeError(f"{src}: no column(s) {', '.join(missing)}; "
                           f"columns are: {', '.join(sorted(present))}")

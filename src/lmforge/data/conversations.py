"""Turn rows of instruction or Q&A data into chat conversations for supervised fine-tuning.

Four common shapes are accepted and told apart by their columns (see FORMATS). A conversation is
a list of `{"role": "system"|"user"|"assistant", "content": str}` messages: an optional leading
system message, then user and assistant turns alternating, starting with the user and ending with
the assistant (the turn the model learns to write). Every row is checked before anything is
returned and all problems are raised together, so one run shows everything to fix in the file.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from lmforge.config import GenerationConfig
from lmforge.data.readers import Row
from lmforge.data.translation import TranslationPrompt, render_prompt, template_fields
from lmforge.errors import DataError, LmforgeError, Problem

Message = dict[str, str]
Conversation = list[Message]

FORMATS: dict[str, str] = {
    "qa": "columns question + answer (or query + response, prompt + completion, input + output; "
          "or any two columns named by question_column and answer_column)",
    "alpaca": "columns instruction + output, optional input and system",
    "sharegpt": 'column conversations: a list of {"from": human|gpt|system, "value": text}',
    "messages": 'column messages: a list of {"role": system|user|assistant, "content": text}',
    "translation": "columns source + target, optional src_lang and tgt_lang (or two aligned text files "
                   "SOURCE,TARGET); the prompt is generation.translation_prompt",
}

# Q&A column pairs, tried in order. The alternatives to question/answer are only used when there
# is no `instruction` column: then e.g. `input`/`output` are parts of an instruction record, and
# reading them as a Q&A pair would silently drop the instruction.
_QA_PAIRS = [("question", "answer"), ("query", "response"), ("prompt", "completion"),
             ("input", "output")]

_ROLES = {"system": "system", "user": "user", "assistant": "assistant"}
_SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", **_ROLES}

# Columns are taken from the first few rows only: enough to see past one row that lacks an
# optional column, and what a user looking at the head of the file would see.
_SAMPLE_ROWS = 10

_Converter = Callable[[Row, list[Problem]], Conversation]
_DEFAULT_PROMPT = TranslationPrompt.from_config(GenerationConfig())


def detect_format(rows: list[Row], question_column: str = "", answer_column: str = "") -> str:
    """The name of the format in FORMATS that the rows' columns match.

    Naming the question and answer columns selects the `qa` format with those columns. Otherwise
    the most specific shape wins: messages, then sharegpt, then alpaca, then qa. Raises
    LmforgeError naming the columns found and the accepted formats when nothing matches.
    """
    if question_column or answer_column:
        qa_columns(rows, question_column, answer_column)
        return "qa"
    columns = _columns(rows)
    if "messages" in columns:
        return "messages"
    if "conversations" in columns:
        return "sharegpt"
    if "instruction" in columns and "output" in columns:
        return "alpaca"
    if "source" in columns and "target" in columns:
        return "translation"
    if _detect_qa_pair(columns) is not None:
        return "qa"
    raise LmforgeError(_unknown_format_message(columns))


def to_conversations(rows: list[Row], fmt: str, question_column: str = "", answer_column: str = "",
                     prompt: TranslationPrompt = _DEFAULT_PROMPT) -> list[tuple[str, Conversation]]:
    """Convert every row to a (location, conversation) pair, in row order.

    `fmt` is a name from FORMATS, usually from `detect_format`; the column overrides apply to
    `qa` only, `prompt` to `translation` only. Raises DataError listing every problem in every row
    (field = the column), so either all rows convert or nothing is returned.
    """
    convert = _converter(rows, fmt, question_column, answer_column, prompt)
    problems: list[Problem] = []
    pairs = [(row.location, convert(row, problems)) for row in rows]
    if problems:
        raise DataError(problems)
    return pairs


# ---------------------------------------------------------------------------- format choice

def _converter(rows: list[Row], fmt: str, question_column: str, answer_column: str,
               prompt: TranslationPrompt) -> _Converter:
    """The per-row conversion for `fmt`, with its columns resolved once for all rows."""
    if fmt not in FORMATS:
        raise LmforgeError(f"unknown conversation format {fmt!r}; accepted: {', '.join(FORMATS)}")
    if (question_column or answer_column) and fmt != "qa":
        raise LmforgeError(f"question_column and answer_column apply to the qa format only, "
                           f"not {fmt!r}")
    if fmt == "qa":
        question, answer = qa_columns(rows, question_column, answer_column)
        return partial(_from_qa, question=question, answer=answer)
    if fmt == "translation":
        template_fields(prompt.template)
        return partial(_from_translation, prompt=prompt)
    return _CONVERTERS[fmt]


def qa_columns(rows: list[Row], question_column: str, answer_column: str) -> tuple[str, str]:
    """The (question, answer) columns: the caller's, or the first known pair present."""
    columns = _columns(rows)
    if question_column or answer_column:
        if not (question_column and answer_column):
            raise LmforgeError("set both question_column and answer_column, or neither to "
                               "detect them")
        missing = [name for name in (question_column, answer_column) if name not in columns]
        if missing:
            raise LmforgeError(f"column(s) {', '.join(missing)} not found "
                               f"(columns found: {_names(columns)})")
        return question_column, answer_column
    pair = _detect_qa_pair(columns)
    if pair is None:
        raise LmforgeError(_unknown_format_message(columns))
    return pair


def _detect_qa_pair(columns: dict[str, None]) -> tuple[str, str] | None:
    """The first known Q&A column pair present in `columns`, if any."""
    pairs = _QA_PAIRS if "instruction" not in columns else _QA_PAIRS[:1]
    return next(((q, a) for q, a in pairs if q in columns and a in columns), None)


def _columns(rows: list[Row]) -> dict[str, None]:
    """Column names of the first rows, in first-seen order (a dict keeps order, unlike a set)."""
    if not rows:
        raise LmforgeError("no rows to read conversations from")
    return dict.fromkeys(name for row in rows[:_SAMPLE_ROWS] for name in row.values)


def _unknown_format_message(columns: dict[str, None]) -> str:
    accepted = "\n".join(f"  {name}: {columns_}" for name, columns_ in FORMATS.items())
    return (f"cannot tell the conversation format from the columns found: {_names(columns)}\n"
            f"accepted formats:\n{accepted}")


def _names(columns: dict[str, None]) -> str:
    return ", ".join(columns) or "none"


# ---------------------------------------------------------------------------- column formats

def _from_qa(row: Row, problems: list[Problem], question: str, answer: str) -> Conversation:
    """One user turn and one assistant turn."""
    prompt = _required_text(row, question, "question", problems)
    reply = _required_text(row, answer, "answer", problems)
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}]


def _from_alpaca(row: Row, problems: list[Problem]) -> Conversation:
    """Instruction (+ input after a blank line) as the user turn, with an optional system turn."""
    instruction = _required_text(row, "instruction", "instruction", problems)
    extra = _optional_text(row, "input", problems)
    reply = _required_text(row, "output", "answer", problems)
    system = _optional_text(row, "system", problems)
    prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    head = [{"role": "system", "content": system}] if system.strip() else []
    return head + [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}]


def _from_translation(row: Row, problems: list[Problem], prompt: TranslationPrompt) -> Conversation:
    """The source in the direction's prompt as the user turn, the target as the answer. A row's
    src_lang/tgt_lang win over the configured ones, so one file may hold both directions."""
    source = _required_text(row, "source", "source", problems)
    target = _required_text(row, "target", "target", problems)
    src = _optional_text(row, "src_lang", problems).strip() or prompt.src_lang
    tgt = _optional_text(row, "tgt_lang", problems).strip() or prompt.tgt_lang
    try:
        text = render_prompt(prompt.template, source, src, tgt)
    except ValueError as exc:
        problems.append(Problem(row.location, "", str(exc)))
        text = ""
    return [{"role": "user", "content": text}, {"role": "assistant", "content": target}]


def _required_text(row: Row, column: str, what: str, problems: list[Problem]) -> str:
    """The column's text, or "" after recording why it is unusable."""
    value = row.values.get(column)
    message = None
    if value is None:
        message = f"missing {what}" + ("" if column in row.values else f" (no column '{column}')")
    elif not isinstance(value, str):
        # Not coerced: a number where text belongs usually means swapped columns.
        message = f"{what} must be a string, got {_kind(value)}"
    elif not value.strip():
        message = f"empty {what}"
    if message is None:
        return value
    problems.append(Problem(row.location, column, message))
    return ""


def _optional_text(row: Row, column: str, problems: list[Problem]) -> str:
    """The column's text, "" when absent or null; a non-string is still a problem."""
    value = row.values.get(column)
    if value is None:
        return ""
    if not isinstance(value, str):
        problems.append(Problem(row.location, column,
                                f"{column} must be a string, got {_kind(value)}"))
        return ""
    return value


# ---------------------------------------------------------------------------- message lists

def _from_turns(row: Row, problems: list[Problem], column: str, role_key: str, content_key: str,
                roles: dict[str, str]) -> Conversation:
    """A list of role/content objects, with roles mapped through `roles` and order checked.

    Empty system messages are dropped rather than reported: exports often carry a blank system
    prompt, and it means the same as none.
    """
    turns = row.values.get(column)
    if not isinstance(turns, list):
        problems.append(Problem(row.location, column, _not_a_list(row, column, turns)))
        return []
    messages: Conversation = []
    found: list[str] = []
    for number, turn in enumerate(turns, start=1):
        message = _message(turn, number, role_key, content_key, roles, found)
        if message is not None:
            messages.append(message)
    # Order is only meaningful once every role is known; otherwise it would repeat those findings.
    if len(messages) == len(turns):
        order = _order_problem([message["role"] for message in messages])
        found += [order] if order else []
    problems.extend(Problem(row.location, column, message) for message in found)
    return [m for m in messages if m["role"] != "system" or m["content"].strip()]


def _message(turn: Any, number: int, role_key: str, content_key: str, roles: dict[str, str],
             found: list[str]) -> Message | None:
    """One message, or None when its role is unusable; content problems go to `found`."""
    where = f"message {number}"
    if not isinstance(turn, dict):
        found.append(f"{where}: expected an object with '{role_key}' and '{content_key}', "
                     f"got {_kind(turn)}")
        return None
    role, content = turn.get(role_key), turn.get(content_key)
    mapped = roles.get(role) if isinstance(role, str) else None  # a list role is unhashable
    if content is None:
        found.append(f"{where}: missing '{content_key}'")
    elif not isinstance(content, str):
        found.append(f"{where}: '{content_key}' must be a string, got {_kind(content)}")
    elif not content.strip() and mapped != "system":
        found.append(f"{where}: empty '{content_key}'")
    if role is None:
        found.append(f"{where}: missing '{role_key}'")
        return None
    if mapped is None:
        found.append(f"{where}: unknown role {role!r} (accepted: {', '.join(roles)})")
        return None
    return {"role": mapped, "content": content if isinstance(content, str) else ""}


def _order_problem(roles: list[str]) -> str | None:
    """What breaks `[system] user assistant user assistant ... assistant`, if anything."""
    previous = ""
    for number, role in enumerate(roles, start=1):
        if number == 1 and role == "system":
            previous = role
            continue
        expected = "assistant" if previous == "user" else "user"
        if role != expected:
            after = f"after '{previous}'" if previous else "or 'system' first"
            return f"message {number}: expected '{expected}' {after}, got '{role}'"
        previous = role
    if "assistant" not in roles:
        return "no assistant turn" + ("" if roles else " (the conversation is empty)")
    if previous != "assistant":
        return (f"message {len(roles)}: the conversation ends with '{previous}'; "
                f"the last turn must be 'assistant'")
    return None


def _not_a_list(row: Row, column: str, value: Any) -> str:
    if column not in row.values:
        return f"missing column '{column}'"
    message = f"expected a list of messages, got {_kind(value)}"
    if isinstance(value, str):
        message += " (JSON text in a CSV cell is not parsed; use .jsonl, .json or Parquet)"
    return message


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


# Every format but qa and translation, which _converter sets up from the rows and the prompt.
_CONVERTERS: dict[str, _Converter] = {
    "alpaca": _from_alpaca,
    "sharegpt": partial(_from_turns, column="conversations", role_key="from",
                        content_key="value", roles=_SHAREGPT_ROLES),
    "messages": partial(_from_turns, column="messages", role_key="role", content_key="content",
                        roles=_ROLES),
}

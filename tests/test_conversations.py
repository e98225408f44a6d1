"""Each conversation format is detected and converted; every bad row is reported with its place."""

from __future__ import annotations

from typing import Any

import pytest

from lmforge.data.conversations import FORMATS, detect_format, to_conversations
from lmforge.data.readers import Row
from lmforge.errors import DataError, LmforgeError, Problem


def rows(*records: dict[str, Any]) -> list[Row]:
    return [Row(f"d.jsonl:{line}", record) for line, record in enumerate(records, start=1)]


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def system(text: str) -> dict[str, str]:
    return {"role": "system", "content": text}


def problems(data: list[Row], fmt: str = "", **columns: str) -> list[Problem]:
    """The problems to_conversations reports, detecting the format unless given."""
    with pytest.raises(DataError) as caught:
        to_conversations(data, fmt or detect_format(data, **columns), **columns)
    return caught.value.problems


def chat(*pairs: tuple[str, str], key: str = "messages", role: str = "role",
         content: str = "content") -> list[Row]:
    return rows({key: [{role: r, content: c} for r, c in pairs]})


# ---------------------------------------------------------------------------- detection

@pytest.mark.parametrize("question, answer", [("question", "answer"), ("query", "response"),
                                              ("prompt", "completion"), ("input", "output")])
def test_qa_detected_and_converted_for_each_column_pair(question: str, answer: str) -> None:
    data = rows({question: "2+2?", answer: "4", "id": 7})
    assert detect_format(data) == "qa"
    assert to_conversations(data, "qa") == [("d.jsonl:1", [user("2+2?"), assistant("4")])]


def test_each_format_is_detected() -> None:
    assert detect_format(rows({"instruction": "a", "input": "", "output": "b"})) == "alpaca"
    assert detect_format(rows({"conversations": []})) == "sharegpt"
    assert detect_format(rows({"messages": [], "id": 1})) == "messages"
    assert detect_format(rows({"source": "a", "target": "b"})) == "translation"
    assert list(FORMATS) == ["qa", "alpaca", "sharegpt", "messages", "translation"]


def test_input_output_with_an_instruction_column_is_not_qa() -> None:
    # Reading input/output as the Q&A would silently drop the instruction.
    with pytest.raises(LmforgeError, match="instruction, input, result"):
        detect_format(rows({"instruction": "a", "input": "b", "result": "c"}))


def test_unknown_format_names_columns_found_and_accepted_formats() -> None:
    data = rows({"text": "x", "label": "pos"}, {"text": "y", "score": 1})
    with pytest.raises(LmforgeError) as caught:
        detect_format(data)
    message = str(caught.value)
    assert "columns found: text, label, score" in message
    for name, columns in FORMATS.items():
        assert f"{name}: {columns}" in message
    assert "question + answer" in message and "instruction + output" in message


def test_no_rows_is_an_error() -> None:
    with pytest.raises(LmforgeError, match="no rows"):
        detect_format([])


def test_unknown_format_name_is_an_error() -> None:
    with pytest.raises(LmforgeError, match="unknown conversation format 'chatml'.*qa, alpaca"):
        to_conversations(rows({"question": "q", "answer": "a"}), "chatml")


# ---------------------------------------------------------------------------- column override

def test_column_override_selects_qa_with_those_columns() -> None:
    data = rows({"frage": "Wie spät?", "antwort": "Drei.", "question": "ignored", "answer": "x"})
    columns = {"question_column": "frage", "answer_column": "antwort"}
    assert detect_format(data, **columns) == "qa"
    assert to_conversations(data, "qa", **columns) == [
        ("d.jsonl:1", [user("Wie spät?"), assistant("Drei.")])]


def test_column_override_needs_both_columns_present() -> None:
    data = rows({"frage": "q", "antwort": "a"})
    with pytest.raises(LmforgeError, match="both question_column and answer_column"):
        detect_format(data, question_column="frage")
    with pytest.raises(LmforgeError, match=r"reply not found \(columns found: frage, antwort\)"):
        detect_format(data, question_column="frage", answer_column="reply")
    with pytest.raises(LmforgeError, match="qa format only"):
        to_conversations(data, "alpaca", question_column="frage", answer_column="antwort")


# ---------------------------------------------------------------------------- conversion

def test_alpaca_with_and_without_input() -> None:
    data = rows({"instruction": "Translate.", "input": "Bonjour", "output": "Hello"},
                {"instruction": "Name a colour.", "input": "", "output": "Red"},
                {"instruction": "Say hi.", "output": "Hi", "system": "Be brief."},
                {"instruction": "Count.", "input": None, "output": "1 2", "system": ""})
    assert [conversation for _, conversation in to_conversations(data, "alpaca")] == [
        [user("Translate.\n\nBonjour"), assistant("Hello")],
        [user("Name a colour."), assistant("Red")],
        [system("Be brief."), user("Say hi."), assistant("Hi")],
        [user("Count."), assistant("1 2")],
    ]


def test_sharegpt_roles_are_mapped() -> None:
    data = chat(("system", "Be kind."), ("human", "Hi"), ("gpt", "Hello"), ("user", "Bye"),
                ("assistant", "Bye!"), key="conversations", role="from", content="value")
    assert to_conversations(data, detect_format(data)) == [("d.jsonl:1", [
        system("Be kind."), user("Hi"), assistant("Hello"), user("Bye"), assistant("Bye!")])]


def test_messages_multi_turn_with_system_keeps_only_role_and_content() -> None:
    turns = [{"role": "system", "content": "You are terse.", "name": "sys"},
             {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"},
             {"role": "user", "content": "And 3+3?"}, {"role": "assistant", "content": "6"}]
    data = [Row("d.json:row 1", {"messages": turns})]
    assert to_conversations(data, detect_format(data)) == [("d.json:row 1", [
        system("You are terse."), user("2+2?"), assistant("4"), user("And 3+3?"),
        assistant("6")])]


def test_empty_system_message_is_dropped() -> None:
    data = chat(("system", ""), ("user", "q"), ("assistant", "a"))
    assert to_conversations(data, "messages") == [("d.jsonl:1", [user("q"), assistant("a")])]


# ---------------------------------------------------------------------------- validation

def test_qa_missing_empty_and_non_string_values() -> None:
    data = rows({"question": "q", "answer": "a"},
                {"question": "q", "answer": "  "},
                {"question": "", "answer": 4},
                {"question": None},
                {"query": "q", "answer": "a"})
    assert problems(data) == [
        Problem("d.jsonl:2", "answer", "empty answer"),
        Problem("d.jsonl:3", "question", "empty question"),
        Problem("d.jsonl:3", "answer", "answer must be a string, got int"),
        Problem("d.jsonl:4", "question", "missing question"),
        Problem("d.jsonl:4", "answer", "missing answer (no column 'answer')"),
        Problem("d.jsonl:5", "question", "missing question (no column 'question')"),
    ]


def test_qa_override_problems_name_the_overridden_column() -> None:
    data = rows({"frage": "q", "antwort": ""})
    assert problems(data, question_column="frage", answer_column="antwort") == [
        Problem("d.jsonl:1", "antwort", "empty answer")]


def test_alpaca_problems() -> None:
    data = rows({"instruction": "", "input": 3, "output": "", "system": ["x"]},
                {"instruction": "i"})
    assert problems(data, "alpaca") == [
        Problem("d.jsonl:1", "instruction", "empty instruction"),
        Problem("d.jsonl:1", "input", "input must be a string, got int"),
        Problem("d.jsonl:1", "output", "empty answer"),
        Problem("d.jsonl:1", "system", "system must be a string, got list"),
        Problem("d.jsonl:2", "output", "missing answer (no column 'output')"),
    ]


def test_conversation_that_is_not_a_list() -> None:
    data = rows({"messages": '[{"role": "user"}]'}, {"messages": None}, {"id": 3})
    assert problems(data, "messages") == [
        Problem("d.jsonl:1", "messages", "expected a list of messages, got str (JSON text in a "
                                         "CSV cell is not parsed; use .jsonl, .json or Parquet)"),
        Problem("d.jsonl:2", "messages", "expected a list of messages, got null"),
        Problem("d.jsonl:3", "messages", "missing column 'messages'"),
    ]


def test_message_shape_content_and_unknown_roles() -> None:
    turns = ["hi", {"role": "user", "content": 5}, {"role": "tool", "content": "x"},
             {"content": "x"}, {"role": "assistant", "content": " "}, {"role": "user"}]
    found = problems(rows({"messages": turns}), "messages")
    assert found == [Problem("d.jsonl:1", "messages", m) for m in [
        "message 1: expected an object with 'role' and 'content', got str",
        "message 2: 'content' must be a string, got int",
        "message 3: unknown role 'tool' (accepted: system, user, assistant)",
        "message 4: missing 'role'",
        "message 5: empty 'content'",
        "message 6: missing 'content'",
    ]]


def test_sharegpt_unknown_role_names_its_accepted_roles_and_field() -> None:
    data = chat(("human", "q"), ("bot", "a"), key="conversations", role="from", content="value")
    assert problems(data) == [Problem("d.jsonl:1", "conversations", "message 2: unknown role "
                                      "'bot' (accepted: human, gpt, system, user, assistant)")]


@pytest.mark.parametrize("turns, message", [
    ([("user", "q"), ("user", "q2"), ("assistant", "a")],
     "message 2: expected 'assistant' after 'user', got 'user'"),
    ([("system", "s"), ("user", "q"), ("user", "q2")],
     "message 3: expected 'assistant' after 'user', got 'user'"),
    ([("assistant", "a"), ("user", "q")],
     "message 1: expected 'user' or 'system' first, got 'assistant'"),
    ([("system", "s"), ("assistant", "a")],
     "message 2: expected 'user' after 'system', got 'assistant'"),
    ([("user", "q"), ("assistant", "a"), ("system", "s"), ("assistant", "b")],
     "message 3: expected 'user' after 'assistant', got 'system'"),
    ([("user", "q"), ("assistant", "a"), ("user", "q2")],
     "message 3: the conversation ends with 'user'; the last turn must be 'assistant'"),
    ([("system", "s"), ("user", "q")], "no assistant turn"),
    ([], "no assistant turn (the conversation is empty)"),
])
def test_role_order(turns: list[tuple[str, str]], message: str) -> None:
    assert problems(chat(*turns), "messages") == [Problem("d.jsonl:1", "messages", message)]


def test_all_problems_in_all_rows_are_reported_together() -> None:
    data = rows({"messages": [user("ok"), assistant("fine")]},
                {"messages": [user("q"), user("q2")]},
                {"messages": "oops"},
                {"messages": [{"role": "bot", "content": ""}]})
    with pytest.raises(DataError) as caught:
        to_conversations(data, "messages")
    assert [(p.location, p.field) for p in caught.value.problems] == [
        ("d.jsonl:2", "messages"), ("d.jsonl:3", "messages"), ("d.jsonl:4", "messages"),
        ("d.jsonl:4", "messages")]
    text = str(caught.value)
    assert text.startswith("4 data problem(s) found")
    assert "d.jsonl:2 [messages]: message 2: expected 'assistant' after 'user', got 'user'" in text
    assert "d.jsonl:4 [messages]: message 1: unknown role 'bot'" in text

"""The house stays in order: no import circles, no capability decided by a task's name, keys that do
not apply to a task refused by name, and every command following one convention."""

import ast
import importlib
import re
from pathlib import Path

import pytest

from lmforge import config
from lmforge.errors import LmforgeError

SRC = Path(__file__).resolve().parent.parent / "src" / "lmforge"


def _module(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """lmforge modules `path` imports anywhere (function-level imports included: a cycle dodged by one
    is still a cycle), except under `if TYPE_CHECKING:`."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.update(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                         for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {m for m in found if m in known and m != name}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            connect(v)
    return found


def test_no_import_cycles():
    paths = {_module(p): p for p in SRC.rglob("*.py")}
    graph = {name: _imports(path, name, set(paths)) for name, path in paths.items()}
    assert _cycles(graph) == []
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]  # the detector itself works


def test_no_capability_is_decided_by_a_task_name():
    pattern = re.compile(r"task\.name\s*[!=]=|\.task\s*[!=]=\s*[\"']|hasattr\(\s*(self\.)?task")
    offenders = [f"{p.relative_to(SRC)}:{n}" for p in SRC.rglob("*.py")
                 for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert offenders == []


@pytest.mark.parametrize("overrides, key", [
    (["method=lora"], "method=lora"),
    (["lora.r=4"], "lora.r"),
    (["pretrain.mlm_probability=0.3"], "pretrain.mlm_probability"),
    (["objective=clm"], "objective=clm"),
    (["task=generation", "classification.multi_label=true"], "classification.multi_label"),
    (["task=pretrain", "generation.max_new_tokens=8"], "generation.max_new_tokens"),
    (["ner.scheme=bioes"], "ner.scheme"),
    (["task=ner", "classification.multi_label=true"], "classification.multi_label"),
])
def test_keys_that_do_not_apply_are_refused_by_name(tiny_cfg, tmp_path, overrides, key):
    from lmforge.run import prepare

    with pytest.raises(LmforgeError, match=re.escape(key)):
        prepare(tiny_cfg(*overrides))
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_every_command_is_a_run_function_with_its_flags():
    from lmforge.cli import COMMANDS

    for name, command in COMMANDS.items():
        run = importlib.import_module(f"lmforge.commands.{name.replace('-', '_')}").run
        params = run.__code__.co_varnames[: run.__code__.co_argcount + run.__code__.co_kwonlyargcount]
        for names, options in command.flags:
            dest = options.get("dest") or names[-1].lstrip("-").replace("-", "_")
            assert dest in params, f"{name}: flag {names[-1]} has no parameter in run()"
        assert command.uses_config == ("cfg" in params), name


def test_config_defaults_have_docs():
    assert all(doc for _, doc, _ in config.describe())

"""The module boundaries of docs/architecture.md, checked on the source itself.

`lint-imports` (in .ci/run) checks the import contracts of pyproject.toml; these tests check
what it cannot: module sizes, cycles through imports made inside functions, the one module
that runs SLURM's commands, and probing of stores and executors by attribute name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "metalab"
MAX_LINES = 600
SLURM_COMMANDS = {"sbatch", "squeue", "sacct", "scancel", "scontrol"}
COMMANDS_MODULE = "metalab.executors.slurm.commands"
FAKE_COMMANDS_MODULE = "metalab.testing.slurm"
"""The fake SLURM for tests: it answers the commands `commands` runs, and runs none."""


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The metalab modules `name` imports, at any depth of its code (functions included),
    except under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    type_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and ast.unparse(block.test).endswith("TYPE_CHECKING")
        for node in ast.walk(block)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            candidates = [f"{target}.{alias.name}" for alias in node.names] + [target]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in MODULES and "." in candidate:
                candidate = candidate.rpartition(".")[0]
            if candidate in MODULES and candidate != name:
                found.add(candidate)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_function_level_imports_included():
    graph = {name: _imports(name, path) for name, path in MODULES.items()}
    # a package's __init__ re-exporting its own modules is not a cycle of concepts
    for name in graph:
        graph[name] = {m for m in graph[name] if not name.startswith(m + ".")}
    assert _cycles(graph) == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_holds_more_than_600_lines(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines: split it by concept"


def _command_names(path: Path) -> set[str]:
    """SLURM command names written as whole strings, outside `__all__` lists."""
    tree = ast.parse(path.read_text())
    exported = {
        id(node)
        for assign in ast.walk(tree)
        if isinstance(assign, ast.Assign) and "__all__" in ast.unparse(assign.targets[0])
        for node in ast.walk(assign.value)
    }
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and node.value in SLURM_COMMANDS
        and id(node) not in exported
    }


def test_only_one_module_names_slurm_commands():
    named = {
        name: _command_names(path)
        for name, path in MODULES.items()
        if name not in (COMMANDS_MODULE, FAKE_COMMANDS_MODULE) and _command_names(path)
    }
    assert named == {}


PROBES = {"getattr", "hasattr"}


def _probes_of_backends(path: Path) -> list[str]:
    """`getattr`/`hasattr` calls on something named a store or an executor, and
    `inspect.signature` calls."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        func = ast.unparse(node.func)
        target = ast.unparse(node.args[0]).lower() if node.args else ""
        if func in PROBES and ("store" in target or "executor" in target):
            found.append(f"{func}({target}, ...) at line {node.lineno}")
        if func in ("inspect.signature", "signature") and "executor" in target:
            found.append(f"{func}({target}) at line {node.lineno}")
    return found


@pytest.mark.parametrize(
    "name",
    sorted(n for n in MODULES if not n.startswith(("metalab.stores", "metalab.executors"))),
)
def test_stores_and_executors_are_not_probed_outside_their_packages(name):
    assert _probes_of_backends(MODULES[name]) == []


def test_the_checks_see_what_they_look_for(tmp_path):
    """The checks above find a cycle, a probe and a command name when there is one."""
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    probe = tmp_path / "probe.py"
    probe.write_text("def f(store):\n    return hasattr(store, 'query_records')\n")
    assert _probes_of_backends(probe) == ["hasattr(store, ...) at line 2"]
    graph = {name: _imports(name, path) for name, path in MODULES.items()}
    assert "metalab.execute" in graph["metalab.executors.inline"]
    assert _command_names(MODULES[COMMANDS_MODULE]) >= {"sbatch", "squeue", "sacct"}

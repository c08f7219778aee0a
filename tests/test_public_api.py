"""The public surface: one explicit `__all__`, and a light `import metalab`."""

from __future__ import annotations
import __future__

import inspect
import json
import subprocess
import sys

import pytest

import metalab

HEAVY = ("distributed", "dask_jobqueue", "psycopg", "pandas", "rich", "bokeh", "matplotlib")


def public_names() -> set[str]:
    """Names `metalab/__init__.py` binds for users: not private, not modules, not `__future__`."""
    return {
        name
        for name, value in vars(metalab).items()
        if not name.startswith("_")
        and not inspect.ismodule(value)
        and not isinstance(value, __future__._Feature)
    }


def test_all_has_no_duplicates():
    assert len(metalab.__all__) == len(set(metalab.__all__))


def test_every_name_in_all_exists():
    missing = [name for name in metalab.__all__ if not hasattr(metalab, name)]
    assert missing == []


def test_names_in_all_are_not_shadowed_by_submodules():
    modules = [name for name in metalab.__all__ if inspect.ismodule(getattr(metalab, name))]
    assert modules == []


def test_every_public_attribute_is_in_all():
    exported = set(metalab.__all__) - {"__version__"}
    assert public_names() == exported


@pytest.mark.parametrize(
    "name",
    [
        "operation",
        "Experiment",
        "grid",
        "random",
        "manual",
        "loguniform",
        "uniform",
        "choice",
        "seeds",
        "run",
        "load_results",
        "context_spec",
        "FilePath",
        "DirPath",
        "ProcessExecutor",
        "InlineExecutor",
        "SeedBundle",
        "RunStatus",
        "Codec",
        "register_codec",
        "StoreError",
        "StoreFormatError",
        "RunsFailedWarning",
        "SweepInterrupted",
    ],
)
def test_names_the_spec_uses_are_exported(name):
    assert name in metalab.__all__


def test_import_metalab_is_light():
    code = (
        "import json, sys\n"
        "import metalab\n"
        f"heavy = {HEAVY!r}\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
        "print(json.dumps(loaded))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []

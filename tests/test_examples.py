"""`examples/` run as users run them, so the examples cannot rot."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, cwd: Path) -> str:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


def table_rows(output: str) -> list[str]:
    """The body rows of the first table printed (the lines after its `----` rule)."""
    lines = output.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.strip() and set(line) <= {"-", " "})
    rows = []
    for line in lines[rule + 1 :]:
        if not line.strip():
            break
        rows.append(line)
    return rows


def record_files(store: Path) -> dict[str, tuple[int, bytes]]:
    return {
        path.name: (path.stat().st_mtime_ns, path.read_bytes())
        for path in sorted((store / "runs").iterdir())
    }


@pytest.mark.slow
def test_pi_mc_runs_then_skips_everything(tmp_path):
    out = run_example("pi_mc.py", tmp_path)
    rows = table_rows(out)
    assert len(rows) == 9, out
    assert all("completed" in row for row in rows), out
    assert re.search(r"\b9\b[^\n]*executed", out), out

    store = tmp_path / "runs" / "pi_mc"
    records = [json.loads(p.read_text()) for p in (store / "runs").glob("*.json")]
    assert len(records) == 9
    assert all(r["status"] == "completed" for r in records)
    assert len(list((store / "runs").glob("*.done"))) == 9
    before = record_files(store)

    out = run_example("pi_mc.py", tmp_path)
    assert len(table_rows(out)) == 9, out
    assert re.search(r"\b0\b[^\n]*executed", out), out
    assert re.search(r"\b9\b[^\n]*skipped", out), out
    assert not re.search(r"\b9\b[^\n,]*executed", out), out
    assert record_files(store) == before

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
        for path in sorted((store / "runs").glob("*/*"))
    }


@pytest.mark.slow
def test_pi_mc_runs_then_skips_everything(tmp_path):
    out = run_example("pi_mc.py", tmp_path)
    rows = table_rows(out)
    assert len(rows) == 9, out
    assert all("completed" in row for row in rows), out
    assert re.search(r"\b9\b[^\n]*executed", out), out

    store = tmp_path / "runs" / "pi_mc"
    records = [json.loads(p.read_text()) for p in (store / "runs").glob("*/*.json")]
    assert len(records) == 9
    assert all(r["status"] == "completed" for r in records)
    assert len(list((store / "runs").glob("*/*.done"))) == 9
    before = record_files(store)

    out = run_example("pi_mc.py", tmp_path)
    assert len(table_rows(out)) == 9, out
    assert re.search(r"\b0\b[^\n]*executed", out), out
    assert re.search(r"\b9\b[^\n]*skipped", out), out
    assert not re.search(r"\b9\b[^\n,]*executed", out), out
    assert record_files(store) == before


def _quickstart_script() -> str:
    """The quickstart's `my_experiment.py`, as the spec prints it (no __main__ guard)."""
    return (
        "import metalab\n\n"
        "@metalab.operation\n"
        "def estimate_pi(params, seeds, capture):\n"
        '    n = params["n_samples"]\n'
        "    rng = seeds.numpy()\n"
        "    x, y = rng.random(n), rng.random(n)\n"
        "    pi_est = 4.0 * (x**2 + y**2 <= 1).mean()\n"
        '    capture.metric("pi_estimate", pi_est)\n\n'
        "exp = metalab.Experiment(\n"
        '    name="pi_mc",\n'
        '    version="0.1",\n'
        "    context={},\n"
        "    operation=estimate_pi,\n"
        "    params=metalab.grid(n_samples=[1000, 10000, 100000]),\n"
        "    seeds=metalab.seeds(base=42, replicates=3),\n"
        ")\n\n"
        "# Run and get results\n"
        "handle = metalab.run(exp)\n"
        "results = handle.result()\n"
        "print(results.table())\n"
    )


@pytest.mark.slow
def test_quickstart_script_without_main_guard_runs_on_a_local_cluster(tmp_path):
    script = tmp_path / "my_experiment.py"
    script.write_text(_quickstart_script())
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr
    assert len(table_rows(proc.stdout)) == 9
    assert all(row.rstrip().endswith("completed") for row in table_rows(proc.stdout))
    assert len(list((tmp_path / "runs" / "pi_mc" / "runs").glob("*/*.done"))) == 9


def _run_unguarded(tmp_path, name: str, kill: str, run: str, timeout: int):
    """Run a script without a main guard whose operation runs `kill` (lines that may end the
    worker process) before capturing its metric, then `run`; return the finished process."""
    script = tmp_path / f"{name}.py"
    script.write_text(
        "import os\n"
        "import metalab\n\n"
        "@metalab.operation\n"
        "def op(params, capture):\n"
        f"{kill}"
        "    capture.metric('i', params['i'])\n\n"
        f"exp = metalab.Experiment(name={name!r}, version='1', context={{}}, operation=op,\n"
        "    params=metalab.grid(i=list(range(6))), seeds=metalab.seeds(base=0))\n"
        f"{run}"
    )
    return subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
def test_unguarded_script_finishes_when_a_run_kills_every_worker_it_reaches(tmp_path):
    # each worker that runs index 1 dies; the replacements re-run this script while they
    # start, where `metalab.run` must hand back a finished handle (and its `result()`) so
    # that they start, the other runs finish and the lost run is recorded failed
    proc = _run_unguarded(
        tmp_path,
        "killer",
        "    if params['i'] == 1:\n        os._exit(1)\n",
        "results = metalab.run(exp).result(timeout=150)\n"
        "print('STATUSES', [r.status for r in results])\n",
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (
        "STATUSES ['completed', 'failed', 'completed', 'completed', 'completed', 'completed']"
        in (proc.stdout)
    )
    assert "AttributeError" not in proc.stderr
    records = sorted((tmp_path / "runs" / "killer" / "runs").glob("*/*.json"))
    assert len(records) == 6


@pytest.mark.slow
def test_unguarded_script_survives_a_worker_restart(tmp_path):
    proc = _run_unguarded(
        tmp_path,
        "crashy",
        "    marker = os.path.join(os.path.dirname(os.path.abspath('crashy.py')), 'crashed')\n"
        "    if params['i'] == 1 and not os.path.exists(marker):\n"
        "        open(marker, 'w').close()\n"
        "        os._exit(3)  # the worker dies; its replacement re-imports this file\n",
        "results = metalab.run(exp, executor=metalab.ProcessExecutor(max_workers=2)).result()\n"
        "print('STATUSES', sorted(r.status for r in results))\n",
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        "STATUSES ['completed', 'completed', 'completed', 'completed', 'completed', " in proc.stdout
    )
    assert (tmp_path / "crashed").exists()

"""The `metalab` command, run as users run it: through a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sweeps import draw_experiment, metalab_cmd

import metalab


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "store"
    metalab.run(draw_experiment("alpha"), path, executor="inline").result()
    metalab.run(draw_experiment("beta", replicates=1), path, executor="inline").result()
    return path


def test_status_counts_runs_per_experiment(store):
    out = metalab_cmd("status", str(store))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"store {store.as_uri()}"
    alpha = next(line for line in lines if line.startswith("alpha:1")).split()
    beta = next(line for line in lines if line.startswith("beta:1")).split()
    # experiment, total, completed, failed, interrupted, cancelled, missing
    assert alpha == ["alpha:1", "12", "12", "0", "0", "0", "0"]
    assert beta == ["beta:1", "6", "6", "0", "0", "0", "0"]
    only = metalab_cmd("status", str(store), "--experiment", "beta")
    assert "alpha" not in only.stdout and "beta:1" in only.stdout


def test_store_ls_lists_experiments(store):
    out = metalab_cmd("store", "ls", store.as_uri())
    assert out.returncode == 0, out.stderr
    assert "alpha:1: 12 recorded of 12, 1 submission(s)" in out.stdout
    assert "beta:1: 6 recorded of 6, 1 submission(s)" in out.stdout


def test_errors_name_the_store_and_exit_nonzero(tmp_path):
    out = metalab_cmd("status", str(tmp_path / "nowhere"))
    assert out.returncode == 1
    assert "no metalab store at" in out.stderr and "nowhere" in out.stderr
    out = metalab_cmd("status", "ftp://host/x")
    assert out.returncode == 1 and "unknown store scheme 'ftp://'" in out.stderr
    out = metalab_cmd("frobnicate")
    assert out.returncode == 2 and "No such command" in out.stderr


def test_console_script_is_installed():
    import shutil

    exe = shutil.which("metalab", path=os.path.dirname(sys.executable))
    assert exe is not None
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "metalab, version" in out.stdout


def test_report_command_and_results_report(store, tmp_path):
    out = metalab_cmd("report", str(store), "-o", str(tmp_path / "r.html"), "-e", "alpha")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"wrote {tmp_path / 'r.html'}"
    page = (tmp_path / "r.html").read_text()
    assert "alpha:1" in page and "Bokeh" in page
    path = metalab.load_results(store, "beta").report(tmp_path / "beta.html")
    assert "beta:1" in path.read_text()
    out = metalab_cmd("report", str(store), "-e", "gamma", cwd=tmp_path)
    assert out.returncode == 1 and "gamma" in out.stderr and "alpha:1" in out.stderr


def test_report_to_a_path_it_cannot_write_is_one_line(store, tmp_path):
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "locked").mkdir(mode=0o500)
    cases = {
        str(tmp_path): "is a directory; give the HTML file to write",
        str(tmp_path / "a-file" / "r.html"): "is inside a file, not a directory",
    }
    if os.geteuid() != 0:  # root writes anywhere
        cases[str(tmp_path / "locked" / "r.html")] = "Permission denied"
    for output, message in cases.items():
        out = metalab_cmd("report", str(store), "-o", output)
        assert out.returncode == 1, out.stderr
        assert message in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert (tmp_path / "a-file").read_text() == "x"


def test_store_export_writes_the_runs_table_as_parquet(store, tmp_path):
    import pandas as pd

    target = tmp_path / "runs.parquet"
    out = metalab_cmd(
        "store", "export", "--from", str(store), "--to", str(target), "--format", "parquet"
    )
    assert out.returncode == 0, out.stderr
    assert f"wrote 18 runs to {target}" in out.stdout
    frame = pd.read_parquet(target)
    expected = metalab.load_results(store).to_dataframe()
    assert sorted(frame["run_id"]) == sorted(expected["run_id"])
    assert list(frame.columns) == list(expected.columns)  # no bookkeeping columns
    only = tmp_path / "beta.parquet"
    out = metalab_cmd(
        "store",
        "export",
        "--from",
        str(store),
        "--to",
        str(only),
        "-e",
        "beta",
        "--format",
        "parquet",
    )
    assert out.returncode == 0 and len(pd.read_parquet(only)) == 6
    bad = metalab_cmd(
        "store",
        "export",
        "--from",
        str(store),
        "--to",
        str(tmp_path / "x.csv"),
        "--format",
        "parquet",
    )
    assert bad.returncode == 1 and "name a .parquet file" in bad.stderr
    before = only.read_bytes()
    unknown = metalab_cmd(
        "store", "export", "--from", str(store), "--to", str(only), "-e", "betta",
        "--format", "parquet",
    )  # fmt: skip
    assert unknown.returncode == 1
    assert unknown.stderr.strip().splitlines() == [
        f"Error: {store.as_uri()} holds no experiment 'betta'; it holds: alpha:1, beta:1 "
        "(nothing was written)"
    ]
    assert only.read_bytes() == before  # the earlier export is left as it was


def test_parquet_export_without_pyarrow_names_the_extra(store, tmp_path):
    blocked = (
        "import sys; sys.modules['pyarrow'] = sys.modules['pyarrow.parquet'] = None; "
        "from metalab.cli import main; main()"
    )
    target = tmp_path / "runs.parquet"
    args = ["store", "export", "--from", str(store), "--to", str(target), "--format", "parquet"]
    out = subprocess.run(
        [sys.executable, "-c", blocked, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1
    assert "'pandas' extra" in out.stderr and "uv add ./metalab --extra pandas" in out.stderr
    assert "No module named" not in out.stderr
    assert not target.exists()


def test_store_import_from_a_database_points_to_export(tmp_path):
    out = metalab_cmd(
        "store",
        "import",
        "--from",
        "postgresql://me:secret@127.0.0.1/none",
        "--to",
        "x",
        cwd=tmp_path,
    )
    assert out.returncode == 1
    assert "`metalab store import` reads a file store" in out.stderr
    assert "metalab store export --from SOURCE --to DESTINATION" in out.stderr
    assert "secret" not in out.stderr and "import_from_filestore" not in out.stderr
    assert not (tmp_path / "x").exists()

"""The suite on someone else's machine: SLURM tests never submit to a cluster `ci/` did not start.

A fake `sinfo`, `scontrol` and `sbatch` on PATH stand for a foreign cluster (one `debug`
partition, no gres, a `slurm.conf` that `ci/start-slurm.sh` did not write); `sbatch` records
every call. The suite's own SLURM tests then run in a subprocess, as a user would run them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent

LAYOUT_TESTS = (
    "test_the_test_cluster_has_gpu_and_cpu_partitions_and_one_gpu",
    "test_spec_gpu_sweep_as_written_then_reconnect",
    "test_spec_large_sweep_config_runs_a_reduced_sweep",
)


def _fake_cluster(root: Path) -> dict[str, str]:
    """Fake SLURM commands in `root/bin`; the environment that puts them first on PATH."""
    bin_dir = root / "bin"
    bin_dir.mkdir()
    conf = root / "slurm.conf"
    conf.write_text("ClusterName=elsewhere\nPartitionName=debug Nodes=ALL Default=YES\n")
    scripts = {
        "sinfo": 'case "$*" in *%G*) echo "debug* (null)";; *) echo "debug* idle";; esac',
        "scontrol": f'echo "SLURM_CONF              = {conf}"',
        "sbatch": f'echo "$@" >> {root / "sbatch.calls"}; echo "Submitted batch job 7"',
        "squeue": "true",
        "sacct": "true",
        "scancel": "true",
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("METALAB_", "SLURM_"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    return env


def _pytest(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", "-q", *args]
    return subprocess.run(
        command, cwd=TESTS.parent, env=env, capture_output=True, text=True, timeout=240
    )


@pytest.mark.slow
def test_slurm_tests_skip_on_a_cluster_ci_did_not_start(tmp_path):
    env = _fake_cluster(tmp_path)
    done = _pytest(env, "tests/test_slurm_cluster.py", "tests/test_slurm_executor.py")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "not started by ci/start-slurm.sh" in done.stdout
    assert "METALAB_TEST_SLURM=1" in done.stdout
    assert " failed" not in done.stdout and " error" not in done.stdout
    assert not (tmp_path / "sbatch.calls").exists(), "a job was submitted to a foreign cluster"


@pytest.mark.slow
def test_a_foreign_cluster_fails_the_run_when_services_are_required(tmp_path):
    env = _fake_cluster(tmp_path) | {"METALAB_REQUIRE_SERVICES": "1"}
    done = _pytest(env, "tests/test_slurm_cluster.py", "-k", LAYOUT_TESTS[0])
    assert done.returncode != 0
    assert "not started by ci/start-slurm.sh" in done.stdout
    assert not (tmp_path / "sbatch.calls").exists()


@pytest.mark.slow
def test_with_opt_in_tests_needing_the_test_layout_skip_with_the_reason(tmp_path):
    env = _fake_cluster(tmp_path) | {"METALAB_TEST_SLURM": "1"}
    selected = " or ".join(LAYOUT_TESTS)
    done = _pytest(
        env, "tests/test_slurm_cluster.py", "tests/test_slurm_executor.py", "-k", selected
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "needs the test cluster's layout" in done.stdout
    assert f"{len(LAYOUT_TESTS)} skipped" in done.stdout
    assert not (tmp_path / "sbatch.calls").exists()

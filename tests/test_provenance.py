"""The git state a sweep records: the commit and dirty flag of the work tree holding the
operation's source file, read once per sweep."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import pytest

import metalab

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")

OPERATION = textwrap.dedent(
    """
    import metalab

    @metalab.operation
    def op(params, capture):
        capture.metric("y", params["x"])
    """
)


def _git(repo, *args):
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def _sweep_git(project, store, name):
    """The `provenance.git` of the records and of the manifest of a sweep of `name.op`."""
    sys.path.insert(0, str(project))
    try:
        module = __import__(name)
        exp = metalab.Experiment(
            name=name,
            version="1",
            context={},
            operation=module.op,
            params=metalab.grid(x=[1, 2]),
            seeds=metalab.seeds(base=0),
        )
        handle = metalab.run(exp, store, executor="inline", resume=False)
        results = handle.result()
    finally:
        sys.path.remove(str(project))
        sys.modules.pop(name, None)
    found = {str(r.record["provenance"]["git"]) for r in results}
    assert len(found) == 1
    session = results[0].record["provenance"]["session"]
    (manifest,) = [m for m in handle.store.manifests(exp.experiment_id) if m["session"] == session]
    assert str(manifest["provenance"]["git"]) in found
    return results[0].record["provenance"]["git"]


def test_records_name_the_commit_and_whether_the_tree_was_dirty(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    _git(project, "init", "-q")
    (project / "git_op.py").write_text(OPERATION)
    _git(project, "add", "git_op.py")
    _git(project, "commit", "-q", "-m", "first")
    head = _git(project, "rev-parse", "HEAD")

    clean = _sweep_git(project, tmp_path / "s1", "git_op")
    assert clean == {"commit": head, "dirty": False, "root": str(project.resolve())}

    (project / "git_op.py").write_text(OPERATION + "\n# edited\n")
    assert _sweep_git(project, tmp_path / "s2", "git_op")["dirty"] is True

    _git(project, "commit", "-q", "-am", "second")
    again = _sweep_git(project, tmp_path / "s3", "git_op")
    assert again["commit"] == _git(project, "rev-parse", "HEAD") != head
    assert again["dirty"] is False


def test_no_git_state_outside_a_work_tree_or_before_a_first_commit(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "plain_op.py").write_text(OPERATION)
    assert _sweep_git(plain, tmp_path / "s1", "plain_op") is None

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    _git(fresh, "init", "-q")
    (fresh / "fresh_op.py").write_text(OPERATION)
    assert _sweep_git(fresh, tmp_path / "s2", "fresh_op") is None

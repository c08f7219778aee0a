"""`metalab.testing`: the in-memory store and the fake SLURM users' tests run against."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from sweeps import checked_result, draw_experiment

import metalab
from metalab.testing import FakeSlurm, MemoryStore

TESTS = Path(__file__).parent


@pytest.fixture
def memory():
    """A fresh memory store, forgotten after the test."""
    store = MemoryStore()
    yield store
    store.drop()


# ------------------------------------------------------------------------- MemoryStore
def test_a_memory_locator_opens_the_same_store_in_this_process(memory):
    from metalab import registry

    assert MemoryStore.open(memory.locator) is memory
    assert registry.open_store(memory.locator) is memory
    assert isinstance(memory, metalab.contracts.Store)
    other = MemoryStore.open("memory://made-on-open", create=True)
    try:
        assert MemoryStore.open("memory://made-on-open", create=False) is other
        assert "made-on-open" in MemoryStore.named()
    finally:
        other.drop()
    with pytest.raises(metalab.StoreError, match="worker processes"):
        MemoryStore.open("memory://made-on-open", create=False)
    with pytest.raises(metalab.StoreError, match="memory store name"):
        MemoryStore("no/slashes")


def _record(run_id: str, index: int, status: str = "completed", **extra) -> dict:
    return {"run_id": run_id, "experiment_id": "e:1", "index": index, "status": status, **extra}


def test_records_are_replaced_whole_and_read_in_order(memory):
    ids = [f"{c * 32}" for c in "abcd"]
    for index, run_id in reversed(list(enumerate(ids))):
        memory.put_record(_record(run_id, index, "failed" if index == 1 else "completed"))
    assert memory.scan() == (set(ids), set(ids) - {ids[1]})
    assert [r["index"] for r in memory.iter_records()] == [0, 1, 2, 3]
    assert [r["run_id"] for r in memory.get_records([ids[2], "f" * 32, ids[0]])] == [
        ids[2],
        ids[0],
    ]
    memory.put_record(_record(ids[1], 1, metrics={"x": 1}))
    assert memory.get_record(ids[1])["metrics"] == {"x": 1}
    assert ids[1] in memory.scan()[1]
    record = memory.get_record(ids[1])
    record["metrics"]["x"] = 2  # a copy: the store keeps what was put
    assert memory.get_record(ids[1])["metrics"] == {"x": 1}
    memory.put_record(_record(ids[0], 0, "interrupted"))
    assert ids[0] not in memory.scan()[1]


def test_claims_follow_their_owners_liveness(memory):
    from metalab import claims

    me = claims.owner("s1")
    assert memory.claim("a" * 32, me)
    assert not memory.claim("a" * 32, claims.owner("s2"))  # held by a live owner
    assert memory.claims() == {"a" * 32: me}
    assert memory.claim_owner("a" * 32) == me

    done = []
    thread = threading.Thread(target=lambda: done.append(memory.release("a" * 32)))
    thread.start()
    thread.join()
    assert memory.claims() == {"a" * 32: me}  # only the thread holding it releases it
    memory.release("a" * 32)
    memory.release("a" * 32)
    assert memory.claims() == {} and memory.claim_owner("a" * 32) is None

    dead = {"host": me["host"], "pid": 2**22 + 7, "start": 1, "session": "old"}
    assert memory.claim("b" * 32, dead)
    assert memory.claims() == {}  # a dead owner's claim is no live claim...
    assert memory.claim("b" * 32, me)  # ...and is taken over
    memory.release("b" * 32)


def test_manifests_experiments_artifacts_logs_derived_and_cancellation(memory):
    assert memory.write_manifest("e:1", {"n": 1}) != memory.write_manifest("e:1", {"n": 2})
    memory.write_manifest("f:1", {"n": 3})
    assert [m["n"] for m in memory.manifests("e:1")] == [1, 2]
    assert [m["n"] for m in memory.manifests()] == [1, 2, 3]
    key = "0" * 64
    memory.save_experiment(key, b"blob")
    assert memory.load_experiment(key) == b"blob"
    assert memory.read_pickled("experiment", key) == (b"blob", None)
    with pytest.raises(metalab.StoreError):
        memory.load_experiment("1" * 64)
    ref = memory.put_artifact("a" * 32, "x.npy", b"123")
    assert memory.read_artifact(ref) == b"123" and memory.read_pickled("artifact", ref)[0]
    with pytest.raises(metalab.StoreError):
        memory.read_artifact("artifacts/none/x.npy")
    with pytest.raises(metalab.StoreError):
        memory.put_artifact("a" * 32, "../x", b"")
    with memory.open_log("a" * 32) as log:
        log.write("one\n")
    with memory.open_log("a" * 32) as log:
        log.write("two\n")
    assert memory.read_log("a" * 32) == "one\ntwo\n" and memory.read_log("b" * 32) == ""
    memory.put_log("a" * 32, "replaced\n")
    assert memory.read_log("a" * 32) == "replaced\n"
    memory.put_derived("a" * 32, {"m": 1.5})
    assert memory.get_derived("a" * 32) == {"m": 1.5} and memory.get_derived("b" * 32) == {}
    assert not memory.cancel_requested("s")
    memory.request_cancel("s")
    memory.request_cancel("s")
    assert memory.cancel_requested("s") and not memory.cancel_requested("t")


@pytest.mark.parametrize("executor", ["inline", "threads"])
def test_run_and_load_results_through_a_memory_locator(executor):
    store = MemoryStore.open(f"memory://sweep-{executor}", create=True)
    try:
        exp = draw_experiment()
        handle = metalab.run(exp, store.locator, executor=executor)
        results = handle.result(timeout=60)
        assert [r.status for r in results] == ["completed"] * 12
        loaded = metalab.load_results(store.locator)
        assert [r.run_id for r in loaded] == exp.run_ids()
        assert [r.metrics for r in loaded] == [r.metrics for r in results]
        again = metalab.run(exp, store.locator, executor=executor)
        assert again.result(timeout=60) and again.status.skipped == 12
    finally:
        store.drop()


def test_worker_processes_cannot_open_a_memory_store(memory):
    handle = metalab.run(draw_experiment(replicates=1), memory, executor="processes")
    # each run fails with the reason (until the registry opens every locator, workers
    # refuse the scheme itself)
    with pytest.warns(metalab.RunsFailedWarning, match=r"worker processes|unknown store scheme"):
        results = handle.result(timeout=120)
    assert {r.error["type"] for r in results} == {"StoreError"}


# --------------------------------------------------------------------------- FakeSlurm
def _config(**options) -> metalab.SlurmConfig:
    options.setdefault("setup", [f"export PYTHONPATH={TESTS}"])
    return metalab.SlurmConfig(time="5:00", memory="500M", **options)


def _executor(**options) -> metalab.SlurmExecutor:
    return metalab.SlurmExecutor(_config(**options), poll_interval=0.1)


def test_a_slurm_sweep_runs_under_the_fake_and_its_commands_are_recorded(tmp_path):
    exp = draw_experiment()
    with FakeSlurm() as slurm:
        handle = metalab.run(exp, tmp_path / "store", executor=_executor(max_array_size=5))
        results = handle.result(timeout=120)
    assert [r.status for r in results] == ["completed"] * 12
    inline = metalab.run(exp, tmp_path / "inline", executor="inline").result()
    assert [r.metrics for r in results] == [r.metrics for r in inline]
    submitted = slurm.calls("sbatch")
    assert len(submitted) == 3  # 12 runs in shards of 5 tasks
    assert all(call[0] == "--parsable" and call[-1].endswith(".sh") for call in submitted)
    # the cluster's limits are read once at submission
    assert {call[0] for call in slurm.commands} <= {
        "sbatch",
        "squeue",
        "sacct",
        "scontrol",
        "sacctmgr",
    }
    assert [c[:3] for c in slurm.commands if c[0] == "scontrol"] == [["scontrol", "show", "config"]]
    slurm_env = [r.provenance["slurm"] for r in results]
    assert all(s["array_job_id"] and s["array_task_id"] is not None for s in slurm_env)
    assert set(slurm.states().values()) == {"COMPLETED"}
    logs = sorted(p.name for p in (tmp_path / "store" / "slurm" / "logs").glob("*.out"))
    assert len(logs) == 12


def test_throttles_and_dependencies_are_honoured(tmp_path):
    script = tmp_path / "job.sh"
    out = tmp_path / "out"
    out.mkdir()
    script.write_text(
        "#!/bin/bash\n#SBATCH --array=0-5%2\n"
        f"#SBATCH --output={tmp_path}/%A_%a.out\n"
        f"touch {out}/$SLURM_ARRAY_TASK_ID; ls {out} | wc -l >> {tmp_path}/running\n"
        f"sleep 0.3; rm {out}/$SLURM_ARRAY_TASK_ID\n"
        'echo "$SLURM_ARRAY_JOB_ID $SLURM_ARRAY_TASK_ID $SLURM_JOB_ID"\n'
    )
    from metalab.executors.slurm import commands

    with FakeSlurm(max_running=8) as slurm:
        first = commands.sbatch(str(script))
        second = commands.sbatch(str(script), [f"--dependency=afterany:{first}"])
        assert commands.squeue([second])[f"{second}_0"].reason == "Dependency"
        slurm.wait(60)
        accounting = commands.sacct([first, second])
    assert {r.state for r in accounting.records.values()} == {"COMPLETED"}
    assert len(accounting.records) == 12
    assert max(int(n) for n in (tmp_path / "running").read_text().split()) <= 2
    job, task, own = (tmp_path / f"{first}_3.out").read_text().split()
    assert (job, task) == (first, "3") and own != first
    assert slurm.calls("sbatch")[1][1] == f"--dependency=afterany:{first}"


def test_scancel_and_a_lost_task_are_seen_by_the_executor(tmp_path):
    from slurm_ops import slurm_experiment

    # run 1 sleeps in its first attempt only: the fake ends its task as a node failure, the
    # executor records the run lost and, within `retries`, submits it again
    exp = slurm_experiment(n=3, sleep_on=1, sleep=60, only_first_attempt=True)
    with FakeSlurm() as slurm:
        handle = metalab.run(exp, tmp_path / "store", executor=_executor(retries=1))
        deadline = time.monotonic() + 60
        while not any(
            state == "RUNNING" and key.endswith("_1") for key, state in slurm.states().items()
        ):
            assert time.monotonic() < deadline, slurm.states()
            time.sleep(0.05)
        time.sleep(1.0)  # the run has claimed itself
        (key,) = [k for k in slurm.states() if k.endswith("_1")]
        slurm.end_task(key, "NODE_FAIL")
        results = checked_result(handle, timeout=120)
    assert [r.status for r in results] == ["completed"] * 3
    assert results[1].record["attempt"] == 2
    assert len(slurm.calls("sbatch")) == 2


def test_sacct_without_accounting_and_scontrol_show_config():
    from metalab.executors.slurm import commands

    with FakeSlurm(accounting=False) as slurm:
        assert commands.sacct(["1"]).available is False
        config = commands.run_command(["scontrol", "show", "config"]).stdout
    assert "accounting_storage/none" in config
    assert slurm.calls("scontrol") == [["show", "config"]]
    assert commands.run_command is not slurm.run_command


def test_the_fake_kills_what_still_runs_when_the_block_ends(tmp_path):
    script = tmp_path / "job.sh"
    script.write_text(f"#!/bin/bash\necho $$ > {tmp_path}/pid\nsleep 60\n")
    from metalab.executors.slurm import commands

    with FakeSlurm(grace=0.2) as slurm:
        job = commands.sbatch(str(script))
        deadline = time.monotonic() + 30
        while not (tmp_path / "pid").exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert slurm.states() == {job: "CANCELLED"}
    pid = int((tmp_path / "pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# ------------------------------------------------------------------------------- the docs
DOCS = TESTS.parent / "docs" / "testing.md"


def _python_blocks(path: Path) -> list[str]:
    text = path.read_text()
    return [block.split("\n```", 1)[0] for block in text.split("```python\n")[1:]]


@pytest.mark.parametrize("number", range(len(_python_blocks(DOCS))))
def test_the_examples_of_the_testing_page_run(number, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = _python_blocks(DOCS)[number]
    exec(compile(code, f"{DOCS}:block{number}", "exec"), {"__name__": "docs_testing"})

"""What a run's store protocol costs, and what other record formats would: a design measurement.

A run of the file store claims its run (a claim file created exclusively, its owner written),
checks for an earlier record, writes its record into the claim file, takes the file's
identity for the journal, closes it, renames it into place and links its `.done` marker:
8 system calls. This benchmark writes the same 10,000 records (the same fields, provenance
and encoder as metalab's, one draw of a seeded NumPy generator each) in straight loops with
nothing else, each in its own fresh directory, and beside them metalab itself:

* floor: `bench_throughput.py`'s one-core floor (one atomic JSON file per run, no claim);
* the spec's minimum: what the spec asks of every run (its record written whole, then its
  `.done` marker), with metalab's record and run id, without a claim or any check;
* the protocol of today's format, straight: the 8 system calls a run, nothing else;
* claims per run, records appended to one file per task: what a segment format that kept
  per-run claims would cost;
* one claim per task, records appended to one file per task: what claims on ranges of runs
  would cost (exactly-once against other drivers that cut the sweep differently would then
  need a range-claim protocol);
* metalab: `InlineExecutor`'s runs (its `execute` timed: runs, records, journal, outcomes),
  into a fresh file store.

Files go under `--dir` (default: the temporary directory; `/dev/shm` measures the CPU cost
alone). Each case `--repeat` times (3), interleaved, the fastest kept; ratios are the
floor's time over each case's.

    uv run --all-extras python benchmarks/bench_protocol.py --dir /dev/shm
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import tempfile
import time

import _ops
import numpy as np
from _common import best, format_table, row

import metalab
from metalab.record import encode_record

N_RUNS = 10_000
CHUNK = 500
"""Runs a task holds (the appended cases open one file per task)."""
OWNER = b'{"host": "vm", "pid": 5273, "started": 1765000000.0, "session": "0d2366b33f53e5f2"}'
CONTEXT = "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
SEEDS = "ecc6925139733efc2a73c7ccd9bbee71b8b67300e453d9b3f282fcf77e51dd23"
PROVENANCE = {
    "code_hash": "2573dc6ada69c2b25560784e85a7ea176c68f3742def938ca1048e01f4c4b057",
    "operation": "_ops:draw",
    "git": {"commit": "361da007db47c460131b1e8eb6c9c34e0fcf93f2", "dirty": False, "root": "/"},
    "python": "3.11.7",
    "metalab": metalab.__version__,
    "numpy": np.__version__,
    "host": "vm",
    "pid": 6033,
    "worker": "vm:6033",
    "session": "0d2366b33f53e5f2",
}


def _ids(i: int) -> tuple[str, str]:
    """The params fingerprint and run id of index `i`, hashed as metalab hashes them."""
    params = hashlib.sha256(f'{{"i":{i}}}'.encode()).hexdigest()
    material = f"metalab.run/1\nprotocol:1\n{CONTEXT}\n{params}\n{SEEDS}"
    return params, hashlib.sha256(material.encode()).hexdigest()[:32]


def _record(i: int, run_id: str, params: str) -> bytes:
    """The record of run `i` (one draw of its seeded generator), encoded as metalab does."""
    x = float(np.random.Generator(np.random.PCG64(i)).random())
    return encode_record(
        {
            "format": "metalab.run/1",
            "run_id": run_id,
            "experiment_id": "protocol:1",
            "index": i,
            "case": i,
            "replicate": 0,
            "status": "completed",
            "params": {"i": i},
            "fingerprints": {"context": CONTEXT, "params": params, "seeds": SEEDS},
            "seed": {"base": 0, "replicate": 0},
            "error": None,
            "started_at": "2026-12-07T09:27:16.199395+00:00",
            "finished_at": "2026-12-07T09:27:16.199403+00:00",
            "duration": 1e-5,
            "attempt": 1,
            "provenance": PROVENANCE,
            "metrics": {"x": x},
            "series": {},
            "artifacts": [],
        }
    )


def _shards(root: str, *subs: str) -> None:
    for sub in subs:
        for i in range(256):
            os.makedirs(f"{root}/{sub}/{i:02x}", exist_ok=True)


def floor(root: str, n: int) -> None:
    """One atomic JSON file per run: `_ops.plain_chunk`, the loop of the floor."""
    _ops.plain_chunk(root, list(range(n)))


def spec_minimum(root: str, n: int) -> None:
    """What the spec asks of every run and nothing more: its record (its run id hashed, the
    record encoded as metalab encodes it) written whole through a temporary file renamed
    into place, then its `.done` marker linked. No claim, no check for an earlier record:
    what a file store costs a run before exactly-once."""
    _shards(root, "runs")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    for i in range(n):
        params, run_id = _ids(i)
        record = f"{root}/runs/{run_id[:2]}/{run_id}"
        fd = os.open(f"{record}.tmp", flags, 0o644)
        os.write(fd, _record(i, run_id, params))
        os.close(fd)
        os.rename(f"{record}.tmp", f"{record}.json")
        os.link(f"{record}.json", f"{record}.done")


def per_run(root: str, n: int) -> None:
    """Today's format, straight: the 8 system calls of a run, nothing else."""
    _shards(root, "runs", "claims")
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL
    for i in range(n):
        params, run_id = _ids(i)
        shard = run_id[:2]
        claim, record = f"{root}/claims/{shard}/{run_id}.claim", f"{root}/runs/{shard}/{run_id}"
        fd = os.open(claim, flags, 0o644)
        os.write(fd, OWNER)
        os.access(f"{record}.json", os.F_OK)
        os.pwrite(fd, _record(i, run_id, params), 0)
        os.fstat(fd)
        os.close(fd)
        os.rename(claim, f"{record}.json")
        os.link(f"{record}.json", f"{record}.done")


def appended_claims_per_run(root: str, n: int) -> None:
    """A claim file per run, the records appended to one file per task."""
    _shards(root, "runs", "claims", "segments")
    for start in range(0, n, CHUNK):
        segment = f"{root}/segments/{start % 256:02x}/{start}.seg"
        out = os.open(segment, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        claimed = []
        for i in range(start, min(start + CHUNK, n)):
            params, run_id = _ids(i)
            shard = run_id[:2]
            claim = f"{root}/claims/{shard}/{run_id}.claim"
            fd = os.open(claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, OWNER)
            os.close(fd)
            os.access(f"{root}/runs/{shard}/{run_id}.json", os.F_OK)
            os.write(out, _record(i, run_id, params) + b"\n")
            claimed.append(claim)
        os.close(out)
        for claim in claimed:
            os.unlink(claim)


def appended_claim_per_task(root: str, n: int) -> None:
    """One claim file per task, the records appended to one file per task."""
    _shards(root, "claims", "segments")
    for start in range(0, n, CHUNK):
        claim = f"{root}/claims/{start % 256:02x}/{start}.claim"
        fd = os.open(claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, OWNER)
        os.close(fd)
        segment = f"{root}/segments/{start % 256:02x}/{start}.seg"
        out = os.open(segment, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        for i in range(start, min(start + CHUNK, n)):
            params, run_id = _ids(i)
            os.write(out, _record(i, run_id, params) + b"\n")
        os.close(out)
        os.unlink(claim)


class _TimedInline(metalab.InlineExecutor):
    """`InlineExecutor` whose runs are timed (its `execute`, not the sweep's planning or the
    results table read at the end)."""

    seconds = 0.0

    def execute(self, sweep, indices, sink) -> None:
        t0 = time.perf_counter()
        super().execute(sweep, indices, sink)
        type(self).seconds = time.perf_counter() - t0


def metalab_inline(root: str, n: int) -> float:
    """metalab's runs, inline, into a fresh file store; returns their seconds."""
    handle = metalab.run(_ops.experiment("protocol", i=range(n)), f"{root}/store", _TimedInline())
    handle.wait()
    if handle.status.completed != n:
        raise RuntimeError(f"expected {n} completed runs, got {handle.status}")
    return _TimedInline.seconds


CASES = {
    "floor": ("floor: one atomic JSON file per run, no claim", floor),
    "spec": ("the spec's minimum: an atomic record file and its .done marker", spec_minimum),
    "per-run": ("today's format, straight: 8 system calls a run", per_run),
    "segment": ("a claim per run, records appended per task", appended_claims_per_run),
    "range": ("a claim per task, records appended per task", appended_claim_per_task),
}


def run(directory: str | None = None, n: int = N_RUNS, repeat: int = 3) -> list[dict]:
    samples: dict[str, list[float]] = {name: [] for name in [*CASES, "metalab"]}
    # a first sweep outside the clock: metalab's imports and first store
    with tempfile.TemporaryDirectory(prefix="metalab-protocol-", dir=directory) as warm:
        metalab_inline(warm, 10)
    for _ in range(repeat):
        for name in samples:
            root = tempfile.mkdtemp(prefix=f"metalab-protocol-{name}-", dir=directory)
            try:
                if name == "metalab":
                    samples[name].append(metalab_inline(root, n))
                else:
                    t0 = time.perf_counter()
                    CASES[name][1](root, n)
                    samples[name].append(time.perf_counter() - t0)
            finally:
                shutil.rmtree(root, ignore_errors=True)
    floor_s = best(samples["floor"])
    rows = []
    for name, seconds in samples.items():
        label = "metalab, InlineExecutor: its runs" if name == "metalab" else CASES[name][0]
        per = best(seconds) / n * 1e6
        rows.append(
            row(
                f"{label} ({per:.1f} us a run)",
                best(seconds),
                runs=n,
                ratio=floor_s / best(seconds),
                ratio_is="speed / floor",
                samples=seconds,
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default=None, help="where files go (e.g. /dev/shm)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the best counts")
    parser.add_argument("--runs", type=int, default=N_RUNS, help="runs per case")
    args = parser.parse_args()
    print(format_table({"protocol": run(args.dir, args.runs, args.repeat)}))


if __name__ == "__main__":
    main()

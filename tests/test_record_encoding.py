"""A record's provenance is shared by the records of a sweep in one process and encoded once:
the record's bytes are those of the plain record, and the shared part cannot be changed."""

from __future__ import annotations

import copy
import json
import pickle

import pytest

import metalab
from metalab.record import SharedPart, decode_record, encode_record


def _provenance() -> dict:
    return {"code_hash": "c0de", "host": "h\u00e9", "pid": 7, "git": {"commit": None}}


def _record(provenance) -> dict:
    return {
        "run_id": "a" * 32,
        "status": "completed",
        "duration": 0.25,
        "metrics": {"x": float("nan"), "label": "\u00e9t\u00e9"},
        "provenance": provenance,
    }


def test_a_shared_provenance_encodes_as_the_plain_record_does():
    shared = SharedPart(_provenance())
    plain = json.dumps(_record(_provenance()), ensure_ascii=False).encode()
    assert encode_record(_record(shared)) == plain
    decoded = decode_record(encode_record(_record(shared)))
    assert decoded["provenance"] == _provenance() and decoded["metrics"]["label"] == "\u00e9t\u00e9"
    # not the last field: encoded in full, the same document
    moved = {"provenance": shared, **{k: v for k, v in _record(None).items() if k != "provenance"}}
    assert decode_record(encode_record(moved)) == decode_record(plain)


def test_a_shared_part_cannot_be_changed_and_its_copies_are_plain_dicts():
    shared = SharedPart(_provenance())
    for change in (
        lambda p: p.__setitem__("host", "other"),
        lambda p: p.update(host="other"),
        lambda p: p.pop("host"),
        lambda p: p.setdefault("new", 1),
        lambda p: p.clear(),
    ):
        with pytest.raises(TypeError, match="shared by the records of a sweep"):
            change(shared)
    assert shared == _provenance()
    for copied in (copy.copy(shared), copy.deepcopy(shared), pickle.loads(pickle.dumps(shared))):
        assert type(copied) is dict and copied == _provenance()
        copied["host"] = "other"  # a copy is the caller's own
    assert shared["host"] == "h\u00e9"


def test_the_records_of_a_sweep_carry_their_process_s_provenance(tmp_path):
    from sweeps import draw_experiment

    exp = draw_experiment("shared_provenance", replicates=1)
    results = metalab.run(exp, tmp_path / "store", executor="inline", progress=False).result()
    assert len(results) == 6
    for run in results:
        provenance = run.provenance
        assert provenance["operation"].endswith("draw") and provenance["session"]
        assert type(provenance) is dict  # read back from the store
    files = sorted((tmp_path / "store" / "runs").glob("*/*.json"))
    assert len(files) == 6
    assert all(json.loads(f.read_bytes())["provenance"]["pid"] > 0 for f in files)
